// One dashboard panel: stat, gauge, timeseries (and the old graph), bar chart, table, text,
// heatmap, pie and sankey; targets read Prometheus (PromQL), Loki (metric LogQL) or events.
import { memo, useCallback, useEffect, useMemo, useRef, useState, type ReactNode } from 'react';
import type { EChartsCoreOption } from 'echarts/core';
import { analytics, logMetricRange, promQuery, promRange, type FunnelData, type InstantSample, type RangeSeries, type SqlData, type TrendsData, type ActiveUsersData } from '../api';
import { color, datasourceType, legendName, thresholdColor, thresholdSteps, type Panel, type Target } from '../dashboard';
import { formatTime, formatValue, stepFor } from '../time';
import { Chart, ChartDrawn } from './Chart';
import { ErrorMessage, Link } from './common';

const SANKEY_TYPES = new Set(['sankey', 'netsage-sankey-panel', 'sankey-panel']);
const SUPPORTED = new Set(['timeseries', 'graph', 'barchart', 'bar', 'stat', 'singlestat', 'gauge', 'table', 'text', 'heatmap', 'piechart', 'grafana-piechart-panel', ...SANKEY_TYPES]);

export interface PanelData {
  series: { name: string; labels: Record<string, string>; points: [number, number][] }[];
  instant: { name: string; labels: Record<string, string>; value: number }[];
  table?: { columns: string[]; rows: unknown[][] };
}

function isInstantPanel(type: string) {
  return ['stat', 'singlestat', 'gauge', 'table', 'piechart', 'grafana-piechart-panel'].includes(type) || SANKEY_TYPES.has(type);
}

function lastValue(series: RangeSeries): [number, string] {
  return series.values[series.values.length - 1] ?? [0, 'NaN'];
}

/** Event analytics as panel data: series over time for trends and active users, one value
 * per step for funnels, the rows of a SQL query as a table (and as values by first column). */
async function loadEvents(target: Target, start: number, end: number, data: PanelData, signal: AbortSignal) {
  const range = { date_from: new Date(start * 1000).toISOString(), date_to: new Date(end * 1000).toISOString() };
  if (target.rawSql || target.analytics === 'sql') {
    const result = await analytics<SqlData>('sql', { query: target.rawSql ?? target.params?.query, ...range }, signal);
    data.table = { columns: result.columns, rows: result.rows };
    for (const row of result.rows) {
      const value = Number(row[row.length - 1]);
      const labels = Object.fromEntries(result.columns.slice(0, -1).map((c, i) => [c, String(row[i] ?? '')]));
      data.instant.push({ name: result.columns.length > 1 ? String(row[0]) : (target.legendFormat ?? 'value'), labels, value });
    }
    return;
  }
  const body = { ...range, ...(target.params ?? {}) };
  const time = (label: string) => Date.parse(label.endsWith('Z') || label.includes('+') ? label : `${label}Z`);
  if (target.analytics === 'funnels') {
    const result = await analytics<FunnelData>('funnels', body, signal);
    for (const step of result.steps) data.instant.push({ name: `${step.index + 1}. ${step.event}`, labels: { step: step.event }, value: step.count });
  } else if (target.analytics === 'active-users') {
    const result = await analytics<ActiveUsersData>('active-users', body, signal);
    for (const w of ['dau', 'wau', 'mau'] as const) {
      const values = result[w];
      if (!values) continue;
      data.series.push({ name: w.toUpperCase(), labels: { window: w }, points: result.labels.map((l, i) => [time(l), values[i]]) });
      data.instant.push({ name: w.toUpperCase(), labels: { window: w }, value: values[values.length - 1] ?? 0 });
    }
  } else {
    const result = await analytics<TrendsData>('trends', body, signal);
    for (const r of result.result) {
      const name = r.breakdown_value ?? target.legendFormat ?? r.event;
      const labels: Record<string, string> = { event: r.event, ...(r.breakdown_value ? { breakdown: String(r.breakdown_value) } : {}) };
      data.series.push({ name, labels, points: r.labels.map((l, i) => [time(l), r.data[i]]) });
      data.instant.push({ name, labels, value: r.count });
    }
  }
}

async function loadPanel(panel: Panel, targets: Target[], start: number, end: number, signal: AbortSignal): Promise<PanelData> {
  const data: PanelData = { series: [], instant: [] };
  const type = panel.type;
  const step = stepFor(start, end);
  await Promise.all(
    targets.map(async (target) => {
      if (target.hide) return;
      const source = datasourceType(target, panel);
      if (source === 'events') return loadEvents(target, start, end, data, signal);
      if (!target.expr) return;
      if (source === 'loki') {
        const series = await logMetricRange(target.expr, start, end, step, signal);
        for (const s of series) {
          const name = legendName(s.metric, target.legendFormat);
          data.series.push({ name, labels: s.metric, points: s.values.map(([t, v]) => [t * 1000, Number(v)]) });
          data.instant.push({ name, labels: s.metric, value: Number(lastValue(s)[1]) });
        }
      } else if (isInstantPanel(type)) {
        const result = await promQuery(target.expr, end, signal);
        const samples: InstantSample[] =
          result.resultType === 'vector'
            ? result.result
            : result.resultType === 'scalar'
              ? [{ metric: {}, value: result.result }]
              : result.resultType === 'matrix'
                ? result.result.map((s) => ({ metric: s.metric, value: lastValue(s) }))
                : [];
        for (const s of samples) data.instant.push({ name: legendName(s.metric, target.legendFormat), labels: s.metric, value: Number(s.value[1]) });
      } else {
        const series: RangeSeries[] = await promRange(target.expr, start, end, step, signal);
        for (const s of series)
          data.series.push({
            name: legendName(s.metric, target.legendFormat),
            labels: s.metric,
            points: s.values.map(([t, v]) => [t * 1000, Number(v)]),
          });
      }
    }),
  );
  return data;
}

interface PanelViewProps {
  panel: Panel;
  targets: Target[];
  start: number;
  end: number;
  tick: number;
  /** Controls shown in the panel's header (the dashboard's "Edit" button). */
  actions?: ReactNode;
}

/** Props equal in content: the dashboard builds new panel objects on every render (a variable's
 * options arriving, a row collapsing), which must not make every chart draw itself again. */
function sameProps(a: PanelViewProps, b: PanelViewProps): boolean {
  return (
    a.start === b.start &&
    a.end === b.end &&
    a.tick === b.tick &&
    !!a.actions === !!b.actions &&
    JSON.stringify(a.panel) === JSON.stringify(b.panel) &&
    JSON.stringify(a.targets) === JSON.stringify(b.targets)
  );
}

export const PanelView = memo(PanelViewImpl, sameProps);

function PanelViewImpl({
  panel,
  targets,
  start,
  end,
  tick,
  actions,
}: PanelViewProps) {
  const [data, setData] = useState<PanelData | null>(null);
  const [error, setError] = useState<unknown>(null);
  const titleId = `panel-title-${panel.id ?? Math.abs(hash(panel.title ?? ''))}`;
  const key = JSON.stringify(targets);
  const article = useRef<HTMLElement>(null);
  const body = useRef<HTMLDivElement>(null);

  // data-state ("loading", "rendered", "error") and the performance marks "sr:panel-data" and
  // "sr:panel-rendered" (detail: the panel's title id) say when a panel's data arrived and when
  // it was drawn: browser tests wait on them, bench/bench_ui.py measures between them.
  const setState = (state: string) => article.current?.setAttribute('data-state', state);
  const drawn = useCallback(() => {
    if (article.current?.getAttribute('data-state') !== 'drawing') return;
    setState('rendered');
    performance.mark('sr:panel-rendered', { detail: titleId });
  }, [titleId]);

  useEffect(() => {
    if (!SUPPORTED.has(panel.type) || panel.type === 'text') return;
    const controller = new AbortController();
    setState('loading');
    loadPanel(panel, targets, start, end, controller.signal)
      .then((d) => {
        performance.mark('sr:panel-data', { detail: titleId });
        setState('drawing');
        setData(d);
        setError(null);
      })
      .catch((e) => {
        if (controller.signal.aborted) return;
        setState('error');
        setError(e);
      });
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, panel.type, JSON.stringify(panel.datasource ?? null), start, end, tick]);

  // Views without a chart (stat, table, "No data") are drawn once React has committed them.
  useEffect(() => {
    if (!data) return;
    const frame = requestAnimationFrame(() => {
      if (!body.current?.querySelector('.chart')) drawn();
    });
    return () => cancelAnimationFrame(frame);
  }, [data, drawn]);

  const first = targets.find((t) => t.expr);
  const firstExpr = first?.expr;
  const exploreHref = !first
    ? null
    : datasourceType(first, panel) === 'loki'
      ? `/explore?tab=logs&logql=${encodeURIComponent(first.expr ?? '')}`
      : datasourceType(first, panel) === 'events'
        ? null
        : `/explore?tab=metrics&expr=${encodeURIComponent(first.expr ?? '')}`;
  return (
    <article className="panel" aria-labelledby={titleId} data-panel-type={panel.type} ref={article}>
      <header className="panel-head">
        <h3 id={titleId} title={panel.description}>
          {panel.title || 'Untitled panel'}
        </h3>
        <span className="panel-actions">
          {firstExpr && exploreHref && (
            <Link className="panel-link" href={exploreHref} aria-label={`Explore the query of ${panel.title || 'this panel'}`}>
              Explore
            </Link>
          )}
          {actions}
        </span>
      </header>
      <div className="panel-body" ref={body}>
        {!SUPPORTED.has(panel.type) ? (
          <p className="muted">Panel type “{panel.type}” is not supported yet.</p>
        ) : panel.type === 'text' ? (
          <div className="panel-text">{String(panel.options?.content ?? '')}</div>
        ) : error ? (
          <ErrorMessage error={error} />
        ) : !data ? (
          <p className="muted" role="status">
            Loading…
          </p>
        ) : (
          <ChartDrawn.Provider value={drawn}>
            <PanelContent panel={panel} data={data} range={[start * 1000, end * 1000]} />
          </ChartDrawn.Provider>
        )}
      </div>
    </article>
  );
}

function hash(text: string): number {
  let h = 0;
  for (const ch of text) h = (h * 31 + ch.charCodeAt(0)) | 0;
  return h;
}

function PanelContent({ panel, data, range }: { panel: Panel; data: PanelData; range: [number, number] }) {
  const unit = panel.fieldConfig?.defaults?.unit ?? 'short';
  const decimals = panel.fieldConfig?.defaults?.decimals;
  switch (panel.type) {
    case 'stat':
    case 'singlestat':
      return <StatView panel={panel} data={data} unit={unit} decimals={decimals} />;
    case 'gauge':
      return <GaugeView panel={panel} data={data} unit={unit} decimals={decimals} />;
    case 'table':
      return data.table ? <RowsView table={data.table} /> : <TableView data={data} unit={unit} decimals={decimals} />;
    case 'heatmap':
      return <HeatmapView panel={panel} data={data} unit={unit} decimals={decimals} />;
    case 'piechart':
    case 'grafana-piechart-panel':
      return <PieView panel={panel} data={data} unit={unit} decimals={decimals} />;
    default:
      if (SANKEY_TYPES.has(panel.type)) return <SankeyView panel={panel} data={data} unit={unit} decimals={decimals} />;
      return <TimeSeriesView panel={panel} data={data} unit={unit} decimals={decimals} range={range} />;
  }
}

interface ViewProps {
  panel: Panel;
  data: PanelData;
  unit: string;
  decimals?: number;
}

function StatView({ panel, data, unit, decimals }: ViewProps) {
  if (!data.instant.length) return <p className="stat-value muted">No data</p>;
  return (
    <div className="stats">
      {data.instant.map((item) => {
        const background = thresholdColor(panel, item.value);
        return (
          <div className="stat" key={item.name} style={background ? { background, color: '#fff' } : undefined}>
            <span className="stat-value">{formatValue(item.value, unit, decimals)}</span>
            {data.instant.length > 1 && <span className="stat-name">{item.name}</span>}
          </div>
        );
      })}
    </div>
  );
}

function GaugeView({ panel, data, unit, decimals }: ViewProps) {
  const min = panel.fieldConfig?.defaults?.min ?? 0;
  const max = panel.fieldConfig?.defaults?.max ?? (unit === 'percentunit' ? 1 : 100);
  const steps = thresholdSteps(panel);
  const option = useMemo<EChartsCoreOption>(() => {
    const bands: [number, string][] = [];
    steps.forEach((step, index) => {
      const next = steps[index + 1]?.value;
      const upper = next === undefined || next === null ? 1 : Math.min(1, Math.max(0, (next - min) / (max - min)));
      bands.push([upper, color(step.color)]);
    });
    const count = Math.max(1, data.instant.length);
    return {
      series: data.instant.map((item, index) => ({
        type: 'gauge',
        min,
        max,
        center: [`${((index + 0.5) / count) * 100}%`, '60%'],
        radius: `${Math.min(90, 160 / count)}%`,
        startAngle: 200,
        endAngle: -20,
        axisLine: { lineStyle: { width: 12, color: bands.length ? bands : [[1, '#3274d9']] } },
        pointer: { width: 4 },
        axisTick: { show: false },
        splitLine: { show: false },
        axisLabel: { show: false },
        title: { show: count > 1, offsetCenter: [0, '75%'], fontSize: 11 },
        detail: { valueAnimation: false, fontSize: 20, offsetCenter: [0, '35%'], formatter: (v: number) => formatValue(v, unit, decimals) },
        data: [{ value: item.value, name: item.name }],
      })),
    };
  }, [data, min, max, steps, unit, decimals]);
  if (!data.instant.length) return <p className="stat-value muted">No data</p>;
  const summary = data.instant.map((i) => `${i.name}: ${formatValue(i.value, unit, decimals)}`).join('; ');
  return <Chart option={option} summary={`Gauge. ${summary}`} height="100%" />;
}

function TableView({ data, unit, decimals }: Omit<ViewProps, 'panel'>) {
  const columns = Array.from(new Set(data.instant.flatMap((i) => Object.keys(i.labels)))).sort();
  if (!data.instant.length) return <p className="muted">No data</p>;
  return (
    <div className="table-wrap">
      <table>
        <thead>
          <tr>
            {columns.map((c) => (
              <th key={c} scope="col">
                {c}
              </th>
            ))}
            <th scope="col" className="num">
              Value
            </th>
          </tr>
        </thead>
        <tbody>
          {data.instant.map((item, index) => (
            <tr key={index}>
              {columns.map((c) => (
                <td key={c}>{item.labels[c] ?? ''}</td>
              ))}
              <td className="num">{formatValue(item.value, unit, decimals)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

function legendShown(panel: Panel): boolean {
  if (panel.legend?.show === false) return false;
  const legend = panel.options?.legend;
  if (!legend) return true;
  return legend.showLegend !== false && legend.displayMode !== 'hidden';
}

function TimeSeriesView({ panel, data, unit, decimals, range }: ViewProps & { range?: [number, number] }) {
  const bars = panel.type === 'barchart' || panel.type === 'bar' || panel.fieldConfig?.defaults?.custom?.drawStyle === 'bars';
  const stacked = (panel.fieldConfig?.defaults?.custom?.stacking as { mode?: string } | undefined)?.mode === 'normal';
  const thresholdsMode = (panel.fieldConfig?.defaults?.custom?.thresholdsStyle as { mode?: string } | undefined)?.mode;
  const showLegend = legendShown(panel);
  const right = panel.options?.legend?.placement === 'right';
  const option = useMemo<EChartsCoreOption>(() => {
    const markLines =
      thresholdsMode && thresholdsMode !== 'off'
        ? thresholdSteps(panel)
            .filter((s) => s.value !== null)
            .map((s) => ({ yAxis: s.value, lineStyle: { color: color(s.color), type: 'dashed' }, label: { show: false } }))
        : [];
    return {
      grid: { left: 8, right: right && showLegend ? 180 : 16, top: 12, bottom: showLegend && !right ? 48 : 24, containLabel: true },
      tooltip: {
        trigger: 'axis',
        valueFormatter: (v: number) => formatValue(v, unit, decimals),
        confine: true,
      },
      legend: showLegend
        ? right
          ? { type: 'scroll', orient: 'vertical', right: 0, top: 0, bottom: 0, textStyle: { width: 160, overflow: 'truncate' } }
          : { type: 'scroll', bottom: 0, left: 0 }
        : { show: false },
      // The whole chosen range, as Grafana does, so sparse data (hourly buckets) sits in place.
      xAxis: { type: 'time', min: range ? Math.min(range[0], ...data.series.map((s) => s.points[0]?.[0] ?? Infinity)) : undefined, max: range?.[1], axisLabel: { hideOverlap: true } },
      yAxis: {
        type: 'value',
        min: panel.fieldConfig?.defaults?.min,
        max: panel.fieldConfig?.defaults?.max,
        axisLabel: { formatter: (v: number) => formatValue(v, unit, decimals) },
      },
      series: data.series.map((s, index) => ({
        name: s.name,
        type: bars ? 'bar' : 'line',
        showSymbol: s.points.length < 3,
        stack: stacked ? 'total' : undefined,
        data: s.points,
        lineStyle: { width: 1.5 },
        markLine: index === 0 && markLines.length ? { silent: true, symbol: 'none', data: markLines } : undefined,
      })),
    };
  }, [data, bars, stacked, thresholdsMode, showLegend, right, unit, decimals, panel, range?.[0], range?.[1]]); // eslint-disable-line react-hooks/exhaustive-deps
  if (!data.series.length) return <p className="muted">No data</p>;
  const last = data.series
    .slice(0, 5)
    .map((s) => `${s.name}: ${formatValue(s.points[s.points.length - 1]?.[1], unit, decimals)}`)
    .join('; ');
  const first = data.series[0].points[0]?.[0];
  const summary = `${bars ? 'Bar' : 'Line'} chart of ${data.series.length} series${first ? ` from ${formatTime(first / 1000)}` : ''}. Latest: ${last}`;
  return <Chart option={option} summary={summary} height="100%" />;
}

function RowsView({ table }: { table: { columns: string[]; rows: unknown[][] } }) {
  if (!table.rows.length) return <p className="muted">No data</p>;
  return (
    <div className="table-wrap">
      <table>
        <thead>
          <tr>
            {table.columns.map((c) => (
              <th key={c} scope="col">
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>
          {table.rows.map((row, index) => (
            <tr key={index}>
              {row.map((cell, i) => (
                <td key={i} className={typeof cell === 'number' ? 'num' : undefined}>
                  {cell === null ? '' : String(cell)}
                </td>
              ))}
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

/** Histogram buckets (cumulative ``le`` series) as counts per bucket and time. */
export function bucketMatrix(series: PanelData['series']): { times: number[]; buckets: string[]; cells: [number, number, number][]; max: number } {
  const withLe = series.filter((s) => s.labels.le !== undefined);
  const byLe = new Map<string, Map<number, number>>();
  for (const s of withLe) {
    const values = byLe.get(s.labels.le) ?? new Map<number, number>();
    for (const [t, v] of s.points) if (Number.isFinite(v)) values.set(t, (values.get(t) ?? 0) + v);
    byLe.set(s.labels.le, values);
  }
  const bound = (le: string) => (/^\+?inf$/i.test(le) ? Infinity : Number(le));
  const les = [...byLe.keys()].sort((a, b) => bound(a) - bound(b));
  const times = [...new Set(withLe.flatMap((s) => s.points.map((p) => p[0])))].sort((a, b) => a - b);
  const cells: [number, number, number][] = [];
  let max = 0;
  times.forEach((t, x) => {
    let below = 0;
    les.forEach((le, y) => {
      const cumulative = byLe.get(le)?.get(t) ?? below;
      const count = Math.max(0, cumulative - below); // buckets count everything up to their le
      below = Math.max(below, cumulative);
      max = Math.max(max, count);
      cells.push([x, y, count]);
    });
  });
  return { times, buckets: les.map((le) => (le === '+Inf' ? '+Inf' : `≤ ${le}`)), cells, max };
}

function HeatmapView({ data, unit, decimals }: ViewProps) {
  const matrix = useMemo(() => bucketMatrix(data.series), [data]);
  const option = useMemo<EChartsCoreOption>(
    () => ({
      grid: { left: 8, right: 16, top: 12, bottom: 56, containLabel: true },
      tooltip: { confine: true, formatter: (p: { value: [number, number, number] }) => `${formatTime(matrix.times[p.value[0]] / 1000)}<br>${matrix.buckets[p.value[1]]}: ${formatValue(p.value[2], unit, decimals)}` },
      xAxis: { type: 'category', data: matrix.times.map((t) => formatTime(t / 1000).slice(-8)), axisLabel: { hideOverlap: true }, splitArea: { show: false } },
      yAxis: { type: 'category', data: matrix.buckets },
      visualMap: { min: 0, max: matrix.max || 1, calculable: false, orient: 'horizontal', left: 'center', bottom: 0, itemHeight: 120, inRange: { color: ['#f7fbff', '#6baed6', '#08306b'] } },
      series: [{ type: 'heatmap', data: matrix.cells, progressive: 0 }],
    }),
    [matrix, unit, decimals],
  );
  if (!matrix.buckets.length) return <p className="muted">No histogram buckets (series with an “le” label) in the result.</p>;
  return <Chart option={option} summary={`Heatmap of ${matrix.buckets.length} buckets over ${matrix.times.length} times; busiest cell ${formatValue(matrix.max, unit, decimals)}`} height="100%" />;
}

function PieView({ panel, data, unit, decimals }: ViewProps) {
  const donut = (panel.options as { pieType?: string } | undefined)?.pieType === 'donut';
  const slices = data.instant.filter((i) => Number.isFinite(i.value) && i.value > 0);
  const option = useMemo<EChartsCoreOption>(
    () => ({
      tooltip: { trigger: 'item', confine: true, valueFormatter: (v: number) => formatValue(v, unit, decimals) },
      legend: legendShown(panel) ? { type: 'scroll', orient: 'vertical', right: 0, top: 'middle' } : { show: false },
      series: [
        {
          type: 'pie',
          radius: donut ? ['40%', '70%'] : '70%',
          center: legendShown(panel) ? ['38%', '50%'] : ['50%', '50%'],
          label: { formatter: '{d}%' },
          minShowLabelAngle: 6, // no labels on slivers: they would pile up
          labelLayout: { hideOverlap: true },
          data: slices.map((i) => ({ name: i.name, value: i.value })),
        },
      ],
    }),
    [slices, donut, unit, decimals, panel],
  );
  if (!slices.length) return <p className="muted">No data</p>;
  const total = slices.reduce((sum, i) => sum + i.value, 0);
  const summary = `Pie chart: ${slices
    .slice(0, 8)
    .map((i) => `${i.name} ${((i.value / total) * 100).toFixed(0)}%`)
    .join(', ')}`;
  return <Chart option={option} summary={summary} height="100%" />;
}

/** Links from a table: columns source, target, value (SQL) or series labels source/target. */
export function sankeyLinks(data: PanelData): { source: string; target: string; value: number }[] {
  const links: { source: string; target: string; value: number }[] = [];
  if (data.table) {
    const cols = data.table.columns.map((c) => c.toLowerCase());
    const si = cols.indexOf('source') >= 0 ? cols.indexOf('source') : 0;
    const ti = cols.indexOf('target') >= 0 ? cols.indexOf('target') : 1;
    const vi = cols.indexOf('value') >= 0 ? cols.indexOf('value') : cols.length - 1;
    for (const row of data.table.rows) links.push({ source: String(row[si]), target: String(row[ti]), value: Number(row[vi]) });
  } else {
    for (const item of data.instant) {
      const names = Object.keys(item.labels).filter((k) => k !== '__name__');
      const source = item.labels.source ?? item.labels[names[0]];
      const target = item.labels.target ?? item.labels[names[1]];
      if (source !== undefined && target !== undefined) links.push({ source, target, value: item.value });
    }
  }
  // A sankey cannot draw a node linked to itself or a negative flow.
  return links.filter((l) => l.source !== l.target && Number.isFinite(l.value) && l.value > 0);
}

function SankeyView({ data, unit, decimals }: ViewProps) {
  const links = useMemo(() => sankeyLinks(data), [data]);
  const option = useMemo<EChartsCoreOption>(() => {
    const nodes = [...new Set(links.flatMap((l) => [l.source, l.target]))].map((name) => ({ name }));
    return {
      tooltip: { trigger: 'item', confine: true, valueFormatter: (v: number) => formatValue(v, unit, decimals) },
      series: [{ type: 'sankey', left: 8, right: 96, top: 8, bottom: 8, emphasis: { focus: 'adjacency' }, nodeAlign: 'left', data: nodes, links, lineStyle: { color: 'gradient', curveness: 0.5 } }],
    };
  }, [links, unit, decimals]);
  if (!links.length) return <p className="muted">No flows: the query needs source, target and value columns.</p>;
  const summary = `Sankey diagram: ${links
    .slice(0, 8)
    .map((l) => `${l.source} to ${l.target} ${formatValue(l.value, unit, decimals)}`)
    .join(', ')}`;
  return <Chart option={option} summary={summary} height="100%" />;
}
