// Browser tests of signalroom's web UI: headless Debian Chromium through playwright-core.
// Run: npm run e2e -- --base-url http://127.0.0.1:8290 (tests/e2e/test_ui.py starts a server
// with data and runs this). Every page is opened, checked for what a person sees, and
// screenshotted to $SCREENSHOT_DIR (default ../test-artifacts/ui).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const argIndex = process.argv.indexOf('--base-url');
const BASE_URL = (argIndex > 0 ? process.argv[argIndex + 1] : process.env.BASE_URL) ?? 'http://127.0.0.1:8290';
const SHOTS = process.env.SCREENSHOT_DIR ?? path.resolve(here, '../../test-artifacts/ui');
const TRACE_ID = process.env.TRACE_ID ?? '5b8efff798038103d269b633813fc60c';
const TIMEOUT = 15000;
mkdirSync(SHOTS, { recursive: true });

let browser;
before(async () => {
  browser = await chromium.launch({
    executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
});
after(async () => {
  await browser?.close();
});

/** A fresh page that records console errors and uncaught exceptions. */
async function open(url, viewport = { width: 1280, height: 900 }) {
  const context = await browser.newContext({ viewport, baseURL: BASE_URL, acceptDownloads: true });
  const page = await context.newPage();
  page.setDefaultTimeout(TIMEOUT);
  page.problems = [];
  page.on('console', (message) => {
    if (message.type() === 'error') page.problems.push(`console error: ${message.text()}`);
  });
  page.on('pageerror', (error) => page.problems.push(`page error: ${error.message}`));
  await page.goto(url);
  return page;
}

async function done(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  assert.deepEqual(page.problems, [], `console errors on ${name}`);
  await page.context().close();
}

/** Panels reload when variables change: wait for the stat to settle on ``text``. */
async function statShows(page, text) {
  await page
    .waitForFunction((t) => document.querySelector('[data-panel-type="stat"] .stat-value')?.textContent === t, text)
    .catch(async () => assert.fail(`stat shows ${await page.locator('[data-panel-type="stat"]').textContent()}`));
}

const visible = (locator) => locator.first().waitFor({ state: 'visible' });

describe('dashboards', () => {
  test('the list shows the stored dashboard and imports Grafana JSON', async () => {
    const page = await open('/');
    await visible(page.getByRole('heading', { level: 1, name: 'Dashboards' }));
    await visible(page.getByRole('link', { name: 'Shop overview' }));
    assert.equal(await page.getByRole('link', { name: 'Dashboards', exact: true }).getAttribute('aria-current'), 'page');
    const grafana = { title: 'Imported from Grafana', tags: ['grafana'], panels: [{ type: 'stat', title: 'Up', gridPos: { x: 0, y: 0, w: 6, h: 4 }, targets: [{ expr: 'sum(up)' }] }] };
    await page.getByLabel('Dashboard JSON').fill(JSON.stringify(grafana));
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await visible(page.getByText('Imported “Imported from Grafana”.'));
    await visible(page.getByRole('link', { name: 'Imported from Grafana' }));
    await page.getByLabel('Dashboard JSON').fill('{not json');
    await page.getByRole('button', { name: 'Import', exact: true }).click();
    await visible(page.getByRole('alert').filter({ hasText: 'not valid JSON' }));
    await done(page, 'dashboards');
  });

  test('a dashboard draws stat, gauge, timeseries, table and bar panels with variables and rows', async () => {
    const page = await open('/dashboards');
    await page.getByRole('link', { name: 'Shop overview' }).click();
    await visible(page.getByRole('heading', { level: 1, name: 'Shop overview' }));
    for (const title of ['Targets up', 'Scrape duration', 'Samples scraped', 'Up by instance', 'Series per job'])
      await visible(page.getByRole('heading', { level: 3, name: title }));
    // the stat shows the number of targets up, green by its threshold
    const stat = page.locator('[data-panel-type="stat"] .stat-value');
    await visible(stat);
    await statShows(page, '1');
    assert.equal(await page.locator('[data-panel-type="stat"] .stat').getAttribute('style'), 'background: rgb(86, 166, 75); color: rgb(255, 255, 255);');
    // the table lists the scraped target
    await visible(page.getByRole('cell', { name: 'signalroom' }));
    // charts are drawn and described for screen readers
    await visible(page.locator('[data-panel-type="timeseries"] canvas'));
    const summary = await page.locator('[data-panel-type="timeseries"] [role="img"]').getAttribute('aria-label');
    assert.match(summary, /Line chart of 1 series/);
    assert.match(await page.locator('[data-panel-type="barchart"] [role="img"]').getAttribute('aria-label'), /Bar chart/);
    // the template variable offers the job label's values
    const variable = page.getByLabel('job', { exact: true });
    assert.deepEqual(await variable.locator('option').allTextContents(), ['All', 'signalroom']);
    await variable.selectOption('signalroom');
    await page.waitForURL(/var-job=signalroom/);
    await statShows(page, '1');
    // time range and auto-refresh are in the URL
    await page.getByLabel('Time range').selectOption('now-5m');
    await page.waitForURL(/from=now-5m/);
    await page.getByLabel('Auto-refresh').selectOption('5s');
    await page.waitForURL(/refresh=5s/);
    // rows collapse and expand
    const row = page.getByRole('button', { name: 'Details' });
    await row.click();
    assert.equal(await row.getAttribute('aria-expanded'), 'false');
    assert.equal(await page.getByRole('heading', { level: 3, name: 'Up by instance' }).count(), 0);
    await row.click();
    await visible(page.getByRole('heading', { level: 3, name: 'Up by instance' }));
    // export downloads the Grafana JSON
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByRole('button', { name: 'Export JSON' }).click()]);
    assert.equal(download.suggestedFilename(), 'shop-overview.json');
    await page.waitForTimeout(500);
    await done(page, 'dashboard');
  });
});

describe('explore', () => {
  test('PromQL completion, table and graph, and the link from a series to its logs', async () => {
    const page = await open('/explore');
    await visible(page.getByRole('heading', { level: 1, name: 'Explore' }));
    assert.equal(await page.getByRole('tab', { name: 'Metrics' }).getAttribute('aria-selected'), 'true');
    const editor = page.getByRole('combobox', { name: 'PromQL query' });
    await editor.click();
    await editor.pressSequentially('scrape_dur');
    await visible(page.getByRole('option', { name: /scrape_duration_seconds/ }));
    await editor.press('Tab');
    assert.equal(await editor.inputValue(), 'scrape_duration_seconds');
    await editor.pressSequentially('{jo');
    await visible(page.getByRole('option', { name: /^job/ }));
    await editor.press('Enter');
    await editor.pressSequentially('="');
    await visible(page.getByRole('option', { name: /signalroom/ }));
    await editor.press('Enter');
    await editor.pressSequentially('}');
    assert.equal(await editor.inputValue(), 'scrape_duration_seconds{job="signalroom"}');
    await editor.press('Enter');
    await visible(page.locator('.chart canvas'));
    await page.getByRole('button', { name: 'Table' }).click();
    await visible(page.getByRole('cell', { name: /scrape_duration_seconds\{.*job="signalroom"/ }));
    await page.waitForURL(/expr=/);
    await done(page, 'explore-metrics');
  });

  test('log search shows lines, goes live, and links a trace id to its waterfall', async () => {
    const page = await open('/explore?tab=metrics&expr=up');
    await page.getByRole('button', { name: 'Table' }).click();
    await page.getByRole('link', { name: 'Logs' }).click();
    assert.equal(await page.getByRole('tab', { name: 'Logs' }).getAttribute('aria-selected'), 'true');
    await visible(page.getByText('payment failed'));
    await visible(page.getByText('order 3 placed'));
    await visible(page.getByRole('status').filter({ hasText: '6 lines' }));
    await page.getByLabel('Live (refresh every 2 s)').check();
    await visible(page.getByRole('status').filter({ hasText: '(live)' }));
    const editor = page.getByRole('combobox', { name: 'LogQL query' });
    await editor.fill('{app="shop"} |= "payment"');
    await page.getByRole('button', { name: 'Search logs' }).click();
    await visible(page.getByRole('status').filter({ hasText: '1 line' }));
    await page.getByLabel('Live (refresh every 2 s)').uncheck();
    await done(page, 'explore-logs');

    const trace = await open(`/explore?tab=logs&logql=${encodeURIComponent('{app="shop"} |= "payment"')}`);
    await trace.getByRole('link', { name: /Trace 5b8efff7/ }).click();
    await visible(trace.getByRole('tree', { name: 'Spans of the trace' }));
    const spans = trace.getByRole('treeitem');
    assert.equal(await spans.count(), 3);
    assert.deepEqual(
      (await spans.locator('strong').allTextContents()),
      ['frontend', 'orders', 'db'],
    );
    assert.equal(await spans.nth(2).getAttribute('aria-level'), '3');
    await spans.nth(1).click();
    await visible(trace.getByRole('heading', { name: /Span place/ }));
    await visible(trace.locator('#trace-logs ~ ol').getByText('payment failed'));
    await done(trace, 'trace');
  });

  test('trace search lists traces of a service', async () => {
    const page = await open('/explore?tab=traces');
    const service = page.getByLabel('Service');
    await service.locator('option', { hasText: 'frontend' }).waitFor({ state: 'attached' });
    await service.selectOption('frontend');
    await page.getByRole('button', { name: 'Find traces' }).click();
    await visible(page.getByRole('link', { name: TRACE_ID }));
    await visible(page.getByRole('cell', { name: 'frontend: GET /checkout' }));
    await done(page, 'explore-traces');
  });

  test('tabs work with the keyboard', async () => {
    const page = await open('/explore');
    await visible(page.getByRole('heading', { level: 1, name: 'Explore' }));
    await page.getByRole('link', { name: 'signalroom home' }).focus();
    await page.keyboard.press('Shift+Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Skip to content');
    await page.getByRole('tab', { name: 'Metrics' }).focus();
    await page.keyboard.press('ArrowRight');
    assert.equal(await page.getByRole('tab', { name: 'Logs' }).getAttribute('aria-selected'), 'true');
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Logs');
    await page.context().close();
  });
});

describe('alerting', () => {
  test('firing alerts grouped, silence from an alert, expire it', async () => {
    const page = await open('/alerting');
    await visible(page.getByRole('heading', { level: 1, name: 'Alerting' }));
    const group = page.getByRole('region', { name: 'Alert group alertname=CheckoutErrorsHigh' });
    await visible(group);
    await visible(group.getByText('7 errors per second'));
    await visible(group.getByText('firing'));
    await done(page, 'alerting-alerts');

    const rules = await open('/alerting?tab=rules');
    await visible(rules.getByRole('cell', { name: /job:up:sum/ }));
    const alertRow = rules.getByRole('row', { name: /CheckoutErrorsHigh/ });
    await visible(alertRow.getByText('firing'));
    await done(rules, 'alerting-rules');

    const silence = await open('/alerting');
    await silence.getByRole('button', { name: 'Silence CheckoutErrorsHigh' }).click();
    await visible(silence.getByRole('heading', { name: 'New silence' }));
    assert.equal(await silence.getByLabel('Label name 1').inputValue(), 'alertname');
    assert.equal(await silence.getByLabel('Value 1').inputValue(), 'CheckoutErrorsHigh');
    await silence.getByLabel('Created by').fill('e2e');
    await silence.getByLabel('Comment').fill('deploying the fix');
    await silence.getByRole('button', { name: 'Create silence' }).click();
    const list = silence.getByRole('list', { name: 'Silences' });
    await visible(list.getByText('deploying the fix'));
    await visible(list.getByText('active'));
    await silence.waitForTimeout(300);
    await done(silence, 'alerting-silences');

    const expire = await open('/alerting?tab=silences');
    await expire.getByRole('button', { name: 'Expire silence deploying the fix' }).click();
    await visible(expire.getByText('No silences.'));
    await expire.getByLabel('Show expired').check();
    await visible(expire.getByRole('list', { name: 'Silences' }).getByText('expired'));
    await expire.context().close();
  });
});

describe('phone width', () => {
  test('pages fit 390 px without sideways scrolling', async () => {
    for (const [url, name, heading] of [
      ['/d/shop-overview', 'phone-dashboard', 'Shop overview'],
      ['/explore?tab=metrics&expr=up', 'phone-explore', 'Explore'],
    ]) {
      const page = await open(url, { width: 390, height: 844 });
      await visible(page.getByRole('heading', { level: 1, name: heading }));
      await page.waitForTimeout(800);
      const width = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(width <= 390, `${name} is ${width}px wide`);
      await done(page, name);
    }
  });
});
