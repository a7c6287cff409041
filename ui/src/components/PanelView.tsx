// One dashboard panel: stat, gauge, timeseries (and the old graph), bar chart, table, text.
import { useEffect, useMemo, useState } from 'react';
import type { EChartsCoreOption } from 'echarts/core';
import { promQuery, promRange, type InstantSample, type RangeSeries } from '../api';
import { color, legendName, thresholdColor, thresholdSteps, type Panel, type Target } from '../dashboard';
import { formatTime, formatValue, stepFor } from '../time';
import { Chart } from './Chart';
import { ErrorMessage, Link } from './common';

const SUPPORTED = new Set(['timeseries', 'graph', 'barchart', 'bar', 'stat', 'singlestat', 'gauge', 'table', 'text']);

export interface PanelData {
  series: { name: string; labels: Record<string, string>; points: [number, number][] }[];
  instant: { name: string; labels: Record<string, string>; value: number }[];
}

function isInstantPanel(type: string) {
  return type === 'stat' || type === 'singlestat' || type === 'gauge' || type === 'table';
}

async function loadPanel(targets: Target[], type: string, start: number, end: number, signal: AbortSignal): Promise<PanelData> {
  const data: PanelData = { series: [], instant: [] };
  const step = stepFor(start, end);
  await Promise.all(
    targets.map(async (target) => {
      if (!target.expr || target.hide) return;
      if (isInstantPanel(type)) {
        const result = await promQuery(target.expr, end, signal);
        const samples: InstantSample[] =
          result.resultType === 'vector'
            ? result.result
            : result.resultType === 'scalar'
              ? [{ metric: {}, value: result.result }]
              : result.resultType === 'matrix'
                ? result.result.map((s) => ({ metric: s.metric, value: s.values[s.values.length - 1] }))
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

export function PanelView({
  panel,
  targets,
  start,
  end,
  tick,
}: {
  panel: Panel;
  targets: Target[];
  start: number;
  end: number;
  tick: number;
}) {
  const [data, setData] = useState<PanelData | null>(null);
  const [error, setError] = useState<unknown>(null);
  const titleId = `panel-title-${panel.id ?? Math.abs(hash(panel.title ?? ''))}`;
  const key = JSON.stringify(targets);

  useEffect(() => {
    if (!SUPPORTED.has(panel.type) || panel.type === 'text') return;
    const controller = new AbortController();
    loadPanel(targets, panel.type, start, end, controller.signal)
      .then((d) => {
        setData(d);
        setError(null);
      })
      .catch((e) => {
        if (!controller.signal.aborted) setError(e);
      });
    return () => controller.abort();
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [key, panel.type, start, end, tick]);

  const firstExpr = targets.find((t) => t.expr)?.expr;
  return (
    <article className="panel" aria-labelledby={titleId} data-panel-type={panel.type}>
      <header className="panel-head">
        <h3 id={titleId} title={panel.description}>
          {panel.title || 'Untitled panel'}
        </h3>
        {firstExpr && (
          <Link className="panel-link" href={`/explore?tab=metrics&expr=${encodeURIComponent(firstExpr)}`} aria-label={`Explore the query of ${panel.title || 'this panel'}`}>
            Explore
          </Link>
        )}
      </header>
      <div className="panel-body">
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
          <PanelContent panel={panel} data={data} />
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

function PanelContent({ panel, data }: { panel: Panel; data: PanelData }) {
  const unit = panel.fieldConfig?.defaults?.unit ?? 'short';
  const decimals = panel.fieldConfig?.defaults?.decimals;
  switch (panel.type) {
    case 'stat':
    case 'singlestat':
      return <StatView panel={panel} data={data} unit={unit} decimals={decimals} />;
    case 'gauge':
      return <GaugeView panel={panel} data={data} unit={unit} decimals={decimals} />;
    case 'table':
      return <TableView data={data} unit={unit} decimals={decimals} />;
    default:
      return <TimeSeriesView panel={panel} data={data} unit={unit} decimals={decimals} />;
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

function TimeSeriesView({ panel, data, unit, decimals }: ViewProps) {
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
      xAxis: { type: 'time', axisLabel: { hideOverlap: true } },
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
  }, [data, bars, stacked, thresholdsMode, showLegend, right, unit, decimals, panel]);
  if (!data.series.length) return <p className="muted">No data</p>;
  const last = data.series
    .slice(0, 5)
    .map((s) => `${s.name}: ${formatValue(s.points[s.points.length - 1]?.[1], unit, decimals)}`)
    .join('; ');
  const first = data.series[0].points[0]?.[0];
  const summary = `${bars ? 'Bar' : 'Line'} chart of ${data.series.length} series${first ? ` from ${formatTime(first / 1000)}` : ''}. Latest: ${last}`;
  return <Chart option={option} summary={summary} height="100%" />;
}
