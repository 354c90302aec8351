/**
 * Headless Chromium for the report tests, driven through puppeteer-core.
 *
 * The browser is the one `@sparticuz/chromium` ships inside its npm package (a
 * devDependency), so `npm install && npm test` needs no system browser; when
 * CHROMIUM is set, that executable (e.g. Debian's /usr/bin/chromium) is used
 * instead. The binary is driven over the DevTools protocol rather than with
 * `--dump-dom`, which hangs with this build.
 */
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import type Chromium from '@sparticuz/chromium' with { 'resolution-mode': 'import' };
import puppeteer, { type Browser } from 'puppeteer-core';

// @sparticuz/chromium is an ES module package with a CommonJS build whose
// module.exports is the class itself; this file is CommonJS, so require it
// (a static import of an ES module package is refused here) and accept
// either shape.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const loaded = require('@sparticuz/chromium') as typeof Chromium | { default: typeof Chromium };
const chromium: typeof Chromium = 'default' in loaded ? loaded.default : loaded;

let browser: Promise<Browser> | undefined;

function launch(): Promise<Browser> {
  const system = process.env['CHROMIUM'];
  if (system !== undefined && system !== '') {
    return puppeteer.launch({
      executablePath: system,
      headless: 'shell',
      args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--disable-background-networking'],
    });
  }
  return chromium.executablePath().then((executablePath) =>
    puppeteer.launch({ args: chromium.args, executablePath, headless: 'shell' }));
}

/** One browser for the whole test file; `closeChromium()` in afterAll. */
function shared(): Promise<Browser> {
  browser ??= launch();
  return browser;
}

export async function closeChromium(): Promise<void> {
  const b = browser;
  browser = undefined;
  if (b !== undefined) await (await b).close();
}

/** Opens `file` in a fresh page, waits for its scripts, hands the page to `use`. */
async function withPage<T>(file: string, width: number, height: number, use: (page: import('puppeteer-core').Page) => Promise<T>): Promise<T> {
  const page = await (await shared()).newPage();
  try {
    await page.setViewport({ width, height });
    // The report is self-contained: nothing but the file itself may be loaded.
    await page.setRequestInterception(true);
    const url = pathToFileURL(file).href;
    page.on('request', (req) => { if (req.url() === url) void req.continue(); else void req.abort(); });
    await page.goto(url, { waitUntil: 'load' });
    return await use(page);
  } finally {
    await page.close();
  }
}

/** The DOM after the page's scripts ran (as Chromium serialises it). */
export function dumpDom(file: string): Promise<string> {
  return withPage(file, 1000, 900, (page) => page.content());
}

/** Takes a screenshot of the page into `png` and returns its bytes. */
export async function screenshot(file: string, png: string): Promise<Buffer> {
  await withPage(file, 1000, 900, (page) => page.screenshot({ path: png as `${string}.png`, type: 'png' }));
  return readFileSync(png);
}
