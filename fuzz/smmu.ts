/**
 * The SMMUv3 driver of the fuzzer (epochs `smmu-clean`, `smmu-hostile`),
 * through MMIO and guest memory only, formats from the architecture (IHI
 * 0070: 5.2 STE, 5.4 CD, 4.x commands, 7.3 event records; Arm ARM D8
 * VMSAv8-64 4 KiB-granule descriptors). Stage "1", "2" or "nested" per epoch.
 *
 * Clean guest: a linear stream table; per StreamID a CD (stage 1: ASIDs 1,
 * 1, 2, 3, two streams sharing one table) or stage-2 tables per VMID;
 * nested streams run stage 1 over an identity stage 2. 4 KiB pages and
 * 2 MiB blocks mapped, changed and unmapped lazily, then TLBI_NH_VA /
 * TLBI_S2_IPA (single page or TG/NUM/SCALE ranges), TLBI_NH_ASID,
 * TLBI_S12_VMALL, TLBI_NH_ALL, TLBI_NSNH_ALL, each followed by CMD_SYNC;
 * STEs switched between translating, abort and bypass with CFGI_STE and a
 * TLBI of the old ASID/VMID (as Linux detaches a domain). MAP notifiers are
 * refused (C1: no caching mode); every event an UNMAP listener receives is
 * checked (C2, C3, C6, C10) and no vhost IOTLB may serve a translation the
 * guest changed and invalidated (checked against the guest's record after
 * every sync). The event queue is drained and each record's type checked.
 * Hostile guest: random, looping, aliased, out-of-RAM and reserved-bit
 * descriptors, random STEs and CDs, stream tables outside RAM or 2-level
 * with any split, queues of any size with PROD past it, random commands,
 * command floods, random registers with either access size.
 */
import { IOMMUNotifierFlag as F, SMMU_CMD as CMD, SMMU_EVT, SparseRam, U64_MAX, createSmmuV3 } from '../src/index';
import type { SmmuStage, SmmuV3 } from '../src/index';
import { CountingMemory } from './host';
import type { FuzzHost, ModelDriver } from './host';
import { ListenerPool, deviceAccess } from './pool';
import { RadixTables, leafEntry, randomPfn } from './radix';
import type { PteFormat } from './radix';

const RAM_SIZE = 64 << 20;
const STRTAB = 0x10_0000; // linear, 256 STEs of 64 bytes
const CMDQ = 0x11_0000; // 256 commands of 16 bytes
const CMDQ_LOG2 = 8;
const EVTQ = 0x11_8000; // 64 records of 32 bytes
const EVTQ_LOG2 = 6;
const CDS = 0x11_c000; // one CD of 64 bytes per StreamID
const S2_IDENTITY = 0x11_f000; // nested: a level-1 stage-2 table, 1 GiB identity blocks
const TABLES = 0x20_0000;
const TABLES_END = 0x100_0000;
const DATA = 0x100_0000;
const REG = {
  CR0: 0x20, CR0ACK: 0x24, CR1: 0x28, CR2: 0x2c, GBPA: 0x44, IRQ_CTRL: 0x50, GERROR: 0x60, GERRORN: 0x64,
  STRTAB_BASE: 0x80, STRTAB_BASE_CFG: 0x88, CMDQ_BASE: 0x90, CMDQ_PROD: 0x98, CMDQ_CONS: 0x9c,
  EVENTQ_BASE: 0xa0, EVENTQ_PROD: 0x100a8, EVENTQ_CONS: 0x100ac,
} as const;
const CR0_ON = 0xdn; // SMMUEN | EVENTQEN | CMDQEN
const AF = 1n << 10n;
const AP_RO = 1n << 7n;
const S2AP_R = 1n << 6n;
const S2AP_W = 1n << 7n;
const OA = 0x0000_ffff_ffff_f000n;
const SIDS = [0x10, 0x18, 0x20, 0x28] as const;
/** StreamID -> ASID (stage 1) or VMID (stage 2): 0x10 and 0x18 share one. */
const KEY_OF: Record<number, number> = { 0x10: 1, 0x18: 1, 0x20: 2, 0x28: 3 };
/** The most pieces one range TLBI becomes (model: at most ~128 aligned blocks), and one walk's reads (nested: 4 S1 levels each through a 4-level S2, plus the S2 of the output). */
const PIECES_PER_TLBI = 130;
const READS_PER_WALK = 4 * 5 + 4 + 4;
/** Reads of one stream's configuration: STE, L1 descriptor, CD, with the CD fetched through stage 2 when nested. */
const READS_PER_CONFIG = 3 + 5;
const EVENT_TYPES = new Set<number>(Object.values(SMMU_EVT));

type SteState = 'translate' | 'abort' | 'bypass';

/** VMSAv8-64 4 KiB-granule descriptors; my level 1 is Arm level 3 (pages), 2 is level 2 (2 MiB blocks). */
function vmsaFormat(stage2: boolean): PteFormat {
  const attrs = (perm: number): bigint => (stage2 ? (perm & 1 ? S2AP_R : 0n) | (perm & 2 ? S2AP_W : 0n) : perm & 2 ? 0n : AP_RO);
  return {
    table: (addr) => BigInt(addr) | 3n,
    leaf: (xlPfn, level, perm) => (BigInt(xlPfn) << 12n) | (level === 1 ? 3n : 1n) | AF | attrs(perm),
    next: (pte, level) => (level > 1 && (pte & 3n) === 3n ? Number(pte & OA) : undefined),
  };
}

export class SmmuDriver implements ModelDriver {
  private readonly ram = new SparseRam([{ base: 0, size: RAM_SIZE }]);
  private readonly mem = new CountingMemory(this.ram);
  private readonly smmu: SmmuV3;
  private readonly pool: ListenerPool;
  private readonly tables: RadixTables;
  private readonly stage: SmmuStage;
  /** Input size: 39 bits (3 levels) or 48 (4 levels). */
  private readonly bits: 39 | 48;
  private readonly ste = new Map<number, SteState>();
  private prod = 0;
  private evCons = 0;

  constructor(private readonly host: FuzzHost) {
    const r = host.rng;
    this.stage = r.pick(['1', '1', '2', 'nested'] as const);
    this.smmu = createSmmuV3({ stage: this.stage }, this.mem);
    host.useMemory(this.mem);
    host.instrument?.(this.smmu);
    this.smmu.events.on('guestError', () => host.count('guestErrors'));
    this.smmu.events.on('fault', () => host.count('faults'));
    this.smmu.events.on('syncIncomplete', () => { host.count('syncIncomplete'); host.tainted = true; });
    this.bits = r.chance(0.5) ? 39 : 48;
    this.tables = new RadixTables(this.ram, vmsaFormat(this.stage === '2'), this.bits === 48 ? 4 : 3, TABLES, TABLES_END);
    // MAP is refused (C1): no caching mode. DEVIOTLB_UNMAP listeners get ATC_INV ranges.
    this.pool = new ListenerPool(host, this.smmu, SIDS, [F.UNMAP, F.UNMAP, F.UNMAP, F.MAP, F.ALL, F.DEVIOTLB_UNMAP, F.UNMAP | F.DEVIOTLB_UNMAP], false);
    host.action('mmio', 'guest setup', 1, () => {
      if (this.stage === 'nested') this.ram.writeU64(S2_IDENTITY, 0n | 1n | AF | S2AP_R | S2AP_W); // IPA [0, 1 GiB) = PA
      for (const sid of SIDS) this.setSte(sid, 'translate');
      this.mmioW(REG.STRTAB_BASE, 8, BigInt(STRTAB));
      this.mmioW(REG.STRTAB_BASE_CFG, 4, 8n); // linear, LOG2SIZE 8
      this.mmioW(REG.CMDQ_BASE, 8, BigInt(CMDQ | CMDQ_LOG2));
      this.mmioW(REG.EVENTQ_BASE, 8, BigInt(EVTQ | EVTQ_LOG2));
      this.mmioW(REG.IRQ_CTRL, 4, 5n);
      this.mmioW(REG.CR0, 4, CR0_ON);
      this.run([0x04, 0, 31, 0], [0x30, 0, 0, 0]); // CFGI_ALL, TLBI_NSNH_ALL
    });
  }

  private mmioW(reg: number, size: 4 | 8, v: bigint): void { this.smmu.mmioWrite(reg, size, v); }

  /**
   * One MMIO write as a guest action. Its bound: the commands it consumed
   * (CMDQ_CONS before and after, modulo the queue's wrap) each reading 4
   * words and, per stream with UNMAP listeners, for each of at most
   * PIECES_PER_TLBI pieces a configuration and two walks (the leaves at the
   * edges of the UNMAP); plus 4096 (event records, the walks of an enable).
   */
  private mmio(reg: number, size: 4 | 8, value: bigint, what = `mmioWrite(0x${reg.toString(16)}, ${size}, 0x${value.toString(16)})`): void {
    const cons0 = Number(this.smmu.mmioRead(REG.CMDQ_CONS, 4)) & 0xfffff;
    this.host.action('mmio', what, 1, () => this.smmu.mmioWrite(reg, size, value), () => {
      const log2 = Math.min(19, Number(this.smmu.mmioRead(REG.CMDQ_BASE, 8) & 0x1fn));
      const wrap = 2 ** (log2 + 1);
      const cons1 = Number(this.smmu.mmioRead(REG.CMDQ_CONS, 4)) & 0xfffff;
      const consumed = (((cons1 - cons0) % wrap) + wrap) % wrap + 1;
      return consumed * (4 + PIECES_PER_TLBI * SIDS.length * (READS_PER_CONFIG + 2 * READS_PER_WALK)) + 4096;
    });
  }

  /** STE (IHI 0070 5.2): V, Config, S1ContextPtr, S2VMID, S2T0SZ/SL0/TG/PS/AA64/R, S2TTB; CD (5.4) for stage 1. */
  private setSte(sid: number, state: SteState): void {
    const key = KEY_OF[sid]!;
    const root = this.tables.top(key)!;
    const s1 = this.stage !== '2';
    const config = state === 'abort' ? 0b000 : state === 'bypass' ? 0b100 : this.stage === '1' ? 0b101 : this.stage === '2' ? 0b110 : 0b111;
    const cd = CDS + sid * 64;
    const ste = new DataView(new ArrayBuffer(64));
    ste.setUint32(0, (1 | (config << 1) | (s1 ? cd : 0)) >>> 0, true);
    if (this.stage !== '1') {
      // Stage 2: 4 KiB granule, 44-bit PA, AArch64, S2R; T0SZ 25 with SL0 1 (level 1) or T0SZ 16 with SL0 2 (level 0).
      const s2ttb = this.stage === 'nested' ? S2_IDENTITY : root;
      const [t0sz, sl0] = this.stage === 'nested' || this.bits === 39 ? [25, 1] : [16, 2];
      ste.setUint32(16, this.stage === 'nested' ? 1 : key, true);
      ste.setUint32(20, (t0sz | (sl0 << 6) | (4 << 16) | (1 << 19) | (1 << 26)) >>> 0, true);
      ste.setUint32(24, s2ttb, true);
    }
    this.ram.write(STRTAB + sid * 64, new Uint8Array(ste.buffer));
    if (s1) {
      const c = new DataView(new ArrayBuffer(64));
      const t0sz = 64 - this.bits;
      c.setUint32(0, (t0sz | (16 << 16) | (2 << 22) | (1 << 30) | (1 << 31)) >>> 0, true); // T0SZ, TG0 4K, EPD1, V
      c.setUint32(4, (4 | (1 << 9) | (1 << 13) | (1 << 14) | (key << 16)) >>> 0, true); // IPS 44, AA64, R, A, ASID
      c.setUint32(8, root, true);
      this.ram.write(cd, new Uint8Array(c.buffer));
    }
    this.ste.set(sid, state);
  }

  /** Commands (four words each) and a CMD_SYNC at PROD, one PROD write; true when CONS caught up without error. */
  private run(...cmds: number[][]): boolean {
    for (const c of [...cmds, [CMD.SYNC, 0, 0, 0]]) {
      const at = CMDQ + (this.prod % 2 ** CMDQ_LOG2) * 16;
      for (let i = 0; i < 4; i++) this.ram.writeU32(at + 4 * i, (c[i] ?? 0) >>> 0);
      this.prod = (this.prod + 1) % 2 ** (CMDQ_LOG2 + 1);
    }
    this.mmioW(REG.CMDQ_PROD, 4, BigInt(this.prod));
    return Number(this.smmu.mmioRead(REG.CMDQ_CONS, 4)) === this.prod;
  }

  op(): void {
    const r = this.host.rng;
    const roll = r.int(100);
    if (this.host.hostile && roll < 30) { this.hostileOp(); return; }
    if (roll < 32) this.mapOp();
    else if (roll < 45) this.unmapOp();
    else if (roll < 61) this.invalidateOp();
    else if (roll < 75) this.dmaOp();
    else if (roll < 81) this.pool.op();
    else if (roll < 89) { this.pool.vhostAccess(BigInt(this.randomPfn()) << 12n); }
    else if (roll < 91) this.steOp();
    else if (roll < 96) this.drainEvents();
    else { const reg = r.pick(Object.values(REG)); this.host.action('mmio', `mmioRead(0x${reg.toString(16)})`, 1, () => this.smmu.mmioRead(reg, 4)); }
  }

  end(): void { this.pool.end(); }

  private randomPfn(): number { return randomPfn(this.host.rng); }

  private mapOp(): void {
    // SMMUv3 stage 1 has no write-only permission (AP: RW or RO).
    this.host.count(this.tables.randomMap(this.host.rng, DATA >> 12, this.stage === '2' ? [1, 2, 3] : [1, 3]) ? 'maps' : 'tableSpaceFull');
  }

  private unmapOp(): void {
    if (this.tables.randomUnmap(this.host.rng)) this.host.count('unmaps');
  }

  /** The VMID of key `key`'s streams (nested: all 1). */
  private vmidOf(key: number): number { return this.stage === 'nested' ? 1 : this.stage === '2' ? key : 0; }

  /** TLBIs of a range, an ASID/VMID or everything, each with CMD_SYNC; then vhost caches against the record. */
  private invalidateOp(): void {
    const r = this.host.rng;
    const key = 1 + r.int(3);
    const g = r.int(20);
    const s2 = this.stage === '2';
    let cmds: number[][];
    let clean: () => void;
    let what: string;
    if (g < 16) {
      // TLBI_NH_VA (ASID) / TLBI_S2_IPA (VMID) (IHI 0070 4.4): one page (TG 0), or (NUM + 1) << SCALE pages with TG 4K.
      const range = r.chance(0.6);
      const num = range ? r.int(32) : 0;
      const scale = range ? r.pick([0, 0, 1, 4, 9]) : 0;
      const pages = range ? (num + 1) * 2 ** scale : 1;
      let pfn = this.randomPfn();
      if (range && r.chance(0.8)) pfn -= pfn % 2 ** scale;
      const addr = BigInt(pfn) << 12n;
      const w2 = Number(addr & 0xffff_f000n) | (range ? 1 << 10 : 0);
      cmds = [[(s2 ? CMD.TLBI_S2_IPA : CMD.TLBI_NH_VA) | (num << 12) | (scale << 20), s2 ? this.vmidOf(key) : (key << 16) | this.vmidOf(key), w2, Number(addr >> 32n)]];
      clean = () => this.tables.clean(key, pfn, pfn + pages - 1);
      what = `${s2 ? 'TLBI_S2_IPA' : 'TLBI_NH_VA'} key ${key} pfn 0x${pfn.toString(16)} ${pages} pages`;
    } else if (g < 18) {
      cmds = [s2 ? [CMD.TLBI_S12_VMALL, this.vmidOf(key), 0, 0] : [CMD.TLBI_NH_ASID, (key << 16) | this.vmidOf(key), 0, 0]];
      clean = () => this.tables.clean(key);
      what = `${s2 ? 'TLBI_S12_VMALL' : 'TLBI_NH_ASID'} ${key}`;
    } else {
      cmds = [r.chance(0.5) || s2 ? [CMD.TLBI_NSNH_ALL, 0, 0, 0] : [CMD.TLBI_NH_ALL, this.vmidOf(1), 0, 0]];
      clean = () => this.tables.clean(undefined);
      what = `TLBI ${cmds[0]![0] === CMD.TLBI_NSNH_ALL ? 'NSNH' : 'NH'}_ALL`;
    }
    const ok = this.sync(what, cmds);
    if (ok) { clean(); this.checkVhost(`after ${what} and CMD_SYNC`); }
    this.host.count('invalidations');
  }

  /** Submits commands and CMD_SYNC as one guest action; on a clean guest the queue must drain. */
  private sync(what: string, cmds: number[][]): boolean {
    let ok = false;
    const cons0 = Number(this.smmu.mmioRead(REG.CMDQ_CONS, 4)) & 0xfffff;
    this.host.action('mmio', what, 1, () => { ok = this.run(...cmds); }, () => {
      const consumed = (((this.prod - cons0) % 2 ** (CMDQ_LOG2 + 1)) + 2 ** (CMDQ_LOG2 + 1)) % 2 ** (CMDQ_LOG2 + 1) + 1;
      return consumed * (4 + PIECES_PER_TLBI * SIDS.length * (READS_PER_CONFIG + 2 * READS_PER_WALK)) + 4096;
    });
    if (!ok && !this.host.hostile) this.host.finding('coherence', `a clean SMMUv3 guest's ${what} + CMD_SYNC did not drain the command queue`);
    return ok;
  }

  /** No vhost IOTLB serves what the guest changed and invalidated (clean guests): every entry is what the tables give now. */
  private checkVhost(when: string): void {
    if (this.host.hostile) return;
    this.pool.checkVhost(when, () => true, (sid, iova) => {
      const st = this.ste.get(sid);
      const page = iova & ~0xfffn;
      // Bypass: identity, with the permission the access asked for (QEMU answers the access flags).
      if (st === 'bypass') return { s: page, e: page + 0xfffn, xl: page, perm: 3, anyPerm: true };
      if (st !== 'translate') return undefined;
      const l = this.tables.leafAt(KEY_OF[sid]!, Number(iova >> 12n));
      return l ? leafEntry(l) : undefined;
    }, (sid, s, e) => this.ste.get(sid) === 'translate' && this.tables.isDirty(KEY_OF[sid]!, Number(s >> 12n), Number(e >> 12n)));
  }

  /**
   * A stream switched between translating, abort and bypass, then CFGI_STE
   * and a TLBI of its ASID (stage 1) / VMID (stage 2), CMD_SYNC: how Linux
   * detaches and attaches a domain. After it nothing of the old
   * configuration may be served.
   */
  private steOp(): void {
    const r = this.host.rng;
    const sid = r.pick(SIDS);
    const from = this.ste.get(sid)!;
    const to = r.pick((['translate', 'abort', 'bypass'] as const).filter((s) => s !== from));
    this.setSte(sid, to);
    const key = KEY_OF[sid]!;
    const tlbi = this.stage === '2' ? [CMD.TLBI_S12_VMALL, this.vmidOf(key), 0, 0] : [CMD.TLBI_NH_ASID, (key << 16) | this.vmidOf(key), 0, 0];
    const what = `STE of 0x${sid.toString(16)} ${from} -> ${to}, CFGI_STE, TLBI of its ${this.stage === '2' ? 'VMID' : 'ASID'}`;
    if (this.sync(what, [[CMD.CFGI_STE, sid, 0, 0], tlbi])) {
      this.tables.clean(key);
      this.checkVhost(`after ${what}`);
    }
    this.host.count('steChanges');
  }

  /** Takes the event records (IHI 0070 7.3): each type one the architecture defines. */
  private drainEvents(): void {
    const prod = Number(this.smmu.mmioRead(REG.EVENTQ_PROD, 4));
    const mask = 2 ** (EVTQ_LOG2 + 1) - 1;
    let n = 0;
    while (this.evCons !== (prod & mask) && n++ < 2 ** EVTQ_LOG2) {
      const type = this.ram.readU32(EVTQ + (this.evCons % 2 ** EVTQ_LOG2) * 32) & 0xff;
      if (!this.host.hostile && !EVENT_TYPES.has(type)) this.host.finding('coherence', `SMMUv3 event record of unknown type 0x${type.toString(16)}`);
      this.host.count('eventRecords');
      this.evCons = (this.evCons + 1) & mask;
    }
    this.mmio(REG.EVENTQ_CONS, 4, BigInt(this.evCons));
  }

  private dmaOp(): void {
    deviceAccess(this.host, this.smmu, SIDS, () => BigInt(this.randomPfn()) << 12n, (sid) => this.ste.get(sid) === 'bypass', `.${this.host.hostile ? 'hostile' : 'clean'}.s${this.stage}`);
  }

  // ------------------------------------------------------------------ hostile

  private hostileDesc(): bigint {
    const r = this.host.rng;
    const t = BigInt(r.pick(this.tables.tables.length ? this.tables.tables : [TABLES]));
    switch (r.int(8)) {
      case 0: return r.u64();
      case 1: return t | 3n; // a table pointer (often an ancestor or itself: loops)
      case 2: return t | 3n | (BigInt(r.int(1 << 12)) << 52n) | (BigInt(r.int(1 << 4)) << 48n); // upper attributes, bits above OA
      case 3: return (1n << BigInt(33 + r.int(15))) | 3n | AF; // outside RAM
      case 4: return BigInt(DATA + r.int(0x3000) * 4096) | 1n | AF | (r.chance(0.5) ? AP_RO : S2AP_R | S2AP_W); // a block at any level (level 0 or 3: invalid)
      case 5: return BigInt(DATA + r.int(0x3000) * 4096) | 3n; // AF clear: access flag fault
      case 6: return t | 1n | AF | (1n << 62n) | (1n << 61n); // APTable bits on a block
      default: return 0n;
    }
  }

  private hostileOp(): void {
    const r = this.host.rng;
    switch (r.int(12)) {
      case 0: case 1: this.tables.corruptSlot(r, () => this.hostileDesc()); break;
      case 2:
        this.tables.aliasRandom(r, (t) => BigInt(t) | 3n, () => this.hostileDesc());
        this.host.count('aliasedTables');
        break;
      case 3: { // a random STE or CD word, then CFGI_STE (or not)
        const sid = r.chance(0.8) ? r.pick(SIDS) : r.int(256);
        const base = r.chance(0.5) ? STRTAB + sid * 64 : CDS + sid * 64;
        this.ram.writeU32(base + 4 * r.int(16), r.chance(0.5) ? r.u32() : r.pick([0x1_0000, 0x4000_0000, TABLES, CDS]) | r.int(64));
        if (r.chance(0.6)) this.sync(`CFGI_STE 0x${sid.toString(16)} after a random STE/CD word`, [[CMD.CFGI_STE, sid, 0, 0]]);
        break;
      }
      case 4: case 5: this.hostileMmio(); break;
      case 6: { // random commands at PROD, PROD moved past them (or anywhere)
        const n = 1 + r.int(8);
        for (let i = 0; i < n; i++) {
          const at = CMDQ + ((this.prod + i) % 2 ** CMDQ_LOG2) * 16;
          const op = r.chance(0.8) ? r.pick(Object.values(CMD)) : r.int(256);
          this.ram.writeU32(at, (op | (r.chance(0.5) ? r.u32() & ~0xff : (r.int(32) << 12) | (r.int(32) << 20))) >>> 0);
          for (let w = 1; w < 4; w++) this.ram.writeU32(at + 4 * w, r.chance(0.5) ? r.u32() : r.int(1 << 16));
        }
        this.prod = (this.prod + n) % 2 ** (CMDQ_LOG2 + 1);
        this.mmio(REG.CMDQ_PROD, 4, r.chance(0.9) ? BigInt(this.prod) : BigInt(r.u32())); // PROD past the size, wrap bits, ERR bits
        break;
      }
      case 7: if (r.chance(0.02)) { this.flood(); break; } this.steOp(); break;
      case 8: { // a GERROR acknowledgement (recovers the queue after CERROR)
        this.mmio(REG.GERRORN, 4, this.smmu.mmioRead(REG.GERROR, 4));
        break;
      }
      default: if (r.chance(0.5)) this.invalidateOp(); else this.dmaOp();
    }
    this.host.count('hostileOps');
  }

  /** The queue (255 commands) filled with range and ASID/VMID/global TLBIs, one PROD write: its work is bounded as a whole. */
  private flood(): void {
    const r = this.host.rng;
    for (let i = 0; i < 255; i++) {
      const at = CMDQ + ((this.prod + i) % 2 ** CMDQ_LOG2) * 16;
      const c = r.pick([
        [CMD.TLBI_NH_VA | (31 << 12) | (r.int(20) << 20), 1 << 16, (r.int(1 << 20) << 12) | (1 << 10), 0],
        [CMD.TLBI_S2_IPA | (31 << 12) | (r.int(20) << 20), 1, (r.int(1 << 20) << 12) | (1 << 10), 0],
        [CMD.TLBI_NH_ASID, (1 + r.int(3)) << 16, 0, 0], [CMD.TLBI_NSNH_ALL, 0, 0, 0], [CMD.CFGI_STE, r.pick(SIDS), 0, 0],
      ]);
      for (let w = 0; w < 4; w++) this.ram.writeU32(at + 4 * w, c[w]! >>> 0);
    }
    this.prod = (this.prod + 255) % 2 ** (CMDQ_LOG2 + 1);
    this.mmio(REG.CMDQ_PROD, 4, BigInt(this.prod), 'CMDQ_PROD write over 255 range/ASID/global TLBIs');
    this.host.count('queueFloods');
  }

  private hostileMmio(): void {
    const r = this.host.rng;
    switch (r.int(10)) {
      case 0: this.mmio(REG.CR0, 4, r.chance(0.5) ? BigInt(r.u32()) : CR0_ON & BigInt(r.int(16))); break;
      case 1: this.mmio(REG.STRTAB_BASE, 8, r.chance(0.5) ? r.u64() : BigInt(r.pick([STRTAB, RAM_SIZE - 0x40, 0x1_0000_0000]))); this.mmio(REG.CR0, 4, CR0_ON); break;
      case 2: this.mmio(REG.STRTAB_BASE_CFG, 4, BigInt(r.int(2) << 16 | r.int(32) << 6 | r.int(32))); break; // linear or 2-level, any split and size
      case 3: this.mmio(REG.CMDQ_BASE, 8, (r.chance(0.5) ? r.u64() : BigInt(r.pick([CMDQ, RAM_SIZE - 0x100, 0x1_0000_0000]))) | BigInt(r.int(32))); break; // LOG2SIZE past 19
      case 4: this.mmio(REG.CMDQ_PROD, 4, BigInt(r.u32())); break;
      case 5: this.mmio(REG.EVENTQ_BASE, 8, (r.chance(0.5) ? r.u64() : BigInt(r.pick([EVTQ, RAM_SIZE - 0x20, 0x1_0000_0000]))) | BigInt(r.int(32))); break;
      case 6: this.mmio(r.pick([REG.EVENTQ_CONS, REG.GBPA, REG.IRQ_CTRL, REG.GERRORN, REG.CR1, REG.CR2, 0xa8]), 4, BigInt(r.u32())); break;
      case 7: this.mmio(r.pick([0x20, 0x44, 0x50, 0x98, 0x9c, 0xac, 0x100ac]), 8, r.u64()); break; // 8-byte accesses where QEMU takes 4
      case 8: this.mmio(REG.CR0, 4, 0n); this.mmio(REG.CR0, 4, CR0_ON); break;
      default: { const size = r.pick([4, 8] as const); this.mmio(r.int(0x20000 / size) * size, size, r.u64() & (size === 4 ? 0xffff_ffffn : U64_MAX)); }
    }
  }
}
