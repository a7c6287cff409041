// A query editor with completion of metric names, functions, label names and label values.
import { useEffect, useId, useLayoutEffect, useRef, useState } from 'react';
import { labelNames, labelValues, logLabels, logLabelValues } from '../api';

const PROMQL_FUNCTIONS = [
  'abs', 'absent', 'absent_over_time', 'avg', 'avg_over_time', 'ceil', 'changes', 'clamp', 'clamp_max', 'clamp_min',
  'count', 'count_over_time', 'count_values', 'day_of_month', 'day_of_week', 'delta', 'deriv', 'exp', 'floor',
  'group', 'histogram_quantile', 'holt_winters', 'hour', 'idelta', 'increase', 'irate', 'label_join', 'label_replace',
  'last_over_time', 'ln', 'log2', 'log10', 'max', 'max_over_time', 'min', 'min_over_time', 'minute', 'month',
  'predict_linear', 'present_over_time', 'quantile', 'quantile_over_time', 'rate', 'resets', 'round', 'scalar', 'sort',
  'sort_desc', 'sqrt', 'stddev', 'stddev_over_time', 'stdvar', 'sum', 'sum_over_time', 'time', 'timestamp', 'topk',
  'bottomk', 'vector', 'year',
];
const LOGQL_FUNCTIONS = ['count_over_time', 'rate', 'bytes_over_time', 'bytes_rate', 'sum', 'avg', 'max', 'min', 'topk', 'json', 'logfmt', 'line_format'];

export type QueryLanguage = 'promql' | 'logql';

interface Suggestion {
  text: string;
  kind: 'metric' | 'function' | 'label' | 'value';
}

interface Context {
  kind: 'name' | 'label' | 'value';
  prefix: string;
  start: number; // where the replaced token starts
  metric?: string;
  label?: string;
}

/** What the cursor is on: a metric/function name, a label name inside {...}, or a label value. */
export function completionContext(text: string, cursor: number): Context | null {
  const before = text.slice(0, cursor);
  const open = before.lastIndexOf('{');
  const inside = open > before.lastIndexOf('}');
  if (inside) {
    const metric = /([a-zA-Z_:][\w:]*)\s*$/.exec(before.slice(0, open))?.[1];
    const value = /([a-zA-Z_]\w*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)$/.exec(before);
    if (value) return { kind: 'value', prefix: value[3], start: cursor - value[3].length, metric, label: value[1] };
    const label = /[{,]\s*([a-zA-Z_]\w*)?$/.exec(before);
    if (label) {
      const prefix = label[1] ?? '';
      return { kind: 'label', prefix, start: cursor - prefix.length, metric };
    }
    return null;
  }
  const word = /[a-zA-Z_:][\w:]*$/.exec(before);
  if (!word) return null;
  if (/\[[^\]]*$/.test(before)) return null; // inside a range selector
  return { kind: 'name', prefix: word[0], start: cursor - word[0].length };
}

export function QueryInput({
  value,
  onChange,
  onRun,
  language,
  label,
  placeholder,
}: {
  value: string;
  onChange: (value: string) => void;
  onRun: () => void;
  language: QueryLanguage;
  label: string;
  placeholder?: string;
}) {
  const id = useId();
  const listId = `${id}-completions`;
  const input = useRef<HTMLTextAreaElement>(null);
  const [suggestions, setSuggestions] = useState<Suggestion[]>([]);
  const [active, setActive] = useState(0);
  const [context, setContext] = useState<Context | null>(null);
  const metricNames = useRef<Promise<string[]> | null>(null);
  const request = useRef(0);
  const caret = useRef<number | null>(null);

  const open = suggestions.length > 0 && context !== null;

  async function candidates(ctx: Context): Promise<Suggestion[]> {
    if (ctx.kind === 'name') {
      const functions = (language === 'promql' ? PROMQL_FUNCTIONS : LOGQL_FUNCTIONS).map((text) => ({ text, kind: 'function' as const }));
      if (language === 'logql') return functions;
      metricNames.current ??= labelValues('__name__').catch(() => []);
      const metrics = (await metricNames.current).map((text) => ({ text, kind: 'metric' as const }));
      return [...metrics, ...functions];
    }
    if (ctx.kind === 'label') {
      const names =
        language === 'logql' ? await logLabels() : await labelNames(ctx.metric ? [ctx.metric] : undefined);
      return names.filter((n) => n !== '__name__').map((text) => ({ text, kind: 'label' as const }));
    }
    const values =
      language === 'logql'
        ? await logLabelValues(ctx.label!)
        : await labelValues(ctx.label!, ctx.metric ? [ctx.metric] : undefined);
    return values.map((text) => ({ text, kind: 'value' as const }));
  }

  async function refresh(text: string, cursor: number) {
    const ctx = completionContext(text, cursor);
    const ticket = ++request.current;
    if (!ctx || (ctx.kind === 'name' && ctx.prefix.length < 1)) {
      setSuggestions([]);
      setContext(null);
      return;
    }
    try {
      const all = await candidates(ctx);
      if (ticket !== request.current) return;
      const lower = ctx.prefix.toLowerCase();
      const matches = all
        .filter((s) => s.text.toLowerCase().includes(lower) && s.text !== ctx.prefix)
        .sort((a, b) => Number(!a.text.toLowerCase().startsWith(lower)) - Number(!b.text.toLowerCase().startsWith(lower)))
        .slice(0, 50);
      setSuggestions(matches);
      setContext(ctx);
      setActive(0);
    } catch {
      setSuggestions([]);
    }
  }

  function accept(suggestion: Suggestion) {
    if (!context || !input.current) return;
    const cursor = input.current.selectionStart;
    let insert = suggestion.text;
    if (suggestion.kind === 'value') insert = suggestion.text.replace(/\\/g, '\\\\').replace(/"/g, '\\"') + '"';
    if (suggestion.kind === 'function') insert += '(';
    const next = value.slice(0, context.start) + insert + value.slice(cursor);
    onChange(next);
    setSuggestions([]);
    setContext(null);
    // Put the caret after the insertion as soon as the new value is committed, before the next
    // key press is handled: a caret moved later (in an animation frame) would send keys typed
    // meanwhile to the wrong place.
    caret.current = context.start + insert.length;
    input.current.focus();
  }

  useLayoutEffect(() => {
    const position = caret.current;
    if (position === null || !input.current || input.current.value !== value) return;
    caret.current = null;
    input.current.setSelectionRange(position, position);
  }, [value]);

  useEffect(() => {
    metricNames.current = null;
  }, [language]);

  return (
    <div className="query-input">
      <label htmlFor={id} className="sr-only">
        {label}
      </label>
      <textarea
        id={id}
        ref={input}
        className="code"
        rows={Math.min(6, value.split('\n').length)}
        value={value}
        placeholder={placeholder}
        spellCheck={false}
        autoComplete="off"
        role="combobox"
        aria-autocomplete="list"
        aria-expanded={open}
        aria-controls={listId}
        aria-activedescendant={open ? `${listId}-${active}` : undefined}
        onChange={(event) => {
          onChange(event.target.value);
          void refresh(event.target.value, event.target.selectionStart);
        }}
        onBlur={() => setTimeout(() => setSuggestions([]), 150)}
        onKeyDown={(event) => {
          if (open && event.key === 'ArrowDown') {
            event.preventDefault();
            setActive((active + 1) % suggestions.length);
          } else if (open && event.key === 'ArrowUp') {
            event.preventDefault();
            setActive((active - 1 + suggestions.length) % suggestions.length);
          } else if (open && (event.key === 'Tab' || event.key === 'Enter')) {
            event.preventDefault();
            accept(suggestions[active]);
          } else if (open && event.key === 'Escape') {
            event.preventDefault();
            setSuggestions([]);
          } else if (event.key === 'Enter' && !event.shiftKey) {
            event.preventDefault();
            onRun();
          } else if (event.key === ' ' && event.ctrlKey) {
            event.preventDefault();
            void refresh(value, event.currentTarget.selectionStart);
          }
        }}
      />
      <ul id={listId} role="listbox" aria-label={`${label} suggestions`} className="completions" hidden={!open}>
        {open &&
          suggestions.map((s, index) => (
            <li
              key={`${s.kind}-${s.text}`}
              id={`${listId}-${index}`}
              role="option"
              aria-selected={index === active}
              className={index === active ? 'active' : undefined}
              onMouseDown={(event) => {
                event.preventDefault();
                accept(s);
              }}
            >
              <span className="completion-text">{s.text}</span>
              <span className="completion-kind">{s.kind}</span>
            </li>
          ))}
      </ul>
    </div>
  );
}
