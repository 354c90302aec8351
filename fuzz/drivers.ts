/**
 * The per-model drivers of the models other than VT-d (whose driver is the
 * engine's own), and their work bounds: the most guest-memory accesses one
 * guest action may cost, as each model's documentation promises it.
 */
import type { ActionKind, FuzzHost, FuzzModel, ModelDriver, ModelEpochKind } from './host';
import { AmdDriver } from './amd';
import { FUZZ_LIMITS } from './host';
import { SmmuDriver } from './smmu';
import { VirtioDriver } from './virtio';

export function modelOfEpoch(kind: ModelEpochKind): Exclude<FuzzModel, 'intel-vtd'> {
  return kind.startsWith('virtio') ? 'virtio-iommu' : kind.startsWith('smmu') ? 'smmuv3' : 'amd-vi';
}

export function startDriver(kind: ModelEpochKind, host: FuzzHost): ModelDriver {
  switch (modelOfEpoch(kind)) {
    case 'virtio-iommu': return new VirtioDriver(host);
    case 'amd-vi': return new AmdDriver(host);
    case 'smmuv3': return new SmmuDriver(host);
  }
}

/**
 * Work bounds (guest-memory calls) of one action:
 * - virtio-iommu reads no guest memory: a request's work is what its
 *   notifiers receive (virtio.ts passes its bound to `action`), a translate 0;
 * - AMD-Vi and SMMUv3: below (SMMUv3's MMIO bound is per command consumed, in smmu.ts);
 */
export function modelWorkBound(model: FuzzModel, kind: ActionKind, len: number): number {
  const pages = Math.ceil(len / 4096) + 1;
  if (model === 'amd-vi') {
    // MMIO: the command buffer (at most 2^15 entries) read once, 4 calls each, plus twice the per-action sync budget
    // (AmdViLimits.syncWalkBudget), plus slack. A registration walks within the budget once. A DMA: per page the DTE,
    // a walk of at most 64 levels (QEMU 7.2's loop bound; spec walks stop at 6) of 2 reads each, the data, an event.
    if (kind === 'mmio') return 4 * 2 ** 15 + 2 * FUZZ_LIMITS.syncWalkBudget + 4096;
    if (kind === 'register') return 2 * FUZZ_LIMITS.syncWalkBudget + 4096;
    return (2 * 64 + 16) * pages + 64;
  }
  if (model === 'smmuv3') {
    // MMIO: per command consumed (smmu.ts passes it to `action`); a registration replays nothing (no MAP notifier).
    // A DMA: per page the STE, L1 descriptor and CD (nested: fetched through stage 2) and a nested walk (4 stage-1
    // levels each through 4 stage-2 levels, then the output's stage-2 walk): at most 64 reads, the data, an event.
    if (kind === 'register') return 4096;
    return 80 * pages + 64;
  }
  return 0;
}
