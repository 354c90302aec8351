/**
 * Hostile-guest fuzzer (issue 13, "Make the campaigns part of the project"),
 * through the public API only: `createIntelVtd`, `SparseRam`, notifier
 * flags, `NotifierList`, `VfioContainer`/`VfioListener`, `VhostListener`.
 *
 * The run is a sequence of epochs, each on a fresh guest:
 * - `vtd-clean`: a plausible guest (VtdGuest) maps, unmaps, changes and
 *   invalidates 4 KiB / 2 MiB leaves, clears and restores context entries,
 *   toggles translation, does DMA; raw notifiers, VFIO and vhost listeners
 *   come and go. After every completed domain or global invalidation each
 *   MAP|UNMAP notifier's shadow view must equal the guest's own record of its
 *   tables (C8, C9), and each VFIO container must hold exactly that.
 * - `vtd-hostile`: the same, plus hostile writes: random table entries, loops
 *   (an entry pointing to its own table), aliasing (all 512 slots to one
 *   table), reserved bits, addresses outside RAM, random context/root
 *   entries, random register writes (GCMD, RTADDR, IQA, IQT past the queue,
 *   CCMD, IOTLB registers, fault registers, any offset) and random
 *   descriptors; DMA up to 1 MiB anywhere.
 * - `list-strict` / `list-repair`: a bare NotifierList fed random and
 *   hostile events, syncs and unmapAll, with notifiers that re-enter.
 * - `virtio-*`, `smmu-*`, `amd-*` (`--model virtio-iommu|smmuv3|amd-vi`):
 *   the other models' clean and hostile guests, driven by drivers.ts
 *   (virtio.ts, smmu.ts, amd.ts) through the FuzzHost interface of host.ts.
 *
 * What is reported (a finding carries the seed and op index to reproduce):
 * - `exception`: anything thrown out of the API that is not a documented
 *   refusal (C1 refusal at registration; a strict list refusing an illegal
 *   event the fuzzer itself sent);
 * - `violation`: an event a listener received that breaks C2..C6 or C10
 *   (checked by the fuzzer's shadow), or a violation the list reported for
 *   an event the model sent;
 * - `coherence`: a view that differs from the tables after an invalidation
 *   (C9) or a teardown (C8); a guest invalidation wait that never completes
 *   on a clean guest;
 * - `listener`: a listener's notify callback threw;
 * - `work`: a guest action over its bound of guest-memory accesses (see
 *   `workBound`), or slower than `SLOW_ACTION_MS`;
 * - `heap`: heapUsed after gc growing across the run (main.ts).
 * Deterministic per seed: every choice comes from one PRNG.
 */
import {
  ContractViolation, IOMMUAccessFlags, IOMMUNotifierFlag as F, NotifierList, SparseRam, U64_MAX, createIntelVtd, isFault,
} from '../src/index';
import type { IntelVtd, IOMMUModel, IOMMUTLBEvent, LeafWalker } from '../src/index';
import { VfioContainer, VfioListener, VhostListener } from '../src/listeners/index';
import { CTX, DATA, IQ, QIE, RAM_SIZE, REG, ROOT, SRTP, STATUS, TABLES, TE, VtdGuest } from './guest';
import type { Leaf } from './guest';
import { ShadowView, diffRuns, dropRaw, mergeRuns } from './shadow';
import type { RawNotifier, ShadowEntry } from './shadow';
import { CountingMemory, FUZZ_LIMITS, Rng } from './host';
import type { ActionKind, FindingKind, FuzzHost, FuzzModel, ModelDriver, ModelEpochKind } from './host';
import { modelOfEpoch, modelWorkBound, startDriver } from './drivers';
export { CountingMemory, FUZZ_LIMITS, Rng } from './host';
export type { ActionKind, FindingKind, FuzzModel } from './host';

/** Largest invalidation queue (IQA.QS = 7: 2^15 descriptors of 128 bits; 256-bit ones are 4 reads). */
const MAX_QUEUE_DESCRIPTORS = 1 << 15;

/**
 * The bound of guest-memory accesses (reads and writes, each call counted)
 * one guest action may cost:
 * - an MMIO write: the whole queue read once (4 accesses per descriptor), plus
 *   twice the sync walk budget (issue 13 item 11: the work per MMIO write is
 *   bounded, not per sync times address spaces times descriptors), plus 4096;
 * - a registration (its replay walks once): the walk budget plus 4096;
 * - a DMA or translate of `len` bytes: 16 accesses per page touched (root,
 *   context, up to 5 table levels, the data, a fault record) plus 64, so a
 *   DMA to unassigned addresses may not go byte by byte (item 12).
 */
export function workBound(kind: ActionKind, len = 1, model: FuzzModel = 'intel-vtd'): number {
  if (model !== 'intel-vtd') return modelWorkBound(model, kind, len);
  if (kind === 'mmio') return 4 * MAX_QUEUE_DESCRIPTORS + 2 * FUZZ_LIMITS.syncWalkBudget + 4096;
  if (kind === 'register') return FUZZ_LIMITS.syncWalkBudget + 4096;
  return 16 * (Math.ceil(len / 4096) + 1) + 64;
}



/** A guest action slower than this is a finding (secondary to the access count: wall time is noisy on a shared machine). */
export const SLOW_ACTION_MS = 1000;


export interface Finding {
  kind: FindingKind;
  seed: number;
  /** Index of the op (0-based, over the whole run) that showed it first. */
  op: number;
  epoch: string;
  message: string;
  stack?: string;
  /** How many ops showed the same finding (same kind and message head). */
  count: number;
}

export interface FuzzOptions {
  seed: number;
  ops: number;
  model?: FuzzModel;
  /** Ops per VT-d epoch (default 4000; list epochs are half as long). */
  epochOps?: number;
  /** The epoch cycle (default: clean, hostile, clean, list-repair, hostile, list-strict). */
  epochs?: readonly EpochKind[];
  /** Called with each model a virtio-iommu/SMMUv3/AMD-Vi driver creates, before the guest's set-up (a test seam). */
  instrument?: (model: IOMMUModel) => void;
  /** Called every `progressEvery` ops (main.ts samples the heap there). */
  onProgress?: (opsDone: number) => void;
  progressEvery?: number;
}

export interface FuzzResult {
  seed: number;
  ops: number;
  findings: Finding[];
  stats: Record<string, number>;
  /** Most guest-memory accesses one action cost, per action kind. */
  maxWork: Record<string, number>;
  maxActionMs: number;
}

const SIDS = [0x10, 0x18, 0x20, 0x28] as const;
/** sid -> domain: 0x10 and 0x18 share domain 1 (one table, two address spaces). */
const DOMAIN_OF: Record<number, number> = { 0x10: 1, 0x18: 1, 0x20: 2, 0x28: 3 };
/** IOVA windows of the clean guest, in frames: 16 MiB at 0 and 4 MiB at 1 GiB (clear of the MSI window). */
const WINDOWS = [{ base: 0, pages: 4096 }, { base: 0x40000, pages: 1024 }];

/** A raw fuzz notifier; `off` once its shadow saw a violation (the shadow then no longer follows the list). */

export type EpochKind = 'vtd-clean' | 'vtd-hostile' | 'list-strict' | 'list-repair' | ModelEpochKind;
export const EPOCH_KINDS: readonly EpochKind[] = ['vtd-clean', 'vtd-hostile', 'vtd-clean', 'list-repair', 'vtd-hostile', 'list-strict'];
/** The epoch cycle of each model (`--model`); intel-vtd's also fuzzes the bare notifier list. */
export const MODEL_EPOCHS: Readonly<Record<FuzzModel, readonly EpochKind[]>> = {
  'intel-vtd': EPOCH_KINDS,
  'virtio-iommu': ['virtio-clean', 'virtio-hostile'],
  smmuv3: ['smmu-clean', 'smmu-hostile'],
  'amd-vi': ['amd-clean', 'amd-hostile'],
};

/** Is `e` a documented refusal: a C1 refusal of a registration (contract C1, the model's notify_flag_changed). */
export function isC1Refusal(e: unknown): boolean {
  return e instanceof ContractViolation ? e.rule === 'C1'
    : e instanceof Error && /need(s)? (caching mode|device-iotlb)|C1|no flag|empty range|cannot serve MAP|does not support DEVIOTLB|MAP notifiers? (need|require)/i.test(e.message);
}

export class FuzzEngine implements FuzzHost {
  readonly findings = new Map<string, Finding>();
  readonly stats: Record<string, number> = {};
  readonly maxWork: Record<string, number> = { mmio: 0, register: 0, dma: 0, request: 0 };
  maxActionMs = 0;
  readonly rng: Rng;
  private op = 0;
  private epoch: EpochKind = 'vtd-clean';
  /** The model of the current epoch (work bounds are per model). */
  private model: FuzzModel = 'intel-vtd';
  /** The driver of a virtio-iommu, SMMUv3 or AMD-Vi epoch. */
  private driver: ModelDriver | undefined;

  // VT-d epoch state
  /** The guest memory of the epoch, counting accesses (drivers install theirs with useMemory). */
  private mem!: CountingMemory;
  private ram!: SparseRam;
  private vtd!: IntelVtd;
  private guest!: VtdGuest;
  private raw: RawNotifier[] = [];
  private vfio: Array<{ l: VfioListener; sid: number; start: bigint; end: bigint }> = [];
  private vhost: Array<{ l: VhostListener; sid: number }> = [];
  private cachingMode = true;
  /** IOTLB invalidation registers (ECAP.IRO) and fault recording registers (CAP.FRO) of this unit. */
  private iroReg = 0;
  private froReg = 0;

  // list epoch state
  private list!: NotifierList;
  private listLeaves: Leaf[] = [];

  readonly instrument: ((model: IOMMUModel) => void) | undefined;

  constructor(readonly seed: number, instrument?: (model: IOMMUModel) => void) {
    this.rng = new Rng(seed);
    this.instrument = instrument;
  }

  count(k: string, n = 1): void { this.stats[k] = (this.stats[k] ?? 0) + n; }

  overheadMs = 0;

  useMemory(mem: CountingMemory): void { this.mem = mem; }

  /**
   * Set by the first exception or violation of an epoch: the shadows may then
   * disagree with what the list holds, so coherence is no longer judged
   * (one bug, one finding). Also set when a sync ran out of its budget.
   */
  tainted = false;
  /** Set by the first exception of an epoch: shadows stop checking (the list's state may be corrupt; one bug, one finding). */
  shadowsOff = false;

  finding(kind: FindingKind, message: string, stack?: string): void {
    if (kind === 'exception' || kind === 'listener') { this.tainted = true; this.shadowsOff = true; }
    const key = `${kind}:${message.replace(/0x[0-9a-f]+|\d+/g, '#').slice(0, 120)}`;
    const f = this.findings.get(key);
    if (f) { f.count++; return; }
    if (this.findings.size >= 200) return;
    this.findings.set(key, { kind, seed: this.seed, op: this.op, epoch: this.epoch, message, ...(stack ? { stack } : {}), count: 1 });
  }

  thrown(where: string, e: unknown): void {
    const err = e instanceof Error ? e : new Error(String(e));
    this.finding('exception', `${where}: ${err.name}: ${err.message}`, err.stack);
  }

  /**
   * Runs one guest action, counting its guest-memory accesses and time
   * against the bound: `workBound(kind, len)` of the epoch's model, or
   * `bound()` (asked after the action, e.g. from how many commands it consumed).
   */
  action<T>(kind: ActionKind, what: string, len: number, f: () => T, bound?: () => number): T | undefined {
    const before = this.mem.accesses;
    const t0 = performance.now();
    const overhead0 = this.overheadMs;
    let out: T | undefined;
    try {
      out = f();
    } catch (e) {
      if (kind === 'register' && isC1Refusal(e)) this.count('c1Refusals');
      else this.thrown(what, e);
    }
    // The model's time: without what the fuzzer's shadows spent checking the events it delivered.
    const ms = performance.now() - t0 - (this.overheadMs - overhead0);
    const work = this.mem.accesses - before;
    if (work > this.maxWork[kind]!) this.maxWork[kind] = work;
    if (ms > this.maxActionMs) this.maxActionMs = ms;
    const limit = bound ? bound() : workBound(kind, len, this.model);
    if (work > limit) this.finding('work', `${what}: ${work} guest-memory accesses (bound ${limit})`);
    if (ms > SLOW_ACTION_MS) this.finding('work', `${what}: ${ms.toFixed(0)} ms (${work} accesses)`);
    return out;
  }

  run(opts: FuzzOptions): FuzzResult {
    const epochOps = opts.epochOps ?? 4000;
    const every = opts.progressEvery ?? 50_000;
    let epochIndex = 0;
    while (this.op < opts.ops) {
      const kinds = opts.epochs ?? MODEL_EPOCHS[opts.model ?? 'intel-vtd'];
      this.epoch = kinds[epochIndex++ % kinds.length]!;
      const end = Math.min(opts.ops, this.op + (this.epoch.startsWith('list') ? epochOps >> 1 : epochOps));
      const t0 = performance.now();
      this.tainted = false;
      this.shadowsOff = false;
      if (this.epoch.startsWith('vtd')) { this.model = 'intel-vtd'; this.startVtd(); }
      else if (this.epoch.startsWith('list')) { this.model = 'intel-vtd'; this.startList(this.epoch === 'list-repair' ? 'repair' : 'strict'); }
      else { this.model = modelOfEpoch(this.epoch as ModelEpochKind); this.driver = startDriver(this.epoch as ModelEpochKind, this); }
      while (this.op < end) {
        if (this.driver) this.driver.op();
        else if (this.epoch.startsWith('vtd')) this.vtdOp(); else this.listOp();
        this.op++;
        if (opts.onProgress && this.op % every === 0) opts.onProgress(this.op);
      }
      if (this.driver) { this.driver.end(); this.driver = undefined; }
      this.endEpoch();
      this.count(`epochs.${this.epoch}`);
      this.count(`ms.${this.epoch}`, Math.round(performance.now() - t0));
    }
    return {
      seed: this.seed, ops: this.op, findings: [...this.findings.values()], stats: this.stats, maxWork: this.maxWork, maxActionMs: this.maxActionMs,
    };
  }

  // ---------------------------------------------------------------- VT-d epochs

  get hostile(): boolean { return this.epoch.endsWith('-hostile'); }

  private startVtd(): void {
    this.ram = new SparseRam([{ base: 0, size: RAM_SIZE }]);
    this.mem = new CountingMemory(this.ram);
    const awBits = this.rng.chance(0.5) ? 39 : 48;
    this.cachingMode = this.rng.chance(0.9);
    try {
      this.vtd = createIntelVtd({ awBits, cachingMode: this.cachingMode, deviceIotlb: this.rng.chance(0.3) }, this.mem, FUZZ_LIMITS);
    } catch (e) {
      this.thrown('createIntelVtd', e);
      throw e;
    }
    this.tainted = false;
    this.shadowsOff = false;
    this.vtd.events.on('syncIncomplete', () => { this.count(this.hostile ? 'syncIncomplete' : 'syncIncompleteClean'); this.tainted = true; });
    this.vtd.events.on('guestError', () => this.count('guestErrors'));
    this.vtd.events.on('fault', () => this.count('faults'));
    const cap = this.vtd.mmioRead(0x8, 8);
    const ecap = this.vtd.mmioRead(0x10, 8);
    this.iroReg = Number((ecap >> 8n) & 0x3ffn) * 16; // ECAP.IRO (10.4.3): IVA at IRO, IOTLB at IRO + 8
    this.froReg = Number((cap >> 24n) & 0x3ffn) * 16; // CAP.FRO (10.4.2)
    this.guest = new VtdGuest(this.ram, (reg, size, v) => { this.vtd.mmioWrite(reg, size, v); }, awBits);
    this.raw = [];
    this.vfio = [];
    this.vhost = [];
    this.action('mmio', 'guest setup', 1, () => {
      for (const sid of SIDS) this.guest.setContext(sid, DOMAIN_OF[sid]!);
      this.guest.setup();
    });
    for (const sid of SIDS) {
      const notifiers = this.vtd.addressSpace(sid).notifiers;
      notifiers.events.on('violation', (v) => { if (v.rule !== 'C1') this.tainted = true; if (v.rule !== 'C1') this.finding('violation', `list reported ${v.rule} for an event the model sent on sid 0x${sid.toString(16)}: ${v.message}`); });
      notifiers.events.on('listenerError', (e) => this.finding('listener', `a listener threw on sid 0x${sid.toString(16)}: ${e instanceof Error ? e.message : String(e)}`, e instanceof Error ? e.stack : undefined));
    }
  }

  private endEpoch(): void {
    if (this.epoch.startsWith('vtd')) {
      for (const r of this.raw) r.handle?.dispose();
      for (const v of this.vfio) v.l.detach();
      for (const v of this.vhost) v.l.detach();
    }
    this.raw = [];
    this.vfio = [];
    this.vhost = [];
  }

  private mmio(reg: number, size: 4 | 8, value: bigint, what = `mmioWrite(0x${reg.toString(16)}, ${size}, 0x${value.toString(16)})`): void {
    this.action('mmio', what, 1, () => this.vtd.mmioWrite(reg, size, value));
  }

  private vtdOp(): void {
    const r = this.rng;
    const roll = r.int(100);
    if (this.hostile && roll < 30) { this.hostileOp(); return; }
    // Weights: cheap guest steps often, whole-domain work (domain/global invalidations, context changes, registrations) rarely.
    if (roll < 32) this.mapOp();
    else if (roll < 45) this.unmapOp();
    else if (roll < 61) this.invalidateOp();
    else if (roll < 79) this.dmaOp();
    else if (roll < 84) this.notifierOp();
    else if (roll < 90) this.vhostOp();
    else if (roll < 92) this.contextOp();
    else if (roll < 93) this.teOp();
    else this.readOp();
  }

  private randomPfn(): number {
    const w = this.rng.pick(WINDOWS);
    return w.base + this.rng.int(w.pages);
  }

  private mapOp(): void {
    if (!this.guest.tableSpaceLeft) { this.count('tableSpaceFull'); return; }
    const did = this.rng.int(3) + 1;
    const big = this.rng.chance(0.15);
    let pfn = this.randomPfn();
    if (big) pfn -= pfn % 512;
    const xl = (DATA >> 12) + (big ? 512 * this.rng.int(24) : this.rng.int(0x3000)); // inside RAM (hostile leaves go outside)
    const perm = 1 + this.rng.int(3);
    this.guest.map(did, pfn, big ? 512 : 1, xl, perm);
    this.count('maps');
  }

  private unmapOp(): void {
    const did = this.rng.int(3) + 1;
    const mine = this.guest.leaves.get(did);
    if (!mine || mine.size === 0) return;
    const leaves = [...mine.values()];
    this.guest.unmap(did, this.rng.pick(leaves));
    this.count('unmaps');
  }

  /** IOTLB invalidations (6.5.2.3): page-selective, domain, global; C9 checked after domain and global ones. */
  private invalidateOp(): void {
    const r = this.rng;
    const did = r.int(3) + 1;
    const g = r.int(20);
    let ok: boolean | undefined;
    if (g < 18) {
      const am = r.pick([0, 0, 1, 3, 9]);
      let pfn = this.randomPfn();
      if (!r.chance(0.2)) pfn -= pfn % (1 << am); // unaligned ADDR sometimes: C9 counts the aligned block (item 5)
      ok = this.action('mmio', `PSI did ${did} pfn 0x${pfn.toString(16)} am ${am}`, 1, () => this.guest.submit([0x2n | (3n << 4n) | (BigInt(did) << 16n), (BigInt(pfn) << 12n) | BigInt(am)]));
      // C9: the range invalidated is the aligned block of 2^AM pages that holds ADDR, whatever ADDR's low bits say.
      const first = pfn - (pfn % (1 << am));
      if (ok) this.checkCoherence(`after PSI of did ${did} ADDR pfn 0x${pfn.toString(16)} AM ${am}`, (sid) => DOMAIN_OF[sid] === did, [first, 1 << am]);
    } else if (g < 19) {
      ok = this.action('mmio', `DSI did ${did}`, 1, () => this.guest.submit([0x2n | (2n << 4n) | (BigInt(did) << 16n), 0n]));
      if (ok) this.checkCoherence(`after a domain invalidation of did ${did}`, (sid) => DOMAIN_OF[sid] === did);
    } else {
      ok = this.action('mmio', 'global IOTLB invalidation', 1, () => this.guest.submit([0x2n | (1n << 4n), 0n]));
      if (ok) this.checkCoherence('after a global invalidation', () => true);
    }
    this.count('invalidations');
    if (!this.hostile && ok === false) this.finding('coherence', 'a clean guest\'s invalidation wait descriptor did not complete');
  }

  /** C9 (and C8): every raw MAP|UNMAP notifier's view, and every VFIO container, equals the tables. Clean epochs only. */
  private checkCoherence(when: string, which: (sid: number) => boolean, block?: [number, number]): void {
    if (this.hostile || !this.cachingMode || this.tainted) return;
    this.count(block ? 'blockCoherenceChecks' : 'coherenceChecks');
    for (const n of this.raw) {
      if (!n.handle || n.off || !which(n.sid) || (n.view.flags & F.ALL) !== F.ALL || n.reenter) continue;
      let lo = n.view.start;
      let hi = n.view.end;
      if (block) {
        const bs = BigInt(block[0]) << 12n;
        const be = (BigInt(block[0] + block[1]) << 12n) - 1n;
        if (bs > lo) lo = bs;
        if (be < hi) hi = be;
        if (lo > hi) continue;
      }
      const tables = block ? this.guest.expectedIn(n.sid, block[0], block[1]) : this.guest.expected(n.sid);
      const d = diffRuns(n.view.runs(lo, hi), mergeRuns(tables, lo, hi));
      if (d) this.finding('coherence', `C9 ${when}: notifier on sid 0x${n.sid.toString(16)} [0x${n.view.start.toString(16)}, 0x${n.view.end.toString(16)}]: ${d}`);
    }
    if (block) return; // containers are checked whole, after domain and global invalidations
    for (const v of this.vfio) {
      if (!which(v.sid)) continue;
      const want = this.guest.expected(v.sid).filter((x) => x.s >= v.start && x.e <= v.end)
        .map((x) => ({ iova: x.s, translatedAddr: x.xl, addrMask: x.e - x.s, perm: x.perm as IOMMUAccessFlags }));
      const rep = v.l.check(want);
      if (!rep.ok) {
        const first = JSON.stringify([...rep.stale, ...rep.missing, ...rep.mismatched][0], (_k, x: unknown) => (typeof x === 'bigint' ? `0x${x.toString(16)}` : x));
        this.finding('coherence', `VFIO container of sid 0x${v.sid.toString(16)} [0x${v.start.toString(16)}, 0x${v.end.toString(16)}] ${when}: ${rep.stale.length} stale, ${rep.missing.length} missing, ${rep.mismatched.length} mismatched; first ${first}`);
      }
    }
  }

  private dmaOp(): void {
    const r = this.rng;
    const sid = r.chance(0.9) ? r.pick(SIDS) : r.int(0x10000);
    const iova = r.chance(0.8) ? BigInt(this.randomPfn()) << 12n | BigInt(r.int(4096)) : r.u64();
    const k = r.int(3);
    if (k === 0) {
      const access = r.pick([IOMMUAccessFlags.RO, IOMMUAccessFlags.WO, IOMMUAccessFlags.RW]);
      this.action('dma', `translate(0x${sid.toString(16)}, 0x${iova.toString(16)})`, 1, () => {
        const t = this.vtd.translate(sid, iova, access);
        this.count(isFault(t) ? 'translateFaults' : 'translations');
      });
      return;
    }
    const len = this.hostile && r.chance(0.02) ? 1 + r.int(1 << 20) : r.chance(0.1) ? 1 + r.int(16384) : 1 + r.int(256);
    const te = this.guest.translationOn ? '' : ' (translation off: gpa = iova)';
    // A clean guest never lets a device write while translation is off: DMA would then land on its own tables (identity).
    if (k === 1 || (!this.hostile && !this.guest.translationOn)) this.action('dma', `dmaRead(0x${sid.toString(16)}, 0x${iova.toString(16)}, ${len})${te}`, len, () => this.vtd.dmaRead(sid, iova, len));
    else this.action('dma', `dmaWrite(0x${sid.toString(16)}, 0x${iova.toString(16)}, ${len})${te}`, len, () => this.vtd.dmaWrite(sid, iova, new Uint8Array(len).fill(0xa5)));
    this.count('dmas');
  }

  /** A random notifier range: the whole space, a window, or (hostile) any bounds; clean ones are 2 MiB aligned so leaves are never cut. */
  private randomRange(): [bigint, bigint] {
    const r = this.rng;
    if (r.chance(0.4)) return [0n, U64_MAX];
    if (this.hostile && r.chance(0.5)) {
      const a = r.u64() >> BigInt(r.int(64));
      const b = a + (r.u64() >> BigInt(r.int(64)));
      return b > U64_MAX ? [a, U64_MAX] : [a, b];
    }
    const s = BigInt(r.int(24)) << 21n;
    return [s, s + (BigInt(1 + r.int(24)) << 21n) - 1n];
  }

  private notifierOp(): void {
    const r = this.rng;
    const live = this.raw.filter((n) => n.handle);
    if (live.length > 0 && r.chance(0.35)) {
      const n = r.pick(live);
      this.raw = dropRaw(this.raw, n);
      return;
    }
    const k = r.int(10);
    const sid = r.pick(SIDS);
    const [start, end] = this.randomRange();
    if (k < 6) {
      if (live.length >= 8) return;
      const flags = r.pick([F.ALL, F.ALL, F.ALL, F.UNMAP, F.MAP, F.DEVIOTLB_UNMAP, F.ALL | F.DEVIOTLB_UNMAP]);
      const n: RawNotifier = { view: new ShadowView(flags, start, end), sid, reenter: r.chance(0.2) };
      const handle = this.action('register', `registerNotifier(sid 0x${sid.toString(16)}, flags ${flags})`, 1, () => this.vtd.addressSpace(sid).registerNotifier({
        flags, start, end,
        notify: (ev: IOMMUTLBEvent) => {
          const bad = this.shadowsOff || n.off ? undefined : n.view.apply(ev);
          if (bad) { n.off = true; this.finding('violation', `sid 0x${sid.toString(16)} notifier flags ${flags}: ${bad}`); }
          // Re-entry: a listener that asks the IOMMU from inside a notification, as vhost does on a miss.
          if (n.reenter && ev.type !== F.MAP) this.vtd.translate(sid, ev.entry.iova, IOMMUAccessFlags.RO);
        },
      }));
      if (handle) { n.handle = handle; this.raw.push(n); } else n.view.removed = true;
    } else if (k < 8) {
      if (this.vfio.length >= 3) { const v = this.vfio.shift()!; v.l.detach(); return; }
      const l = new VfioListener(new VfioContainer(), r.chance(0.5) ? {} : { start, end });
      l.events.on('dmaError', () => this.count('vfioDmaErrors'));
      const h = this.action('register', `VfioListener.attach(sid 0x${sid.toString(16)})`, 1, () => l.attach(this.vtd.addressSpace(sid)));
      if (h) this.vfio.push({ l, sid, start: l.start, end: l.end });
    } else {
      if (this.vhost.length >= 3) { const v = this.vhost.shift()!; v.l.detach(); return; }
      const l = new VhostListener({
        miss: (iova, perm) => { const t = this.vtd.translate(sid, iova, perm); return isFault(t) ? undefined : t; },
        deviceIotlb: r.chance(0.3),
        ...(r.chance(0.5) ? {} : { start, end }),
      });
      const h = this.action('register', `VhostListener.attach(sid 0x${sid.toString(16)})`, 1, () => l.attach(this.vtd.addressSpace(sid)));
      if (h) this.vhost.push({ l, sid });
    }
  }

  private vhostOp(): void {
    if (this.vhost.length === 0) return;
    const v = this.rng.pick(this.vhost);
    const iova = BigInt(this.randomPfn()) << 12n;
    this.action('dma', 'VhostListener.translate', 1, () => v.l.translate(iova, this.rng.pick([IOMMUAccessFlags.RO, IOMMUAccessFlags.WO, IOMMUAccessFlags.RW])));
  }

  /** Context entries cleared or restored, each followed by a context-cache invalidation (6.5.2.1) as a driver does. */
  private contextOp(): void {
    const r = this.rng;
    const sid = r.pick(SIDS);
    if (this.guest.present.has(sid)) this.guest.clearContext(sid); else this.guest.setContext(sid, DOMAIN_OF[sid]!);
    const g = r.int(3);
    const desc: [bigint, bigint] = g === 0 ? [0x1n | (1n << 4n), 0n]
      : g === 1 ? [0x1n | (2n << 4n) | (BigInt(DOMAIN_OF[sid]!) << 16n), 0n]
        : [0x1n | (3n << 4n) | (BigInt(DOMAIN_OF[sid]!) << 16n) | (BigInt(sid) << 32n), 0n];
    this.action('mmio', `context-cache invalidation ${g} for sid 0x${sid.toString(16)}`, 1, () => this.guest.submit(desc));
    this.count('contextChanges');
  }

  private teOp(): void {
    const on = !this.guest.translationOn;
    this.action('mmio', `GCMD.TE ${on ? 'on' : 'off'}`, 1, () => this.guest.setTranslation(on));
    // C8: translation off tears every view down; on, the next global invalidation must map everything again.
    if (!on) this.checkCoherence('after translation was disabled', () => true);
  }

  private readOp(): void {
    const reg = this.rng.pick(Object.values(REG) as number[]);
    this.action('mmio', `mmioRead(0x${reg.toString(16)})`, 1, () => this.vtd.mmioRead(reg, reg === REG.RTADDR || reg === REG.IQA || reg === REG.IQH || reg === REG.IQT ? 8 : 4));
  }

  // ------------------------------------------------------------- hostile ops

  /** A hostile value for a table entry. */
  private hostilePte(): bigint {
    const r = this.rng;
    const table = r.pick(this.guest.tables.length ? this.guest.tables : [TABLES]);
    switch (r.int(7)) {
      case 0: return r.u64();
      case 1: return BigInt(table) | 3n; // a pointer to a table (often an ancestor: loops)
      case 2: return BigInt(table) | 3n | (BigInt(r.int(1024)) << 52n); // reserved bits
      case 3: return (1n << BigInt(33 + r.int(19))) | 3n | (r.chance(0.5) ? 0x80n : 0n); // outside RAM
      case 4: return (BigInt(DATA + r.int(0x3000) * 4096)) | 0x83n; // a large leaf at any level
      case 5: return 0x1_0000_0000n | BigInt(r.int(1 << 20)) << 12n | 3n; // a leaf to unassigned guest-physical memory
      default: return 0n;
    }
  }

  private hostileOp(): void {
    const r = this.rng;
    const tables = this.guest.tables;
    switch (r.int(12)) {
      case 0: case 1: { // one random table entry
        const t = r.pick(tables.length ? tables : [TABLES]);
        this.guest.w64(t + r.int(512) * 8, this.hostilePte());
        break;
      }
      case 2: { // a table whose every entry points to one table (aliasing) or to itself (loops)
        const t = r.pick(tables.length ? tables : [TABLES]);
        const to = r.chance(0.5) ? t : r.pick(tables.length ? tables : [TABLES]);
        const v = BigInt(to) | 3n;
        const page = new Uint8Array(4096);
        const dv = new DataView(page.buffer);
        for (let i = 0; i < 512; i++) dv.setBigUint64(i * 8, r.chance(0.9) ? v : this.hostilePte(), true);
        this.guest.ram.write(t, page);
        this.count('aliasedTables');
        break;
      }
      case 3: // a random context or root entry
        if (r.chance(0.7)) this.guest.w64(CTX + r.int(256) * 16 + (r.chance(0.5) ? 8 : 0), r.chance(0.5) ? r.u64() : this.hostilePte());
        else this.guest.w64(ROOT + r.int(256) * 16, r.chance(0.5) ? r.u64() : BigInt(r.pick([CTX, TABLES, 0x1_0000_0000])) | 1n);
        break;
      case 4: case 5: this.hostileMmio(); break;
      case 6: { // hostile descriptors at the guest's tail, then the tail moved past them (or anywhere)
        const n = 1 + r.int(8);
        for (let i = 0; i < n; i++) {
          const at = IQ + ((this.guest.queueTail + i) % 256) * 16;
          this.guest.w64(at, this.hostileDescLo());
          this.guest.w64(at + 8, r.chance(0.5) ? r.u64() : (BigInt(r.int(1 << 20)) << 12n) | BigInt(r.int(64)));
        }
        this.guest.queueTail += n;
        this.mmio(REG.IQT, 8, r.chance(0.9) ? BigInt(this.guest.queueTail) << 4n : BigInt(r.int(1 << 15)) << 4n);
        break;
      }
      case 7: if (r.chance(0.01)) { this.queueFlood(); break; } { // the wait status somewhere hostile
        this.guest.w64(IQ + this.guest.queueTail * 16, 0x5n | 0x20n | (r.chance(0.5) ? 0x10n : 0n));
        this.guest.w64(IQ + this.guest.queueTail * 16 + 8, r.chance(0.5) ? r.u64() : BigInt(STATUS + 1));
        this.guest.queueTail += 1;
        this.mmio(REG.IQT, 8, BigInt(this.guest.queueTail) << 4n);
        break;
      }
      default: { // plausible ops on hostile tables: invalidations that walk them
        if (r.chance(0.5)) this.invalidateOp(); else this.dmaOp();
      }
    }
    this.count('hostileOps');
  }

  /**
   * The whole queue (256 descriptors) filled with domain and global IOTLB
   * invalidations, then one IQT write: each descriptor syncs every address
   * space with MAP notifiers over (often aliased) tables, so the work of that
   * one MMIO write must be bounded as a whole (issue 13 item 11).
   */
  private queueFlood(): void {
    const r = this.rng;
    const start = this.guest.queueTail;
    for (let i = 0; i < 255; i++) {
      const at = IQ + ((start + i) % 256) * 16;
      this.guest.w64(at, r.chance(0.5) ? 0x2n | (1n << 4n) : 0x2n | (2n << 4n) | (BigInt(1 + r.int(3)) << 16n));
      this.guest.w64(at + 8, 0n);
    }
    this.guest.queueTail = start + 255;
    this.mmio(REG.IQT, 8, BigInt(this.guest.queueTail) << 4n, 'IQT write over a queue of 255 domain/global IOTLB invalidations');
    this.count('queueFloods');
  }

  private hostileDescLo(): bigint {
    const r = this.rng;
    const type = r.chance(0.8) ? BigInt(r.pick([1, 2, 2, 2, 3, 4, 5, 6, 7])) : BigInt(r.int(16));
    return type | (BigInt(r.int(4)) << 4n) | (BigInt(r.int(4)) << 16n) | (BigInt(r.pick(SIDS)) << 32n) | (r.chance(0.1) ? r.u64() & ~0xfn : 0n);
  }

  private hostileMmio(): void {
    const r = this.rng;
    const pick = r.int(14);
    const gcmdBits = [TE, SRTP, QIE, 1n << 25n, 1n << 24n, 1n << 27n, 1n << 23n, 1n << 29n];
    switch (pick) {
      case 0: { let v = 0n; for (const b of gcmdBits) if (r.chance(0.3)) v |= b; this.mmio(REG.GCMD, 4, v); break; }
      case 1: this.mmio(REG.RTADDR, 8, r.chance(0.5) ? r.u64() : BigInt(r.pick([ROOT, CTX, TABLES, 0x1_0000_0000])) | (BigInt(r.int(4)) << 10n)); this.mmio(REG.GCMD, 4, SRTP | (r.chance(0.5) ? TE | QIE : 0n)); break;
      case 2: this.mmio(REG.IQA, 8, (r.chance(0.5) ? r.u64() & ~0xfffn : BigInt(r.pick([IQ, 0x1_0000_0000, RAM_SIZE - 0x1000]))) | BigInt(r.int(8)) | (r.chance(0.2) ? 1n << 11n : 0n)); break;
      case 3: this.mmio(REG.IQT, 8, r.chance(0.5) ? BigInt(r.int(1 << 15)) << 4n : r.u64()); break; // tails past the queue size
      case 4: this.mmio(REG.IQH, 8, r.u64()); break;
      case 5: this.mmio(REG.CCMD, 8, (1n << 63n) | (BigInt(r.int(4)) << 61n) | BigInt(r.int(4)) | (BigInt(r.pick(SIDS)) << 16n) | (r.chance(0.2) ? r.u64() : 0n)); break;
      case 6: this.mmio(this.iroReg, 8, r.u64()); this.mmio(this.iroReg + 8, 8, (1n << 63n) | (BigInt(r.int(4)) << 60n) | (BigInt(r.int(4)) << 32n)); break; // IVA, then IOTLB
      case 7: this.mmio(REG.FSTS, 4, BigInt(r.u32())); break;
      case 8: this.mmio(REG.FECTL, 4, BigInt(r.u32())); this.mmio(REG.FEADDR, 4, BigInt(r.u32())); break;
      case 9: this.mmio(this.froReg + 16 * r.int(4) + r.pick([0, 8, 12]), r.pick([4, 8] as const), r.u64() & (r.chance(0.5) ? 0xffff_ffffn : U64_MAX)); break;
      case 10: this.mmio(REG.ICS, 4, BigInt(r.u32())); this.mmio(REG.IECTL, 4, BigInt(r.u32())); break;
      case 11: this.mmio(REG.GCMD, 4, QIE); this.mmio(REG.GCMD, 4, TE | QIE); break;
      default: { // any offset in the register page, either size
        const size = r.pick([4, 8] as const);
        const off = r.int(0x1000 / size) * size;
        this.mmio(off, size, size === 4 ? BigInt(r.u32()) : r.u64());
      }
    }
  }

  // ------------------------------------------------------------ list epochs

  private listMode: 'strict' | 'repair' = 'strict';

  private startList(mode: 'strict' | 'repair'): void {
    this.listMode = mode;
    this.list = new NotifierList({ mode, name: `fuzz-${mode}` });
    this.list.events.on('listenerError', (e) => {
      // A re-entrant MAP refused in strict mode comes back as the re-entrant listener's error: documented (C4 refusal of our own illegal event).
      if (e instanceof ContractViolation) this.count('reentrantRefusals');
      else this.finding('listener', `a listener threw: ${e instanceof Error ? e.message : String(e)}`, e instanceof Error ? e.stack : undefined);
    });
    this.listLeaves = [];
    this.raw = [];
    this.tainted = false;
    this.shadowsOff = false;
    // List epochs have no guest memory; the counter stays at zero.
    this.mem = new CountingMemory(new SparseRam([{ base: 0, size: 4096 }]));
  }

  /** A random leaf set over 8 MiB: 4 KiB, 64 KiB and 2 MiB leaves, disjoint and aligned. */
  private randomLeaves(): Leaf[] {
    const r = this.rng;
    const out: Leaf[] = [];
    let pfn = 0;
    while (pfn < 2048) {
      const pages = r.pick([1, 1, 1, 16, 512]);
      pfn = Math.ceil(pfn / pages) * pages;
      if (pfn + pages > 2048) break;
      if (r.chance(0.6)) out.push({ pfn, pages, xlPfn: (0x10000 + r.int(0x100)) * pages, perm: 1 + r.int(3) });
      pfn += pages;
    }
    return out;
  }

  private walker(leaves: Leaf[]): LeafWalker {
    return (first, last, sink) => {
      for (const l of leaves) if (l.pfn + l.pages - 1 >= first && l.pfn <= last) sink(l.pfn, l.pages, l.xlPfn, l.perm);
    };
  }

  private randomEvent(): IOMMUTLBEvent {
    const r = this.rng;
    const type = r.pick([F.MAP, F.MAP, F.UNMAP, F.UNMAP, F.DEVIOTLB_UNMAP]);
    const pages = r.pick([1, 1, 2, 16, 512, 0x1234 + 1]);
    let iova = BigInt(r.int(2048)) << 12n;
    if (r.chance(0.8)) iova &= ~((BigInt(pages) << 12n) - 1n);
    const mask = r.chance(0.9) ? (BigInt(pages) << 12n) - 1n : BigInt(r.int(1 << 24));
    const perm = (type === F.MAP ? (r.chance(0.95) ? 1 + r.int(3) : 0) : (r.chance(0.95) ? 0 : 3)) as IOMMUAccessFlags;
    return { type, entry: { iova, addrMask: mask, translatedAddr: type === F.MAP ? (0x10000000n + (BigInt(r.int(4096)) << 12n)) & ~mask : 0n, perm } };
  }

  private listOp(): void {
    const r = this.rng;
    const roll = r.int(100);
    const live = this.raw.filter((n) => n.handle);
    if (roll < 8 || live.length === 0) {
      if (live.length > 0 && (r.chance(0.4) || live.length >= 6)) {
        const n = r.pick(live);
        this.raw = dropRaw(this.raw, n);
        return;
      }
      const flags = r.pick([F.ALL, F.ALL, F.UNMAP, F.MAP, F.DEVIOTLB_UNMAP, F.ALL | F.DEVIOTLB_UNMAP, 0]);
      const s = BigInt(r.int(2048)) << 12n;
      const [start, end] = r.chance(0.5) ? [0n, U64_MAX] : [s, s + (BigInt(1 + r.int(2048)) << 12n) - 1n];
      const n: RawNotifier = { view: new ShadowView(flags, start, end), sid: 0, reenter: r.chance(0.25) };
      try {
        n.handle = this.list.register({
          flags, start, end,
          notify: (ev, h) => {
            const bad = this.shadowsOff || n.off ? undefined : n.view.apply(ev);
            if (bad) { n.off = true; this.finding('violation', `${this.listMode} list notifier flags ${flags}: ${bad}`); }
            // Re-entry (item 1, 2): a listener that maps, unregisters or syncs from inside an UNMAP.
            if (n.reenter && ev.type === F.UNMAP) {
              const k = r.int(3);
              if (k === 0) this.list.notify(this.randomEvent());
              else if (k === 1 && r.chance(0.3)) { h.dispose(); n.view.removed = true; }
              else this.list.notify({ type: F.MAP, entry: { iova: ev.entry.iova, addrMask: 0xfffn, translatedAddr: 0x5000n, perm: 3 } });
            }
          },
        });
        this.raw.push(n);
        this.list.replay(n.handle, this.walker(this.listLeaves));
      } catch (e) {
        if (!isC1Refusal(e)) this.thrown('NotifierList.register/replay', e);
        else this.count('c1Refusals');
      }
      return;
    }
    const noisy = this.raw.some((n) => n.handle && n.reenter);
    try {
      if (roll < 70) {
        this.list.notify(this.randomEvent());
      } else if (roll < 88) {
        if (r.chance(0.5)) this.listLeaves = this.randomLeaves();
        const a = BigInt(r.int(2048)) << 12n;
        const [s, e] = r.chance(0.3) ? [0n, U64_MAX] : [a, a + (BigInt(1 + r.int(2048)) << 12n) - 1n];
        this.list.sync(s, e, this.walker(this.listLeaves));
        if (!noisy && !this.tainted) this.listCoherence(s, e);
      } else {
        const a = BigInt(r.int(2048)) << 12n;
        const [s, e] = r.chance(0.5) ? [0n, U64_MAX] : [a, a + (BigInt(1 + r.int(2048)) << 12n) - 1n];
        this.list.unmapAll(s, e);
        if (!noisy && !this.tainted) for (const n of this.raw) {
          if (n.handle && !n.off && (n.view.flags & F.ALL) === F.ALL && n.view.runs(s, e).length) this.finding('coherence', `${this.listMode} unmapAll(0x${s.toString(16)}, 0x${e.toString(16)}) left entries in a view`);
        }
      }
    } catch (e) {
      // Strict mode refuses the fuzzer's own illegal events with a ContractViolation (documented).
      if (e instanceof ContractViolation && this.listMode === 'strict') this.count('strictRefusals');
      else this.thrown(`NotifierList (${this.listMode})`, e);
    }
  }

  /** After sync(s, e): each MAP|UNMAP view inside [s, e] is the walker's leaves (C9), whatever was delivered before. */
  private listCoherence(s: bigint, e: bigint): void {
    const leaves: ShadowEntry[] = this.listLeaves.map((l) => ({ s: BigInt(l.pfn) << 12n, e: (BigInt(l.pfn + l.pages) << 12n) - 1n, xl: BigInt(l.xlPfn) << 12n, perm: l.perm }));
    for (const n of this.raw) {
      if (!n.handle || n.off || (n.view.flags & F.ALL) !== F.ALL) continue;
      const lo = s > n.view.start ? s : n.view.start;
      const hi = e < n.view.end ? e : n.view.end;
      if (lo > hi) continue;
      const d = diffRuns(n.view.runs(lo, hi), mergeRuns(leaves, lo, hi));
      if (d) this.finding('coherence', `${this.listMode} list: after sync(0x${s.toString(16)}, 0x${e.toString(16)}): ${d}`);
    }
  }
}

/** Runs a campaign: `ops` guest actions from `seed`. */
export function runFuzz(opts: FuzzOptions): FuzzResult {
  return new FuzzEngine(opts.seed, opts.instrument).run(opts);
}
