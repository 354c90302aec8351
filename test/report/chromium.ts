/** Headless Chromium for the report tests (Debian's `chromium`; CHROMIUM overrides the path). */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';

export const CHROMIUM = process.env['CHROMIUM'] ?? '/usr/bin/chromium';

function run(extra: string[], file: string): string {
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) or set CHROMIUM`);
  const profile = mkdtempSync(join(tmpdir(), 'viommu-chromium-'));
  try {
    return execFileSync(CHROMIUM, [
      '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-dev-shm-usage', `--user-data-dir=${profile}`, ...extra, pathToFileURL(file).href,
    ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], maxBuffer: 64 << 20, timeout: 60000 });
  } finally {
    rmSync(profile, { recursive: true, force: true });
  }
}

/** The DOM after the page's scripts ran. */
export function dumpDom(file: string): string {
  return run(['--dump-dom'], file);
}

/** Takes a screenshot of the page into `png`. */
export function screenshot(file: string, png: string): void {
  run([`--screenshot=${png}`, '--window-size=1000,900'], file);
}
