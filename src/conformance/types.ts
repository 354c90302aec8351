/**
 * The adapter interface of the conformance kit: what an IOMMU implementation
 * provides so that the kit can play the guest (write page tables, invalidate)
 * and the host (register listeners). Model-neutral: VT-d, virtio-iommu,
 * SMMUv3 or AMD-Vi adapters all fit it.
 */
import type { IOMMUAccessFlags } from '../core/access';
import type { TranslateResult } from '../core/model';
import type { IOMMUTLBEvent } from '../core/tlb-entry';

/** A leaf size: 4 KiB, 2 MiB or 1 GiB. */
export type PageSize = bigint;
export const PAGE_4K: PageSize = 0x1000n;
export const PAGE_2M: PageSize = 0x20_0000n;
export const PAGE_1G: PageSize = 0x4000_0000n;

type MaybePromise<T> = T | Promise<T>;

/** What `registerNotifier` returns. */
export interface ConformanceNotifierHandle {
  /** Unregisters; must be safe to call from inside the listener's own notify (C10). */
  unregister(): MaybePromise<void>;
}

/**
 * An implementation under test, seen as a guest with one device and one
 * domain. Every method may return a promise. `ctx` is whatever `create`
 * returned (a fresh instance per scenario run).
 *
 * Page-table semantics the kit assumes (a radix table, as every IOMMU has):
 * - `map` writes one leaf of `size` at `iova` (aligned) -> `gpa` with `perm`,
 *   replacing what covered that slot: a larger leaf on the way becomes a
 *   table holding only the new leaf, a table under the slot is dropped with
 *   all its leaves. `unmap` clears the slot of `size` at `iova` (the kit
 *   never unmaps inside a larger leaf). Neither is visible to the IOMMU
 *   until invalidated (as a guest writing RAM).
 * - Every IOVA and address the kit uses is below 2^39 (the smallest address
 *   width of the IOMMUs it targets: VT-d aw-bits 39), and no translation
 *   reaches the x86 interrupt range 0xfee00000-0xfeefffff (VT-d refuses it).
 * - `invalidate` is the guest's invalidation of [iova, iova + size) (size a
 *   power of two >= 4 KiB, iova aligned to it), of the whole domain, or of
 *   everything, and returns when it has completed (the implementation's
 *   notifications for it delivered). It may invalidate more than asked.
 */
export interface ConformanceAdapter<Ctx = unknown> {
  /** A fresh instance in caching mode (the mode in which MAP notifiers are served), translation enabled, no mapping. */
  create(opts: { cachingMode: true }): MaybePromise<Ctx>;
  map(ctx: Ctx, iova: bigint, gpa: bigint, size: PageSize, perm: 1 | 2 | 3): MaybePromise<void>;
  unmap(ctx: Ctx, iova: bigint, size: PageSize): MaybePromise<void>;
  invalidate(ctx: Ctx, iova: bigint, size: bigint | 'domain' | 'global'): MaybePromise<void>;
  /**
   * Registers a listener on the device's address space (replaying current
   * translations to it, C7). Must throw for a registration the contract
   * refuses (C1: no flag, empty range).
   */
  registerNotifier(ctx: Ctx, notifier: { flags: number; start: bigint; end: bigint }, notify: (event: IOMMUTLBEvent) => void): MaybePromise<ConformanceNotifierHandle>;
  /** One translation as the device would request it (IOVA -> address, or a fault). */
  translate(ctx: Ctx, iova: bigint, access: IOMMUAccessFlags): MaybePromise<TranslateResult>;
  /** Turns translation off (C8 teardown: listeners get UNMAPs for everything). Optional. */
  disableTranslation?(ctx: Ctx): MaybePromise<void>;
  /** Turns translation back on (the kit then invalidates globally). Needed with disableTranslation. */
  enableTranslation?(ctx: Ctx): MaybePromise<void>;
  /** Releases the instance. Optional. */
  destroy?(ctx: Ctx): MaybePromise<void>;
}

/** A broken rule found by the kit: names the rule, the scenario, the step and what was wrong. */
export class ConformanceFailure extends Error {
  override readonly name = 'ConformanceFailure';
  constructor(readonly rule: string, readonly scenario: string, readonly step: string, detail: string) {
    super(`${rule} (${scenario}, at "${step}"): ${detail}`);
  }

  /** True for a ConformanceFailure (also across module copies). */
  static is(e: unknown): e is ConformanceFailure {
    return e instanceof Error && e.name === 'ConformanceFailure' && typeof (e as ConformanceFailure).rule === 'string';
  }
}

/** Options of a kit run. */
export interface ConformanceOptions {
  /** Runs of each fast-check property scenario (default 25). */
  numRuns?: number;
  /** fast-check seed, for a reproducible run. */
  seed?: number;
}
