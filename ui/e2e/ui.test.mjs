// Browser tests of signalroom's web UI: headless Debian Chromium through playwright-core.
// Run: npm run e2e -- --base-url http://127.0.0.1:8290 (tests/e2e/test_ui.py starts a server
// with data and runs this). Every page is opened, checked for what a person sees, and
// screenshotted to $SCREENSHOT_DIR (default ../test-artifacts/ui).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';

import path from 'node:path';

import { BASE_URL, SHOTS, done, launchBrowser } from './harness.mjs';

const TRACE_ID = process.env.TRACE_ID ?? '5b8efff798038103d269b633813fc60c';
const TIMEOUT = 45_000; // 2-core CI machines under load answer slowly at first

let browser;
before(async () => {
  browser = await launchBrowser();
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
  page.queries = []; // the range queries the page sent, as URLs
  page.on('request', (request) => {
    if (request.url().includes('/api/v1/query_range')) page.queries.push(new URL(request.url()));
  });
  await page.goto(url);
  return page;
}

/** Panels reload when variables change: wait for the stat to settle on ``text``. */
async function statShows(page, text) {
  await page
    .waitForFunction((t) => document.querySelector('[data-panel-type="stat"] .stat-value')?.textContent === t, text)
    .catch(async () => assert.fail(`stat shows ${await page.locator('[data-panel-type="stat"]').textContent()}`));
}

// Generous: CI machines have 2 cores, and the first answers of a fresh server can be slow.
const visible = (locator) => locator.first().waitFor({ state: 'visible', timeout: 45_000 });

/** Wait until a form field holds ``expected`` (React applies key presses asynchronously). */
async function hasValue(locator, expected) {
  const field = await locator.elementHandle();
  await locator
    .page()
    .waitForFunction(({ el, value }) => el.value === value, { el: field, value: expected })
    .catch(async () => assert.fail(`the field holds ${JSON.stringify(await locator.inputValue())}, not ${JSON.stringify(expected)}`));
}

/** Every panel on the page has drawn its data (PanelView sets data-state="rendered"). */
async function allPanelsRendered(page) {
  await page.waitForFunction(() => {
    const panels = [...document.querySelectorAll('main [data-panel-type]')];
    return panels.length > 0 && panels.every((p) => p.dataset.state === 'rendered' || p.dataset.panelType === 'text');
  });
}

/** "2026-05-01 13:00" in local time, as a person types a date-time into the time picker. */
function localMinutes(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

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
    // the table lists the scraped target; every panel draws
    await visible(page.getByRole('cell', { name: 'signalroom' }));
    await allPanelsRendered(page);
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
    await hasValue(editor, 'scrape_duration_seconds');
    await editor.pressSequentially('{jo');
    await visible(page.getByRole('option', { name: /^job/ }));
    await editor.press('Enter');
    await hasValue(editor, 'scrape_duration_seconds{job');
    await editor.pressSequentially('="');
    await visible(page.getByRole('option', { name: /signalroom/ }));
    await editor.press('Enter');
    await hasValue(editor, 'scrape_duration_seconds{job="signalroom"');
    await editor.pressSequentially('}');
    await hasValue(editor, 'scrape_duration_seconds{job="signalroom"}');
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
    await visible(page.getByRole('tab', { name: 'Logs', selected: true }));
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
    await visible(spans.nth(2));
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
    await visible(page.getByRole('tab', { name: 'Logs', selected: true }));
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

describe('panel editor', () => {
  test('a person adds a panel, watches the preview, saves it and finds it after a reload', async () => {
    const page = await open('/dashboards');
    await page.getByRole('button', { name: 'New dashboard' }).click();
    await visible(page.getByRole('heading', { level: 1, name: 'New dashboard' }));
    const uid = new URL(page.url()).pathname.split('/').pop();
    await allPanelsRendered(page);

    // a stat panel over PromQL, with a unit and a threshold
    await page.getByRole('button', { name: 'Add panel' }).click();
    await page.waitForURL(/editPanel=new/);
    const editor = page.getByRole('region', { name: 'New panel' });
    await visible(editor);
    // the keyboard lands in the editor's first field
    assert.equal(await page.evaluate(() => document.activeElement?.labels?.[0]?.textContent), 'Title');
    await editor.getByLabel('Title', { exact: true }).fill('Targets per second');
    await editor.getByLabel('Visualization').selectOption('stat');
    const query = editor.getByRole('combobox', { name: 'PromQL Query A' });
    await query.fill('sum(up)');
    await query.press('Enter');
    await editor.getByLabel('Unit', { exact: true }).selectOption('reqps');
    await editor.getByRole('button', { name: 'Add threshold' }).click();
    await editor.getByLabel('Threshold 2 value').fill('1');
    const preview = editor.getByRole('region', { name: 'Preview' });
    await visible(preview.getByRole('heading', { level: 3, name: 'Targets per second' }));
    const stat = preview.locator('[data-panel-type="stat"] .stat');
    await page.waitForFunction(() => document.querySelector('[data-panel-type="stat"] .stat-value')?.textContent === '1 req/s');
    await page.waitForFunction(() => document.querySelector('[data-panel-type="stat"] .stat')?.getAttribute('style')?.includes('rgb(224, 47, 68)'));
    assert.match(await stat.getAttribute('style'), /background: rgb\(224, 47, 68\)/); // red from 1 on
    await page.screenshot({ path: path.join(SHOTS, 'panel-editor.png'), fullPage: true });
    await editor.getByRole('button', { name: 'Save panel' }).click();
    await visible(page.getByRole('status').filter({ hasText: 'Saved the panel “Targets per second”.' }));
    assert.doesNotMatch(page.url(), /editPanel/);

    await page.reload();
    const saved = page.getByRole('article', { name: 'Targets per second' });
    await visible(saved.getByText('1 req/s'));
    const stored = async () => page.evaluate(async (id) => (await (await fetch(`/api/sr/dashboards/${id}`)).json()).data.dashboard, uid);
    let panel = (await stored()).panels.find((p) => p.title === 'Targets per second');
    assert.equal(panel.type, 'stat');
    assert.equal(panel.targets[0].expr, 'sum(up)');
    assert.equal(panel.fieldConfig.defaults.unit, 'reqps');
    assert.deepEqual(panel.fieldConfig.defaults.thresholds.steps, [{ color: 'green', value: null }, { color: 'red', value: 1 }]);

    // an existing panel becomes a LogQL graph with its legend on the right
    await page.getByRole('button', { name: 'Edit panel Up by job' }).click();
    const edit = page.getByRole('region', { name: 'Edit panel: Up by job' });
    await visible(edit);
    await edit.getByLabel('Title', { exact: true }).fill('Shop log lines');
    await edit.getByLabel('Data source').selectOption('loki');
    const logql = edit.getByRole('combobox', { name: 'LogQL Query A' });
    await logql.fill('sum by (app) (count_over_time({app="shop"}[1m]))');
    await edit.getByLabel('Legend format').fill('{{app}}');
    await edit.getByLabel('Placement').selectOption('right');
    await edit.getByRole('button', { name: 'Run queries' }).click();
    await visible(edit.getByRole('region', { name: 'Preview' }).getByRole('img', { name: /Line chart of 1 series.*shop/ }));
    await edit.getByRole('button', { name: 'Save panel' }).click();
    await visible(page.getByRole('status').filter({ hasText: 'Saved the panel “Shop log lines”.' }));
    await page.reload();
    await visible(page.getByRole('article', { name: 'Shop log lines' }).getByRole('img', { name: /Line chart of 1 series.*shop/ }));
    assert.equal(await page.getByRole('heading', { level: 3, name: 'Up by job' }).count(), 0);
    panel = (await stored()).panels.find((p) => p.title === 'Shop log lines');
    assert.equal(panel.datasource.type, 'loki');
    assert.equal(panel.targets[0].legendFormat, '{{app}}');
    assert.equal(panel.options.legend.placement, 'right');
    await allPanelsRendered(page);

    // an event-analytics query previews as a table; cancel keeps the dashboard as it was
    await page.getByRole('button', { name: 'Add panel' }).click();
    const events = page.getByRole('region', { name: 'New panel' });
    await events.getByLabel('Visualization').selectOption('table');
    await events.getByLabel('Data source').selectOption('events');
    await visible(events.getByRole('region', { name: 'Preview' }).getByRole('cell', { name: 'viewed_product' }));
    await events.getByRole('button', { name: 'Cancel' }).click();
    await visible(page.getByRole('article', { name: 'Targets per second' }));
    assert.equal((await stored()).panels.length, 3);
    await done(page, 'panel-edited');
  });
});

describe('time range', () => {
  test('an absolute range from the URL or the picker drives the queries and stays in the URL', async () => {
    const to = Date.now() - 10 * 60_000;
    const from = to - 20 * 60_000;
    const page = await open(`/d/shop-overview?from=${from}&to=${to}`);
    await visible(page.getByRole('heading', { level: 3, name: 'Samples scraped' }));
    await allPanelsRendered(page);
    const sent = page.queries.find((u) => u.searchParams.get('query').startsWith('scrape_samples_scraped'));
    assert.equal(Number(sent.searchParams.get('start')), from / 1000);
    assert.equal(Number(sent.searchParams.get('end')), to / 1000);
    const picker = page.getByLabel('Time range');
    assert.equal(await picker.inputValue(), 'custom');
    assert.match(await picker.locator('option:checked').textContent(), /^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d to \d{4}-/);

    // relative ends typed into the picker
    await page.getByRole('button', { name: 'Absolute range' }).click();
    let form = page.getByRole('form', { name: 'Absolute time range' });
    assert.equal(await form.getByLabel('From').inputValue(), localMinutes(new Date(from)) + `:${String(new Date(from).getSeconds()).padStart(2, '0')}`);
    await form.getByLabel('From').fill('now-6h');
    await form.getByLabel('To').fill('now');
    await form.getByRole('button', { name: 'Apply time range' }).click();
    await page.waitForURL(/from=now-6h&to=now/);
    assert.equal(await picker.inputValue(), 'now-6h');

    // date-times as a person types them
    const start = new Date(Date.now() - 2 * 3600_000);
    start.setSeconds(0, 0);
    const end = new Date(start.getTime() + 3600_000);
    await page.getByRole('button', { name: 'Absolute range' }).click();
    form = page.getByRole('form', { name: 'Absolute time range' });
    await form.getByLabel('From').fill(localMinutes(start));
    await form.getByLabel('To').fill(localMinutes(end));
    await form.getByRole('button', { name: 'Apply time range' }).click();
    await page.waitForURL(new RegExp(`from=${start.getTime()}&to=${end.getTime()}`));

    // nonsense is refused with a message, and Escape closes the form
    await page.getByRole('button', { name: 'Absolute range' }).click();
    form = page.getByRole('form', { name: 'Absolute time range' });
    await form.getByLabel('From').fill('last tuesday');
    await form.getByRole('button', { name: 'Apply time range' }).click();
    await visible(form.getByRole('alert').filter({ hasText: 'Not a time: “last tuesday”' }));
    await form.getByLabel('From').press('Escape');
    assert.equal(await page.getByRole('form', { name: 'Absolute time range' }).count(), 0);
    assert.equal(await page.evaluate(() => document.activeElement?.textContent), 'Absolute range');

    // the URL keeps the range: a reload queries the same window
    page.queries.length = 0;
    await page.reload();
    await allPanelsRendered(page);
    const again = page.queries.find((u) => u.searchParams.get('query').startsWith('scrape_samples_scraped'));
    assert.equal(Number(again.searchParams.get('start')), start.getTime() / 1000);
    assert.equal(Number(again.searchParams.get('end')), end.getTime() / 1000);
    assert.equal(await page.getByLabel('Time range').inputValue(), 'custom');
    await done(page, 'dashboard-absolute-range');
  });

  test('explore takes from and to from the URL', async () => {
    // The server is younger than the window: the answer may be empty, the query's range is what counts.
    const page = await open('/explore?tab=metrics&expr=up&from=now-6h&to=now-1h');
    await page.waitForFunction(() => performance.getEntriesByType('resource').some((r) => r.name.includes('/api/v1/query_range')));
    await visible(page.getByText('Empty result.'));
    const sent = page.queries.find((u) => u.searchParams.get('query') === 'up');
    const now = Date.now() / 1000;
    assert.ok(Math.abs(Number(sent.searchParams.get('end')) - (now - 3600)) < 120, sent.href);
    assert.ok(Math.abs(Number(sent.searchParams.get('start')) - (now - 6 * 3600)) < 120, sent.href);
    assert.match(await page.getByLabel('Time range').locator('option:checked').textContent(), /now-6h to now-1h/);
    await page.context().close();
  });
});

describe('inbox', () => {
  test("the inbox receiver's notifications, newest first, with runbooks and escalation levels", async () => {
    const page = await open('/dashboards');
    await page.getByRole('link', { name: 'Inbox' }).click();
    await visible(page.getByRole('heading', { level: 1, name: 'Inbox' }));
    assert.equal(await page.getByRole('link', { name: 'Inbox' }).getAttribute('aria-current'), 'page');
    const list = page.getByRole('list', { name: 'Notifications, newest first' });
    await visible(list);
    const headings = await list.getByRole('heading', { level: 2 }).allTextContents();
    const resolvedAt = headings.indexOf('resolved alertname=PaymentFailuresHigh');
    const firingAt = headings.indexOf('firing alertname=PaymentFailuresHigh');
    assert.ok(resolvedAt >= 0 && firingAt > resolvedAt, `newest first: ${headings.join(' | ')}`);

    const resolved = page.getByRole('article', { name: 'resolved alertname=PaymentFailuresHigh' });
    await visible(resolved.getByText('12% of payments fail'));
    assert.equal(await resolved.getByRole('link', { name: 'Runbook for PaymentFailuresHigh' }).getAttribute('href'), 'https://runbooks.example.com/payment-failures');
    assert.deepEqual(await resolved.locator('dd').allTextContents(), ['inbox', 'alertname=PaymentFailuresHigh', 'not escalated']);
    await visible(resolved.getByText('team=payments'));

    const escalated = page.getByRole('article', { name: 'firing alertname=CheckoutErrorsHigh' }).filter({ hasText: 'Level 1' });
    await visible(escalated.getByText('policy shop'));
    await visible(escalated.getByText('7 errors per second'));
    assert.match(await escalated.getByRole('link', { name: 'Runbook for CheckoutErrorsHigh' }).getAttribute('href'), /\/runbooks\/checkout-errors$/);

    await page.getByLabel('Show').selectOption('resolved');
    await page.waitForURL(/status=resolved/);
    await visible(page.getByRole('status').filter({ hasText: 'resolved' }));
    const shown = list.getByRole('article');
    assert.ok((await shown.count()) >= 1);
    assert.equal(await shown.count(), await list.getByRole('article', { name: /^resolved / }).count());
    await done(page, 'inbox');
  });
});

describe('phone width', () => {
  test('pages fit 390 px without sideways scrolling', async () => {
    for (const [url, name, heading] of [
      ['/dashboards', 'phone-dashboards', 'Dashboards'],
      ['/d/shop-overview', 'phone-dashboard', 'Shop overview'],
      ['/d/shop-overview?editPanel=3', 'phone-panel-editor', 'Shop overview'],
      ['/explore?tab=metrics&expr=up', 'phone-explore', 'Explore'],
      [`/explore?tab=traces&trace=${TRACE_ID}`, 'phone-trace', 'Explore'],
      ['/analytics?tab=retention', 'phone-analytics', 'Analytics'],
      ['/alerting', 'phone-alerting', 'Alerting'],
      ['/inbox', 'phone-inbox', 'Inbox'],
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
