/**
 * The import rule the tree is laid out by (DEVELOPERS.md, style-anchors.md
 * §2): core imports nothing above it; memory imports core; a model imports
 * core and memory and never another model; listeners know only core. The
 * layers above (trace, conformance, report, cli) may import anything below.
 */
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve } from 'node:path';

const SRC = resolve(__dirname, '../src');

function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const p = join(dir, name);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith('.ts') ? [p] : [];
  });
}

/** Top-level area of a file under src/ (`core`, `memory`, `models/intel-vtd`, ...). */
function area(file: string): string {
  const parts = relative(SRC, file).split('/');
  if (parts.length === 1) return '.';
  return parts[0] === 'models' ? `models/${parts[1]}` : parts[0]!;
}

/** Which areas each area may import (besides itself, node: builtins and npm packages). */
function allowed(from: string, to: string): boolean {
  if (from === to) return true;
  if (from === 'core') return false;
  if (from === 'memory') return to === 'core';
  if (from.startsWith('models/')) return to === 'core' || to === 'memory';
  if (from === 'listeners') return to === 'core';
  return true; // trace, conformance, report, cli, the root index
}

describe('architecture: the import rule', () => {
  const files = sources(SRC);

  test('the tree has the layers (core, memory, a model, listeners, trace, cli)', () => {
    const areas = new Set(files.map(area));
    for (const a of ['core', 'memory', 'models/intel-vtd', 'listeners', 'trace', 'conformance', 'cli']) expect(areas).toContain(a);
  });

  test('no file imports a layer above its own, and no model imports another', () => {
    const bad: string[] = [];
    for (const file of files) {
      const text = readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:from|import\(|import)\s*'(\.[^']*)'/g)) {
        const target = resolve(dirname(file), m[1]!);
        const to = area(existsSync(target + '.ts') ? target + '.ts' : join(target, 'index.ts'));
        const from = area(file);
        if (!allowed(from, to)) bad.push(`${relative(SRC, file)} imports ${m[1]} (${from} -> ${to})`);
      }
    }
    expect(bad).toEqual([]);
  });
});
