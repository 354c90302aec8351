/**
 * Figures of the virtio-iommu model: MAP requests per second with one
 * MAP|UNMAP listener on the endpoint (each MAP is followed by the UNMAP that
 * takes it away again, timed apart), and translate() over a domain of 1 and
 * of 10^4 mappings (random 4 KiB mappings across a 2^40 IOVA space, each
 * translation at a different mapping: the binary search's worst case).
 */
import { IOMMUAccessFlags } from '../src/core/access';
import { U64_MAX } from '../src/core/guest-addr';
import { IOMMUNotifierFlag } from '../src/core/tlb-entry';
import { SparseRam } from '../src/memory/sparse-ram';
import { createVirtioIommu, encodeAttach, encodeMap, encodeUnmap } from '../src/models/virtio-iommu/index';
import type { VirtioIommu } from '../src/models/virtio-iommu/index';
import type { BenchFigure, BenchSuite } from './harness';
import { gc, opsPerSecond, prng } from './harness';

const SID = 0x20;

function device(): VirtioIommu {
  const dev = createVirtioIommu({ bootBypass: false, endpoints: [SID] }, new SparseRam([]));
  if (dev.virtioRequest(encodeAttach(1, SID), 4)[0] !== 0) throw new Error('bench: ATTACH failed');
  return dev;
}

/** MAP requests/s (4 KiB mappings at distinct IOVAs) with one MAP|UNMAP listener. */
function mapPerSec(): number {
  const dev = device();
  let maps = 0;
  dev.addressSpace(SID).registerNotifier({
    flags: IOMMUNotifierFlag.ALL, start: 0n, end: U64_MAX,
    notify: (e) => { if (e.type === IOMMUNotifierFlag.MAP) maps++; },
  });
  const N = 1000;
  const maps1 = Array.from({ length: N }, (_, i) => encodeMap(1, BigInt(i) * 0x2000n, BigInt(i) * 0x2000n + 0xfffn, 0x100000n + BigInt(i) * 0x1000n, 3));
  const unmaps = Array.from({ length: N }, (_, i) => encodeUnmap(1, BigInt(i) * 0x2000n, BigInt(i) * 0x2000n + 0xfffn));
  let mapMs = 0;
  gc();
  const warm = () => {
    for (let i = 0; i < N; i++) dev.virtioRequest(maps1[i]!, 4);
    for (let i = 0; i < N; i++) dev.virtioRequest(unmaps[i]!, 4);
  };
  for (let k = 0; k < 5; k++) warm();
  let rounds = 0;
  const until = performance.now() + 1000;
  while (performance.now() < until) {
    const t0 = performance.now();
    for (let i = 0; i < N; i++) dev.virtioRequest(maps1[i]!, 4);
    mapMs += performance.now() - t0;
    for (let i = 0; i < N; i++) dev.virtioRequest(unmaps[i]!, 4);
    rounds++;
  }
  if (maps !== (rounds + 5) * N) throw new Error(`bench: listener saw ${maps} MAPs, expected ${(rounds + 5) * N}`);
  return (rounds * N) / (mapMs / 1000);
}

/** translate() with `n` mappings in the domain. */
function translatePerSec(n: number): number {
  const dev = device();
  const rnd = prng(n);
  const pages = new Set<number>();
  while (pages.size < n) pages.add(Math.floor(rnd() * 2 ** 28));
  const list = [...pages];
  for (const [i, p] of list.entries()) {
    const r = dev.virtioRequest(encodeMap(1, BigInt(p) * 0x1000n, BigInt(p) * 0x1000n + 0xfffn, BigInt(0x100 + i) * 0x1000n, 3), 4);
    if (r[0] !== 0) throw new Error('bench: MAP failed');
  }
  // 4096 lookups cycling through the mappings in a shuffled order.
  const iovas: bigint[] = [];
  for (let k = 0; k < 4096; k++) iovas.push(BigInt(list[Math.floor(rnd() * list.length)]!) * 0x1000n + 0x10n);
  let faults = 0;
  for (const iova of iovas) if ('fault' in dev.translate(SID, iova, IOMMUAccessFlags.RO)) faults++;
  if (faults) throw new Error(`bench: ${faults} translations faulted`);
  gc();
  let k = 0;
  return opsPerSecond(() => {
    for (let j = 0; j < 1000; j++) {
      dev.translate(SID, iovas[k]!, IOMMUAccessFlags.RO);
      k = (k + 1) & 4095;
    }
  }, 1000);
}

export const suite: BenchSuite = (): BenchFigure[] => [
  { key: 'virtioMapPerSec', label: 'virtio-iommu MAP requests, one MAP|UNMAP listener', value: mapPerSec(), unit: 'req/s' },
  { key: 'virtioTranslatePerSec1', label: 'virtio-iommu translate(), 1 mapping', value: translatePerSec(1), unit: 'ops/s' },
  { key: 'virtioTranslatePerSec1e4', label: 'virtio-iommu translate(), 1e4 mappings', value: translatePerSec(1e4), unit: 'ops/s', target: '>= 1e7' },
];

// Standalone: node build/bench/bench/virtio.bench.js
if (require.main === module) {
  for (const f of suite() as BenchFigure[]) process.stdout.write(`${f.key}\t${f.value.toExponential(3)} ${f.unit}\t${f.label}\n`);
}
