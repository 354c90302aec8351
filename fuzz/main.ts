/**
 * `npm run fuzz -- --model intel-vtd|virtio-iommu|smmuv3|amd-vi|all --ops N --seed S [--epoch-ops K] [--json]`:
 * the hostile-guest campaign of engine.ts, with heap sampling (heapUsed after
 * gc every 50k ops; node runs with --expose-gc). Prints a summary table and
 * each finding with its seed and op index, per model (`all`: each in turn,
 * `--ops` each); exit 0 clean, 1 findings, 2 usage.
 */
import { parseArgs } from 'node:util';
import { FUZZ_LIMITS, MODEL_EPOCHS, SLOW_ACTION_MS, runFuzz, workBound } from './engine';
import type { EpochKind, Finding } from './engine';
import { FUZZ_MODELS } from './host';
import type { FuzzModel } from './host';

const USAGE = 'usage: npm run fuzz -- --model intel-vtd|virtio-iommu|smmuv3|amd-vi|all --ops N --seed S [--epoch-ops K] [--epochs vtd-clean,vtd-hostile,list-repair,list-strict,virtio-clean,...] [--json]\n';
/** heapUsed after gc may grow this much over the run before it counts as growth (V8 settles its own structures early). */
const HEAP_SLACK_BYTES = 32 << 20;

function main(): number {
  let values;
  try {
    ({ values } = parseArgs({
      options: {
        model: { type: 'string', default: 'intel-vtd' }, ops: { type: 'string', default: '100000' },
        seed: { type: 'string', default: '1' }, 'epoch-ops': { type: 'string' }, epochs: { type: 'string' },
        json: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h', default: false },
      },
    }));
  } catch (e) {
    process.stderr.write(`fuzz: ${(e as Error).message}\n${USAGE}`);
    return 2;
  }
  if (values.help) { process.stdout.write(USAGE); return 0; }
  const models = values.model === 'all' ? FUZZ_MODELS : FUZZ_MODELS.filter((m) => m === values.model);
  if (models.length === 0) { process.stderr.write(`fuzz: unknown model ${values.model} (known: ${FUZZ_MODELS.join(', ')}, all)\n`); return 2; }
  const ops = Number(values.ops);
  const seed = Number(values.seed);
  const epochOps = values['epoch-ops'] === undefined ? undefined : Number(values['epoch-ops']);
  if (!Number.isSafeInteger(ops) || ops <= 0 || !Number.isSafeInteger(seed) || (epochOps !== undefined && !(epochOps > 0))) {
    process.stderr.write(`fuzz: --ops, --seed and --epoch-ops take positive integers\n${USAGE}`);
    return 2;
  }
  const epochs = values.epochs?.split(',') as EpochKind[] | undefined;
  const known = [...new Set(Object.values(MODEL_EPOCHS).flat())];
  if (epochs && !epochs.every((k) => known.includes(k))) {
    process.stderr.write(`fuzz: --epochs takes a comma-separated list of ${known.join(', ')}\n`);
    return 2;
  }
  let findings = 0;
  for (const model of models) {
    // --epochs picks among the model's own epochs (with --model all, each model runs those that are its own).
    const own = epochs?.filter((k) => MODEL_EPOCHS[model].includes(k));
    if (own && own.length === 0) continue;
    findings += runModel(model, seed, ops, epochOps, own, values.json);
  }
  return findings ? 1 : 0;
}

/** One model's campaign with heap sampling; prints its summary; returns its number of distinct findings. */
function runModel(model: FuzzModel, seed: number, ops: number, epochOps: number | undefined, epochs: EpochKind[] | undefined, json: boolean): number {
  const gc = (globalThis as { gc?: () => void }).gc;
  const heap: Array<{ ops: number; mb: number }> = [];
  const sample = (n: number) => {
    gc?.();
    heap.push({ ops: n, mb: process.memoryUsage().heapUsed / 2 ** 20 });
    if (!json && process.stderr.isTTY) process.stderr.write(`\r${model}: ${n} ops, heap ${heap[heap.length - 1]!.mb.toFixed(1)} MB `);
  };
  sample(0);
  const t0 = performance.now();
  const res = runFuzz({ seed, ops, model, ...(epochOps ? { epochOps } : {}), ...(epochs ? { epochs } : {}), onProgress: sample, progressEvery: 50_000 });
  const secs = (performance.now() - t0) / 1000;
  sample(ops);
  if (!json && process.stderr.isTTY) process.stderr.write('\n');
  // Growth: the last samples against the first after warm-up (the first epochs JIT and size V8's caches).
  const base = heap[Math.min(2, heap.length - 1)]!;
  const end = heap[heap.length - 1]!;
  if (gc && heap.length >= 4 && end.mb - base.mb > HEAP_SLACK_BYTES / 2 ** 20) {
    res.findings.push({ kind: 'heap', seed, op: end.ops, epoch: '-', message: `heapUsed after gc grew from ${base.mb.toFixed(1)} MB (op ${base.ops}) to ${end.mb.toFixed(1)} MB`, count: 1 });
  }
  const byKind = (k: Finding['kind']) => res.findings.filter((f) => f.kind === k).reduce((a, f) => a + f.count, 0);
  const summary = {
    model, seed, ops: res.ops, seconds: +secs.toFixed(1), opsPerSec: Math.round(res.ops / secs),
    exceptions: byKind('exception'), violations: byKind('violation'), coherence: byKind('coherence'), listenerErrors: byKind('listener'),
    overWorkBound: byKind('work'), heapGrowth: byKind('heap'),
    heapStartMB: +base.mb.toFixed(1), heapEndMB: +end.mb.toFixed(1), heapMeasured: gc !== undefined,
    maxAccessesPerMmioWrite: res.maxWork['mmio'], boundMmio: describeBound(model, 'mmio'),
    maxAccessesPerRegistration: res.maxWork['register'], boundRegistration: describeBound(model, 'register'),
    maxAccessesPerDma: res.maxWork['dma'], maxWorkPerRequest: res.maxWork['request'],
    maxActionMs: +res.maxActionMs.toFixed(1), slowActionMs: SLOW_ACTION_MS,
    limits: FUZZ_LIMITS, stats: res.stats,
  };
  if (json) {
    process.stdout.write(JSON.stringify({ ...summary, findings: res.findings }) + '\n');
  } else {
    const rows = Object.entries(summary).filter(([k]) => k !== 'stats' && k !== 'limits').map(([k, v]) => [k, String(v)] as const);
    const w = Math.max(...rows.map(([k]) => k.length));
    process.stdout.write(`fuzz ${model}: seed ${seed}, ${res.ops} ops\n`);
    for (const [k, v] of rows) process.stdout.write(`  ${k.padEnd(w)}  ${v}\n`);
    process.stdout.write(`  ${'limits'.padEnd(w)}  ${JSON.stringify(FUZZ_LIMITS)}\n  stats: ${Object.entries(res.stats).map(([k, v]) => `${k}=${v}`).join(' ')}\n`);
    for (const f of res.findings) {
      process.stdout.write(`\nFINDING ${f.kind} (seed ${f.seed}, op ${f.op}, ${f.epoch}, seen ${f.count}x): ${f.message}\n`);
      if (f.stack) process.stdout.write(f.stack.split('\n').slice(1, 8).join('\n') + '\n');
    }
    process.stdout.write(res.findings.length ? `\n${res.findings.length} distinct findings\n\n` : '\nno findings\n\n');
  }
  return res.findings.length;
}

/** The bound of an action kind as a number, or how it is computed when it depends on the action. */
function describeBound(model: FuzzModel, kind: 'mmio' | 'register'): number | string {
  if (model === 'smmuv3' && kind === 'mmio') return 'per command consumed (smmu.ts)';
  if (model === 'virtio-iommu') return kind === 'mmio' ? 'no registers' : 'notifications per mapping (virtio.ts)';
  return workBound(kind, 1, model);
}

process.exitCode = main();
