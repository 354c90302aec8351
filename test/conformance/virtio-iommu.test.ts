/**
 * The virtio-iommu model runs the conformance kit (viommu/conformance).
 *
 * The kit plays a guest with radix page tables that the IOMMU sees only at
 * invalidation; a virtio-iommu guest has no tables, its driver sends MAP and
 * UNMAP requests. So this adapter keeps the kit's tables itself and, at each
 * `invalidate`, sends the requests that bring the domain to what the tables
 * say in the (widened) range: UNMAP of every mapping that changed or went,
 * then MAP of every new leaf (a driver's unmap-then-map, contract C4).
 * Translation off/on is DETACH/ATTACH of the endpoint with config.bypass 0.
 *
 * Capabilities: MAP notifiers served (no caching mode: the guest sends every
 * MAP), DEVIOTLB_UNMAP refused (QEMU 7.2), the whole 64-bit IOVA space, the
 * MSI RESV_MEM region (identity, never mapped) kept clear, request-based.
 */
import { describeIommuConformance } from '../../src/conformance';
import type { ConformanceAdapter } from '../../src/conformance';
import { U64_MAX, X86_MSI_RANGE } from '../../src/core';
import { SparseRam } from '../../src/memory';
import { createVirtioIommu, encodeAttach, encodeDetach, encodeMap, encodeUnmap, VirtioIommuStatus } from '../../src/models/virtio-iommu';
import type { VirtioIommu } from '../../src/models/virtio-iommu';

const SID = 0x20;
const DOMAIN = 1;

interface Leaf { iova: bigint; gpa: bigint; size: bigint; perm: number }

interface VirtioCtx {
  dev: VirtioIommu;
  /** The guest's page tables as the kit wrote them (leaves by IOVA). */
  tables: Map<bigint, Leaf>;
  /** What the driver has MAPped in the domain (by IOVA). */
  sent: Map<bigint, Leaf>;
}

function request(c: VirtioCtx, data: Uint8Array): void {
  const status = c.dev.virtioRequest(data, 4)[0];
  if (status !== VirtioIommuStatus.OK) throw new Error(`virtio-iommu adapter: request ${Buffer.from(data).toString('hex')} answered status ${status}`);
}

/** Removes the leaves of `m` that overlap [lo, hi]. */
function dropOverlapping(m: Map<bigint, Leaf>, lo: bigint, hi: bigint): void {
  for (const [k, l] of m) if (l.iova <= hi && lo <= l.iova + l.size - 1n) m.delete(k);
}

function overlapping(m: Map<bigint, Leaf>, lo: bigint, hi: bigint): Leaf[] {
  return [...m.values()].filter((l) => l.iova <= hi && lo <= l.iova + l.size - 1n);
}

function same(a: Leaf | undefined, b: Leaf): boolean {
  return a !== undefined && a.iova === b.iova && a.size === b.size && a.gpa === b.gpa && a.perm === b.perm;
}

function sync(c: VirtioCtx, lo: bigint, hi: bigint): void {
  // Widen to whole leaves on both sides (the kit allows invalidating more than asked).
  for (let changed = true; changed;) {
    changed = false;
    for (const l of [...overlapping(c.tables, lo, hi), ...overlapping(c.sent, lo, hi)]) {
      const end = l.iova + l.size - 1n;
      if (l.iova < lo) { lo = l.iova; changed = true; }
      if (end > hi) { hi = end; changed = true; }
    }
  }
  for (const s of overlapping(c.sent, lo, hi)) {
    if (same(c.tables.get(s.iova), s)) continue;
    request(c, encodeUnmap(DOMAIN, s.iova, s.iova + s.size - 1n));
    c.sent.delete(s.iova);
  }
  for (const t of overlapping(c.tables, lo, hi)) {
    if (same(c.sent.get(t.iova), t)) continue;
    request(c, encodeMap(DOMAIN, t.iova, t.iova + t.size - 1n, t.gpa, t.perm));
    c.sent.set(t.iova, { ...t });
  }
}

const adapter: ConformanceAdapter<VirtioCtx> = {
  capabilities: { mapNotifiers: true, devIotlbUnmap: false, iovaBits: 64, reservedIova: [X86_MSI_RANGE], mapping: 'requests' },
  create: () => {
    const dev = createVirtioIommu({ bootBypass: false, endpoints: [SID] }, new SparseRam([{ base: 0, size: 0x1000_0000 }]));
    const c: VirtioCtx = { dev, tables: new Map(), sent: new Map() };
    request(c, encodeAttach(DOMAIN, SID));
    return c;
  },
  map: (c, iova, gpa, size, perm) => {
    dropOverlapping(c.tables, iova, iova + size - 1n);
    c.tables.set(iova, { iova, gpa, size, perm });
  },
  unmap: (c, iova, size) => dropOverlapping(c.tables, iova, iova + size - 1n),
  invalidate: (c, iova, size) => (typeof size === 'bigint' ? sync(c, iova, iova + size - 1n) : sync(c, 0n, U64_MAX)),
  registerNotifier: (c, n, notify) => {
    const h = c.dev.addressSpace(SID).registerNotifier({ ...n, notify: (e) => notify(e) });
    return { unregister: () => h.dispose() };
  },
  translate: (c, iova, access) => c.dev.translate(SID, iova, access),
  // DETACH frees the domain with its mappings (its only endpoint left): the driver starts again.
  disableTranslation: (c) => {
    request(c, encodeDetach(DOMAIN, SID));
    c.sent.clear();
  },
  enableTranslation: (c) => request(c, encodeAttach(DOMAIN, SID)),
};

describeIommuConformance('virtio-iommu', adapter, { numRuns: 15 });
