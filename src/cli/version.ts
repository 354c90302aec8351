/**
 * The package's version, read from package.json at run time so that it can
 * never disagree with what npm installed. This file sits at src/cli/ (under
 * ts-jest) or dist/cli/ (compiled): package.json is two levels up either way.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

let cached: string | undefined;

/** The `version` field of viommu's package.json. */
export function packageVersion(): string {
  if (cached === undefined) {
    const pkg = JSON.parse(readFileSync(join(__dirname, '..', '..', 'package.json'), 'utf8')) as { version?: unknown };
    if (typeof pkg.version !== 'string') throw new Error('package.json has no version');
    cached = pkg.version;
  }
  return cached;
}
