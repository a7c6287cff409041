import { useId, useRef, useState } from 'react';
import { REFRESH_INTERVALS, RELATIVE_RANGES, describeRange, parseTimeInput, resolveTime, timeInputText, type TimeRange } from '../time';

/** Relative time ranges, an absolute range (from/to date-times or "now-6h"), auto-refresh
 * interval and a refresh button. */
export function TimeRangePicker({
  range,
  onRange,
  refresh,
  onRefreshInterval,
  onRefresh,
}: {
  range: TimeRange;
  onRange: (range: TimeRange) => void;
  refresh?: string;
  onRefreshInterval?: (interval: string) => void;
  onRefresh: () => void;
}) {
  const id = useId();
  const [editing, setEditing] = useState(false);
  const toggle = useRef<HTMLButtonElement>(null);
  const close = () => {
    setEditing(false);
    toggle.current?.focus(); // back to where the person was
  };
  const known = RELATIVE_RANGES.some((r) => r.from === range.from) && range.to === 'now';
  return (
    <div className="toolbar-group time-picker">
      <label htmlFor={`${id}-range`} className="sr-only">
        Time range
      </label>
      <select
        id={`${id}-range`}
        value={known ? range.from : 'custom'}
        onChange={(event) => {
          if (event.target.value === 'custom') setEditing(true);
          else onRange({ from: event.target.value, to: 'now' });
        }}
      >
        {RELATIVE_RANGES.map((r) => (
          <option key={r.from} value={r.from}>
            {r.label}
          </option>
        ))}
        <option value="custom">{known ? 'Absolute range…' : describeRange(range)}</option>
      </select>
      <button type="button" ref={toggle} aria-expanded={editing} aria-controls={`${id}-absolute`} onClick={() => setEditing(!editing)}>
        Absolute range
      </button>
      {editing && (
        <AbsoluteRangeForm
          id={`${id}-absolute`}
          range={range}
          onApply={(r) => {
            close();
            onRange(r);
          }}
          onCancel={close}
        />
      )}
      {onRefreshInterval && (
        <>
          <label htmlFor={`${id}-refresh`} className="sr-only">
            Auto-refresh
          </label>
          <select id={`${id}-refresh`} value={refresh ?? ''} onChange={(event) => onRefreshInterval(event.target.value)}>
            {REFRESH_INTERVALS.map((interval) => (
              <option key={interval} value={interval}>
                {interval ? `Every ${interval}` : 'Auto-refresh off'}
              </option>
            ))}
          </select>
        </>
      )}
      <button type="button" onClick={onRefresh}>
        Refresh
      </button>
    </div>
  );
}

/** From and To as date-times ("2026-05-01 13:00") or relative ("now-6h"), as Grafana takes them. */
function AbsoluteRangeForm({ id, range, onApply, onCancel }: { id: string; range: TimeRange; onApply: (range: TimeRange) => void; onCancel: () => void }) {
  const [from, setFrom] = useState(() => timeInputText(range.from));
  const [to, setTo] = useState(() => timeInputText(range.to));
  const [problem, setProblem] = useState('');
  return (
    <form
      id={id}
      className="time-form"
      aria-label="Absolute time range"
      onSubmit={(event) => {
        event.preventDefault();
        const start = parseTimeInput(from);
        const end = parseTimeInput(to);
        if (start === null || end === null) {
          setProblem(`Not a time: “${start === null ? from : to}”. Use a date-time such as 2026-05-01 13:00, epoch milliseconds, or now-6h.`);
          return;
        }
        const now = Date.now() / 1000;
        if (resolveTime(start, now) >= resolveTime(end, now)) {
          setProblem('“From” must be before “To”.');
          return;
        }
        setProblem('');
        onApply({ from: start, to: end });
      }}
      onKeyDown={(event) => {
        if (event.key === 'Escape') onCancel();
      }}
    >
      <div className="field">
        <label htmlFor={`${id}-from`}>From</label>
        <input id={`${id}-from`} className="code" value={from} onChange={(e) => setFrom(e.target.value)} placeholder="2026-05-01 13:00 or now-6h" size={19} autoFocus />
      </div>
      <div className="field">
        <label htmlFor={`${id}-to`}>To</label>
        <input id={`${id}-to`} className="code" value={to} onChange={(e) => setTo(e.target.value)} placeholder="now" size={19} />
      </div>
      <button type="submit" className="primary">
        Apply time range
      </button>
      <button type="button" onClick={onCancel}>
        Cancel
      </button>
      {problem && (
        <p className="error" role="alert">
          {problem}
        </p>
      )}
    </form>
  );
}
