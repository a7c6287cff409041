// What the browser test files share: the server URL and screenshot folder (from the command
// line or the environment), headless Debian Chromium, and the check that ends every page: a
// screenshot, then no console errors.
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const argIndex = process.argv.indexOf('--base-url');
export const BASE_URL =
  (argIndex > 0 ? process.argv[argIndex + 1] : process.env.BASE_URL) ?? 'http://127.0.0.1:8290';
export const SHOTS = process.env.SCREENSHOT_DIR ?? path.resolve(here, '../../test-artifacts/ui');
mkdirSync(SHOTS, { recursive: true });

export function launchBrowser() {
  return chromium.launch({
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
}

/** Screenshot the page as ``name``, fail on the console errors it recorded, close it. */
export async function done(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
  assert.deepEqual(page.problems, [], `console errors on ${name}`);
  await page.context().close();
}
