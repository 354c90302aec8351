/**
 * What the fuzz engine gives a per-model driver (drivers.ts): the PRNG,
 * guest memory that counts accesses, findings, and `action`, which runs one
 * guest action against its work bound. Kept apart from engine.ts so that the
 * drivers and the engine do not import each other at load time.
 */
import type { GuestMemory, IOMMUModel } from '../src/index';

/** Work limits the fuzzer gives the models that take them (VT-d, AMD-Vi: third argument): small, so hostile tables cost little. */
export const FUZZ_LIMITS = { syncWalkBudget: 1 << 16, syncLeafBudget: 1 << 13 };

export type FindingKind = 'exception' | 'violation' | 'coherence' | 'listener' | 'work' | 'heap';

/** What one guest action is: an MMIO write, a notifier registration, a DMA/translate, a virtio request. */
export type ActionKind = 'mmio' | 'register' | 'dma' | 'request';

/** The models `--model` takes. */
export type FuzzModel = 'intel-vtd' | 'virtio-iommu' | 'smmuv3' | 'amd-vi';
export const FUZZ_MODELS: readonly FuzzModel[] = ['intel-vtd', 'virtio-iommu', 'smmuv3', 'amd-vi'];

/** Epochs of the models other than VT-d: a plausible guest (clean) and a hostile one. */
export type ModelEpochKind = 'virtio-clean' | 'virtio-hostile' | 'smmu-clean' | 'smmu-hostile' | 'amd-clean' | 'amd-hostile';

/** One epoch of one model: a fresh guest, one op per call, listeners torn down at the end. */
export interface ModelDriver {
  op(): void;
  end(): void;
}

export interface FuzzHost {
  readonly rng: Rng;
  /** Whether the epoch is a hostile one. */
  readonly hostile: boolean;
  /** Set by the first exception or violation of an epoch (coherence is then no longer judged) or an abandoned sync. */
  tainted: boolean;
  /** Set by the first exception of an epoch: shadows stop checking. */
  shadowsOff: boolean;
  /** Milliseconds the fuzzer's own checks spent inside guest actions (shadow views); not charged to the model. */
  overheadMs: number;
  useMemory(mem: CountingMemory): void;
  /** Called with each model a driver creates (tests plant bugs through it to show the checks catch them). */
  readonly instrument: ((model: IOMMUModel) => void) | undefined;
  count(k: string, n?: number): void;
  finding(kind: FindingKind, message: string, stack?: string): void;
  thrown(where: string, e: unknown): void;
  action<T>(kind: ActionKind, what: string, len: number, f: () => T, bound?: () => number): T | undefined;
}

/** mulberry32: small, fast, deterministic. */
export class Rng {
  private a: number;
  constructor(seed: number) { this.a = seed >>> 0; }
  u32(): number {
    this.a = (this.a + 0x6d2b79f5) >>> 0;
    let t = this.a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }
  int(n: number): number { return Math.floor((this.u32() / 2 ** 32) * n); }
  chance(p: number): boolean { return this.u32() / 2 ** 32 < p; }
  pick<T>(xs: readonly T[]): T { return xs[this.int(xs.length)]!; }
  u64(): bigint { return (BigInt(this.u32()) << 32n) | BigInt(this.u32()); }
}

/** Guest memory that counts every access, so the work of one guest action can be bounded. */
export class CountingMemory implements GuestMemory {
  accesses = 0;
  constructor(readonly inner: GuestMemory) {}
  read(gpa: number, dst: Uint8Array): boolean { this.accesses++; return this.inner.read(gpa, dst); }
  write(gpa: number, src: Uint8Array): boolean { this.accesses++; return this.inner.write(gpa, src); }
  readU32(gpa: number): number { this.accesses++; return this.inner.readU32(gpa); }
  readU64(gpa: number): bigint | undefined { this.accesses++; return this.inner.readU64(gpa); }
  writeU32(gpa: number, value: number): boolean { this.accesses++; return this.inner.writeU32(gpa, value); }
  writeU64(gpa: number, value: bigint): boolean { this.accesses++; return this.inner.writeU64(gpa, value); }
}

