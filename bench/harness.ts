/**
 * The benchmark harness: each area's bench file exports `suite`, a function
 * that measures and returns figures; `index.ts` runs them all and prints a
 * table, or one JSON object with `--json`. Figures are measured, never
 * asserted: speed and memory do not belong in tests.
 */
import { SparseRam } from '../src/memory/sparse-ram';

export interface BenchFigure {
  /** Stable JSON key (for example `notifyPerSec1`). */
  key: string;
  /** What was measured, for the table. */
  label: string;
  value: number;
  unit: string;
  /** The target, for the table (free text, for example `>= 5e6`). */
  target?: string;
}

export type BenchSuite = () => BenchFigure[] | Promise<BenchFigure[]>;

/** Runs `fn` repeatedly for about `ms` milliseconds (after a warm-up) and returns operations per second, where one call does `opsPerCall` operations. */
export function opsPerSecond(fn: () => void, opsPerCall: number, ms = 1000): number {
  const warmUntil = performance.now() + Math.min(200, ms / 4);
  while (performance.now() < warmUntil) fn();
  let calls = 0;
  const start = performance.now();
  let now = start;
  while (now - start < ms) {
    fn();
    calls++;
    now = performance.now();
  }
  return (calls * opsPerCall) / ((now - start) / 1000);
}

/** Median of `runs` timings of `fn`, in milliseconds. */
export function medianMs(fn: () => void, runs = 5): number {
  const times: number[] = [];
  for (let i = 0; i < runs; i++) {
    const t0 = performance.now();
    fn();
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)] ?? NaN;
}

/** Forces a garbage collection when node runs with --expose-gc (the bench script does). */
export function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g) { g(); g(); }
}

/** Deterministic PRNG (mulberry32), so that every bench run builds the same layouts. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** Whether a figure met its target. */
export type TargetVerdict = 'met' | 'missed' | 'unchecked';

/**
 * Judges `value` against a target written as a comparison with a number
 * (`>= 1e6`, `<= 340`, `> 0`, `< 64`). A target in words (`constant`, which
 * one figure cannot show) or no target is `unchecked`; NaN never meets one.
 */
export function judgeTarget(value: number, target: string | undefined): TargetVerdict {
  const m = /^\s*(>=|<=|>|<)\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:e[-+]?\d+)?)\s*$/i.exec(target ?? '');
  if (m === null) return 'unchecked';
  const bound = Number(m[2]);
  const ok = m[1] === '>=' ? value >= bound : m[1] === '<=' ? value <= bound : m[1] === '>' ? value > bound : value < bound;
  return ok ? 'met' : 'missed';
}

/** The closing line of the table: how many targets were met, and which were missed. */
export function targetSummary(figures: readonly BenchFigure[]): string {
  const verdicts = figures.map((f) => [f.key, judgeTarget(f.value, f.target)] as const);
  const met = verdicts.filter(([, v]) => v === 'met').length;
  const missed = verdicts.filter(([, v]) => v === 'missed').map(([k]) => k);
  const unchecked = figures.filter((f) => f.target !== undefined && judgeTarget(f.value, f.target) === 'unchecked').length;
  const parts = [`targets: ${met} met`, missed.length === 0 ? '0 missed' : `${missed.length} MISSED (${missed.join(', ')})`];
  if (unchecked > 0) parts.push(`${unchecked} not checkable from one run`);
  return parts.join(', ');
}

/**
 * Guest RAM for a bench's page tables: `size` bytes of SparseRam and a bump
 * allocator of 4 KiB tables from `tablesFrom` (the first one is `root`).
 */
export class TableRam {
  readonly ram: SparseRam;
  private next: number;
  readonly root: number;

  constructor(size: number, tablesFrom: number) {
    this.ram = new SparseRam([{ base: 0n, size: BigInt(size) }]);
    this.next = tablesFrom;
    this.root = this.alloc();
  }

  alloc(): number {
    const t = this.next;
    this.next += 4096;
    return t;
  }
}
