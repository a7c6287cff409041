// Grafana dashboard JSON: the parts signalroom draws, template variables and rows.

export interface Threshold {
  color: string;
  value: number | null;
}
export interface Target {
  refId?: string;
  expr?: string;
  legendFormat?: string;
  instant?: boolean;
  hide?: boolean;
  datasource?: unknown;
  /** Event-analytics targets (datasource type "signalroom-events"): which analysis... */
  analytics?: 'trends' | 'funnels' | 'active-users' | 'sql';
  /** ...its parameters, as the /api/sr/analytics API takes them... */
  params?: Record<string, unknown>;
  /** ...or a read-only SQL SELECT over the events table. */
  rawSql?: string;
}

/** The kind of data source a target reads: the target's own, else the panel's. */
export function datasourceType(target: Target, panel: { datasource?: unknown }): 'prometheus' | 'loki' | 'events' {
  const of = (ds: unknown) => (ds && typeof ds === 'object' ? String((ds as { type?: unknown }).type ?? '') : typeof ds === 'string' ? ds : '');
  const type = (of(target.datasource) || of(panel.datasource)).toLowerCase();
  if (type.includes('loki')) return 'loki';
  if (target.analytics || target.rawSql || type.includes('events') || type.includes('analytics')) return 'events';
  return 'prometheus';
}
export interface Panel {
  id?: number;
  type: string;
  title?: string;
  description?: string;
  gridPos?: { x: number; y: number; w: number; h: number };
  targets?: Target[];
  collapsed?: boolean;
  panels?: Panel[]; // a collapsed row keeps its panels here
  fieldConfig?: {
    defaults?: {
      unit?: string;
      decimals?: number;
      min?: number;
      max?: number;
      thresholds?: { mode?: string; steps?: Threshold[] };
      custom?: Record<string, unknown>;
    };
  };
  options?: {
    legend?: { showLegend?: boolean; displayMode?: string; placement?: string; calcs?: string[] };
    reduceOptions?: { calcs?: string[] };
    [key: string]: unknown;
  };
  legend?: { show?: boolean }; // old "graph" panels
  datasource?: unknown;
}
export interface Variable {
  name: string;
  label?: string;
  type: string; // query, custom, constant, interval, textbox
  query?: string | { query?: string };
  definition?: string;
  multi?: boolean;
  includeAll?: boolean;
  allValue?: string;
  current?: { text?: string | string[]; value?: string | string[] };
  options?: { text: string; value: string; selected?: boolean }[];
  hide?: number;
}
export interface Dashboard {
  uid?: string;
  title: string;
  tags?: string[];
  panels?: Panel[];
  rows?: { title?: string; panels?: Panel[]; collapse?: boolean }[]; // schema before Grafana 5
  templating?: { list?: Variable[] };
  time?: { from: string; to: string };
  refresh?: string | false;
  schemaVersion?: number;
  [key: string]: unknown;
}

const NAMED_COLORS: Record<string, string> = {
  green: '#56a64b',
  'dark-green': '#37872d',
  'semi-dark-green': '#56a64b',
  red: '#e02f44',
  'dark-red': '#c4162a',
  'semi-dark-red': '#e02f44',
  yellow: '#f2cc0c',
  'dark-yellow': '#e0b400',
  orange: '#ff780a',
  'dark-orange': '#fa6400',
  blue: '#3274d9',
  'dark-blue': '#1f60c4',
  purple: '#a352cc',
  'dark-purple': '#8f3bb8',
  text: '#1d2733',
  transparent: 'transparent',
};

/** The named colours a threshold step may take, for pickers. */
export const THRESHOLD_COLORS = ['green', 'yellow', 'orange', 'red', 'blue', 'purple', 'dark-green', 'dark-red', 'text'];

export function color(name: string | undefined): string {
  if (!name) return '#56a64b';
  return NAMED_COLORS[name] ?? name;
}

/** Threshold steps in order, the first one (value null) being the base colour. */
export function thresholdSteps(panel: Panel): Threshold[] {
  const steps = panel.fieldConfig?.defaults?.thresholds?.steps;
  if (!steps || steps.length === 0) return [];
  return [...steps].sort((a, b) => (a.value ?? -Infinity) - (b.value ?? -Infinity));
}

export function thresholdColor(panel: Panel, value: number | null): string | undefined {
  const steps = thresholdSteps(panel);
  if (!steps.length || value === null || Number.isNaN(value)) return undefined;
  let chosen = steps[0];
  for (const step of steps) if (step.value === null || value >= step.value) chosen = step;
  return color(chosen.color);
}

/** Panels with the pre-5.0 "rows" schema turned into row panels with gridPos. */
export function normalisePanels(dashboard: Dashboard): Panel[] {
  if (dashboard.panels) return dashboard.panels;
  const out: Panel[] = [];
  let y = 0;
  for (const row of dashboard.rows ?? []) {
    out.push({ type: 'row', title: row.title ?? '', gridPos: { x: 0, y, w: 24, h: 1 }, collapsed: false });
    y += 1;
    let x = 0;
    for (const panel of row.panels ?? []) {
      const span = Number((panel as { span?: number }).span ?? 12);
      const w = Math.max(1, Math.round(span * 2));
      if (x + w > 24) {
        x = 0;
        y += 8;
      }
      out.push({ ...panel, gridPos: { x, y, w, h: 8 } });
      x += w;
    }
    y += 8;
  }
  return out;
}

export interface Row {
  title: string | null;
  collapsed: boolean;
  index: number; // the row panel's index, -1 for panels before any row
  panels: Panel[];
}

/** Panels grouped under their rows, in gridPos order. */
export function groupRows(panels: Panel[]): Row[] {
  const sorted = panels
    .map((panel, index) => ({ panel, index }))
    .sort((a, b) => (a.panel.gridPos?.y ?? 0) - (b.panel.gridPos?.y ?? 0) || (a.panel.gridPos?.x ?? 0) - (b.panel.gridPos?.x ?? 0));
  const rows: Row[] = [{ title: null, collapsed: false, index: -1, panels: [] }];
  for (const { panel, index } of sorted) {
    if (panel.type === 'row') rows.push({ title: panel.title ?? '', collapsed: !!panel.collapsed, index, panels: panel.panels ?? [] });
    else rows[rows.length - 1].panels.push(panel);
  }
  return rows.filter((row) => row.title !== null || row.panels.length > 0);
}

// --- template variables ----------------------------------------------------------------------

export type VariableValues = Record<string, string[]>;

export function variableQuery(variable: Variable): string {
  const query = variable.query;
  if (typeof query === 'string') return query;
  return query?.query ?? variable.definition ?? '';
}

/** label_values(label) or label_values(selector, label). */
export function parseLabelValues(query: string): { match?: string; label: string } | null {
  const m = /^\s*label_values\(\s*(?:(.+?)\s*,\s*)?([a-zA-Z_]\w*)\s*\)\s*$/.exec(query);
  if (!m) return null;
  return { match: m[1], label: m[2] };
}

export function customOptions(variable: Variable): string[] {
  return variableQuery(variable)
    .split(/(?<!\\),/)
    .map((s) => s.trim().replace(/\\,/g, ','))
    .filter(Boolean)
    .map((s) => (s.includes(' : ') ? s.split(' : ')[1] : s));
}

export function initialSelection(variable: Variable): string[] {
  const value = variable.current?.value;
  if (Array.isArray(value)) return value;
  if (typeof value === 'string' && value) return [value];
  return [];
}

function regexEscape(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

/** A variable's value inside a query: one value as is, several as a regex alternation. */
function formatted(values: string[], variable: Variable | undefined, allOptions: string[]): string {
  if (values.includes('$__all')) {
    if (variable?.allValue) return variable.allValue;
    values = allOptions;
  }
  if (values.length === 1) return values[0];
  if (values.length === 0) return '';
  return `(${values.map(regexEscape).join('|')})`;
}

/** Replace $var, ${var}, ${var:fmt} and [[var]] and the built-in interval variables. */
export function interpolate(
  text: string,
  values: VariableValues,
  variables: Variable[],
  options: Record<string, string[]>,
  builtins: Record<string, string>,
): string {
  return text.replace(/\$\{(\w+)(?::\w+)?\}|\[\[(\w+)\]\]|\$(\w+)/g, (whole, a, b, c) => {
    const name = a ?? b ?? c;
    if (name in builtins) return builtins[name];
    if (!(name in values)) return whole;
    const variable = variables.find((v) => v.name === name);
    return formatted(values[name], variable, options[name] ?? []);
  });
}

/** Legend text from ``{{label}}`` templates, or the series' labels. */
export function legendName(labels: Record<string, string>, format?: string): string {
  if (format && format !== '__auto') return format.replace(/\{\{\s*(\w+)\s*\}\}/g, (_, name) => labels[name] ?? '');
  const name = labels.__name__ ?? '';
  const rest = Object.entries(labels)
    .filter(([key]) => key !== '__name__')
    .map(([key, value]) => `${key}="${value}"`)
    .join(', ');
  return rest ? `${name}{${rest}}` : name || '{}';
}

export function newDashboard(title: string): Dashboard {
  return {
    title,
    tags: [],
    schemaVersion: 39,
    time: { from: 'now-1h', to: 'now' },
    refresh: '',
    templating: {
      list: [{ name: 'job', label: 'Job', type: 'query', query: 'label_values(up, job)', multi: true, includeAll: true, current: { value: ['$__all'] } }],
    },
    panels: [
      { id: 1, type: 'stat', title: 'Targets up', gridPos: { x: 0, y: 0, w: 6, h: 5 }, targets: [{ refId: 'A', expr: 'sum(up{job=~"$job"})' }],
        fieldConfig: { defaults: { unit: 'short', thresholds: { mode: 'absolute', steps: [{ color: 'red', value: null }, { color: 'green', value: 1 }] } } } },
      { id: 2, type: 'timeseries', title: 'Up by job', gridPos: { x: 6, y: 0, w: 18, h: 8 }, targets: [{ refId: 'A', expr: 'up{job=~"$job"}', legendFormat: '{{job}} {{instance}}' }] },
    ],
  };
}

/** Every panel with an id (rows' collapsed panels included): missing or repeated ids get
 * fresh ones, so the panel editor can address each panel in the URL. */
export function withPanelIds(panels: Panel[]): Panel[] {
  const seen = new Set<number>();
  let next = Math.max(0, ...flatPanels(panels).map((p) => (typeof p.id === 'number' ? p.id : 0))) + 1;
  const fix = (panel: Panel): Panel => {
    let id = panel.id;
    if (typeof id !== 'number' || seen.has(id)) id = next++;
    seen.add(id);
    return panel.panels ? { ...panel, id, panels: panel.panels.map(fix) } : { ...panel, id };
  };
  return panels.map(fix);
}

export function flatPanels(panels: Panel[]): Panel[] {
  return panels.flatMap((p) => [p, ...(p.panels ?? [])]);
}

/** ``panels`` with the panel of ``next.id`` replaced (also inside a collapsed row), or
 * ``next`` added below everything else when no panel has that id. */
export function upsertPanel(panels: Panel[], next: Panel): Panel[] {
  if (flatPanels(panels).some((p) => p.id === next.id))
    return panels.map((p) =>
      p.id === next.id ? next : p.panels ? { ...p, panels: p.panels.map((c) => (c.id === next.id ? next : c)) } : p,
    );
  const bottom = Math.max(0, ...panels.map((p) => (p.gridPos?.y ?? 0) + (p.gridPos?.h ?? 0)));
  const w = next.gridPos?.w ?? 12;
  const h = next.gridPos?.h ?? 8;
  return [...panels, { ...next, gridPos: { x: 0, y: bottom, w, h } }];
}

export function removePanel(panels: Panel[], id: number): Panel[] {
  return panels.filter((p) => p.id !== id).map((p) => (p.panels ? { ...p, panels: p.panels.filter((c) => c.id !== id) } : p));
}
