/**
 * `npm run bench`: runs every suite and prints a table; `npm run bench -- --json`
 * prints the figures as one JSON object keyed by figure key.
 */
import { judgeTarget, targetSummary } from './harness';
import type { BenchFigure, BenchSuite } from './harness';
import * as core from './core.bench';
import * as replay from './replay.bench';
import * as vtd from './vtd.bench';
import * as record from './record.bench';
import * as virtio from './virtio.bench';
import * as smmuv3 from './smmuv3.bench';
import * as amdvi from './amd-vi.bench';

// Each area registers its suite here.
const suites: Array<[string, { suite: BenchSuite }]> = [
  ['core', core],
  ['replay', replay],
  ['vtd', vtd],
  ['record', record],
  ['virtio', virtio],
  ['smmuv3', smmuv3],
  ['amd-vi', amdvi],
];

async function main(): Promise<void> {
  const json = process.argv.includes('--json');
  const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
  const figures: BenchFigure[] = [];
  for (const [name, { suite }] of suites) {
    if (only && !only.split(',').includes(name)) continue;
    if (!json) process.stderr.write(`running ${name}...\n`);
    figures.push(...(await suite()));
  }
  if (json) {
    const out: Record<string, number> = {};
    for (const f of figures) out[f.key] = f.value;
    process.stdout.write(JSON.stringify(out) + '\n');
    // The keys of the JSON object stay the figures'; the verdict goes to stderr.
    process.stderr.write(targetSummary(figures) + '\n');
    return;
  }
  // "met": yes, NO (below its target), or "-" for a target one run cannot check.
  const MET = { met: 'yes', missed: 'NO', unchecked: '-' } as const;
  const rows = figures.map((f) => [f.key, f.label, formatValue(f.value), f.unit, f.target ?? '', f.target === undefined ? '' : MET[judgeTarget(f.value, f.target)]]);
  const head = ['key', 'measured', 'value', 'unit', 'target', 'met'];
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 2 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join('  ').trimEnd();
  process.stdout.write(line(head) + '\n' + widths.map((w) => '-'.repeat(w)).join('  ') + '\n');
  for (const r of rows) process.stdout.write(line(r) + '\n');
  process.stdout.write('\n' + targetSummary(figures) + '\n');
}

function formatValue(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Math.abs(v) >= 1e6) return v.toExponential(3);
  if (Math.abs(v) >= 100) return v.toFixed(0);
  return v.toPrecision(3);
}

main().catch((e) => {
  process.stderr.write(`bench failed: ${e instanceof Error ? e.stack : String(e)}\n`);
  process.exitCode = 1;
});
