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
const TIMEOUT = 45_000; // 2-core CI machines under load answer slowly at first
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

// Generous: CI machines have 2 cores, and the first answers of a fresh server can be slow.
const visible = (locator) => locator.first().waitFor({ state: 'visible', timeout: 45_000 });

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

describe('analytics', () => {
  test('trends draw a line per breakdown value and total the events', async () => {
    const page = await open('/analytics');
    await visible(page.getByRole('heading', { level: 1, name: 'Analytics' }));
    assert.equal(await page.getByRole('link', { name: 'Analytics' }).getAttribute('aria-current'), 'page');
    assert.equal(await page.getByRole('tab', { name: 'Trends' }).getAttribute('aria-selected'), 'true');
    const event = page.getByLabel('Event', { exact: true });
    await event.locator('option', { hasText: 'viewed_product' }).waitFor({ state: 'attached' });
    await event.selectOption('viewed_product');
    await visible(page.getByRole('status').filter({ hasText: '18 in total' }));
    await page.getByLabel('Measure').selectOption('dau');
    await visible(page.getByRole('status').filter({ hasText: 'in total' }));
    await page.getByLabel('Measure').selectOption('total');
    await page.getByLabel('Breakdown by property').fill('plan');
    await visible(page.getByRole('cell', { name: 'pro', exact: true }));
    await visible(page.getByRole('cell', { name: 'free', exact: true }));
    const chart = page.getByRole('img', { name: /Line chart of viewed_product per day/ });
    await visible(chart);
    assert.match(await chart.getAttribute('aria-label'), /free 9/);
    await done(page, 'analytics-trends');
  });

  test('a funnel shows conversion and drop-off per step', async () => {
    const page = await open('/analytics?tab=funnels');
    await page.getByLabel('Step 1', { exact: true }).locator('option', { hasText: 'viewed_product' }).waitFor({ state: 'attached' });
    await page.getByLabel('Step 1', { exact: true }).selectOption('viewed_product');
    await page.getByLabel('Step 2', { exact: true }).selectOption('added_to_cart');
    await page.getByLabel('Step 3', { exact: true }).selectOption('purchased');
    await visible(page.getByRole('status').filter({ hasText: '33.3% converted' }));
    const cart = page.getByRole('row', { name: /2\. added_to_cart/ });
    assert.deepEqual(
      (await cart.getByRole('cell').allTextContents()).slice(0, 5),
      ['2. added_to_cart', '4', '66.7%', '66.7%', '2'],
    );
    await page.getByLabel('Step order').selectOption('strict');
    await visible(page.getByRole('status').filter({ hasText: 'converted' }));
    await page.getByRole('button', { name: 'Add step' }).click();
    await visible(page.getByLabel('Step 4', { exact: true }));
    await page.getByRole('button', { name: 'Remove step 4' }).click();
    await page.getByLabel('Step order').selectOption('ordered');
    await visible(page.getByRole('status').filter({ hasText: '33.3% converted' }));
    await visible(page.getByRole('img', { name: /Funnel: viewed_product 6 users/ }));
    await done(page, 'analytics-funnels');
  });

  test('retention is a cohort table with shaded cells', async () => {
    const page = await open('/analytics?tab=retention');
    await page.getByLabel('Periods').fill('4');
    const table = page.getByRole('table', { name: /Share of each cohort/ });
    await visible(table);
    const rows = table.getByRole('row');
    await page.waitForFunction(() => document.querySelectorAll('table.retention tbody tr').length >= 3);
    const first = rows.nth(1);
    assert.equal(await first.getByRole('cell').first().textContent(), '2');
    const cell = first.locator('td.cell').first();
    assert.equal(await cell.textContent(), '100.0%');
    assert.match(await cell.evaluate((el) => getComputedStyle(el).backgroundColor), /rgba\(47, 111, 176, 0\.93\)/);
    await done(page, 'analytics-retention');
  });

  test('active users show DAU, WAU and MAU; tabs work with the keyboard', async () => {
    const page = await open('/analytics?tab=trends');
    await visible(page.getByRole('status').filter({ hasText: 'in total' }));
    await page.getByRole('tab', { name: 'Trends' }).focus();
    await page.keyboard.press('ArrowLeft');
    assert.equal(await page.getByRole('tab', { name: 'Active users' }).getAttribute('aria-selected'), 'true');
    await visible(page.getByLabel('Counting'));
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement?.id), 'active-event');
    const kpis = page.locator('dl.kpis');
    await visible(kpis);
    assert.deepEqual(await kpis.locator('dd').allTextContents(), ['6', '6', '6']);
    await visible(page.getByRole('img', { name: /Active users per day/ }));
    await done(page, 'analytics-active-users');
  });
});

describe('more panels and pack dashboards', () => {
  test('heatmap, pie, sankey, LogQL and event panels draw', async () => {
    const page = await open('/d/panel-gallery');
    await visible(page.getByRole('heading', { level: 1, name: 'Panel gallery' }));
    const panel = (type) => page.locator(`[data-panel-type="${type}"]`);
    await visible(panel('heatmap').getByRole('img', { name: /Heatmap of \d+ buckets/ }));
    assert.match(await panel('heatmap').getByRole('img').getAttribute('aria-label'), /Heatmap of 1[56] buckets/);
    await visible(panel('piechart').getByRole('img', { name: /Pie chart: .*%/ }));
    const sankey = panel('sankey').getByRole('img', { name: /Sankey diagram/ });
    await visible(sankey);
    assert.match(await sankey.getAttribute('aria-label'), /viewed_product to added_to_cart 4/);
    assert.match(await sankey.getAttribute('aria-label'), /viewed_product to purchased 2/);
    await page.waitForFunction(() => document.querySelector('[data-panel-type="stat"] .stat-value')?.textContent === '6');
    const logs = page.getByRole('article', { name: 'Shop log lines (LogQL)' });
    await visible(logs.getByRole('img', { name: /Line chart of 1 series.*shop/ }));
    assert.match(await logs.getByRole('link', { name: /Explore the query/ }).getAttribute('href'), /tab=logs&logql=/);
    const trends = page.getByRole('article', { name: 'Product views per hour (events)' });
    await visible(trends.getByRole('img', { name: /Bar chart of 1 series/ }));
    await page.waitForTimeout(300);
    await done(page, 'panel-gallery');
  });

  test("an enabled pack's dashboard is listed read-only and imports as a copy", async () => {
    const page = await open('/dashboards');
    const row = page.getByRole('row', { name: /FreshFoodz Operations Excellence/ });
    await visible(row.getByText('pack freshfoodz · read-only'));
    assert.equal(await row.getByRole('button', { name: /Delete/ }).count(), 0);
    await row.getByRole('link', { name: 'FreshFoodz Operations Excellence' }).click();
    await visible(page.getByRole('heading', { level: 1, name: 'FreshFoodz Operations Excellence' }));
    await visible(page.getByText('comes with the freshfoodz pack and is read-only'));
    assert.equal(await page.getByRole('button', { name: 'Save', exact: true }).count(), 0);
    await visible(page.locator('[data-panel-type="timeseries"]'));
    await page.waitForTimeout(500);
    await page.screenshot({ path: path.join(SHOTS, 'pack-dashboard.png'), fullPage: true });
    await page.getByRole('button', { name: 'Import a copy' }).click();
    await visible(page.getByRole('heading', { level: 1, name: 'FreshFoodz Operations Excellence (copy)' }));
    await visible(page.getByRole('button', { name: 'Save', exact: true }));
    assert.doesNotMatch(page.url(), /freshfoodz-ops/);
    await done(page, 'pack-dashboard-copy');
  });
});

describe('phone width', () => {
  test('pages fit 390 px without sideways scrolling', async () => {
    for (const [url, name, heading] of [
      ['/d/shop-overview', 'phone-dashboard', 'Shop overview'],
      ['/explore?tab=metrics&expr=up', 'phone-explore', 'Explore'],
      ['/analytics?tab=retention', 'phone-analytics', 'Analytics'],
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
