// Time ranges as Grafana writes them ("now-1h" .. "now"), durations, and value formatting.

export interface TimeRange {
  from: string;
  to: string;
}

const UNIT_SECONDS: Record<string, number> = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };

/** Seconds in a Prometheus duration such as "1h30m", "5m", "250ms"; NaN when invalid. */
export function parseDuration(text: string): number {
  const re = /(\d+(?:\.\d+)?)(ms|s|m|h|d|w|y)/g;
  let total = 0;
  let consumed = 0;
  for (const match of text.trim().matchAll(re)) {
    total += Number(match[1]) * UNIT_SECONDS[match[2]];
    consumed += match[0].length;
  }
  return consumed === text.trim().length && consumed > 0 ? total : NaN;
}

export function formatDuration(seconds: number): string {
  if (seconds < 1) return `${Math.round(seconds * 1000)}ms`;
  const parts: string[] = [];
  for (const [unit, size] of [['d', 86400], ['h', 3600], ['m', 60], ['s', 1]] as const) {
    const n = Math.floor(seconds / size);
    if (n > 0) {
      parts.push(`${n}${unit}`);
      seconds -= n * size;
    }
  }
  return parts.slice(0, 2).join('') || '0s';
}

/** A point of a range in epoch seconds: "now", "now-15m", an epoch in ms, or an ISO date. */
export function resolveTime(text: string, now: number): number {
  const trimmed = text.trim();
  if (trimmed === 'now') return now;
  const relative = /^now-(.+)$/.exec(trimmed);
  if (relative) {
    const seconds = parseDuration(relative[1]);
    if (!Number.isNaN(seconds)) return now - seconds;
  }
  if (/^\d+$/.test(trimmed)) return Number(trimmed) / 1000;
  const parsed = Date.parse(trimmed);
  return Number.isNaN(parsed) ? now : parsed / 1000;
}

/** Whether a range end is relative to now ("now", "now-6h") rather than a fixed instant. */
export function isRelative(text: string): boolean {
  return /^now(-.+)?$/.test(text.trim());
}

/** What a person typed into a time field as Grafana keeps it in the URL: "now"/"now-6h" as
 * they are, an epoch in ms as it is, a date-time ("2026-05-01 13:00", ISO) as epoch ms in
 * local time; null when it is none of these. */
export function parseTimeInput(text: string): string | null {
  const trimmed = text.trim();
  if (trimmed === 'now') return 'now';
  const relative = /^now-(.+)$/.exec(trimmed);
  if (relative) return Number.isNaN(parseDuration(relative[1])) ? null : trimmed;
  if (/^\d{9,}$/.test(trimmed)) return trimmed;
  const local = /^(\d{4})-(\d{2})-(\d{2})(?:[ T](\d{2}):(\d{2})(?::(\d{2}))?)?$/.exec(trimmed);
  if (local) {
    const [, y, mo, d, h = '0', mi = '0', s = '0'] = local;
    const date = new Date(Number(y), Number(mo) - 1, Number(d), Number(h), Number(mi), Number(s));
    return Number.isNaN(date.getTime()) || date.getDate() !== Number(d) ? null : String(date.getTime());
  }
  const parsed = Date.parse(trimmed);
  return Number.isNaN(parsed) ? null : String(parsed);
}

/** A range end for a text field: relative as it is, absolute as a local date-time. */
export function timeInputText(text: string): string {
  if (isRelative(text)) return text.trim();
  return formatTime(resolveTime(text, Date.now() / 1000));
}

/** A range as a person reads it: "Last 6 hours", or "2026-05-01 13:00:00 to 2026-05-01 14:00:00". */
export function describeRange(range: TimeRange): string {
  const known = RELATIVE_RANGES.find((r) => r.from === range.from.trim());
  if (known && range.to.trim() === 'now') return known.label;
  return `${timeInputText(range.from)} to ${timeInputText(range.to)}`;
}

export function resolveRange(range: TimeRange, now = Date.now() / 1000): { start: number; end: number } {
  const start = resolveTime(range.from, now);
  const end = resolveTime(range.to, now);
  return start < end ? { start, end } : { start: end - 3600, end };
}

/** A query step giving about ``points`` points over the range, never under 1 s. */
export function stepFor(start: number, end: number, points = 240): number {
  const raw = (end - start) / points;
  const nice = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];
  return nice.find((n) => n >= raw) ?? Math.ceil(raw);
}

export const RELATIVE_RANGES: { label: string; from: string }[] = [
  { label: 'Last 5 minutes', from: 'now-5m' },
  { label: 'Last 15 minutes', from: 'now-15m' },
  { label: 'Last 30 minutes', from: 'now-30m' },
  { label: 'Last 1 hour', from: 'now-1h' },
  { label: 'Last 3 hours', from: 'now-3h' },
  { label: 'Last 6 hours', from: 'now-6h' },
  { label: 'Last 12 hours', from: 'now-12h' },
  { label: 'Last 24 hours', from: 'now-24h' },
  { label: 'Last 2 days', from: 'now-2d' },
  { label: 'Last 7 days', from: 'now-7d' },
];

export const REFRESH_INTERVALS = ['', '5s', '10s', '30s', '1m', '5m', '15m'];

export function formatTime(epochSeconds: number): string {
  const d = new Date(epochSeconds * 1000);
  const pad = (n: number) => String(n).padStart(2, '0');
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function timeAgo(iso: string, now = Date.now()): string {
  const seconds = (now - Date.parse(iso)) / 1000;
  if (Number.isNaN(seconds)) return '';
  return seconds >= 0 ? `${formatDuration(seconds)} ago` : `in ${formatDuration(-seconds)}`;
}

// --- units: the common Grafana unit ids ------------------------------------------------------

function scaled(value: number, steps: [number, string][], decimals?: number): string {
  const abs = Math.abs(value);
  let chosen = steps[0];
  for (const step of steps) if (abs >= step[0]) chosen = step;
  return `${round(value / chosen[0], decimals)}${chosen[1]}`;
}

function round(value: number, decimals?: number): string {
  if (decimals !== undefined && decimals !== null) return value.toFixed(decimals);
  if (value === 0) return '0';
  const abs = Math.abs(value);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : abs >= 1 ? 2 : 3;
  return String(Number(value.toFixed(digits)));
}

const SI: [number, string][] = [
  [1, ''],
  [1e3, 'K'],
  [1e6, 'M'],
  [1e9, 'B'],
  [1e12, 'T'],
];
const BYTES: [number, string][] = [
  [1, ' B'],
  [1024, ' KiB'],
  [1024 ** 2, ' MiB'],
  [1024 ** 3, ' GiB'],
  [1024 ** 4, ' TiB'],
];
const DEC_BYTES: [number, string][] = [
  [1, ' B'],
  [1e3, ' kB'],
  [1e6, ' MB'],
  [1e9, ' GB'],
  [1e12, ' TB'],
];

/** A value as Grafana shows it for ``unit`` (short, percent, percentunit, s, ms, bytes, ...). */
export function formatValue(value: number | null | undefined, unit = 'short', decimals?: number): string {
  if (value === null || value === undefined || Number.isNaN(value)) return 'No data';
  if (!Number.isFinite(value)) return value > 0 ? '+Inf' : '-Inf';
  switch (unit) {
    case 'none':
      return round(value, decimals);
    case 'percent':
      return `${round(value, decimals)}%`;
    case 'percentunit':
      return `${round(value * 100, decimals)}%`;
    case 's':
      return Math.abs(value) < 1 && value !== 0 ? `${round(value * 1000, decimals)} ms` : Math.abs(value) >= 60 ? formatDuration(value) : `${round(value, decimals)} s`;
    case 'ms':
      return Math.abs(value) >= 1000 ? `${round(value / 1000, decimals)} s` : `${round(value, decimals)} ms`;
    case 'bytes':
      return scaled(value, BYTES, decimals);
    case 'decbytes':
      return scaled(value, DEC_BYTES, decimals);
    case 'reqps':
      return `${scaled(value, SI, decimals)} req/s`;
    case 'ops':
      return `${scaled(value, SI, decimals)} ops/s`;
    case 'currencyEUR':
      return `€${scaled(value, SI, decimals)}`;
    case 'currencyUSD':
      return `$${scaled(value, SI, decimals)}`;
    case 'short':
    case '':
      return scaled(value, SI, decimals);
    default:
      return `${scaled(value, SI, decimals)} ${unit}`;
  }
}
