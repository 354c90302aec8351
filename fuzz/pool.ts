/**
 * The listeners a model driver (virtio.ts, smmu.ts, amd.ts) attaches to a
 * model's address spaces, and the checks on them that do not depend on the
 * model: raw notifiers whose every event goes through a ShadowView (C2, C3,
 * C6, C10 as it arrives; C4/C5 for MAP|UNMAP views), VFIO containers and
 * vhost IOTLBs, coherence of MAP|UNMAP views and containers with what the
 * guest's own record says (C8, C9), and vhost caches against that record.
 */
import { IOMMUAccessFlags, IOMMUNotifierFlag as F, U64_MAX, isFault } from '../src/index';
import type { IOMMUModel, IOMMUTLBEvent } from '../src/index';
import { VfioContainer, VfioListener, VhostListener } from '../src/listeners/index';
import type { FuzzHost } from './host';
import { ShadowView, diffRuns, dropRaw, mergeRuns } from './shadow';
import type { RawNotifier, ShadowEntry } from './shadow';


/** The guest's idea of one translation: [s, e] -> xl with perm (`anyPerm`: the model answers the access asked, e.g. bypass). */
export type Expect = ShadowEntry & { anyPerm?: boolean };

export class ListenerPool {
  private raw: RawNotifier[] = [];
  private vfio: Array<{ l: VfioListener; sid: number }> = [];
  private vhost: Array<{ l: VhostListener; sid: number; devIotlb: boolean }> = [];
  /** Called for every event a raw notifier receives (a model without guest memory counts them as work). */
  onEvent: (() => void) | undefined;
  /** The work bound of a registration, when the model's is not `workBound('register')` (virtio-iommu: notifications). */
  bound: (() => number) | undefined;

  /**
   * `flagChoices`: the notifier flags registrations draw from (a model's
   * refusals, C1, are counted, not reported); `vfio`: whether VFIO
   * listeners (MAP|UNMAP) are attached at all.
   */
  constructor(
    private readonly host: FuzzHost,
    private readonly model: IOMMUModel,
    private readonly sids: readonly number[],
    private readonly flagChoices: readonly number[],
    private readonly vfioToo: boolean,
  ) {
    for (const sid of sids) {
      const notifiers = model.addressSpace(sid).notifiers;
      notifiers.events.on('violation', (v) => {
        if (v.rule === 'C1') return;
        host.tainted = true;
        host.finding('violation', `list reported ${v.rule} for an event the ${model.kind} model sent on sid 0x${sid.toString(16)}: ${v.message}`);
      });
      notifiers.events.on('listenerError', (e) => host.finding('listener', `a listener threw on sid 0x${sid.toString(16)}: ${e instanceof Error ? e.message : String(e)}`, e instanceof Error ? e.stack : undefined));
    }
  }

  /** A random notifier range: the whole space, a 2 MiB aligned window, or (hostile) any bounds. */
  randomRange(): [bigint, bigint] {
    const r = this.host.rng;
    if (r.chance(0.4)) return [0n, U64_MAX];
    if (this.host.hostile && r.chance(0.5)) {
      const a = r.u64() >> BigInt(r.int(64));
      const b = a + (r.u64() >> BigInt(r.int(64)));
      return b > U64_MAX ? [a, U64_MAX] : [a, b];
    }
    const s = BigInt(r.int(24)) << 21n;
    return [s, s + (BigInt(1 + r.int(24)) << 21n) - 1n];
  }

  /** Registers or removes a raw notifier, a VFIO listener or a vhost listener. */
  op(): void {
    const r = this.host.rng;
    const live = this.raw.filter((n) => n.handle);
    if (live.length > 0 && r.chance(0.3)) {
      const n = r.pick(live);
      this.raw = dropRaw(this.raw, n);
      return;
    }
    const k = r.int(10);
    const sid = r.pick(this.sids);
    const [start, end] = this.randomRange();
    if (k < 6) {
      if (live.length >= 8) return;
      const flags = r.pick(this.flagChoices);
      const n: RawNotifier = { view: new ShadowView(flags, start, end), sid, reenter: r.chance(0.2) };
      const handle = this.host.action('register', `registerNotifier(sid 0x${sid.toString(16)}, flags ${flags})`, 1, () => this.model.addressSpace(sid).registerNotifier({
        flags, start, end,
        notify: (ev: IOMMUTLBEvent) => {
          this.onEvent?.();
          const t0 = performance.now();
          const bad = this.host.shadowsOff || n.off ? undefined : n.view.apply(ev);
          this.host.overheadMs += performance.now() - t0;
          if (bad) { n.off = true; this.host.finding('violation', `${this.model.kind} sid 0x${sid.toString(16)} notifier flags ${flags}: ${bad}`); }
          // Re-entry: a listener that asks the IOMMU from inside a notification, as vhost does on a miss.
          if (n.reenter && ev.type !== F.MAP) this.model.translate(sid, ev.entry.iova, IOMMUAccessFlags.RO);
        },
      }), this.bound);
      if (handle) { n.handle = handle; this.raw.push(n); } else n.view.removed = true;
    } else if (k < 8 && this.vfioToo) {
      if (this.vfio.length >= 3) { this.vfio.shift()!.l.detach(); return; }
      const l = new VfioListener(new VfioContainer(), r.chance(0.5) ? {} : { start, end });
      l.events.on('dmaError', () => this.host.count('vfioDmaErrors'));
      const h = this.host.action('register', `VfioListener.attach(sid 0x${sid.toString(16)})`, 1, () => l.attach(this.model.addressSpace(sid)), this.bound);
      if (h) this.vfio.push({ l, sid });
    } else {
      if (this.vhost.length >= 3) { this.vhost.shift()!.l.detach(); return; }
      // A device-IOTLB vhost is told only of device-IOTLB invalidations: its cache is judged in hostile epochs only (shape, not staleness).
      const devIotlb = this.host.hostile && r.chance(0.3);
      const l = new VhostListener({
        miss: (iova, perm) => { const t = this.model.translate(sid, iova, perm); return isFault(t) ? undefined : t; },
        deviceIotlb: devIotlb,
        ...(r.chance(0.5) ? {} : { start, end }),
      });
      const h = this.host.action('register', `VhostListener.attach(sid 0x${sid.toString(16)})`, 1, () => l.attach(this.model.addressSpace(sid)), this.bound);
      if (h) this.vhost.push({ l, sid, devIotlb });
    }
  }

  /** A device behind a vhost listener reads at `iova` (a miss asks the model). */
  vhostAccess(iova: bigint): void {
    if (this.vhost.length === 0) return;
    const r = this.host.rng;
    const v = r.pick(this.vhost);
    this.host.action('dma', 'VhostListener.translate', 1, () => v.l.translate(iova, r.pick([IOMMUAccessFlags.RO, IOMMUAccessFlags.WO, IOMMUAccessFlags.RW])));
  }

  get size(): number { return this.raw.length + this.vfio.length + this.vhost.length; }

  /**
   * C9/C8: every MAP|UNMAP view of a sid `which` selects, clipped to
   * `block` (a byte range) when given, equals `expected(sid)` as a page
   * function; every VFIO container of those sids (whole checks only) holds
   * exactly the expected entries inside the ranges it covers.
   */
  checkViews(when: string, which: (sid: number) => boolean, expected: (sid: number) => ShadowEntry[], block?: [bigint, bigint]): void {
    if (this.host.tainted) return;
    this.host.count(block ? 'blockCoherenceChecks' : 'coherenceChecks');
    for (const n of this.raw) {
      if (!n.handle || n.off || !which(n.sid) || (n.view.flags & F.ALL) !== F.ALL || n.reenter) continue;
      // Only whole 4 KiB pages of the range can be delivered (C6: an event lies wholly inside the range).
      let lo = (n.view.start + 0xfffn) & ~0xfffn;
      let hi = ((n.view.end + 1n) & ~0xfffn) - 1n;
      if (lo > hi) continue;
      if (block) {
        if (block[0] > lo) lo = block[0];
        if (block[1] < hi) hi = block[1];
        if (lo > hi) continue;
      }
      const d = diffRuns(n.view.runs(lo, hi), mergeRuns(expected(n.sid), lo, hi));
      if (d) this.host.finding('coherence', `C9 ${when}: ${this.model.kind} notifier on sid 0x${n.sid.toString(16)} [0x${n.view.start.toString(16)}, 0x${n.view.end.toString(16)}]: ${d}`);
    }
    if (block) return;
    for (const v of this.vfio) {
      // A range that cuts pages: the cut pages never reach VFIO (C6), which check() does not know.
      if (!which(v.sid) || (v.l.start & 0xfffn) !== 0n || ((v.l.end + 1n) & 0xfffn) !== 0n) continue;
      // check() compares inside the ranges the listener covers (its range minus reserved windows), so the whole expectation goes in.
      const want = expected(v.sid).map((x) => ({ iova: x.s, translatedAddr: x.xl, addrMask: x.e - x.s, perm: x.perm as IOMMUAccessFlags }));
      const rep = v.l.check(want);
      if (!rep.ok) {
        const first = JSON.stringify([...rep.stale, ...rep.missing, ...rep.mismatched][0], (_k, x: unknown) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x));
        this.host.finding('coherence', `${this.model.kind} VFIO container of sid 0x${v.sid.toString(16)} [0x${v.l.start.toString(16)}, 0x${v.l.end.toString(16)}] ${when}: ${rep.stale.length} stale, ${rep.missing.length} missing, ${rep.mismatched.length} mismatched; first ${first}`);
      }
    }
  }

  /**
   * A vhost IOTLB never serves a translation the guest invalidated: each
   * cached entry of a sid `which` selects, unless `skip` says the guest
   * changed its range without invalidating it yet, must lie inside one
   * translation `lookup` gives for its first byte, at the same offset and
   * with the same permission.
   */
  checkVhost(when: string, which: (sid: number) => boolean, lookup: (sid: number, iova: bigint) => Expect | undefined, skip?: (sid: number, s: bigint, e: bigint) => boolean): void {
    if (this.host.tainted) return;
    for (const v of this.vhost) {
      if (v.devIotlb || !which(v.sid)) continue;
      this.host.count('vhostChecks');
      for (const e of v.l.entries()) {
        const last = e.iova + e.size - 1n;
        if (skip?.(v.sid, e.iova, last)) continue;
        const want = lookup(v.sid, e.iova);
        const show = `[0x${e.iova.toString(16)}, 0x${last.toString(16)}] -> 0x${e.uaddr.toString(16)} perm ${e.perm}`;
        if (!want) { this.host.finding('coherence', `vhost ${when}: ${this.model.kind} sid 0x${v.sid.toString(16)} still serves ${show}, which the guest no longer maps`); continue; }
        if (last > want.e || e.uaddr !== want.xl + (e.iova - want.s) || (want.anyPerm ? (e.perm & ~want.perm) !== 0 : e.perm !== want.perm)) {
          this.host.finding('coherence', `vhost ${when}: ${this.model.kind} sid 0x${v.sid.toString(16)} serves ${show} where the guest maps [0x${want.s.toString(16)}, 0x${want.e.toString(16)}] -> 0x${want.xl.toString(16)} perm ${want.perm}`);
        }
      }
    }
  }

  /** Teardown at the end of an epoch: every listener unregistered (C10 from then on). */
  end(): void {
    for (const n of this.raw) { n.handle?.dispose(); n.view.removed = true; }
    for (const v of this.vfio) v.l.detach();
    for (const v of this.vhost) v.l.detach();
    this.raw = [];
    this.vfio = [];
    this.vhost = [];
  }
}

/** What a device-side op needs of a register-based model. */
export interface DmaModel {
  translate: IOMMUModel['translate'];
  dmaRead(sid: number, iova: bigint, len: number): unknown;
  dmaWrite(sid: number, iova: bigint, data: Uint8Array): unknown;
}

/**
 * A device access: translate(), or a DMA read or write of up to 256 bytes,
 * sometimes 16 KiB, and (hostile) up to 1 MiB, at `iova` (a guest-chosen
 * IOVA, or anywhere). `readOnly(sid)`: a clean guest never lets that device
 * write (bypass: the write would land on its own tables). `tag` suffixes
 * the translation counters (e.g. per SMMUv3 stage).
 */
export function deviceAccess(host: FuzzHost, model: DmaModel, sids: readonly number[], iova: () => bigint, readOnly: (sid: number) => boolean, tag = ''): void {
  const r = host.rng;
  const sid = r.chance(0.9) ? r.pick(sids) : r.int(0x10000);
  const at = r.chance(0.8) ? iova() | BigInt(r.int(4096)) : r.u64();
  const k = r.int(3);
  if (k === 0) {
    const access = r.pick([IOMMUAccessFlags.RO, IOMMUAccessFlags.WO, IOMMUAccessFlags.RW]);
    host.action('dma', `translate(0x${sid.toString(16)}, 0x${at.toString(16)})`, 1, () => {
      host.count(`${isFault(model.translate(sid, at, access)) ? 'translateFaults' : 'translations'}${tag}`);
    });
    return;
  }
  const len = host.hostile && r.chance(0.02) ? 1 + r.int(1 << 20) : r.chance(0.1) ? 1 + r.int(16384) : 1 + r.int(256);
  if (k === 1 || (!host.hostile && readOnly(sid))) host.action('dma', `dmaRead(0x${sid.toString(16)}, 0x${at.toString(16)}, ${len})`, len, () => model.dmaRead(sid, at, len));
  else host.action('dma', `dmaWrite(0x${sid.toString(16)}, 0x${at.toString(16)}, ${len})`, len, () => model.dmaWrite(sid, at, new Uint8Array(len).fill(0xa5)));
  host.count('dmas');
}
