// The panel editor: title, visualisation, queries (PromQL, LogQL, event analytics), unit,
// thresholds and legend, with a live preview of the panel being edited.
import { useEffect, useId, useState } from 'react';
import { THRESHOLD_COLORS, datasourceType, type Panel, type Target, type Threshold } from '../dashboard';
import { PanelView } from './PanelView';
import { QueryInput } from './QueryInput';

const TYPES: [string, string][] = [
  ['timeseries', 'Time series'],
  ['barchart', 'Bar chart'],
  ['stat', 'Stat'],
  ['gauge', 'Gauge'],
  ['table', 'Table'],
  ['heatmap', 'Heatmap'],
  ['piechart', 'Pie chart'],
  ['sankey', 'Sankey'],
  ['text', 'Text'],
];
const UNITS: [string, string][] = [
  ['short', 'Number (short)'],
  ['none', 'Number (plain)'],
  ['percent', 'Percent (0-100)'],
  ['percentunit', 'Percent (0.0-1.0)'],
  ['s', 'Seconds'],
  ['ms', 'Milliseconds'],
  ['bytes', 'Bytes (IEC)'],
  ['decbytes', 'Bytes (SI)'],
  ['reqps', 'Requests/s'],
  ['ops', 'Operations/s'],
  ['currencyEUR', 'Euro (€)'],
  ['currencyUSD', 'Dollars ($)'],
];
const WIDTHS: [number, string][] = [
  [6, 'Quarter'],
  [8, 'Third'],
  [12, 'Half'],
  [16, 'Two thirds'],
  [24, 'Full width'],
];
type Source = 'prometheus' | 'loki' | 'events';
const SOURCES: Record<Source, { label: string; datasource: { type: string; uid: string } }> = {
  prometheus: { label: 'Metrics (PromQL)', datasource: { type: 'prometheus', uid: 'signalroom' } },
  loki: { label: 'Logs (LogQL)', datasource: { type: 'loki', uid: 'signalroom' } },
  events: { label: 'Events (analytics)', datasource: { type: 'signalroom-events', uid: 'signalroom' } },
};
const ANALYSES = [
  ['sql', 'SQL over events'],
  ['trends', 'Trends'],
  ['funnels', 'Funnel'],
  ['active-users', 'Active users'],
] as const;
type Analysis = (typeof ANALYSES)[number][0];
const DEFAULT_PARAMS: Record<Exclude<Analysis, 'sql'>, Record<string, unknown>> = {
  trends: { series: [{ event: 'viewed_product' }], interval: 'day' },
  funnels: { steps: [{ event: 'viewed_product' }, { event: 'purchased' }] },
  'active-users': { interval: 'day' },
};
const DEFAULT_SQL = 'SELECT event, count(*) AS n FROM events GROUP BY event ORDER BY n DESC';

export function newPanel(id: number): Panel {
  return {
    id,
    type: 'timeseries',
    title: 'New panel',
    gridPos: { x: 0, y: 0, w: 12, h: 8 },
    datasource: SOURCES.prometheus.datasource,
    targets: [{ refId: 'A', expr: '' }],
    fieldConfig: { defaults: { unit: 'short' } },
    options: { legend: { showLegend: true, displayMode: 'list', placement: 'bottom' } },
  };
}

function nextRefId(targets: Target[]): string {
  const used = new Set(targets.map((t) => t.refId));
  for (let i = 0; i < 26; i++) {
    const id = String.fromCharCode(65 + i);
    if (!used.has(id)) return id;
  }
  return `Q${targets.length + 1}`;
}

function analysisOf(target: Target): Analysis {
  return target.rawSql !== undefined || !target.analytics ? 'sql' : target.analytics;
}

function emptyTarget(source: Source, refId: string): Target {
  return source === 'events' ? { refId, rawSql: DEFAULT_SQL } : { refId, expr: '' };
}

export function PanelEditor({
  initial,
  isNew,
  resolveTargets,
  start,
  end,
  onSave,
  onCancel,
  onDelete,
}: {
  initial: Panel;
  isNew: boolean;
  /** The targets with the dashboard's variables filled in, as the dashboard queries them. */
  resolveTargets: (panel: Panel) => Target[];
  start: number;
  end: number;
  onSave: (panel: Panel) => Promise<void>;
  onCancel: () => void;
  onDelete?: () => void;
}) {
  const id = useId();
  const [draft, setDraft] = useState<Panel>(initial);
  const [previewTargets, setPreviewTargets] = useState<Target[]>(() => initial.targets ?? []);
  const [tick, setTick] = useState(0);
  const [paramsText, setParamsText] = useState<Record<string, string>>(() =>
    Object.fromEntries((initial.targets ?? []).map((t) => [t.refId ?? '', JSON.stringify(t.params ?? {}, null, 1)])),
  );
  const [problem, setProblem] = useState('');
  const [saving, setSaving] = useState(false);
  const targets = draft.targets ?? [];
  const source: Source = targets.length ? datasourceType(targets[0], draft) : datasourceType({}, draft);
  const defaults = draft.fieldConfig?.defaults ?? {};
  const steps: Threshold[] = defaults.thresholds?.steps ?? [];
  const legend = draft.options?.legend ?? {};

  // The preview follows the queries a moment after typing stops, at once on Enter / Run.
  useEffect(() => {
    const timer = window.setTimeout(() => setPreviewTargets(targets), 700);
    return () => window.clearTimeout(timer);
  }, [JSON.stringify(targets)]); // eslint-disable-line react-hooks/exhaustive-deps

  const update = (patch: Partial<Panel>) => setDraft((d) => ({ ...d, ...patch }));
  const setDefaults = (patch: Record<string, unknown>) =>
    setDraft((d) => ({ ...d, fieldConfig: { ...d.fieldConfig, defaults: { ...d.fieldConfig?.defaults, ...patch } } }));
  const setTargets = (next: Target[]) => update({ targets: next });
  const setTarget = (index: number, patch: Partial<Target>) => setTargets(targets.map((t, i) => (i === index ? { ...t, ...patch } : t)));
  const setSteps = (next: Threshold[]) => setDefaults({ thresholds: { mode: 'absolute', steps: next } });
  const setLegend = (patch: Record<string, unknown>) => setDraft((d) => ({ ...d, options: { ...d.options, legend: { ...d.options?.legend, ...patch } } }));
  const runNow = () => {
    setPreviewTargets(targets);
    setTick((t) => t + 1);
  };

  const legendShown = legend.showLegend !== false && legend.displayMode !== 'hidden';
  const thresholdLines = (defaults.custom?.thresholdsStyle as { mode?: string } | undefined)?.mode === 'line';
  const previewPanel: Panel = { ...draft, targets: previewTargets };

  return (
    <section className="card panel-editor" aria-labelledby={`${id}-heading`}>
      <div className="card-head">
        <h2 id={`${id}-heading`}>{isNew ? 'New panel' : `Edit panel: ${initial.title || 'Untitled panel'}`}</h2>
      </div>
      <div className="editor-layout">
        <div className="editor-preview" aria-label="Preview" role="region">
          <div className="preview-frame" style={{ ['--h' as string]: draft.gridPos?.h ?? 8 }}>
            <PanelView panel={previewPanel} targets={resolveTargets(previewPanel)} start={start} end={end} tick={tick} />
          </div>
        </div>
        <form
          className="editor-form"
          aria-label="Panel options"
          onSubmit={async (event) => {
            event.preventDefault();
            if (!draft.title?.trim()) {
              setProblem('The panel needs a title.');
              return;
            }
            setProblem('');
            setSaving(true);
            try {
              await onSave({ ...draft, title: draft.title.trim() });
            } catch (e) {
              setProblem(e instanceof Error ? e.message : String(e));
            } finally {
              setSaving(false);
            }
          }}
        >
          <fieldset>
            <legend>Panel</legend>
            <div className="field">
              <label htmlFor={`${id}-title`}>Title</label>
              <input id={`${id}-title`} value={draft.title ?? ''} onChange={(e) => update({ title: e.target.value })} required autoFocus />
            </div>
            <div className="field">
              <label htmlFor={`${id}-description`}>Description</label>
              <input id={`${id}-description`} value={draft.description ?? ''} onChange={(e) => update({ description: e.target.value || undefined })} />
            </div>
            <div className="form-row">
              <div className="field">
                <label htmlFor={`${id}-type`}>Visualization</label>
                <select id={`${id}-type`} value={draft.type} onChange={(e) => update({ type: e.target.value })}>
                  {TYPES.map(([value, label]) => (
                    <option key={value} value={value}>
                      {label}
                    </option>
                  ))}
                  {!TYPES.some(([value]) => value === draft.type) && <option value={draft.type}>{draft.type}</option>}
                </select>
              </div>
              <div className="field">
                <label htmlFor={`${id}-width`}>Width</label>
                <select
                  id={`${id}-width`}
                  value={draft.gridPos?.w ?? 12}
                  onChange={(e) => update({ gridPos: { x: 0, y: 0, h: 8, ...draft.gridPos, w: Number(e.target.value) } })}
                >
                  {WIDTHS.map(([w, label]) => (
                    <option key={w} value={w}>
                      {label}
                    </option>
                  ))}
                  {!WIDTHS.some(([w]) => w === (draft.gridPos?.w ?? 12)) && <option value={draft.gridPos?.w}>{draft.gridPos?.w} of 24 columns</option>}
                </select>
              </div>
              <div className="field">
                <label htmlFor={`${id}-height`}>Height (rows)</label>
                <input
                  id={`${id}-height`}
                  type="number"
                  min={2}
                  max={30}
                  value={draft.gridPos?.h ?? 8}
                  onChange={(e) => update({ gridPos: { x: 0, y: 0, w: 12, ...draft.gridPos, h: Math.max(2, Number(e.target.value) || 8) } })}
                />
              </div>
            </div>
          </fieldset>

          {draft.type === 'text' ? (
            <fieldset>
              <legend>Text</legend>
              <label htmlFor={`${id}-content`}>Content</label>
              <textarea id={`${id}-content`} rows={4} value={String(draft.options?.content ?? '')} onChange={(e) => update({ options: { ...draft.options, content: e.target.value } })} />
            </fieldset>
          ) : (
            <fieldset>
              <legend>Queries</legend>
              <div className="field">
                <label htmlFor={`${id}-source`}>Data source</label>
                <select
                  id={`${id}-source`}
                  value={source}
                  onChange={(e) => {
                    const next = e.target.value as Source;
                    update({ datasource: SOURCES[next].datasource, targets: targets.map((t) => emptyTarget(next, t.refId ?? 'A')) });
                    setPreviewTargets([]);
                  }}
                >
                  {(Object.keys(SOURCES) as Source[]).map((s) => (
                    <option key={s} value={s}>
                      {SOURCES[s].label}
                    </option>
                  ))}
                </select>
              </div>
              <ol className="editor-targets">
                {targets.map((target, index) => {
                  const ref = target.refId ?? String(index);
                  const name = `Query ${ref}`;
                  return (
                    <li key={ref} aria-label={name}>
                      {source === 'events' ? (
                        <EventTarget
                          id={`${id}-t${index}`}
                          name={name}
                          target={target}
                          paramsText={paramsText[ref] ?? JSON.stringify(target.params ?? {}, null, 1)}
                          onParamsText={(text) => setParamsText({ ...paramsText, [ref]: text })}
                          onChange={(next) => setTargets(targets.map((t, i) => (i === index ? next : t)))}
                        />
                      ) : (
                        <QueryInput
                          language={source === 'loki' ? 'logql' : 'promql'}
                          label={source === 'loki' ? `LogQL ${name}` : `PromQL ${name}`}
                          value={target.expr ?? ''}
                          onChange={(expr) => setTarget(index, { expr })}
                          onRun={runNow}
                          placeholder={source === 'loki' ? 'sum by (app) (count_over_time({app="shop"}[1m]))' : 'sum by (job) (rate(http_requests_total[5m]))'}
                        />
                      )}
                      <div className="form-row">
                        <label htmlFor={`${id}-legend-${index}`}>Legend format</label>
                        <input
                          id={`${id}-legend-${index}`}
                          className="code"
                          placeholder="{{job}}"
                          value={target.legendFormat ?? ''}
                          onChange={(e) => setTarget(index, { legendFormat: e.target.value || undefined })}
                        />
                        <label className="inline">
                          <input type="checkbox" checked={!!target.hide} onChange={(e) => setTarget(index, { hide: e.target.checked || undefined })} /> Hide
                        </label>
                        {targets.length > 1 && (
                          <button type="button" className="danger" aria-label={`Remove query ${ref}`} onClick={() => setTargets(targets.filter((_, i) => i !== index))}>
                            Remove
                          </button>
                        )}
                      </div>
                    </li>
                  );
                })}
              </ol>
              <div className="form-row">
                <button type="button" onClick={() => setTargets([...targets, emptyTarget(source, nextRefId(targets))])}>
                  Add query
                </button>
                <button type="button" onClick={runNow}>
                  Run queries
                </button>
              </div>
            </fieldset>
          )}

          <fieldset>
            <legend>Values</legend>
            <div className="form-row">
              <div className="field">
                <label htmlFor={`${id}-unit`}>Unit</label>
                <select id={`${id}-unit`} value={defaults.unit ?? 'short'} onChange={(e) => setDefaults({ unit: e.target.value })}>
                  {UNITS.map(([value, label]) => (
                    <option key={value} value={value}>
                      {label}
                    </option>
                  ))}
                  {defaults.unit && !UNITS.some(([v]) => v === defaults.unit) && <option value={defaults.unit}>{defaults.unit}</option>}
                </select>
              </div>
              <NumberField id={`${id}-decimals`} label="Decimals" value={defaults.decimals} onChange={(decimals) => setDefaults({ decimals })} />
              <NumberField id={`${id}-min`} label="Min" value={defaults.min} onChange={(min) => setDefaults({ min })} />
              <NumberField id={`${id}-max`} label="Max" value={defaults.max} onChange={(max) => setDefaults({ max })} />
            </div>
          </fieldset>

          <fieldset>
            <legend>Thresholds</legend>
            {steps.length === 0 && <p className="muted">No thresholds: values keep the panel's colours.</p>}
            <ol className="editor-thresholds">
              {steps.map((step, index) => (
                <li key={index} className="form-row">
                  <label htmlFor={`${id}-th-color-${index}`} className="sr-only">
                    Threshold {index + 1} colour
                  </label>
                  <select
                    id={`${id}-th-color-${index}`}
                    value={step.color}
                    onChange={(e) => setSteps(steps.map((s, i) => (i === index ? { ...s, color: e.target.value } : s)))}
                  >
                    {[...new Set([...THRESHOLD_COLORS, step.color])].map((c) => (
                      <option key={c} value={c}>
                        {c}
                      </option>
                    ))}
                  </select>
                  {step.value === null ? (
                    <span className="muted">Base</span>
                  ) : (
                    <>
                      <label htmlFor={`${id}-th-value-${index}`} className="sr-only">
                        Threshold {index + 1} value
                      </label>
                      <span aria-hidden="true">from</span>
                      <input
                        id={`${id}-th-value-${index}`}
                        type="number"
                        step="any"
                        value={step.value}
                        onChange={(e) => setSteps(steps.map((s, i) => (i === index ? { ...s, value: Number(e.target.value) } : s)))}
                      />
                      <button type="button" className="danger" aria-label={`Remove threshold ${index + 1}`} onClick={() => setSteps(steps.filter((_, i) => i !== index))}>
                        Remove
                      </button>
                    </>
                  )}
                </li>
              ))}
            </ol>
            <div className="form-row">
              <button
                type="button"
                onClick={() => {
                  const base = steps.length ? steps : [{ color: 'green', value: null }];
                  const top = Math.max(0, ...base.map((s) => s.value ?? 0));
                  setSteps([...base, { color: base.length === 1 ? 'red' : 'orange', value: top ? top * 2 : 80 }]);
                }}
              >
                Add threshold
              </button>
              <label className="inline">
                <input
                  type="checkbox"
                  checked={thresholdLines}
                  onChange={(e) => setDefaults({ custom: { ...defaults.custom, thresholdsStyle: { mode: e.target.checked ? 'line' : 'off' } } })}
                />{' '}
                Show thresholds as lines on graphs
              </label>
            </div>
          </fieldset>

          <fieldset>
            <legend>Legend</legend>
            <div className="form-row">
              <label className="inline">
                <input
                  type="checkbox"
                  checked={legendShown}
                  onChange={(e) => setLegend({ showLegend: e.target.checked, displayMode: e.target.checked ? 'list' : 'hidden' })}
                />{' '}
                Show legend
              </label>
              <div className="field">
                <label htmlFor={`${id}-placement`}>Placement</label>
                <select id={`${id}-placement`} value={legend.placement ?? 'bottom'} disabled={!legendShown} onChange={(e) => setLegend({ placement: e.target.value })}>
                  <option value="bottom">Bottom</option>
                  <option value="right">Right</option>
                </select>
              </div>
            </div>
          </fieldset>

          {problem && (
            <p className="error" role="alert">
              {problem}
            </p>
          )}
          <div className="form-row editor-actions">
            <button type="submit" className="primary" disabled={saving}>
              {saving ? 'Saving…' : 'Save panel'}
            </button>
            <button type="button" onClick={onCancel}>
              Cancel
            </button>
            {onDelete && (
              <button type="button" className="danger" onClick={onDelete}>
                Delete panel
              </button>
            )}
          </div>
        </form>
      </div>
    </section>
  );
}

function NumberField({ id, label, value, onChange }: { id: string; label: string; value: number | undefined; onChange: (value: number | undefined) => void }) {
  return (
    <div className="field">
      <label htmlFor={id}>{label}</label>
      <input id={id} type="number" step="any" size={6} value={value ?? ''} placeholder="auto" onChange={(e) => onChange(e.target.value === '' ? undefined : Number(e.target.value))} />
    </div>
  );
}

/** An event-analytics target: a SQL SELECT over the events table, or an analysis with its
 * parameters as the /api/sr/analytics API takes them (JSON). */
function EventTarget({
  id,
  name,
  target,
  paramsText,
  onParamsText,
  onChange,
}: {
  id: string;
  name: string;
  target: Target;
  paramsText: string;
  onParamsText: (text: string) => void;
  onChange: (target: Target) => void;
}) {
  const analysis = analysisOf(target);
  let invalid = '';
  if (analysis !== 'sql') {
    try {
      JSON.parse(paramsText);
    } catch (e) {
      invalid = (e as Error).message;
    }
  }
  return (
    <div className="event-target">
      <div className="field">
        <label htmlFor={`${id}-analysis`}>Analysis of {name}</label>
        <select
          id={`${id}-analysis`}
          value={analysis}
          onChange={(e) => {
            const kind = e.target.value as Analysis;
            if (kind === 'sql') onChange({ refId: target.refId, legendFormat: target.legendFormat, rawSql: DEFAULT_SQL });
            else {
              onParamsText(JSON.stringify(DEFAULT_PARAMS[kind], null, 1));
              onChange({ refId: target.refId, legendFormat: target.legendFormat, analytics: kind, params: DEFAULT_PARAMS[kind] });
            }
          }}
        >
          {ANALYSES.map(([value, label]) => (
            <option key={value} value={value}>
              {label}
            </option>
          ))}
        </select>
      </div>
      {analysis === 'sql' ? (
        <>
          <label htmlFor={`${id}-sql`}>SQL of {name}</label>
          <textarea id={`${id}-sql`} className="code" rows={3} value={target.rawSql ?? ''} onChange={(e) => onChange({ ...target, rawSql: e.target.value })} />
        </>
      ) : (
        <>
          <label htmlFor={`${id}-params`}>Parameters of {name} (JSON)</label>
          <textarea
            id={`${id}-params`}
            className="code"
            rows={3}
            value={paramsText}
            aria-invalid={!!invalid}
            onChange={(e) => {
              onParamsText(e.target.value);
              try {
                onChange({ ...target, params: JSON.parse(e.target.value) });
              } catch {
                // keep the last valid parameters until the JSON parses again
              }
            }}
          />
          {invalid && <p className="error">Not valid JSON: {invalid}</p>}
        </>
      )}
    </div>
  );
}
