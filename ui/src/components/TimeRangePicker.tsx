import { useId } from 'react';
import { REFRESH_INTERVALS, RELATIVE_RANGES, type TimeRange } from '../time';

/** Relative time ranges, auto-refresh interval and a refresh button. */
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
  const known = RELATIVE_RANGES.some((r) => r.from === range.from) && range.to === 'now';
  return (
    <div className="toolbar-group">
      <label htmlFor={`${id}-range`} className="sr-only">
        Time range
      </label>
      <select
        id={`${id}-range`}
        value={known ? range.from : 'custom'}
        onChange={(event) => onRange({ from: event.target.value, to: 'now' })}
      >
        {RELATIVE_RANGES.map((r) => (
          <option key={r.from} value={r.from}>
            {r.label}
          </option>
        ))}
        {!known && (
          <option value="custom" disabled>
            {range.from} to {range.to}
          </option>
        )}
      </select>
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
