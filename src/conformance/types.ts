/**
 * The adapter interface of the conformance kit: what an IOMMU implementation
 * provides so that the kit can play the guest (write page tables, invalidate)
 * and the host (register listeners). Model-neutral: an adapter states what
 * its implementation supports (ConformanceCapabilities: MAP notifiers or
 * UNMAP only, DEVIOTLB_UNMAP, IOVA width, reserved windows, page tables or
 * requests), and the scenarios adapt or are skipped with the reason. VT-d,
 * virtio-iommu, SMMUv3 or AMD-Vi adapters all fit it.
 */
import type { IOMMUAccessFlags } from '../core/access';
import type { InclusiveRange } from '../core/guest-addr';
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
 * What the implementation under test supports, stated by its adapter
 * (`ConformanceAdapter.capabilities`). The kit adapts each scenario to it,
 * or skips the scenario with the reason (runScenario's `skipped`), so one
 * kit serves every model: VT-d with or without caching mode, virtio-iommu,
 * SMMUv3, AMD-Vi. Every field is optional; the defaults describe a model
 * that serves MAP notifiers over radix page tables with at least a 39-bit
 * IOVA space and no reserved IOVA window.
 */
export interface ConformanceCapabilities {
  /**
   * Whether MAP notifiers (an exact shadow, MAP|UNMAP) are served. Default
   * true. False for a model that serves UNMAP notifiers only and refuses a
   * MAP registration (C1): VT-d without caching mode, SMMUv3, AMD-Vi
   * without NpCache. The kit then checks that refusal, registers its
   * listeners without MAP (every event still checked against C2, C3, C6,
   * C10; translations against the tables), and skips the scenarios whose
   * rules only MAP listeners have (C7 replay, C8 teardown).
   */
  mapNotifiers?: boolean;
  /**
   * DEVIOTLB_UNMAP notifiers: true, the kit registers one beside its other
   * listeners and checks what it receives (C2, C3, C6, C10); false, a
   * DEVIOTLB_UNMAP registration must be refused (C1, as QEMU's
   * virtio-iommu does); undefined (default), not tested.
   */
  devIotlbUnmap?: boolean;
  /**
   * Width of the IOVA space: the kit uses IOVAs below 2^iovaBits only.
   * Default 39 (VT-d aw-bits 39, the smallest of the IOMMUs it targets).
   * The scenarios need 32 bits (33 when a reserved window lies below 4 GiB);
   * below that they are skipped with the reason.
   */
  iovaBits?: number;
  /**
   * IOVA windows the kit must not map: the x86 interrupt window
   * (`X86_MSI_RANGE` of `viommu`, which VT-d and virtio-iommu on x86 never
   * translate), a model's reserved regions. The kit places its scenarios
   * (4 GiB of IOVA space) at the first 4 GiB-aligned base that meets none of
   * them and fits iovaBits. Default none.
   */
  reservedIova?: readonly InclusiveRange[];
  /**
   * How the guest tells the IOMMU about mappings: `tables` (default), radix
   * page tables the IOMMU reads at invalidation (VT-d, SMMUv3, AMD-Vi); or
   * `requests`, a guest that sends map/unmap requests (virtio-iommu): its
   * adapter keeps the kit's tables itself and, at `invalidate`, sends the
   * requests that bring the IOMMU to them. The kit's checks are the same;
   * failure messages say which.
   */
  mapping?: 'tables' | 'requests';
  /**
   * Whether the model's tables can express a write-only leaf. Default true.
   * False for formats without that encoding (AArch64 stage-1 descriptors:
   * AP gives read-only or read-write, and a page is always readable): the
   * kit then maps read-write wherever a scenario asks for write-only, and
   * checks the translations against what it mapped.
   */
  writeOnly?: boolean;
}

/** What `create` is given. */
export interface ConformanceCreateOptions {
  /** The kit needs MAP notifiers served (capabilities.mapNotifiers, default true): e.g. VT-d caching mode on. */
  mapNotifiers: boolean;
  /** @deprecated VT-d's name for `mapNotifiers` (caching mode), kept for adapters written before it. */
  cachingMode: boolean;
}

/**
 * An implementation under test, seen as a guest with one device and one
 * domain. Every method may return a promise. `ctx` is whatever `create`
 * returned (a fresh instance per scenario run).
 *
 * Page-table semantics the kit assumes (a radix table, as every IOMMU has;
 * an adapter of a request-based model emulates them, see
 * ConformanceCapabilities.mapping):
 * - `map` writes one leaf of `size` at `iova` (aligned) -> `gpa` with `perm`,
 *   replacing what covered that slot: a larger leaf on the way becomes a
 *   table holding only the new leaf, a table under the slot is dropped with
 *   all its leaves. `unmap` clears the slot of `size` at `iova` (the kit
 *   never unmaps inside a larger leaf). Neither is visible to the IOMMU
 *   until invalidated (as a guest writing RAM).
 * - IOVAs respect `capabilities` (below 2^iovaBits, outside reservedIova).
 *   Translated addresses are below 2^39 and never in the x86 interrupt
 *   window 0xfee00000-0xfeefffff.
 * - `invalidate` is the guest's invalidation of [iova, iova + size) (size a
 *   power of two >= 4 KiB, iova aligned to it), of the whole domain, or of
 *   everything, and returns when it has completed (the implementation's
 *   notifications for it delivered). It may invalidate more than asked.
 * - Translation can be disabled when the adapter has `disableTranslation`
 *   and `enableTranslation`; without them the teardown scenario (C8) is
 *   skipped with the reason.
 */
export interface ConformanceAdapter<Ctx = unknown> {
  /** What the implementation supports (defaults: see ConformanceCapabilities). */
  readonly capabilities?: ConformanceCapabilities;
  /** A fresh instance, translation enabled, no mapping; serving MAP notifiers when `mapNotifiers`. */
  create(opts: ConformanceCreateOptions): MaybePromise<Ctx>;
  map(ctx: Ctx, iova: bigint, gpa: bigint, size: PageSize, perm: 1 | 2 | 3): MaybePromise<void>;
  unmap(ctx: Ctx, iova: bigint, size: PageSize): MaybePromise<void>;
  invalidate(ctx: Ctx, iova: bigint, size: bigint | 'domain' | 'global'): MaybePromise<void>;
  /**
   * Registers a listener on the device's address space (replaying current
   * translations to it, C7). Must throw for a registration the contract
   * refuses (C1: no flag, empty range, a kind of notifier the
   * implementation does not serve).
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

/** The capabilities with their defaults filled in. */
export interface ResolvedCapabilities {
  mapNotifiers: boolean;
  devIotlbUnmap: boolean | undefined;
  iovaBits: number;
  reservedIova: readonly InclusiveRange[];
  mapping: 'tables' | 'requests';
  writeOnly: boolean;
}

/** `adapter.capabilities` with defaults; throws an Error naming a malformed field (an adapter bug). */
export function resolveCapabilities(adapter: Pick<ConformanceAdapter<never>, 'capabilities'>): ResolvedCapabilities {
  const c = adapter.capabilities ?? {};
  const iovaBits = c.iovaBits ?? 39;
  if (!Number.isInteger(iovaBits) || iovaBits < 12 || iovaBits > 64) {
    throw new Error(`conformance adapter: capabilities.iovaBits must be an integer in [12, 64], got ${String(c.iovaBits)}`);
  }
  const reservedIova = c.reservedIova ?? [];
  for (const r of reservedIova) {
    if (!(r.start <= r.end)) throw new Error(`conformance adapter: capabilities.reservedIova has an empty range [0x${r.start.toString(16)}, 0x${r.end.toString(16)}]`);
  }
  return {
    mapNotifiers: c.mapNotifiers ?? true,
    devIotlbUnmap: c.devIotlbUnmap,
    iovaBits,
    reservedIova,
    mapping: c.mapping ?? 'tables',
    writeOnly: c.writeOnly ?? true,
  };
}

/** IOVA space the scenarios use from their base: 4 GiB. */
export const SCENARIO_IOVA_SPAN = 1n << 32n;

/**
 * Where the scenarios' IOVAs start for these capabilities: the first
 * 4 GiB-aligned base whose 4 GiB meet no reserved window and fit the IOVA
 * width (aligned to 4 GiB, so every power-of-two block a scenario uses
 * stays naturally aligned), or the reason there is none.
 */
export function scenarioIovaBase(caps: ResolvedCapabilities): { base: bigint } | { reason: string } {
  const limit = 1n << BigInt(caps.iovaBits);
  for (let base = 0n; base + SCENARIO_IOVA_SPAN <= limit && base < (1n << 40n); base += SCENARIO_IOVA_SPAN) {
    const last = base + SCENARIO_IOVA_SPAN - 1n;
    if (!caps.reservedIova.some((r) => r.start <= last && base <= r.end)) return { base };
  }
  return { reason: `the scenarios need 4 GiB of IOVA space clear of the reserved windows below 2^${caps.iovaBits} (capabilities.iovaBits), and there is none` };
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
