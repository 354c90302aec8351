/**
 * The virtio-iommu driver of the fuzzer (epochs `virtio-clean` and
 * `virtio-hostile`), through the request interface only: well-formed
 * ATTACH/DETACH/MAP/UNMAP/PROBE, and (hostile) random and malformed
 * requests (short head/tail, truncated bodies, unknown types and flags,
 * domains and endpoints out of range, overlapping MAPs, huge and inverted
 * ranges, tiny writable parts), config-space reads and writes, feature
 * negotiation, device and system resets, translations.
 *
 * The guest's record: the mappings of each domain, built from the statuses
 * the device answered (a MAP that got S_OK exists; an UNMAP removes what
 * virtio 1.2 5.13.6.6 and QEMU 7.2 say, which the record predicts and the
 * status confirms). Which endpoint is in which domain is read from the
 * device (`endpointDomain`, `domainIds`); whether a domain was destroyed
 * follows from it (QEMU frees a domain when its last endpoint leaves).
 * After each request:
 * - the record equals the device's mapping store (the statuses meant what
 *   they said);
 * - every MAP|UNMAP listener's view and every VFIO container of an
 *   endpoint equals its domain's notifiable mappings (device.ts: READ or
 *   WRITE, not MMIO, whole 4 KiB pages on both sides), nothing when it is
 *   in no domain (C7, C8, C9);
 * - every vhost IOTLB entry equals a fresh translation (the device caches
 *   nothing, so translate() is the truth, itself checked against the record).
 * Work: the device reads no guest memory; a request's work is the events
 * its raw notifiers receive, bounded by 130 per mapping involved per
 * notifier (a mapping splits into at most 128 aligned power-of-two blocks).
 */
import { IOMMUAccessFlags, SparseRam, U64_MAX, isFault } from '../src/index';
import {
  VirtioIommuFeature, VirtioIommuStatus as S, createVirtioIommu, encodeAttach, encodeDetach, encodeMap, encodeProbe, encodeUnmap,
} from '../src/models/virtio-iommu/index';
import type { VirtioIommu } from '../src/models/virtio-iommu/index';
import { IOMMUNotifierFlag as F } from '../src/index';
import { CountingMemory } from './host';
import type { FuzzHost, ModelDriver } from './host';
import { ListenerPool } from './pool';
import type { ShadowEntry } from './shadow';

/** Endpoint ids that exist behind the device (the config's `endpoints`); requests also name others. */
const ENDPOINTS = [0x10, 0x18, 0x20, 0x28, 0x30] as const;
const MSI_FIRST = 0xfee0_0000n;
const MSI_LAST = 0xfeef_ffffn;
/** Mappings per domain a clean guest keeps at most (views stay small, checks cheap). */
const MAX_MAPPINGS = 256;
/** Aligned power-of-two blocks one mapping becomes at most (64-bit ranges), plus slack. */
export const EVENTS_PER_MAPPING = 130;

interface Mapping { vs: bigint; ve: bigint; phys: bigint; flags: number }

/** virtio-iommu's notifiable mappings (device.ts `notifiable`): R or W, not MMIO, 4 KiB pages on both sides, translated end in 64 bits. */
function notifiable(m: Mapping): boolean {
  return (m.flags & 3) !== 0 && (m.flags & 4) === 0 && m.ve >= m.vs && (m.vs & 0xfffn) === 0n && (m.ve & 0xfffn) === 0xfffn
    && (m.phys & 0xfffn) === 0n && m.phys + (m.ve - m.vs) <= U64_MAX;
}

export class VirtioDriver implements ModelDriver {
  private readonly dev: VirtioIommu;
  private readonly mem = new CountingMemory(new SparseRam([{ base: 0, size: 4096 }]));
  private readonly pool: ListenerPool;
  private readonly spec: boolean;
  /** Domain id -> its mappings, ascending by vs (the guest's record), and the device's store they are in (identity: a freed domain's successor has another). */
  private readonly record = new Map<number, { store: unknown; maps: Mapping[] }>();

  /**
   * The work bound of any action on this device: notifications only, at most
   * EVENTS_PER_MAPPING per mapping the domains hold (plus one for a new one)
   * per listener (a VFIO listener registers two notifiers, around the MSI window).
   */
  private readonly bound = (): number => {
    const mappings = 1 + [...this.record.values()].reduce((a, rec) => a + rec.maps.length, 0);
    return EVENTS_PER_MAPPING * mappings * 2 * (1 + this.pool.size);
  };

  constructor(private readonly host: FuzzHost) {
    const r = host.rng;
    this.spec = r.chance(0.3);
    this.dev = createVirtioIommu({
      profile: this.spec ? 'spec' : 'qemu', bootBypass: r.chance(0.5), endpoints: [...ENDPOINTS],
      ...(r.chance(0.3) ? { domainRange: { start: 1, end: 8 } } : {}),
    }, this.mem);
    host.useMemory(this.mem);
    host.instrument?.(this.dev);
    this.dev.events.on('guestError', () => host.count('guestErrors'));
    this.dev.events.on('fault', () => host.count('faults'));
    // DEVIOTLB_UNMAP is refused (C1: no device IOTLB); MAP-only and UNMAP-only listeners are served.
    this.pool = new ListenerPool(host, this.dev, ENDPOINTS, [F.ALL, F.ALL, F.ALL, F.UNMAP, F.MAP, F.DEVIOTLB_UNMAP], true);
    // Notifications count as the request's work (the device reads no guest memory).
    this.pool.onEvent = () => { this.mem.accesses++; };
    this.pool.bound = this.bound;
    this.dev.virtioFeatures(this.features());
  }

  private features(): bigint {
    let f = (1n << BigInt(VirtioIommuFeature.MAP_UNMAP)) | (1n << BigInt(VirtioIommuFeature.PROBE)) | (1n << BigInt(VirtioIommuFeature.BYPASS_CONFIG));
    if (this.host.rng.chance(0.5)) f |= 1n << BigInt(VirtioIommuFeature.MMIO);
    if (this.host.hostile && this.host.rng.chance(0.3)) f = this.host.rng.u64();
    return f;
  }

  op(): void {
    const r = this.host.rng;
    const roll = r.int(100);
    if (this.host.hostile && roll < 35) this.hostileRequest();
    else if (roll < 45) this.mapOp();
    else if (roll < 58) this.unmapOp();
    else if (roll < 66) this.attachOp();
    else if (roll < 69) this.detachOp();
    else if (roll < 82) this.translateOp();
    else if (roll < 88) this.pool.op();
    else if (roll < 93) this.pool.vhostAccess(this.iova() & ~0xfffn);
    else if (roll < 95) this.request(encodeProbe(r.pick(ENDPOINTS)), 512 + 4, 'PROBE');
    else if (roll < 97) this.configOp();
    else if (roll < 98) this.resetOp();
    else { while (this.dev.virtioTakeEvent()) this.host.count('faultReports'); }
    if (this.dev.needsReset && r.chance(0.2)) this.resetOp();
  }

  end(): void { this.pool.end(); }

  /** A clean IOVA: below 1 GiB, clear of the MSI window. */
  private iova(): bigint { return BigInt(this.host.rng.int(1 << 18)) << 12n | BigInt(this.host.rng.int(4096)); }

  private domainId(): number {
    const r = this.host.rng;
    return this.host.hostile && r.chance(0.2) ? r.pick([0, 9, 0xffff_ffff, r.u32()]) : 1 + r.int(4);
  }

  private mapOp(): void {
    const r = this.host.rng;
    const d = this.domainId();
    if ((this.record.get(d)?.maps.length ?? 0) >= MAX_MAPPINGS) { this.unmapOp(d); return; }
    const pages = BigInt(r.pick([1, 1, 1, 2, 3, 16, 512, 700]));
    const vs = (this.iova() & ~0xfffn) & (pages === 512n ? ~0x1f_ffffn : U64_MAX);
    const phys = (BigInt(0x1000 + r.int(0x10000)) << 12n) & (pages === 512n && r.chance(0.5) ? ~0x1f_ffffn : U64_MAX);
    const flags = r.pick([1, 2, 3, 3, 3, 7, 0]);
    this.request(encodeMap(d, vs, vs + (pages << 12n) - 1n, phys, flags), 4, 'MAP');
  }

  private unmapOp(domain?: number): void {
    const r = this.host.rng;
    const d = domain ?? this.domainId();
    const mine = this.record.get(d)?.maps ?? [];
    let lo: bigint;
    let hi: bigint;
    if (mine.length > 0 && r.chance(0.7)) {
      const a = r.int(mine.length);
      const b = Math.min(mine.length - 1, a + r.int(3));
      lo = mine[a]!.vs;
      hi = mine[b]!.ve;
      if (r.chance(0.15)) lo += 0x1000n; // splits the first one: S_RANGE (spec) or a partial unmap (QEMU)
    } else if (r.chance(0.2)) {
      [lo, hi] = [0n, U64_MAX];
    } else {
      lo = this.iova() & ~0xfffn;
      hi = lo + (BigInt(1 + r.int(1024)) << 12n) - 1n;
    }
    this.request(encodeUnmap(d, lo, hi), 4, 'UNMAP');
  }

  private attachOp(): void {
    const r = this.host.rng;
    const ep = this.host.hostile && r.chance(0.2) ? r.pick([r.u32(), 0x1_0010, 0x11]) : r.pick(ENDPOINTS);
    const bypass = r.chance(this.host.hostile ? 0.2 : 0.05) ? 1 : 0;
    this.request(encodeAttach(this.domainId(), ep, bypass | (this.host.hostile && r.chance(0.1) ? r.u32() : 0)), 4, 'ATTACH');
  }

  private detachOp(): void {
    const r = this.host.rng;
    const ep = r.pick(ENDPOINTS);
    const d = r.chance(0.8) ? this.dev.endpointDomain(ep) ?? this.domainId() : this.domainId();
    this.request(encodeDetach(d, ep), 4, 'DETACH');
  }

  private configOp(): void {
    const r = this.host.rng;
    if (r.chance(0.5)) {
      this.host.action('request', 'virtioConfigRead', 1, () => this.dev.virtioConfigRead(r.int(48), r.pick([1, 2, 4, 8, 3])), this.bound);
      return;
    }
    // Only `bypass` is writable; other offsets and values (and a bypass of 2) are the guest's mistakes.
    const off = r.chance(0.7) ? 36 : r.int(48);
    const value = r.chance(0.8) ? BigInt(r.int(2)) : BigInt(r.u32());
    this.host.action('request', `virtioConfigWrite(${off})`, 1, () => this.dev.virtioConfigWrite(off, r.pick([1, 1, 2, 4, 8]), value), this.bound);
    this.afterRequest('config write');
  }

  private resetOp(): void {
    const system = this.host.rng.chance(0.3);
    this.host.action('request', system ? 'reset' : 'virtioReset', 1, () => (system ? this.dev.reset() : this.dev.virtioReset()), this.bound);
    this.host.count('resets');
    this.dev.virtioFeatures(this.features());
    this.afterRequest(system ? 'system reset' : 'device reset');
  }

  /** Malformed and random requests. */
  private hostileRequest(): void {
    const r = this.host.rng;
    const k = r.int(8);
    let data: Uint8Array;
    let writable = 4;
    if (k === 0) { // random bytes, random sizes
      data = new Uint8Array(r.int(80));
      for (let i = 0; i < data.length; i++) data[i] = r.int(256);
      if (r.chance(0.7)) data[0] = 1 + r.int(6);
      writable = r.pick([0, 1, 3, 4, 4, 600, r.int(1 << 12)]);
    } else if (k === 1) { // a well-formed request cut short, or with a short tail
      const full = r.pick([encodeAttach(this.domainId(), r.pick(ENDPOINTS)), encodeDetach(this.domainId(), r.pick(ENDPOINTS)), encodeMap(this.domainId(), 0n, 0xfffn, 0n, 3), encodeUnmap(this.domainId(), 0n, U64_MAX), encodeProbe(r.pick(ENDPOINTS))]);
      data = full.subarray(0, r.int(full.length + 1));
      writable = r.pick([0, 2, 4, 100]);
    } else if (k === 2) { // unknown type or flags
      data = encodeMap(this.domainId(), 0n, 0xfffn, 0x1000n, r.u32());
      if (r.chance(0.5)) data[0] = 6 + r.int(250);
    } else if (k === 3) { // huge, inverted, unaligned, wrapping ranges
      const vs = r.chance(0.5) ? r.u64() : (BigInt(r.int(1 << 20)) << 12n) + BigInt(r.int(3));
      const ve = r.chance(0.3) ? U64_MAX : r.chance(0.3) ? vs - 1n - BigInt(r.int(4096)) : vs + (r.u64() >> BigInt(r.int(64)));
      const phys = r.chance(0.5) ? r.u64() : U64_MAX - BigInt(r.int(1 << 20));
      data = r.chance(0.7) ? encodeMap(this.domainId(), vs, BigInt.asUintN(64, ve), phys, 1 + r.int(7)) : encodeUnmap(this.domainId(), vs, BigInt.asUintN(64, ve));
    } else if (k === 4) { // overlapping MAPs on what the domain holds
      const d = this.domainId();
      const mine = this.record.get(d)?.maps ?? [];
      const m = mine.length ? r.pick(mine) : { vs: 0n, ve: 0xfffn };
      data = encodeMap(d, m.vs + BigInt(r.int(3)) * 0x800n, m.ve + BigInt(r.int(3)) * 0x1000n, 0x200000n, 3);
    } else if (k === 5) { // a PROBE with a writable part smaller than probe_size: a device error
      data = encodeProbe(r.pick(ENDPOINTS));
      writable = r.int(600);
    } else if (k === 6) {
      this.attachOp();
      return;
    } else {
      this.configOp();
      return;
    }
    this.request(data, writable, 'hostile request');
  }

  /** Sends one request, then updates the record from its status and checks everything against it. */
  private request(data: Uint8Array, writable: number, what: string): void {
    const out = this.host.action('request', `${what} ${Buffer.from(data).toString('hex')} (writable ${writable})`, 1,
      () => this.dev.virtioRequest(data, writable), this.bound);
    this.host.count('requests');
    if (out === undefined) return;
    // The status is at the start of the writable part (QEMU: used length 4), or after the probe properties.
    const status = out.length >= 4 ? out[out.length === 4 ? 0 : out.length - 4]! : undefined;
    if (status !== undefined) this.host.count(`status.${status}`);
    this.learn(data, status);
    this.afterRequest(what);
  }

  /** The record after a request whose answer was `status` (undefined: not completed). */
  private learn(data: Uint8Array, status: number | undefined): void {
    this.prune();
    const dv = new DataView(data.buffer, data.byteOffset, data.byteLength);
    const type = data[0];
    if (status === S.OK && type === 3 && data.length >= 36) {
      const d = dv.getUint32(4, true);
      const m = { vs: dv.getBigUint64(8, true), ve: dv.getBigUint64(16, true), phys: dv.getBigUint64(24, true), flags: dv.getUint32(32, true) };
      if (m.ve >= m.vs) {
        const rec = this.record.get(d) ?? { store: this.dev.domainMappings(d), maps: [] };
        rec.maps.push(m);
        rec.maps.sort((a, b) => (a.vs < b.vs ? -1 : 1));
        this.record.set(d, rec);
      }
    } else if (type === 4 && data.length >= 28 && (status === S.OK || status === S.RANGE)) {
      const d = dv.getUint32(4, true);
      const lo = dv.getBigUint64(8, true);
      const hi = dv.getBigUint64(16, true);
      const rec = this.record.get(d);
      if (rec && lo <= hi) {
        // 5.13.6.6: whole mappings inside [lo, hi] go; one the range would split gives S_RANGE. QEMU removes in
        // ascending order up to the first split one and keeps what it removed; the spec removes nothing then.
        const over = rec.maps.filter((m) => m.vs <= hi && m.ve >= lo);
        const cut = over.findIndex((m) => m.vs < lo || m.ve > hi);
        const gone = cut < 0 ? over : this.spec ? [] : over.slice(0, cut);
        const want = cut < 0 ? S.OK : S.RANGE;
        if (status !== want) this.host.finding('coherence', `virtio-iommu UNMAP [0x${lo.toString(16)}, 0x${hi.toString(16)}] of domain ${d} answered ${status}, the record says ${want}`);
        rec.maps = rec.maps.filter((m) => !gone.includes(m));
      }
    } else if (type === 1 && status === S.OK && data.length >= 20) {
      const d = dv.getUint32(4, true);
      const ep = dv.getUint32(8, true);
      if (this.dev.endpointDomain(ep) !== d) this.host.finding('coherence', `virtio-iommu ATTACH of endpoint 0x${ep.toString(16)} to domain ${d} answered S_OK, but the endpoint is in ${this.dev.endpointDomain(ep)}`);
    }
  }

  /**
   * A domain freed by the last action (QEMU put_domain: its last endpoint left, even when the same ATTACH made
   * it again; a device reset) took its mappings along: the device then holds another domain object, or none.
   */
  private prune(): void {
    for (const [d, rec] of [...this.record]) if (this.dev.domainMappings(d) !== rec.store) this.record.delete(d);
  }

  /** The checks after every request (views, containers, vhost caches, the mapping store). */
  private afterRequest(when: string): void {
    this.prune();
    if (this.host.tainted) return;
    for (const [d, { maps: mine }] of this.record) {
      const store = this.dev.domainMappings(d)?.list() ?? [];
      const same = store.length === mine.length && store.every((s, i) => s.virtStart === mine[i]!.vs && s.virtEnd === mine[i]!.ve && s.physStart === mine[i]!.phys && s.flags === mine[i]!.flags);
      if (!same) { this.host.finding('coherence', `virtio-iommu after ${when}: domain ${d} holds ${store.length} mappings, the statuses say ${mine.length}`); this.host.tainted = true; return; }
    }
    this.pool.checkViews(`after ${when}`, () => true, (sid) => this.expected(sid));
    this.pool.checkVhost(`after ${when}`, () => true, (sid, iova) => {
      const t = this.dev.translate(sid, iova, IOMMUAccessFlags.NONE);
      return isFault(t) ? undefined : { s: t.iova, e: t.iova + t.addrMask, xl: t.translatedAddr, perm: t.perm };
    });
  }

  /** What the listeners of endpoint `sid` hold: its domain's notifiable mappings. */
  private expected(sid: number): ShadowEntry[] {
    const d = this.dev.endpointDomain(sid);
    if (d === undefined) return [];
    return (this.record.get(d)?.maps ?? []).filter(notifiable).map((m) => ({ s: m.vs, e: m.ve, xl: m.phys, perm: m.flags & 3 }));
  }

  /** translate() of an endpoint in a domain with mappings against the record (outside the MSI window, where PROBE's region rules). */
  private translateOp(): void {
    const r = this.host.rng;
    const sid = r.chance(0.9) ? r.pick(ENDPOINTS) : r.int(0x20000);
    const iova = r.chance(0.9) ? this.iova() : r.u64();
    const access = r.pick([IOMMUAccessFlags.RO, IOMMUAccessFlags.WO, IOMMUAccessFlags.RW]);
    const t = this.host.action('dma', `translate(0x${sid.toString(16)}, 0x${iova.toString(16)})`, 1, () => this.dev.translate(sid, iova, access));
    if (t === undefined || this.host.tainted) return;
    this.host.count(isFault(t) ? 'translateFaults' : 'translations');
    const d = this.dev.endpointDomain(sid);
    const mine = d === undefined ? undefined : this.record.get(d)?.maps;
    if (!mine || mine.length === 0 || (iova >= MSI_FIRST && iova <= MSI_LAST) || iova === U64_MAX) return;
    // QEMU 7.2 looks up [iova, iova + 1] (findings "Off-by-one lookup"): judge only where both bytes agree.
    const at = (a: bigint) => mine.find((m) => m.vs <= a && a <= m.ve);
    const m = at(iova);
    if (m !== at(iova + 1n)) return;
    const ok = m !== undefined && (access & ~m.flags & 3) === 0;
    if (ok !== !isFault(t)) {
      this.host.finding('coherence', `virtio-iommu translate(0x${sid.toString(16)}, 0x${iova.toString(16)}, ${access}) ${isFault(t) ? 'faulted' : 'translated'} where the record has ${m ? `[0x${m.vs.toString(16)}, 0x${m.ve.toString(16)}] flags ${m.flags}` : 'nothing'}`);
    } else if (m && !isFault(t) && ((m.vs ^ m.phys) & 0xfffn) === 0n) {
      // (A mapping whose IOVA and address differ in page offset translates as QEMU does: the page of the
      // address, the offset of the IOVA, address_space_translate_iommu's mask; the spec profile refuses such MAPs.)
      const got = t.translatedAddr + (iova & t.addrMask);
      if (got !== m.phys + (iova - m.vs) || t.perm !== (m.flags & 3)) this.host.finding('coherence', `virtio-iommu translate(0x${sid.toString(16)}, 0x${iova.toString(16)}) gave 0x${got.toString(16)} perm ${t.perm}, the record 0x${(m.phys + iova - m.vs).toString(16)} perm ${m.flags & 3}`);
    }
  }
}
