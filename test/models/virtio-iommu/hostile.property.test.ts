/**
 * A hostile guest: random (often malformed) requests, config writes, resets
 * and DMA. The model must never throw, must answer every request as a naive
 * reference of the findings' rules does (linear scans over plain arrays), and
 * its listeners' views must equal the notifiable mappings of the endpoint's
 * domain (C4/C5/C7/C8 held: strict notifier lists, no violation reported).
 *
 * npm test runs 4 x 5000 requests; VIRTIO_HOSTILE_N=1000000 runs one long
 * sequence of that many (reported in the closing note).
 */
import fc from 'fast-check';
import { prng } from '../../../bench/harness';
import { IOMMUAccessFlags } from '../../../src/core/access';
import { isFault } from '../../../src/core/model';
import { appendRun, firstDifference } from '../../../src/core/runs';
import type { TranslationRun } from '../../../src/core/runs';
import { IOMMUNotifierFlag } from '../../../src/core/tlb-entry';
import { SparseRam } from '../../../src/memory/sparse-ram';
import {
  createVirtioIommu, encodeAttach, encodeDetach, encodeMap, encodeProbe, encodeUnmap, VirtioIommuStatus as S,
} from '../../../src/models/virtio-iommu';
import type { VirtioIommu } from '../../../src/models/virtio-iommu';
import { U64_MAX as U64 } from '../../../src/core/guest-addr';

const ENDPOINTS = [0x20, 0x28, 0x30];
const IDS = [0x20, 0x28, 0x30, 0x10020, 0x99];

interface RefMap { vs: bigint; ve: bigint; ph: bigint; fl: number }
interface RefDomain { bypass: boolean; maps: RefMap[]; eps: Set<number> }

/** The findings' request rules on plain arrays (QEMU 7.2 profile). */
class Reference {
  domains = new Map<number, RefDomain>();
  tree = new Map<number, number | undefined>();

  private free(id: number): void {
    const d = this.domains.get(id);
    if (d && d.eps.size === 0) this.domains.delete(id);
  }

  attach(dom: number, ep: number, flags: number): number {
    if (flags & ~1) return S.INVAL;
    if (!ENDPOINTS.includes(ep & 0xffff)) return S.NOENT;
    if (!this.tree.has(ep)) this.tree.set(ep, undefined);
    const old = this.tree.get(ep);
    if (old !== undefined) {
      this.domains.get(old)!.eps.delete(ep);
      this.tree.set(ep, undefined);
      this.free(old);
    }
    let d = this.domains.get(dom);
    if (!d) this.domains.set(dom, (d = { bypass: (flags & 1) === 1, maps: [], eps: new Set() }));
    else if (d.bypass !== ((flags & 1) === 1)) return S.INVAL;
    d.eps.add(ep);
    this.tree.set(ep, dom);
    return S.OK;
  }

  detach(dom: number, ep: number): number {
    if (!this.tree.has(ep)) return S.NOENT;
    if (this.tree.get(ep) !== dom) return S.INVAL;
    this.domains.get(dom)!.eps.delete(ep);
    this.tree.set(ep, undefined);
    this.free(dom);
    return S.OK;
  }

  map(dom: number, vs: bigint, ve: bigint, ph: bigint, fl: number): number {
    if (fl & ~7) return S.INVAL;
    const d = this.domains.get(dom);
    if (!d) return S.NOENT;
    if (d.bypass) return S.INVAL;
    if (ve < vs) return d.maps.some((m) => m.vs <= ve && m.ve >= vs) ? S.INVAL : S.OK;
    if (d.maps.some((m) => m.vs <= ve && vs <= m.ve)) return S.INVAL;
    d.maps.push({ vs, ve, ph, fl });
    return S.OK;
  }

  unmap(dom: number, vs: bigint, ve: bigint): number {
    const d = this.domains.get(dom);
    if (!d) return S.NOENT;
    if (d.bypass) return S.INVAL;
    if (ve < vs) return d.maps.some((m) => m.vs <= ve && m.ve >= vs) ? S.RANGE : S.OK;
    const hit = d.maps.filter((m) => m.vs <= ve && vs <= m.ve).sort((a, b) => (a.vs < b.vs ? -1 : 1));
    for (const m of hit) {
      if (m.vs < vs || m.ve > ve) return S.RANGE;
      d.maps.splice(d.maps.indexOf(m), 1);
    }
    return S.OK;
  }

  reset(): void {
    this.domains.clear();
    this.tree.clear();
  }

  /** What a MAP|UNMAP listener on `sid` must hold: the page-aligned, permitted, non-MMIO mappings of its domain. */
  expectedRuns(sid: number): TranslationRun[] {
    const dom = this.tree.get(sid);
    const d = dom === undefined ? undefined : this.domains.get(dom);
    if (!d || d.bypass) return [];
    const runs: TranslationRun[] = [];
    const ok = d.maps.filter((m) => (m.fl & 3) !== 0 && (m.fl & 4) === 0 && m.vs % 4096n === 0n && (m.ve + 1n) % 4096n === 0n && m.ph % 4096n === 0n && m.ph + (m.ve - m.vs) <= U64);
    ok.sort((a, b) => (a.vs < b.vs ? -1 : 1));
    for (const m of ok) appendRun(runs, m.vs, m.ve, m.ph, m.fl & 3);
    return runs;
  }

  /** Linear-scan translation of an attached endpoint's address (undefined: fault), containment lookup. */
  translate(sid: number, iova: bigint): bigint | undefined {
    const dom = this.tree.get(sid);
    const d = dom === undefined ? undefined : this.domains.get(dom);
    if (!d || d.bypass) return undefined;
    const m = d.maps.find((x) => x.vs <= iova && iova <= x.ve && (x.fl & 1));
    return m ? BigInt.asUintN(64, iova - m.vs + m.ph) & ~0xfffn : undefined;
  }
}

function viewRuns(dev: VirtioIommu, sid: number): TranslationRun[] {
  const list = dev.addressSpace(sid).notifiers;
  const entries = list.view(list.handles[0]!).slice().sort((a, b) => (a.iova < b.iova ? -1 : 1));
  const runs: TranslationRun[] = [];
  for (const e of entries) appendRun(runs, e.iova, e.iova + e.addrMask, e.translatedAddr, e.perm);
  return runs;
}

function runHostile(seed: number, n: number): void {
  const rnd = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
  const int = (k: number) => Math.floor(rnd() * k);
  const addr = (): bigint => {
    const r = rnd();
    if (r < 0.8) return BigInt(int(48)) * 0x1000n;
    if (r < 0.9) return BigInt(int(48)) * 0x1000n + BigInt(int(4096));
    return pick([0n, U64 - 0xfffn, 2n ** 52n * 4096n - 4096n, 0xfee00000n]);
  };
  const dev = createVirtioIommu({ bootBypass: rnd() < 0.5, endpoints: ENDPOINTS }, new SparseRam([]));
  dev.virtioFeatures(0x100000077n);
  const ref = new Reference();
  const violations: string[] = [];
  dev.events.on('guestError', (m) => { if (m.includes('contract')) violations.push(m); });
  for (const sid of ENDPOINTS) dev.addressSpace(sid).registerNotifier({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: U64, notify: () => {} });

  const check = (i: number): void => {
    expect(violations).toEqual([]);
    for (const sid of ENDPOINTS) {
      const diff = firstDifference(ref.expectedRuns(sid), viewRuns(dev, sid));
      if (diff !== undefined) throw new Error(`seed ${seed} step ${i}: sid 0x${sid.toString(16)}: view ${diff}`);
    }
  };

  for (let i = 0; i < n; i++) {
    const r = rnd();
    const dom = int(4);
    const ep = pick(IDS);
    let req: Uint8Array;
    let want: number | undefined;
    if (r < 0.15) {
      const flags = rnd() < 0.9 ? (rnd() < 0.2 ? 1 : 0) : int(16);
      req = encodeAttach(dom, ep, flags);
      want = ref.attach(dom, ep, flags);
    } else if (r < 0.25) {
      req = encodeDetach(dom, ep);
      want = ref.detach(dom, ep);
    } else if (r < 0.6) {
      const vs = addr();
      const ve = rnd() < 0.9 ? vs + BigInt(1 + int(8)) * 0x1000n - 1n - (rnd() < 0.1 ? BigInt(int(4096)) : 0n) : addr();
      const ph = rnd() < 0.9 ? BigInt(int(1024)) * 0x1000n : BigInt(int(2 ** 30));
      const fl = rnd() < 0.9 ? int(8) : int(256);
      req = encodeMap(dom, vs, BigInt.asUintN(64, ve), ph, fl);
      want = ref.map(dom, vs, BigInt.asUintN(64, ve), ph, fl);
    } else if (r < 0.85) {
      const vs = addr();
      const ve = rnd() < 0.8 ? vs + BigInt(int(16)) * 0x1000n + 0xfffn : addr();
      req = encodeUnmap(dom, vs, BigInt.asUintN(64, ve));
      want = ref.unmap(dom, vs, BigInt.asUintN(64, ve));
    } else if (r < 0.88) {
      const out = dev.virtioRequest(encodeProbe(ep), 516);
      expect(out[512]).toBe(ENDPOINTS.includes(ep & 0xffff) ? S.OK : S.NOENT);
      continue;
    } else if (r < 0.91) {
      // Truncated body of a known type: S_INVAL, nothing changes.
      const full = pick([encodeAttach(dom, ep), encodeDetach(dom, ep), encodeMap(dom, 0n, 0xfffn, 0n, 3), encodeUnmap(dom, 0n, U64)]);
      req = full.subarray(0, 4 + int(full.length - 4));
      want = S.INVAL;
    } else if (r < 0.93) {
      req = Uint8Array.of(pick([0, 6, 7, 66, 255]), int(256), int(256), int(256));
      want = S.UNSUPP;
    } else if (r < 0.94) {
      // Device error (short tail), then the driver resets the device.
      expect(dev.virtioRequest(encodeDetach(dom, ep), int(4)).length).toBe(0);
      expect(dev.needsReset).toBe(true);
      dev.virtioReset();
      dev.virtioFeatures(0x100000077n);
      ref.reset();
      check(i);
      continue;
    } else if (r < 0.95) {
      dev.virtioConfigWrite(0x24, 1, BigInt(int(2)));
      continue;
    } else {
      // DMA translation: agrees with a linear scan where the reference is unambiguous.
      const sid = pick(ENDPOINTS);
      const iova = addr() + BigInt(int(4096)) % 0x1000n;
      const t = dev.translate(sid, iova & U64, IOMMUAccessFlags.RO);
      const dom2 = ref.tree.get(sid);
      const d = dom2 === undefined ? undefined : ref.domains.get(dom2);
      const inMsi = iova >= 0xfee00000n && iova <= 0xfeefffffn;
      if (d && !d.bypass && !inMsi && (iova & 0xfffn) !== 0xfffn) {
        const x = ref.translate(sid, iova);
        if (x === undefined) expect(isFault(t)).toBe(true);
        else expect(!isFault(t) && t.translatedAddr === x).toBe(true);
      }
      while (dev.virtioTakeEvent() !== undefined);
      continue;
    }
    const out = dev.virtioRequest(req, 4);
    if (out[0] !== want) throw new Error(`seed ${seed} step ${i}: request ${Buffer.from(req).toString('hex')}: status ${out[0]}, reference ${want}`);
    if (i % 97 === 0) check(i);
  }
  check(n);
}

test('hostile request streams keep the model consistent and the listeners equal to the mappings', () => {
  const long = Number(process.env.VIRTIO_HOSTILE_N ?? 0);
  if (long > 0) {
    runHostile(1, long);
    return;
  }
  fc.assert(fc.property(fc.integer({ min: 1, max: 2 ** 31 - 1 }), (seed) => runHostile(seed, 5000)), { numRuns: 4 });
}, 600_000);
