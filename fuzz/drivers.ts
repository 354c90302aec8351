/**
 * The per-model drivers of the models other than VT-d (whose driver is the
 * engine's own), and their work bounds: the most guest-memory accesses one
 * guest action may cost, as each model's documentation promises it.
 */
import type { ActionKind, FuzzHost, FuzzModel, ModelDriver, ModelEpochKind } from './host';
import { VirtioDriver } from './virtio';

export function modelOfEpoch(kind: ModelEpochKind): FuzzModel {
  return kind.startsWith('virtio') ? 'virtio-iommu' : kind.startsWith('smmu') ? 'smmuv3' : 'amd-vi';
}

export function startDriver(kind: ModelEpochKind, host: FuzzHost): ModelDriver {
  switch (modelOfEpoch(kind)) {
    case 'virtio-iommu': return new VirtioDriver(host);
    default: throw new Error(`no driver for ${kind}`);
  }
}

/**
 * Work bounds (guest-memory calls) of one action:
 * - virtio-iommu reads no guest memory: a request's work is what its
 *   notifiers receive (virtio.ts passes its bound to `action`), a translate 0;
 */
export function modelWorkBound(model: FuzzModel, kind: ActionKind, len: number): number {
  void len;
  if (model === 'virtio-iommu') return kind === 'request' ? 0 : 0;
  return 0;
}
