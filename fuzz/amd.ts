/**
 * The AMD-Vi driver of the fuzzer (epochs `amd-clean`, `amd-hostile`),
 * through MMIO and guest memory only, formats from the AMD IOMMU
 * specification 48882: device table entries (V, TV, Mode, Page Table Root,
 * IR/IW, DomainID), v1 page-table entries (PR, NextLevel, address, IR/IW),
 * the command buffer (COMPLETION_WAIT with store, INVALIDATE_DEVTAB_ENTRY,
 * INVALIDATE_IOMMU_PAGES with the S size encoding, INVALIDATE_IOMMU_ALL),
 * the event log. Profiles "spec" and "qemu-7.2", NpCache on or off.
 *
 * Clean guest: 4 KiB / 2 MiB leaves mapped, changed and unmapped lazily,
 * then invalidated by page ranges, whole domains or everything, each
 * followed by a COMPLETION_WAIT whose store says it completed; device table
 * entries cleared and restored with INVALIDATE_DEVTAB_ENTRY and a domain
 * flush (as Linux detaches a device). With NpCache, MAP|UNMAP views and
 * VFIO containers must equal the tables after each completed invalidation
 * (C9: the range, the device, everything); without it, MAP is refused (C1)
 * and vhost caches must hold nothing the guest invalidated.
 * Hostile guest: random and looping table entries, NextLevel going upward
 * or skipping levels, NextLevel 7 with any size, aliased tables, pointers
 * outside RAM, random device table entries, device table sizes that
 * overflow, command tails past the buffer, random commands and registers,
 * command floods, event log anywhere.
 */
import { IOMMUNotifierFlag as F, SparseRam, U64_MAX, createAmdVi } from '../src/index';
import type { AmdVi } from '../src/index';
import { CountingMemory, FUZZ_LIMITS } from './host';
import type { FuzzHost, ModelDriver } from './host';
import { ListenerPool, deviceAccess } from './pool';
import { RadixTables, leafEntry, randomPfn } from './radix';
import type { PteFormat } from './radix';

const RAM_SIZE = 64 << 20;
const DEVTAB = 0x10_0000; // 256 entries of 32 bytes (Size field 1: 8 KiB)
const CMDBUF = 0x11_0000; // 256 entries (ComLen 8)
const EVTLOG = 0x11_8000; // 256 entries (EventLen 8)
const STORE = 0x11_c000;
const TABLES = 0x20_0000;
const TABLES_END = 0x100_0000;
const DATA = 0x100_0000;
const REG = { DEVTAB: 0x0, CMD: 0x8, EVT: 0x10, CONTROL: 0x18, EXCL_BASE: 0x20, EXCL_LIMIT: 0x28, CMD_HEAD: 0x2000, CMD_TAIL: 0x2008, EVT_HEAD: 0x2010, EVT_TAIL: 0x2018, STATUS: 0x2020 } as const;
/** CONTROL: IommuEn (0), EventLogEn (2), ComWaitIntEn (4), CmdBufEn (12). */
const CONTROL_ON = 0x1015n;
const IR = 1n << 61n;
const IW = 1n << 62n;
const ADDR = 0x000f_ffff_ffff_f000n;
const SIDS = [0x10, 0x18, 0x20, 0x28] as const;
/** DeviceID -> domain: 0x10 and 0x18 share domain 1. */
const DOMAIN_OF: Record<number, number> = { 0x10: 1, 0x18: 1, 0x20: 2, 0x28: 3 };

const permBits = (perm: number): bigint => (perm & 1 ? IR : 0n) | (perm & 2 ? IW : 0n);

/** v1 page-table entries (48882 "I/O Page Table Entry"): PR, NextLevel 11:9, address 51:12, IR 61, IW 62. */
const AMD_PTE: PteFormat = {
  table: (addr, level) => BigInt(addr) | 1n | (BigInt(level - 1) << 9n) | IR | IW,
  leaf: (xlPfn, _level, perm) => (BigInt(xlPfn) << 12n) | 1n | permBits(perm),
  next: (pte, level) => ((pte & 1n) === 1n && Number((pte >> 9n) & 7n) === level - 1 && level > 1 ? Number(pte & ADDR) : undefined),
};

/** Commands (48882 "Command Buffer"): opcode in bits 63:60 of the first quadword. */
const completionWait = (store: number, data: bigint): [bigint, bigint] => [(1n << 60n) | BigInt(store) | 1n, data];
const invDevtab = (devid: number): [bigint, bigint] => [(2n << 60n) | BigInt(devid), 0n];
/** INVALIDATE_IOMMU_PAGES of 2^log2 bytes at `iova` (S = 1 above 4 KiB: the first zero bit from 12 gives the size) or all. */
function invPages(domid: number, iova: bigint | 'all', log2 = 12): [bigint, bigint] {
  const a = (3n << 60n) | (BigInt(domid) << 32n);
  if (iova === 'all') return [a, 0x7fff_ffff_ffff_f000n | 1n];
  if (log2 === 12) return [a, iova];
  return [a, iova | ((1n << BigInt(log2 - 1)) - 0x1000n) | 1n];
}
const invAll = (): [bigint, bigint] => [8n << 60n, 0n];

export class AmdDriver implements ModelDriver {
  private readonly ram = new SparseRam([{ base: 0, size: RAM_SIZE }]);
  private readonly mem = new CountingMemory(this.ram);
  private readonly iommu: AmdVi;
  private readonly pool: ListenerPool;
  private readonly tables: RadixTables;
  private readonly npCache: boolean;
  private readonly levels: number;
  /** DeviceIDs whose DTE translates (V, TV, Mode). */
  private readonly present = new Set<number>();
  private tail = 0;
  private waits = 0;

  constructor(private readonly host: FuzzHost) {
    const r = host.rng;
    this.npCache = r.chance(0.6);
    const profile = r.chance(0.7) ? 'spec' : 'qemu-7.2';
    this.iommu = createAmdVi({ profile, npCache: this.npCache }, this.mem, FUZZ_LIMITS);
    host.useMemory(this.mem);
    host.instrument?.(this.iommu);
    this.iommu.setMsi(0xfee0_0000n, 0x40);
    this.iommu.events.on('syncIncomplete', () => { host.count(host.hostile ? 'syncIncomplete' : 'syncIncompleteClean'); host.tainted = true; });
    this.iommu.events.on('guestError', () => host.count('guestErrors'));
    this.iommu.events.on('fault', () => host.count('faults'));
    this.levels = r.chance(0.5) ? 3 : 4;
    this.tables = new RadixTables(this.ram, AMD_PTE, this.levels, TABLES, TABLES_END);
    const flags = this.npCache ? [F.ALL, F.ALL, F.ALL, F.UNMAP, F.MAP, F.DEVIOTLB_UNMAP] : [F.UNMAP, F.UNMAP, F.ALL, F.MAP, F.DEVIOTLB_UNMAP];
    // VFIO listeners in clean epochs only: a hostile NextLevel=7 leaf of up to 2^57 bytes makes the simulated host
    // domain (src/listeners/host-domain.ts SimHostDomain.map, O(pages) per mapping) run for minutes, which is the
    // listener's cost, not the model's (reported; hostile epochs never judge containers anyway).
    this.pool = new ListenerPool(host, this.iommu, SIDS, flags, this.npCache && !host.hostile);
    host.action('mmio', 'guest setup', 1, () => {
      for (const sid of SIDS) this.setDte(sid, true);
      this.iommu.mmioWrite(REG.DEVTAB, 8, BigInt(DEVTAB) | 1n);
      this.iommu.mmioWrite(REG.CMD, 8, BigInt(CMDBUF) | (8n << 56n));
      this.iommu.mmioWrite(REG.EVT, 8, BigInt(EVTLOG) | (8n << 56n));
      this.iommu.mmioWrite(REG.CONTROL, 8, CONTROL_ON);
      this.run(invAll());
    });
  }

  /** The bound of an MMIO write: the command buffer (up to 2^15 entries) read once, twice the sync walk budget, slack. */
  private mmio(reg: number, size: 4 | 8, value: bigint, what = `mmioWrite(0x${reg.toString(16)}, ${size}, 0x${value.toString(16)})`): void {
    this.host.action('mmio', what, 1, () => this.iommu.mmioWrite(reg, size, value));
  }

  private setDte(sid: number, on: boolean): void {
    const did = DOMAIN_OF[sid]!;
    const root = this.tables.top(did)!;
    const at = DEVTAB + sid * 32;
    // V, TV, Mode (levels), root, IR/IW; DomainID in the second quadword. Off: V, TV, Mode 0 (no translation) and
    // neither IR nor IW, so every access is refused (Linux's blocked DTE); V = 0 would pass accesses through instead.
    this.ram.writeU64(at, on ? 1n | 2n | (BigInt(this.levels) << 9n) | BigInt(root) | IR | IW : 3n);
    this.ram.writeU64(at + 8, BigInt(did));
    this.ram.writeU64(at + 16, 0n);
    this.ram.writeU64(at + 24, 0n);
    if (on) this.present.add(sid); else this.present.delete(sid);
  }

  /** Writes commands and a COMPLETION_WAIT with store at the tail, one CMD_TAIL write; true when the store landed. */
  private run(...cmds: Array<[bigint, bigint]>): boolean {
    const slot = STORE + (this.waits % 256) * 8;
    const token = 0x5eed_0000_0000n + BigInt(++this.waits);
    for (const [a, b] of [...cmds, completionWait(slot, token)]) {
      this.ram.writeU64(CMDBUF + this.tail, a);
      this.ram.writeU64(CMDBUF + this.tail + 8, b);
      this.tail = (this.tail + 16) % 0x1000;
    }
    this.iommu.mmioWrite(REG.CMD_TAIL, 8, BigInt(this.tail));
    return this.ram.readU64(slot) === token;
  }

  op(): void {
    const r = this.host.rng;
    const roll = r.int(100);
    if (this.host.hostile && roll < 30) { this.hostileOp(); return; }
    if (roll < 32) this.mapOp();
    else if (roll < 45) this.unmapOp();
    else if (roll < 61) this.invalidateOp();
    else if (roll < 77) this.dmaOp();
    else if (roll < 83) this.pool.op();
    else if (roll < 90) { this.pool.vhostAccess(BigInt(this.randomPfn()) << 12n); this.checkVhost('after a device access'); }
    else if (roll < 92) this.dteOp();
    else { const reg = r.pick(Object.values(REG)); this.host.action('mmio', `mmioRead(0x${reg.toString(16)})`, 1, () => this.iommu.mmioRead(reg, 8)); }
  }

  end(): void { this.pool.end(); }

  private randomPfn(): number { return randomPfn(this.host.rng); }

  private mapOp(): void {
    this.host.count(this.tables.randomMap(this.host.rng, DATA >> 12, [1, 2, 3]) ? 'maps' : 'tableSpaceFull');
  }

  private unmapOp(): void {
    if (this.tables.randomUnmap(this.host.rng)) this.host.count('unmaps');
  }

  /** INVALIDATE_IOMMU_PAGES (a range or the domain), INVALIDATE_DEVTAB_ENTRY, INVALIDATE_IOMMU_ALL, then the checks. */
  private invalidateOp(): void {
    const r = this.host.rng;
    const did = 1 + r.int(3);
    const g = r.int(20);
    const sidsOf = (sid: number) => DOMAIN_OF[sid] === did;
    if (g < 16) {
      const log2 = r.pick([12, 12, 13, 15, 21, 22]);
      const pages = 2 ** (log2 - 12);
      let pfn = this.randomPfn();
      pfn -= pfn % pages;
      const ok = this.host.action('mmio', `INVALIDATE_IOMMU_PAGES did ${did} pfn 0x${pfn.toString(16)} 2^${log2}`, 1, () => this.run(invPages(did, BigInt(pfn) << 12n, log2)));
      if (ok) {
        this.tables.clean(did, pfn, pfn + pages - 1);
        if (pages <= 512) this.checkViews(`after INVALIDATE_IOMMU_PAGES of did ${did} pfn 0x${pfn.toString(16)} 2^${log2}`, sidsOf, [pfn, pages]);
      }
      this.completed(ok);
    } else if (g < 18) {
      const ok = this.host.action('mmio', `INVALIDATE_IOMMU_PAGES did ${did} all`, 1, () => this.run(invPages(did, 'all')));
      if (ok) { this.tables.clean(did); this.checkViews(`after INVALIDATE_IOMMU_PAGES of all of did ${did}`, sidsOf); }
      this.completed(ok);
    } else if (g < 19) {
      const sid = r.pick(SIDS);
      const ok = this.host.action('mmio', `INVALIDATE_DEVTAB_ENTRY 0x${sid.toString(16)}`, 1, () => this.run(invDevtab(sid)));
      if (ok) this.checkViews(`after INVALIDATE_DEVTAB_ENTRY of 0x${sid.toString(16)}`, (s) => s === sid);
      this.completed(ok);
    } else {
      const ok = this.host.action('mmio', 'INVALIDATE_IOMMU_ALL', 1, () => this.run(invAll()));
      if (ok) { this.tables.clean(undefined); this.checkViews('after INVALIDATE_IOMMU_ALL', () => true); }
      this.completed(ok);
    }
    this.host.count('invalidations');
  }

  private completed(ok: boolean | undefined): void {
    if (!this.host.hostile && ok === false) this.host.finding('coherence', 'a clean AMD-Vi guest\'s COMPLETION_WAIT store never landed');
  }

  /** C9 (NpCache, clean guests): views and containers equal the tables; then vhost caches (any NpCache). */
  private checkViews(when: string, which: (sid: number) => boolean, block?: [number, number]): void {
    if (this.host.hostile) return;
    if (this.npCache) {
      const expected = (sid: number) => {
        if (!this.present.has(sid)) return [];
        return block ? this.tables.expectedIn(DOMAIN_OF[sid]!, block[0], block[1]) : this.tables.expected(DOMAIN_OF[sid]!);
      };
      this.pool.checkViews(when, which, expected, block ? [BigInt(block[0]) << 12n, (BigInt(block[0] + block[1]) << 12n) - 1n] : undefined);
    }
    this.checkVhost(when);
  }

  /** No vhost IOTLB serves what the guest changed and invalidated: each entry is a leaf of the tables now, unless its range is still dirty. */
  private checkVhost(when: string): void {
    if (this.host.hostile) return;
    this.pool.checkVhost(when, () => true, (sid, iova) => {
      if (!this.present.has(sid)) return undefined;
      const l = this.tables.leafAt(DOMAIN_OF[sid]!, Number(iova >> 12n));
      return l ? leafEntry(l) : undefined;
    }, (sid, s, e) => this.tables.isDirty(DOMAIN_OF[sid]!, Number(s >> 12n), Number(e >> 12n)));
  }

  /** A DTE cleared or restored, then INVALIDATE_DEVTAB_ENTRY and a flush of its domain (the Linux detach/attach sequence). */
  private dteOp(): void {
    const sid = this.host.rng.pick(SIDS);
    this.setDte(sid, !this.present.has(sid));
    const ok = this.host.action('mmio', `DTE of 0x${sid.toString(16)} ${this.present.has(sid) ? 'restored' : 'cleared'}`, 1, () => this.run(invDevtab(sid), invPages(DOMAIN_OF[sid]!, 'all')));
    if (ok) {
      this.tables.clean(DOMAIN_OF[sid]!);
      this.checkViews(`after the DTE of 0x${sid.toString(16)} changed`, (s) => s === sid);
    }
    this.completed(ok);
  }

  private dmaOp(): void {
    deviceAccess(this.host, this.iommu, SIDS, () => BigInt(this.randomPfn()) << 12n, () => false);
  }

  // ------------------------------------------------------------------ hostile

  private hostilePte(): bigint {
    const r = this.host.rng;
    const t = BigInt(r.pick(this.tables.tables.length ? this.tables.tables : [TABLES]));
    switch (r.int(8)) {
      case 0: return r.u64();
      case 1: return t | 1n | (BigInt(r.int(7)) << 9n) | IR | IW; // a table at any NextLevel: loops, upward, skips
      case 2: return t | 1n | (7n << 9n) | (BigInt(r.int(1 << 20)) << 12n) | IR; // NextLevel 7: size from the address bits
      case 3: return (1n << BigInt(33 + r.int(19))) | 1n | (BigInt(1 + r.int(6)) << 9n) | IR | IW; // outside RAM
      case 4: return BigInt(DATA + r.int(0x3000) * 4096) | 1n | IR | IW; // a leaf (NextLevel 0) at any level
      case 5: return t | (BigInt(r.int(7)) << 9n) | IR; // PR clear
      case 6: return t | 1n | (BigInt(r.int(8)) << 9n) | (BigInt(r.int(1 << 10)) << 52n); // reserved/ignored bits
      default: return 0n;
    }
  }

  private hostileOp(): void {
    const r = this.host.rng;
    const tables = this.tables.hostileTargets();
    switch (r.int(11)) {
      case 0: case 1: this.tables.corruptSlot(r, () => this.hostilePte()); break;
      case 2:
        this.tables.aliasRandom(r, (t) => BigInt(t) | 1n | (BigInt(r.int(7)) << 9n) | IR | IW, () => this.hostilePte());
        this.host.count('aliasedTables');
        break;
      case 3: { // a random DTE (mode 0..7, root anywhere, reserved bits), sometimes invalidated
        const sid = r.chance(0.7) ? r.pick(SIDS) : r.int(256);
        const at = DEVTAB + sid * 32 + 8 * r.int(4);
        this.ram.writeU64(at, r.chance(0.5) ? r.u64() : 3n | (BigInt(r.int(8)) << 9n) | BigInt(r.pick(tables)) | IR | IW);
        if (r.chance(0.5)) this.host.action('mmio', `INVALIDATE_DEVTAB_ENTRY 0x${sid.toString(16)}`, 1, () => this.run(invDevtab(sid)));
        break;
      }
      case 4: case 5: this.hostileMmio(); break;
      case 6: { // random commands at the tail, the tail moved past them or anywhere
        const n = 1 + r.int(8);
        for (let i = 0; i < n; i++) {
          const at = CMDBUF + ((this.tail + i * 16) % 0x1000);
          const op = BigInt(r.chance(0.8) ? r.pick([1, 2, 3, 3, 4, 5, 6, 7, 8]) : r.int(16));
          this.ram.writeU64(at, (op << 60n) | (r.u64() & ((1n << 60n) - 1n) & (r.chance(0.5) ? 0xffff_ffffn | (0xffffn << 32n) : U64_MAX)));
          this.ram.writeU64(at + 8, r.chance(0.5) ? r.u64() : (BigInt(r.int(1 << 20)) << 12n) | BigInt(r.int(4)));
        }
        this.tail = (this.tail + n * 16) % 0x1000;
        this.mmio(REG.CMD_TAIL, 8, r.chance(0.9) ? BigInt(this.tail) : r.u64());
        break;
      }
      case 7: if (r.chance(0.02)) { this.flood(); break; } this.dteOp(); break;
      default: if (r.chance(0.5)) this.invalidateOp(); else this.dmaOp();
    }
    this.host.count('hostileOps');
  }

  /** The whole buffer (255 commands) of domain and global invalidations, one CMD_TAIL write: its work is bounded as a whole. */
  private flood(): void {
    const r = this.host.rng;
    for (let i = 0; i < 255; i++) {
      const [a, b] = r.chance(0.5) ? invAll() : r.chance(0.5) ? invDevtab(r.pick(SIDS)) : invPages(1 + r.int(3), 'all');
      const at = CMDBUF + ((this.tail + i * 16) % 0x1000);
      this.ram.writeU64(at, a);
      this.ram.writeU64(at + 8, b);
    }
    this.tail = (this.tail + 255 * 16) % 0x1000;
    this.mmio(REG.CMD_TAIL, 8, BigInt(this.tail), 'CMD_TAIL write over 255 domain/device/global invalidations');
    this.host.count('queueFloods');
  }

  private hostileMmio(): void {
    const r = this.host.rng;
    switch (r.int(9)) {
      case 0: this.mmio(REG.CONTROL, 8, r.chance(0.5) ? r.u64() : CONTROL_ON & BigInt(r.u32())); break;
      case 1: this.mmio(REG.DEVTAB, 8, (r.chance(0.5) ? r.u64() : BigInt(r.pick([DEVTAB, RAM_SIZE - 0x1000, 0x1_0000_0000]))) | BigInt(r.int(512))); break; // sizes past RAM
      case 2: this.mmio(REG.CMD, 8, (r.chance(0.5) ? r.u64() : BigInt(r.pick([CMDBUF, RAM_SIZE - 0x1000, 0x1_0000_0000]))) | (BigInt(r.int(16)) << 56n)); break;
      case 3: this.mmio(REG.CMD_TAIL, 8, r.chance(0.5) ? BigInt(r.int(1 << 19)) & ~0xfn : r.u64()); break; // tails past the buffer
      case 4: this.mmio(REG.CMD_HEAD, 8, r.u64()); break;
      case 5: this.mmio(REG.EVT, 8, (r.chance(0.5) ? r.u64() : BigInt(r.pick([EVTLOG, RAM_SIZE - 0x100, 0x1_0000_0000]))) | (BigInt(r.int(16)) << 56n)); break;
      case 6: this.mmio(r.pick([REG.EVT_HEAD, REG.EVT_TAIL, REG.STATUS, REG.EXCL_BASE, REG.EXCL_LIMIT]), 8, r.u64()); break;
      case 7: this.mmio(REG.CONTROL, 8, 0n); this.mmio(REG.CONTROL, 8, CONTROL_ON); break; // CmdBufEn / EventLogEn 0 -> 1: restart
      default: { const size = r.pick([4, 8] as const); this.mmio(r.int(0x4000 / size) * size, size, r.u64() & (size === 4 ? 0xffff_ffffn : U64_MAX)); }
    }
  }
}
