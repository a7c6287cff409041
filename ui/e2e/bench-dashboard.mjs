// How fast a dashboard draws once its data is there, in headless Chromium (bench/bench_ui.py
// runs this against a server it filled with data). For each run, a fresh browser context opens
// /d/<uid> and waits until every panel says data-state="rendered"; the app's performance marks
// give, per panel, when its data arrived ("sr:panel-data") and when it was drawn
// ("sr:panel-rendered"), and resource timing gives when the last query answer came in.
// The floor: bare ECharts (no React, no app) drawing the same answers into as many charts.
// Prints one JSON object.
import { chromium } from 'playwright-core';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : fallback;
};
const BASE_URL = arg('base-url', 'http://127.0.0.1:8290');
const UID = arg('uid', 'bench-20');
const RUNS = Number(arg('runs', '5'));
const ECHARTS = path.resolve(here, '../node_modules/echarts/dist/echarts.min.js');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  headless: true,
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-sync'],
});

async function appRun() {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, baseURL: BASE_URL });
  const page = await context.newPage();
  const errors = [];
  page.on('console', (m) => m.type() === 'error' && errors.push(m.text()));
  const answers = [];
  page.on('response', async (response) => {
    if (response.url().includes('/api/v1/query_range')) answers.push(await response.json().catch(() => null));
  });
  await page.goto(`/d/${UID}`);
  await page.waitForFunction(
    () => {
      const panels = [...document.querySelectorAll('[data-panel-type]')];
      return panels.length > 0 && panels.every((p) => p.dataset.state === 'rendered');
    },
    undefined,
    { timeout: 120_000 },
  );
  const timing = await page.evaluate(() => {
    const marks = (name) => performance.getEntriesByName(name, 'mark').map((m) => ({ at: m.startTime, panel: m.detail }));
    const data = marks('sr:panel-data');
    const rendered = marks('sr:panel-rendered');
    const queries = performance.getEntriesByType('resource').filter((r) => r.name.includes('/api/v1/query_range'));
    const perPanel = rendered.map((r) => r.at - (data.find((d) => d.panel === r.panel)?.at ?? r.at));
    return {
      panels: document.querySelectorAll('[data-panel-type]').length,
      series: [...document.querySelectorAll('[data-panel-type] [role="img"]')].map((el) => Number(/of (\d+) series/.exec(el.getAttribute('aria-label'))?.[1] ?? 0)),
      queries: queries.length,
      lastAnswerMs: Math.max(...queries.map((q) => q.responseEnd)),
      lastDataMs: Math.max(...data.map((d) => d.at)),
      lastRenderedMs: Math.max(...rendered.map((r) => r.at)),
      slowestPanelMs: Math.max(...perPanel),
    };
  });
  await context.close();
  return {
    ...timing,
    errors,
    answers: answers.filter(Boolean),
    // the claim: all panels drawn within 1 s of their data arriving
    renderAfterAnswersMs: timing.lastRenderedMs - timing.lastAnswerMs,
    renderAfterDataMs: timing.lastRenderedMs - timing.lastDataMs,
  };
}

/** Bare ECharts drawing the same query answers into as many 600x240 charts: the floor. */
async function floorRun(answers) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  await page.setContent('<!doctype html><html><body></body></html>');
  await page.addScriptTag({ path: ECHARTS });
  const ms = await page.evaluate(async (all) => {
    const start = performance.now();
    const done = all.map((answer) => {
      const div = document.createElement('div');
      div.style.cssText = 'width:600px;height:240px';
      document.body.appendChild(div);
      const chart = window.echarts.init(div, undefined, { renderer: 'canvas' });
      const finished = new Promise((resolve) => chart.on('finished', resolve));
      chart.setOption({
        animation: false,
        tooltip: { trigger: 'axis' },
        legend: { type: 'scroll', bottom: 0 },
        xAxis: { type: 'time' },
        yAxis: { type: 'value' },
        series: answer.data.result.map((s) => ({ name: JSON.stringify(s.metric), type: 'line', showSymbol: false, data: s.values.map(([t, v]) => [t * 1000, Number(v)]) })),
      });
      return finished;
    });
    await Promise.all(done);
    return performance.now() - start;
  }, answers);
  await context.close();
  return ms;
}

const runs = [];
for (let i = 0; i < RUNS; i++) runs.push(await appRun());
const floor = [];
for (let i = 0; i < RUNS; i++) floor.push(await floorRun(runs[0].answers));
await browser.close();
console.log(JSON.stringify({ runs: runs.map(({ answers, ...rest }) => rest), floorMs: floor }));
