// Explore: PromQL (table and graph), log search (LogQL, live) and trace search with a waterfall.
import { useEffect, useMemo, useRef, useState } from 'react';
import type { EChartsCoreOption } from 'echarts/core';
import {
  ApiError,
  findTraces,
  getTrace,
  logLabels,
  logQuery,
  promQuery,
  promRange,
  services,
  traceLogs,
  type JaegerTrace,
  type LogStream,
  type QueryData,
  type RangeSeries,
  type TraceLogLine,
} from '../api';
import { Chart } from '../components/Chart';
import { ErrorMessage, LabelChips, Link, Loading, Tabs, formatSelector } from '../components/common';
import { QueryInput } from '../components/QueryInput';
import { TimeRangePicker } from '../components/TimeRangePicker';
import { legendName } from '../dashboard';
import { setQuery, useLocation } from '../router';
import { formatTime, formatValue, resolveRange, stepFor, type TimeRange } from '../time';

const TABS = [
  { id: 'metrics', label: 'Metrics' },
  { id: 'logs', label: 'Logs' },
  { id: 'traces', label: 'Traces' },
];

export function Explore() {
  const location = useLocation();
  const tab = location.query.get('tab') ?? 'metrics';
  const range: TimeRange = { from: location.query.get('from') ?? 'now-1h', to: location.query.get('to') ?? 'now' };
  return (
    <>
      <div className="page-head">
        <h1>Explore</h1>
      </div>
      <Tabs label="Signal" tabs={TABS} active={tab} onChange={(id) => setQuery({ tab: id })} />
      <div role="tabpanel" id={`panel-${tab}`} aria-labelledby={`tab-${tab}`} className="tabpanel">
        {tab === 'metrics' && <MetricsExplore range={range} initial={location.query.get('expr') ?? ''} />}
        {tab === 'logs' && <LogsExplore range={range} initial={location.query.get('logql') ?? ''} />}
        {tab === 'traces' && <TracesExplore range={range} traceId={location.query.get('trace') ?? ''} service={location.query.get('service') ?? ''} />}
      </div>
    </>
  );
}

// --- metrics -----------------------------------------------------------------------------------

/** A LogQL stream selector from the labels a series shares with the log store. */
function logSelector(labels: Record<string, string>, logLabelNames: string[]): string | null {
  const shared = Object.entries(labels).filter(([name]) => name !== '__name__' && logLabelNames.includes(name));
  if (!shared.length) return null;
  return `{${shared.map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')}}`;
}

function MetricsExplore({ range, initial }: { range: TimeRange; initial: string }) {
  const [expr, setExpr] = useState(initial);
  const [view, setView] = useState<'table' | 'graph'>('graph');
  const [instant, setInstant] = useState<QueryData | null>(null);
  const [series, setSeries] = useState<RangeSeries[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [running, setRunning] = useState(false);
  const [logNames, setLogNames] = useState<string[]>([]);
  const [tick, setTick] = useState(0);

  useEffect(() => {
    logLabels().then(setLogNames, () => setLogNames([]));
  }, []);

  async function run(query = expr) {
    if (!query.trim()) return;
    setQuery({ expr: query });
    setRunning(true);
    setError(null);
    const { start, end } = resolveRange(range);
    try {
      const [i, r] = await Promise.all([promQuery(query, end), promRange(query, start, end, stepFor(start, end))]);
      setInstant(i);
      setSeries(r);
    } catch (e) {
      setError(e);
      setInstant(null);
      setSeries(null);
    } finally {
      setRunning(false);
    }
  }

  useEffect(() => {
    if (initial) void run(initial);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [range.from, range.to, tick]);

  return (
    <>
      <div className="query-row">
        <QueryInput language="promql" label="PromQL query" value={expr} onChange={setExpr} onRun={() => run()} placeholder="Enter a PromQL query, e.g. rate(http_requests_total[5m])" />
        <button type="button" className="primary" onClick={() => run()} disabled={running}>
          {running ? 'Running…' : 'Run query'}
        </button>
      </div>
      <div className="toolbar">
        <TimeRangePicker range={range} onRange={(r) => setQuery({ from: r.from, to: r.to === 'now' ? undefined : r.to })} onRefresh={() => setTick((t) => t + 1)} />
        <div className="segmented" role="group" aria-label="Result view">
          {(['table', 'graph'] as const).map((v) => (
            <button key={v} type="button" aria-pressed={view === v} onClick={() => setView(v)}>
              {v === 'table' ? 'Table' : 'Graph'}
            </button>
          ))}
        </div>
      </div>
      <ErrorMessage error={error} />
      {view === 'table' && instant && <InstantTable data={instant} logNames={logNames} />}
      {view === 'graph' && series && <RangeGraph series={series} />}
      {!instant && !error && !running && <p className="muted">Type a query; Ctrl+Space or typing shows completions, Enter runs it.</p>}
    </>
  );
}

function InstantTable({ data, logNames }: { data: QueryData; logNames: string[] }) {
  if (data.resultType === 'scalar' || data.resultType === 'string')
    return (
      <p>
        {data.resultType}: <strong>{data.result[1]}</strong>
      </p>
    );
  const rows = data.resultType === 'vector' ? data.result.map((s) => ({ metric: s.metric, value: s.value[1] })) : (data.result as RangeSeries[]).map((s) => ({ metric: s.metric, value: s.values[s.values.length - 1]?.[1] ?? '' }));
  if (!rows.length) return <p className="muted">Empty result.</p>;
  return (
    <div className="table-wrap">
      <table aria-label="Query result">
        <thead>
          <tr>
            <th scope="col">Series</th>
            <th scope="col" className="num">
              Value
            </th>
            <th scope="col">
              <span className="sr-only">Links</span>
            </th>
          </tr>
        </thead>
        <tbody>
          {rows.map((row, index) => {
            const selector = logSelector(row.metric, logNames);
            return (
              <tr key={index}>
                <td className="code">{formatSelector(row.metric)}</td>
                <td className="num">{row.value}</td>
                <td>{selector && <Link href={`/explore?tab=logs&logql=${encodeURIComponent(selector)}`}>Logs</Link>}</td>
              </tr>
            );
          })}
        </tbody>
      </table>
    </div>
  );
}

function RangeGraph({ series }: { series: RangeSeries[] }) {
  const option = useMemo<EChartsCoreOption>(
    () => ({
      grid: { left: 8, right: 16, top: 16, bottom: 56, containLabel: true },
      tooltip: { trigger: 'axis', confine: true },
      legend: { type: 'scroll', bottom: 0, left: 0 },
      xAxis: { type: 'time', axisLabel: { hideOverlap: true } },
      yAxis: { type: 'value', axisLabel: { formatter: (v: number) => formatValue(v) } },
      series: series.map((s) => ({
        name: legendName(s.metric),
        type: 'line',
        showSymbol: s.values.length < 3,
        data: s.values.map(([t, v]) => [t * 1000, Number(v)]),
      })),
    }),
    [series],
  );
  if (!series.length) return <p className="muted">Empty result.</p>;
  return <Chart option={option} summary={`Line chart of ${series.length} series`} height={360} />;
}

// --- logs --------------------------------------------------------------------------------------

const TRACE_ID = /\b(?:trace_?id|traceID)[=:"\s]+([0-9a-fA-F]{32}|[0-9a-fA-F]{16})\b/;

interface LogLine {
  ts: string;
  labels: Record<string, string>;
  line: string;
}

function LogsExplore({ range, initial }: { range: TimeRange; initial: string }) {
  const [query, setQueryText] = useState(initial);
  const [lines, setLines] = useState<LogLine[] | null>(null);
  const [matrix, setMatrix] = useState<RangeSeries[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [live, setLive] = useState(false);
  const [running, setRunning] = useState(false);
  const latest = useRef(query);
  latest.current = query;

  async function run(text = latest.current) {
    if (!text.trim()) return;
    setQuery({ logql: text });
    setRunning(true);
    setError(null);
    const { start, end } = resolveRange(range);
    try {
      const data = await logQuery(text, `${Math.floor(start)}000000000`, `${Math.ceil(end + 1)}000000000`, 500);
      if (data.resultType === 'streams') {
        const out: LogLine[] = [];
        for (const s of data.result as LogStream[]) for (const [ts, line] of s.values) out.push({ ts, labels: s.stream, line });
        out.sort((a, b) => (BigInt(b.ts) > BigInt(a.ts) ? 1 : BigInt(b.ts) < BigInt(a.ts) ? -1 : 0));
        setLines(out);
        setMatrix(null);
      } else {
        setMatrix(data.result as RangeSeries[]);
        setLines(null);
      }
    } catch (e) {
      setError(e);
    } finally {
      setRunning(false);
    }
  }

  useEffect(() => {
    if (initial) void run(initial);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [range.from, range.to]);

  useEffect(() => {
    if (!live) return;
    const timer = window.setInterval(() => void run(), 2000);
    return () => window.clearInterval(timer);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [live]);

  return (
    <>
      <div className="query-row">
        <QueryInput language="logql" label="LogQL query" value={query} onChange={setQueryText} onRun={() => run()} placeholder='{app="shop"} |= "error"' />
        <button type="button" className="primary" onClick={() => run()} disabled={running && !live}>
          Search logs
        </button>
      </div>
      <div className="toolbar">
        <TimeRangePicker range={range} onRange={(r) => setQuery({ from: r.from, to: r.to === 'now' ? undefined : r.to })} onRefresh={() => run()} />
        <label className="inline">
          <input type="checkbox" checked={live} onChange={(e) => setLive(e.target.checked)} /> Live (refresh every 2 s)
        </label>
      </div>
      <ErrorMessage error={error} />
      {matrix && <RangeGraph series={matrix} />}
      {lines && (
        <>
          <p className="muted" role="status" aria-live="polite">
            {lines.length} {lines.length === 1 ? 'line' : 'lines'}
            {live ? ' (live)' : ''}
          </p>
          <ol className="log-lines" aria-label="Log lines, newest first">
            {lines.map((l, index) => {
              const traceId = TRACE_ID.exec(l.line)?.[1];
              return (
                <li key={`${l.ts}-${index}`}>
                  <time dateTime={new Date(Number(BigInt(l.ts) / 1000000n)).toISOString()}>{formatTime(Number(BigInt(l.ts) / 1000000n) / 1000)}</time>
                  <LabelChips labels={l.labels} />
                  <span className="log-line">{l.line}</span>
                  {traceId && (
                    <Link className="trace-link" href={`/explore?tab=traces&trace=${traceId}`}>
                      Trace {traceId.slice(0, 8)}…
                    </Link>
                  )}
                </li>
              );
            })}
          </ol>
        </>
      )}
      {!lines && !matrix && !error && <p className="muted">Search logs with LogQL: a stream selector such as {'{app="shop"}'}, then filters like |= "error".</p>}
    </>
  );
}

// --- traces ------------------------------------------------------------------------------------

function TracesExplore({ range, traceId, service }: { range: TimeRange; traceId: string; service: string }) {
  const [serviceNames, setServiceNames] = useState<string[] | null>(null);
  const [chosen, setChosen] = useState(service);
  const [tags, setTags] = useState('');
  const [minDuration, setMinDuration] = useState('');
  const [results, setResults] = useState<JaegerTrace[] | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [lookup, setLookup] = useState(traceId);

  useEffect(() => {
    services().then((s) => {
      setServiceNames(s);
      if (!chosen && s.length) setChosen(s[0]);
    }, setError);
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, []);

  async function search() {
    setError(null);
    const { start, end } = resolveRange(range);
    try {
      const tagObject: Record<string, string> = {};
      for (const part of tags.split(/\s+/).filter(Boolean)) {
        const [k, ...v] = part.split('=');
        tagObject[k] = v.join('=');
      }
      setResults(
        await findTraces({
          service: chosen,
          start: Math.floor(start * 1e6),
          end: Math.ceil(end * 1e6),
          limit: 50,
          minDuration: minDuration || undefined,
          tags: tags.trim() ? JSON.stringify(tagObject) : undefined,
        }),
      );
      setQuery({ service: chosen, trace: undefined });
    } catch (e) {
      setError(e);
    }
  }

  if (traceId) return <TraceView traceId={traceId} />;

  return (
    <>
      <form
        className="trace-search"
        aria-label="Trace search"
        onSubmit={(e) => {
          e.preventDefault();
          void search();
        }}
      >
        <div className="variable">
          <label htmlFor="trace-service">Service</label>
          <select id="trace-service" value={chosen} onChange={(e) => setChosen(e.target.value)}>
            {(serviceNames ?? []).map((s) => (
              <option key={s}>{s}</option>
            ))}
          </select>
        </div>
        <div className="variable">
          <label htmlFor="trace-tags">Tags</label>
          <input id="trace-tags" placeholder="http.status_code=500" value={tags} onChange={(e) => setTags(e.target.value)} />
        </div>
        <div className="variable">
          <label htmlFor="trace-min">Min duration</label>
          <input id="trace-min" placeholder="100ms" value={minDuration} onChange={(e) => setMinDuration(e.target.value)} size={8} />
        </div>
        <TimeRangePicker range={range} onRange={(r) => setQuery({ from: r.from, to: r.to === 'now' ? undefined : r.to })} onRefresh={() => void search()} />
        <button type="submit" className="primary" disabled={!chosen}>
          Find traces
        </button>
      </form>
      <form
        className="trace-search"
        aria-label="Open a trace by id"
        onSubmit={(e) => {
          e.preventDefault();
          if (lookup.trim()) setQuery({ trace: lookup.trim() });
        }}
      >
        <div className="variable">
          <label htmlFor="trace-id">Trace id</label>
          <input id="trace-id" className="code" value={lookup} onChange={(e) => setLookup(e.target.value)} size={34} />
        </div>
        <button type="submit">Open trace</button>
      </form>
      <ErrorMessage error={error} />
      {serviceNames && serviceNames.length === 0 && <p className="muted">No traces received yet. Send spans over OTLP (/v1/traces) or Zipkin (/api/v2/spans).</p>}
      {results && (
        <div className="table-wrap">
          <table aria-label="Traces found">
            <thead>
              <tr>
                <th scope="col">Trace</th>
                <th scope="col">Root span</th>
                <th scope="col">Services</th>
                <th scope="col" className="num">
                  Spans
                </th>
                <th scope="col" className="num">
                  Duration
                </th>
                <th scope="col">Started</th>
              </tr>
            </thead>
            <tbody>
              {results.map((t) => {
                const summary = traceSummary(t);
                return (
                  <tr key={t.traceID}>
                    <td className="code">
                      <Link href={`/explore?tab=traces&trace=${t.traceID}`}>{t.traceID}</Link>
                    </td>
                    <td>
                      {summary.rootService}: {summary.rootName}
                    </td>
                    <td>{summary.services.join(', ')}</td>
                    <td className="num">{t.spans.length}</td>
                    <td className="num">{formatValue(summary.duration / 1000, 'ms')}</td>
                    <td>{formatTime(summary.start / 1e6)}</td>
                  </tr>
                );
              })}
            </tbody>
          </table>
          {results.length === 0 && <p className="muted">No traces match.</p>}
        </div>
      )}
    </>
  );
}

function traceSummary(trace: JaegerTrace) {
  const start = Math.min(...trace.spans.map((s) => s.startTime));
  const end = Math.max(...trace.spans.map((s) => s.startTime + s.duration));
  const ids = new Set(trace.spans.map((s) => s.spanID));
  const root = trace.spans.find((s) => !s.references.some((r) => r.refType === 'CHILD_OF' && ids.has(r.spanID))) ?? trace.spans[0];
  const services = Array.from(new Set(trace.spans.map((s) => trace.processes[s.processID]?.serviceName ?? '?')));
  return { start, duration: end - start, rootName: root?.operationName, rootService: trace.processes[root?.processID]?.serviceName, services };
}

interface Row {
  span: JaegerTrace['spans'][number];
  depth: number;
  service: string;
}

/** Spans in tree order (children after their parent, by start time) with their depth. */
function waterfallRows(trace: JaegerTrace): Row[] {
  const ids = new Set(trace.spans.map((s) => s.spanID));
  const children = new Map<string, JaegerTrace['spans']>();
  const roots: JaegerTrace['spans'] = [];
  for (const span of trace.spans) {
    const parent = span.references.find((r) => r.refType === 'CHILD_OF' && ids.has(r.spanID))?.spanID;
    if (parent) children.set(parent, [...(children.get(parent) ?? []), span]);
    else roots.push(span);
  }
  const out: Row[] = [];
  const visit = (span: JaegerTrace['spans'][number], depth: number) => {
    out.push({ span, depth, service: trace.processes[span.processID]?.serviceName ?? '?' });
    for (const child of (children.get(span.spanID) ?? []).sort((a, b) => a.startTime - b.startTime)) visit(child, depth + 1);
  };
  roots.sort((a, b) => a.startTime - b.startTime).forEach((r) => visit(r, 0));
  return out;
}

const SERVICE_COLORS = ['#3274d9', '#56a64b', '#e0752d', '#a352cc', '#e02f44', '#1f9e89', '#b8860b', '#6c5ce7'];

function TraceView({ traceId }: { traceId: string }) {
  const [trace, setTrace] = useState<JaegerTrace | null>(null);
  const [error, setError] = useState<unknown>(null);
  const [selected, setSelected] = useState<string | null>(null);
  const [logs, setLogs] = useState<TraceLogLine[] | null>(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    setTrace(null);
    setError(null);
    getTrace(traceId).then((t) => (t ? setTrace(t) : setError(new ApiError('trace not found', 404))), setError);
    traceLogs(traceId).then(setLogs, () => setLogs([]));
  }, [traceId, attempt]);

  if (error)
    return (
      <>
        <Link href="/explore?tab=traces">← Trace search</Link>
        <ErrorMessage error={error} />
        {error instanceof ApiError && error.status === 404 && (
          <p>
            A trace is stored once its sampling decision is made, some seconds after its first span arrived.{' '}
            <button type="button" onClick={() => setAttempt((a) => a + 1)}>
              Try again
            </button>
          </p>
        )}
      </>
    );
  if (!trace) return <Loading label="Loading trace…" />;
  const summary = traceSummary(trace);
  const rows = waterfallRows(trace);
  const services = summary.services;
  const selectedSpan = trace.spans.find((s) => s.spanID === selected);
  return (
    <>
      <p>
        <Link href="/explore?tab=traces">← Trace search</Link>
      </p>
      <h2 className="trace-title">
        {summary.rootService}: {summary.rootName} <span className="muted code">{trace.traceID}</span>
      </h2>
      <p className="muted">
        {formatTime(summary.start / 1e6)} · {formatValue(summary.duration / 1000, 'ms')} · {trace.spans.length} spans · {services.length} services
      </p>
      <div className="waterfall" role="tree" aria-label="Spans of the trace">
        {rows.map(({ span, depth, service }) => {
          const left = ((span.startTime - summary.start) / Math.max(1, summary.duration)) * 100;
          const width = Math.max(0.5, (span.duration / Math.max(1, summary.duration)) * 100);
          const colour = SERVICE_COLORS[services.indexOf(service) % SERVICE_COLORS.length];
          const isError = span.tags.some((t) => (t.key === 'error' && t.value === true) || (t.key === 'otel.status_code' && t.value === 'ERROR'));
          return (
            <button
              type="button"
              role="treeitem"
              aria-level={depth + 1}
              aria-selected={selected === span.spanID}
              key={span.spanID}
              className={`span-row${selected === span.spanID ? ' selected' : ''}`}
              onClick={() => setSelected(selected === span.spanID ? null : span.spanID)}
            >
              <span className="span-name" style={{ paddingLeft: `${depth * 14}px` }}>
                <span className="swatch" style={{ background: colour }} aria-hidden="true" />
                <strong>{service}</strong> {span.operationName}
                {isError && <span className="badge firing">error</span>}
              </span>
              <span className="span-bar-track" aria-hidden="true">
                <span className="span-bar" style={{ left: `${left}%`, width: `${width}%`, background: colour }} />
              </span>
              <span className="span-duration">{formatValue(span.duration / 1000, 'ms')}</span>
            </button>
          );
        })}
      </div>
      {selectedSpan && (
        <section className="card" aria-labelledby="span-details">
          <h3 id="span-details">
            Span {selectedSpan.operationName} <span className="muted code">{selectedSpan.spanID}</span>
          </h3>
          <table>
            <tbody>
              {selectedSpan.tags.map((t) => (
                <tr key={t.key}>
                  <th scope="row">{t.key}</th>
                  <td className="code">{String(t.value)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
      <section className="card" aria-labelledby="trace-logs">
        <h3 id="trace-logs">Logs of this trace</h3>
        {!logs ? (
          <Loading />
        ) : logs.length === 0 ? (
          <p className="muted">No log lines carry this trace id.</p>
        ) : (
          <ol className="log-lines">
            {logs.map((l, i) => (
              <li key={i}>
                <time>{formatTime(Number(BigInt(l.timestamp) / 1000000n) / 1000)}</time>
                <span className="chip">{l.stream}</span>
                <span className="log-line">{l.line}</span>
              </li>
            ))}
          </ol>
        )}
      </section>
    </>
  );
}
