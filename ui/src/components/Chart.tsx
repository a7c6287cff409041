// Apache ECharts in React: tree-shaken imports, resized with its container.
import { createContext, useContext, useEffect, useRef } from 'react';
import * as echarts from 'echarts/core';
import { BarChart, GaugeChart, HeatmapChart, LineChart, PieChart, SankeyChart } from 'echarts/charts';
import {
  DataZoomComponent,
  GridComponent,
  LegendComponent,
  MarkAreaComponent,
  MarkLineComponent,
  TooltipComponent,
  VisualMapComponent,
} from 'echarts/components';
import { CanvasRenderer } from 'echarts/renderers';
import type { EChartsCoreOption } from 'echarts/core';

echarts.use([
  LineChart,
  BarChart,
  GaugeChart,
  HeatmapChart,
  PieChart,
  SankeyChart,
  VisualMapComponent,
  GridComponent,
  TooltipComponent,
  LegendComponent,
  DataZoomComponent,
  MarkLineComponent,
  MarkAreaComponent,
  CanvasRenderer,
]);

/** Told when a chart has drawn its current option (ECharts' "finished" event). */
export const ChartDrawn = createContext<(() => void) | null>(null);

export const PALETTE = ['#3274d9', '#56a64b', '#e0752d', '#a352cc', '#e02f44', '#37872d', '#8ab8ff', '#f2cc0c', '#ff780a', '#1f60c4'];

/** A chart; ``summary`` is what a screen reader is told the chart shows. */
export function Chart({ option, summary, height = 240 }: { option: EChartsCoreOption; summary: string; height?: number | string }) {
  const ref = useRef<HTMLDivElement>(null);
  const chart = useRef<echarts.ECharts | null>(null);
  const drawn = useContext(ChartDrawn);
  const onDrawn = useRef(drawn);
  onDrawn.current = drawn;
  const waiting = useRef(false);

  useEffect(() => {
    if (!ref.current) return;
    const instance = echarts.init(ref.current, undefined, { renderer: 'canvas' });
    chart.current = instance;
    instance.on('finished', () => {
      if (!waiting.current) return;
      waiting.current = false;
      onDrawn.current?.();
    });
    const observer = new ResizeObserver(() => instance.resize());
    observer.observe(ref.current);
    return () => {
      observer.disconnect();
      instance.dispose();
      chart.current = null;
    };
  }, []);

  useEffect(() => {
    waiting.current = true;
    chart.current?.setOption({ color: PALETTE, animation: false, ...option }, { notMerge: true });
  }, [option]);

  return <div ref={ref} className="chart" role="img" aria-label={summary} style={{ height }} />;
}
