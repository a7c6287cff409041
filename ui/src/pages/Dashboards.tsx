// Dashboards: the list (import, export, create, delete) and one dashboard with its variables.
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import {
  deleteDashboard,
  importDashboard,
  labelValues,
  listDashboards,
  loadDashboard,
  saveDashboard,
  type DashboardSummary,
} from '../api';
import { ErrorMessage, Link, Loading } from '../components/common';
import { PanelEditor, newPanel } from '../components/PanelEditor';
import { PanelView } from '../components/PanelView';
import { TimeRangePicker } from '../components/TimeRangePicker';
import {
  customOptions,
  flatPanels,
  groupRows,
  initialSelection,
  interpolate,
  newDashboard,
  normalisePanels,
  parseLabelValues,
  removePanel,
  upsertPanel,
  variableQuery,
  withPanelIds,
  type Dashboard,
  type Panel,
  type Variable,
  type VariableValues,
} from '../dashboard';
import { navigate, setQuery, useLocation } from '../router';
import { useCanWrite } from '../session';
import { formatDuration, parseDuration, resolveRange, stepFor, type TimeRange } from '../time';

function download(name: string, dashboard: unknown) {
  const blob = new Blob([JSON.stringify(dashboard, null, 2)], { type: 'application/json' });
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  a.click();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}

/** A pack's dashboard saved as an ordinary, editable dashboard with a new uid. */
async function importCopy(uid: string): Promise<string> {
  const { dashboard } = await loadDashboard(uid);
  const copy = { ...(dashboard as Dashboard), title: `${(dashboard as Dashboard).title} (copy)` };
  delete copy.uid;
  return (await importDashboard(copy, false)).uid;
}

export function DashboardList() {
  const canWrite = useCanWrite();
  const [items, setItems] = useState<DashboardSummary[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [importText, setImportText] = useState('');
  const [overwrite, setOverwrite] = useState(false);
  const [message, setMessage] = useState('');
  const [filter, setFilter] = useState('');

  const reload = useCallback(() => {
    listDashboards().then(setItems, setError);
  }, []);
  useEffect(reload, [reload]);

  async function doImport(text: string) {
    setError(null);
    setMessage('');
    try {
      const parsed = JSON.parse(text);
      const saved = await importDashboard(parsed, overwrite);
      setMessage(`Imported “${saved.title}”.`);
      setImportText('');
      reload();
    } catch (e) {
      setError(e instanceof SyntaxError ? new Error(`The dashboard is not valid JSON: ${e.message}`) : e);
    }
  }

  async function create() {
    try {
      const saved = await importDashboard(newDashboard('New dashboard'), false);
      navigate(`/d/${saved.uid}`);
    } catch (e) {
      setError(e);
    }
  }

  const shown = (items ?? []).filter(
    (d) => !filter || d.title.toLowerCase().includes(filter.toLowerCase()) || d.tags.some((t) => t.includes(filter)),
  );

  return (
    <>
      <div className="page-head">
        <h1>Dashboards</h1>
        {canWrite && (
          <button type="button" className="primary" onClick={create}>
            New dashboard
          </button>
        )}
      </div>
      <ErrorMessage error={error} />
      {message && (
        <p className="notice" role="status">
          {message}
        </p>
      )}
      <section className="card" aria-labelledby="dash-list">
        <div className="card-head">
          <h2 id="dash-list">All dashboards</h2>
          <label className="inline">
            <span className="sr-only">Search dashboards</span>
            <input type="search" placeholder="Search by title or tag" value={filter} onChange={(e) => setFilter(e.target.value)} />
          </label>
        </div>
        {!items ? (
          <Loading />
        ) : shown.length === 0 ? (
          <p className="muted">No dashboards yet. Create one or import Grafana dashboard JSON below.</p>
        ) : (
          <div className="table-wrap">
            <table>
              <thead>
                <tr>
                  <th scope="col">Title</th>
                  <th scope="col">Tags</th>
                  <th scope="col">Version</th>
                  <th scope="col">
                    <span className="sr-only">Actions</span>
                  </th>
                </tr>
              </thead>
              <tbody>
                {shown.map((d) => (
                  <tr key={d.uid}>
                    <td>
                      <Link href={`/d/${d.uid}`}>{d.title}</Link>
                      {d.provisioned && <span className="chip provisioned">pack {d.pack} · read-only</span>}
                    </td>
                    <td>
                      {d.tags.map((t) => (
                        <span className="chip" key={t}>
                          {t}
                        </span>
                      ))}
                    </td>
                    <td>{d.provisioned ? '—' : d.version}</td>
                    <td className="actions">
                      <button
                        type="button"
                        onClick={async () => download(`${d.uid}.json`, (await loadDashboard(d.uid)).dashboard)}
                        aria-label={`Export ${d.title}`}
                      >
                        Export
                      </button>
                      {canWrite && d.provisioned && (
                        <button
                          type="button"
                          aria-label={`Import a copy of ${d.title}`}
                          onClick={async () => {
                            try {
                              navigate(`/d/${await importCopy(d.uid)}`);
                            } catch (e) {
                              setError(e);
                            }
                          }}
                        >
                          Import a copy
                        </button>
                      )}
                      {canWrite && !d.provisioned && (
                      <button
                        type="button"
                        className="danger"
                        aria-label={`Delete ${d.title}`}
                        onClick={async () => {
                          if (!window.confirm(`Delete the dashboard “${d.title}”?`)) return;
                          await deleteDashboard(d.uid).catch(setError);
                          reload();
                        }}
                      >
                        Delete
                      </button>
                      )}
                    </td>
                  </tr>
                ))}
              </tbody>
            </table>
          </div>
        )}
      </section>
      {canWrite && (
      <section className="card" aria-labelledby="dash-import">
        <h2 id="dash-import">Import a Grafana dashboard</h2>
        <form
          onSubmit={(e) => {
            e.preventDefault();
            void doImport(importText);
          }}
        >
          <label htmlFor="import-json">Dashboard JSON</label>
          <textarea
            id="import-json"
            className="code"
            rows={6}
            value={importText}
            onChange={(e) => setImportText(e.target.value)}
            placeholder='{"title": "My dashboard", "panels": [...]}'
          />
          <div className="form-row">
            <label htmlFor="import-file">Or upload a file</label>
            <input
              id="import-file"
              type="file"
              accept="application/json,.json"
              onChange={async (e) => {
                const file = e.target.files?.[0];
                if (file) setImportText(await file.text());
              }}
            />
            <label className="inline">
              <input type="checkbox" checked={overwrite} onChange={(e) => setOverwrite(e.target.checked)} /> Overwrite a dashboard with the same uid
            </label>
            <button type="submit" className="primary" disabled={!importText.trim()}>
              Import
            </button>
          </div>
        </form>
      </section>
      )}
    </>
  );
}

// --- one dashboard -----------------------------------------------------------------------------

function useVariableOptions(variables: Variable[], selected: VariableValues, range: { start: number; end: number }) {
  const [options, setOptions] = useState<Record<string, string[]>>({});
  const key = JSON.stringify([variables, selected]);
  useEffect(() => {
    let cancelled = false;
    (async () => {
      const out: Record<string, string[]> = {};
      for (const variable of variables) {
        if (variable.type === 'custom' || variable.type === 'interval') out[variable.name] = customOptions(variable);
        else if (variable.type === 'constant' || variable.type === 'textbox') out[variable.name] = [variableQuery(variable)];
        else if (variable.type === 'query') {
          // Earlier variables may be used in later queries, as in Grafana.
          const query = interpolate(variableQuery(variable), selected, variables, out, {});
          const parsed = parseLabelValues(query);
          try {
            out[variable.name] = parsed
              ? await labelValues(parsed.label, parsed.match ? [parsed.match] : undefined, Math.floor(range.start), Math.ceil(range.end))
              : [];
          } catch {
            out[variable.name] = [];
          }
        }
      }
      if (!cancelled) setOptions(out);
    })();
    return () => {
      cancelled = true;
    };
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key]);
  return options;
}

function VariablePicker({
  variable,
  options,
  value,
  onChange,
}: {
  variable: Variable;
  options: string[];
  value: string[];
  onChange: (value: string[]) => void;
}) {
  const id = `var-${variable.name}`;
  const all = variable.includeAll ? [{ value: '$__all', text: 'All' }] : [];
  const choices = [...all, ...options.map((o) => ({ value: o, text: o }))];
  if (variable.type === 'textbox')
    return (
      <div className="variable">
        <label htmlFor={id}>{variable.label || variable.name}</label>
        <input id={id} value={value[0] ?? ''} onChange={(e) => onChange([e.target.value])} />
      </div>
    );
  return (
    <div className="variable">
      <label htmlFor={id}>{variable.label || variable.name}</label>
      <select
        id={id}
        multiple={!!variable.multi}
        size={variable.multi ? Math.min(4, choices.length || 1) : undefined}
        value={variable.multi ? value : (value[0] ?? '')}
        onChange={(e) => onChange(Array.from(e.target.selectedOptions).map((o) => o.value))}
      >
        {choices.map((c) => (
          <option key={c.value} value={c.value}>
            {c.text}
          </option>
        ))}
      </select>
    </div>
  );
}

export function DashboardView({ uid }: { uid: string }) {
  const location = useLocation();
  const [dashboard, setDashboard] = useState<Dashboard | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [tick, setTick] = useState(0);
  const [collapsed, setCollapsed] = useState<Record<number, boolean>>({});
  const [editing, setEditing] = useState(false);
  const [jsonText, setJsonText] = useState('');
  const [saveMessage, setSaveMessage] = useState('');
  const [selected, setSelected] = useState<VariableValues>({});
  const [provisioned, setProvisioned] = useState<string | null>(null);
  const canWrite = useCanWrite();

  useEffect(() => {
    setDashboard(null);
    loadDashboard(uid).then(
      ({ dashboard, meta }) => {
        setProvisioned(meta.provisioned ? (meta.pack ?? 'a pack') : null);
        // Every panel gets an id, so the panel editor can name it in the URL (?editPanel=3).
        const d = { ...(dashboard as Dashboard) };
        d.panels = withPanelIds(normalisePanels(d));
        delete d.rows;
        setDashboard(d);
        const initial: VariableValues = {};
        for (const v of d.templating?.list ?? []) {
          const fromUrl = new URLSearchParams(window.location.search).getAll(`var-${v.name}`);
          initial[v.name] = fromUrl.length ? fromUrl : initialSelection(v);
        }
        setSelected(initial);
        const rows: Record<number, boolean> = {};
        normalisePanels(d).forEach((p, i) => p.type === 'row' && (rows[i] = !!p.collapsed));
        setCollapsed(rows);
      },
      setError,
    );
  }, [uid]);

  const range: TimeRange = {
    from: location.query.get('from') ?? dashboard?.time?.from ?? 'now-1h',
    to: location.query.get('to') ?? dashboard?.time?.to ?? 'now',
  };
  const refreshParam = location.query.get('refresh') ?? (typeof dashboard?.refresh === 'string' ? dashboard.refresh : '');
  const refresh = refreshParam === 'off' ? '' : refreshParam;
  // Resolve relative ranges again on every refresh tick.
  const resolved = useMemo(() => resolveRange(range), [range.from, range.to, tick]); // eslint-disable-line react-hooks/exhaustive-deps

  const interval = useRef<number | undefined>(undefined);
  useEffect(() => {
    window.clearInterval(interval.current);
    const seconds = parseDuration(refresh);
    if (seconds > 0) interval.current = window.setInterval(() => setTick((t) => t + 1), seconds * 1000);
    return () => window.clearInterval(interval.current);
  }, [refresh]);

  const variables = dashboard?.templating?.list ?? [];
  const options = useVariableOptions(variables, selected, resolved);
  const editParam = location.query.get('editPanel');

  if (error) return <ErrorMessage error={error} />;
  if (!dashboard) return <Loading label="Loading dashboard…" />;

  const panels = normalisePanels(dashboard);
  const rows = groupRows(panels);
  const step = stepFor(resolved.start, resolved.end);
  const builtins = {
    __interval: formatDuration(step),
    __rate_interval: formatDuration(Math.max(4 * step, 60)),
    __range: formatDuration(resolved.end - resolved.start),
    __range_s: String(Math.round(resolved.end - resolved.start)),
  };

  function targetsOf(panel: Panel) {
    return (panel.targets ?? []).map((t) => ({ ...t, expr: t.expr ? interpolate(t.expr, selected, variables, options, builtins) : t.expr }));
  }

  const editable = canWrite && !provisioned;
  const editingPanel =
    !editable || editParam === null
      ? null
      : editParam === 'new'
        ? newPanel(Math.max(0, ...flatPanels(panels).map((p) => p.id ?? 0)) + 1)
        : (flatPanels(panels).find((p) => String(p.id) === editParam && p.type !== 'row') ?? null);

  /** Store the dashboard with ``panels`` through the dashboards API; errors go to the caller. */
  async function savePanels(next: Panel[], message: string) {
    const updated = { ...dashboard!, panels: next };
    await saveDashboard(uid, updated);
    setDashboard(updated);
    setSaveMessage(message);
    setQuery({ editPanel: undefined });
  }

  async function save(next: Dashboard) {
    try {
      await saveDashboard(uid, next);
      setDashboard(next);
      setSaveMessage('Saved.');
      setEditing(false);
    } catch (e) {
      setSaveMessage(e instanceof Error ? e.message : String(e));
    }
  }

  return (
    <>
      <nav aria-label="Breadcrumb" className="breadcrumb">
        <Link href="/dashboards">Dashboards</Link> / <span aria-current="page">{dashboard.title}</span>
      </nav>
      <div className="page-head">
        <h1>{dashboard.title}</h1>
        <div className="toolbar">
          <TimeRangePicker
            range={range}
            onRange={(r) => setQuery({ from: r.from, to: r.to })}
            refresh={refresh}
            onRefreshInterval={(r) => setQuery({ refresh: r || 'off' })}
            onRefresh={() => setTick((t) => t + 1)}
          />
          <div className="toolbar-group">
            <button type="button" onClick={() => download(`${uid}.json`, dashboard)}>
              Export JSON
            </button>
            {canWrite && !provisioned && (
            <button
              type="button"
              aria-expanded={editing}
              onClick={() => {
                setJsonText(JSON.stringify(dashboard, null, 2));
                setEditing(!editing);
              }}
            >
              Edit JSON
            </button>
            )}
            {editable && (
              <button type="button" onClick={() => setQuery({ editPanel: 'new' })} disabled={editParam !== null}>
                Add panel
              </button>
            )}
            {canWrite && !provisioned && (
              <button type="button" onClick={() => save({ ...dashboard, time: range, refresh })}>
                Save
              </button>
            )}
            {canWrite && provisioned && (
              <button
                type="button"
                className="primary"
                onClick={async () => {
                  try {
                    navigate(`/d/${await importCopy(uid)}`);
                  } catch (e) {
                    setSaveMessage(e instanceof Error ? e.message : String(e));
                  }
                }}
              >
                Import a copy
              </button>
            )}
          </div>
        </div>
      </div>
      {provisioned && (
        <p className="notice provisioned-note">
          This dashboard comes with the <strong>{provisioned}</strong> pack and is read-only{canWrite ? ': import a copy to change it.' : '.'}
        </p>
      )}
      {saveMessage && (
        <p className="notice" role="status">
          {saveMessage}
        </p>
      )}
      {editing && (
        <section className="card" aria-labelledby="json-model">
          <h2 id="json-model">JSON model</h2>
          <label htmlFor="json-model-text" className="sr-only">
            Dashboard JSON
          </label>
          <textarea id="json-model-text" className="code" rows={16} value={jsonText} onChange={(e) => setJsonText(e.target.value)} />
          <div className="form-row">
            <button
              type="button"
              className="primary"
              onClick={() => {
                try {
                  void save(JSON.parse(jsonText));
                } catch (e) {
                  setSaveMessage(`Not valid JSON: ${(e as Error).message}`);
                }
              }}
            >
              Save JSON
            </button>
            <button type="button" onClick={() => setEditing(false)}>
              Cancel
            </button>
          </div>
        </section>
      )}
      {variables.filter((v) => v.hide !== 2).length > 0 && (
        <form className="variables" aria-label="Dashboard variables" onSubmit={(e) => e.preventDefault()}>
          {variables
            .filter((v) => v.hide !== 2)
            .map((v) => (
              <VariablePicker
                key={v.name}
                variable={v}
                options={options[v.name] ?? []}
                value={selected[v.name] ?? []}
                onChange={(value) => {
                  setSelected({ ...selected, [v.name]: value });
                  setQuery({ [`var-${v.name}`]: value.join(',') === '$__all' ? undefined : value[0] });
                }}
              />
            ))}
        </form>
      )}
      {editParam !== null && editable && !editingPanel && (
        <p className="error" role="alert">
          This dashboard has no panel {editParam}. <Link href={`/d/${uid}`}>Back to the dashboard</Link>
        </p>
      )}
      {editingPanel && (
        <PanelEditor
          key={`${uid}-${editParam}`}
          initial={editingPanel}
          isNew={editParam === 'new'}
          resolveTargets={targetsOf}
          start={resolved.start}
          end={resolved.end}
          onSave={(panel) => savePanels(upsertPanel(panels, panel), `Saved the panel “${panel.title}”.`)}
          onCancel={() => setQuery({ editPanel: undefined })}
          onDelete={
            editParam === 'new'
              ? undefined
              : () => {
                  if (!window.confirm(`Delete the panel “${editingPanel.title ?? ''}”?`)) return;
                  savePanels(removePanel(panels, editingPanel.id!), `Deleted the panel “${editingPanel.title ?? ''}”.`).catch((e) =>
                    setSaveMessage(e instanceof Error ? e.message : String(e)),
                  );
                }
          }
        />
      )}
      {!editingPanel && rows.map((row) => {
        const isCollapsed = row.index >= 0 && collapsed[row.index];
        const rowId = `row-${row.index}`;
        const title = row.title !== null ? interpolate(row.title, selected, variables, options, builtins) : null;
        return (
          <section key={row.index} className="dash-row" aria-labelledby={title !== null ? rowId : undefined} aria-label={title === null ? 'Panels' : undefined}>
            {title !== null && (
              <h2 id={rowId} className="row-title">
                <button type="button" aria-expanded={!isCollapsed} onClick={() => setCollapsed({ ...collapsed, [row.index]: !isCollapsed })}>
                  <span aria-hidden="true">{isCollapsed ? '▸' : '▾'}</span> {title || 'Row'}
                </button>
              </h2>
            )}
            {!isCollapsed && (
              <div className="grid">
                {row.panels.map((panel, index) => {
                  const g = panel.gridPos ?? { x: 0, y: 0, w: 12, h: 8 };
                  return (
                    <div
                      key={panel.id ?? index}
                      className="grid-item"
                      style={{ gridColumn: `${g.x + 1} / span ${Math.min(24, g.w)}`, ['--h' as string]: g.h }}
                    >
                      <PanelView
                        panel={{ ...panel, title: interpolate(panel.title ?? '', selected, variables, options, builtins) }}
                        targets={targetsOf(panel)}
                        start={resolved.start}
                        end={resolved.end}
                        tick={tick}
                        actions={
                          editable && (
                            <button
                              type="button"
                              className="panel-edit"
                              aria-label={`Edit panel ${panel.title || 'Untitled panel'}`}
                              onClick={() => setQuery({ editPanel: String(panel.id) })}
                            >
                              Edit
                            </button>
                          )
                        }
                      />
                    </div>
                  );
                })}
              </div>
            )}
          </section>
        );
      })}
    </>
  );
}
