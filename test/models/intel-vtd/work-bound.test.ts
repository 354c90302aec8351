/**
 * Issue 13 items 11 and 13 (model side): the work of one guest action (an
 * MMIO write, a notifier registration) on notifier walks is bounded, and
 * loops and aliasing in the page tables cost O(distinct tables), not
 * O(paths). Work is measured by counting guest-memory reads through a
 * counting GuestMemory (without the pageWords capability, so every table
 * entry read is a readU32 call), never by wall time.
 *
 * Expected views are computed from the tables the test builds.
 */
import * as fc from 'fast-check';
import { IOMMUNotifierFlag } from '../../../src/core/tlb-entry';
import type { GuestMemory } from '../../../src/memory/guest-memory';
import { SparseRam } from '../../../src/memory/sparse-ram';
import { createIntelVtd } from '../../../src/models/intel-vtd';
import { DEFAULT_VTD_CONFIG } from '../../../src/models/intel-vtd/config';
import { WalkSession } from '../../../src/core/walk-budget';
import { secondLevelWalker } from '../../../src/models/intel-vtd/translation';
import type { IntelVtd, VtdLimits } from '../../../src/models/intel-vtd';
import { CONTEXT, GCMD, QUEUE, REG, ROOT, Recorder, desc } from './helpers/device';
import { VtdTables, slpte, writeWords } from './helpers/tables';

const ALL = IOMMUNotifierFlag.ALL;
const UNMAP = IOMMUNotifierFlag.UNMAP;
const U64 = (1n << 64n) - 1n;

/** A GuestMemory over `ram` that counts the calls the model makes (no pageWords: one readU32 per table word). */
class CountingMemory implements GuestMemory {
  reads = 0;
  constructor(private readonly ram: SparseRam) {}
  read(gpa: number, dst: Uint8Array): boolean { this.reads++; return this.ram.read(gpa, dst); }
  write(gpa: number, src: Uint8Array): boolean { return this.ram.write(gpa, src); }
  readU32(gpa: number): number { this.reads++; return this.ram.readU32(gpa); }
  readU64(gpa: number): bigint | undefined { this.reads++; return this.ram.readU64(gpa); }
  writeU32(gpa: number, v: number): boolean { return this.ram.writeU32(gpa, v); }
  writeU64(gpa: number, v: bigint): boolean { return this.ram.writeU64(gpa, v); }
}

interface Rig {
  ram: SparseRam;
  mem: CountingMemory;
  t: VtdTables;
  vtd: IntelVtd;
  incomplete: number[];
  tail: number;
  /** Writes the descriptors and moves IQT past them (one MMIO write); returns the guest-memory reads it cost. */
  submit(...d: Array<[bigint, bigint]>): number;
  listen(sid: number, flags: number, start?: bigint, end?: bigint): Recorder;
}

/** Legacy root table with devices `sids` (devfn = sid & 0xff) all on the second-level table `top` (DID 1), queue and TE on. */
function rig(top: (t: VtdTables) => number, sids: number[], awBits: 39 | 48 = 39, limits?: VtdLimits): Rig {
  const ram = new SparseRam([{ base: 0, size: 0x400_0000 }]);
  const mem = new CountingMemory(ram);
  const t = new VtdTables(ram, 0x10_0000);
  const slpt = top(t);
  t.root(ROOT, 0, [BigInt(CONTEXT) | 1n, 0n]);
  for (const sid of sids) t.legacyContext(CONTEXT, sid & 0xff, { slptptr: slpt, aw: awBits === 48 ? 2 : 1, did: 1 });
  const vtd = createIntelVtd({ awBits, cachingMode: true }, mem, limits);
  const r: Rig = {
    ram, mem, t, vtd, incomplete: [], tail: 0,
    submit(...d) {
      for (const [lo, hi] of d) {
        writeWords(ram, QUEUE + r.tail * 16, lo, hi);
        r.tail = (r.tail + 1) % 256;
      }
      const before = mem.reads;
      vtd.mmioWrite(REG.IQT, 8, BigInt(r.tail * 16));
      return mem.reads - before;
    },
    listen(sid, flags, start = 0n, end = U64) {
      const rec = new Recorder();
      rec.handle = vtd.addressSpace(sid).registerNotifier({ flags, start, end, notify: rec.notify });
      return rec;
    },
  };
  vtd.events.on('syncIncomplete', (sid) => r.incomplete.push(sid));
  vtd.mmioWrite(REG.RTADDR, 8, BigInt(ROOT));
  vtd.mmioWrite(REG.GCMD, 4, GCMD.SRTP);
  vtd.mmioWrite(REG.IQA, 8, BigInt(QUEUE));
  vtd.mmioWrite(REG.GCMD, 4, GCMD.QIE);
  vtd.mmioWrite(REG.GCMD, 4, GCMD.QIE | GCMD.TE);
  return r;
}

/** A table whose 512 entries all point at itself (R|W): 512^levels paths to one page. */
const selfReferencing = (t: VtdTables): number => {
  const top = t.page();
  for (let i = 0; i < 512; i++) t.pte(top, i, slpte({ r: true, w: true, addr: top }));
  return top;
};

/**
 * Level 3 slot 0 -> a level-2 table whose slots 0..aliases-1 all point at one
 * level-1 table, in which `fill(t, l1)` writes the leaves. Returns the tables.
 */
function aliased(aliases: number, fill: (t: VtdTables, l1: number) => void): { build: (t: VtdTables) => number; l1: () => number } {
  let l1 = 0;
  const build = (t: VtdTables): number => {
    const top = t.page();
    const l2 = t.page();
    l1 = t.page();
    t.pte(top, 0, slpte({ r: true, w: true, addr: l2 }));
    for (let j = 0; j < aliases; j++) t.pte(l2, j, slpte({ r: true, w: true, addr: l1 }));
    fill(t, l1);
    return top;
  };
  return { build, l1: () => l1 };
}

/**
 * Generous bound on the readU32 calls of walking `tables` distinct tables:
 * a table is read at most twice (a scan, then a decode when it is met again
 * whole), two words per slot.
 */
const readsFor = (tables: number) => tables * 2 * 512 * 2;

describe('one work bound per guest action, O(distinct tables) walks', () => {
  it('a self-referencing table: the IQT write reads each (table, level) at most twice, however many paths lead to it', () => {
    const SIDS = [0x20, 0x28, 0x30, 0x38];
    for (const leafBudget of [5_000, 50_000]) {
      const r = rig(selfReferencing, SIDS, 48, { syncLeafBudget: leafBudget });
      const recs = SIDS.map((sid) => r.listen(sid, ALL));
      // Each registration is an action of its own: its replay is cut and reported, the view stays empty.
      expect(r.incomplete).toEqual(SIDS);
      for (const rec of recs) expect(rec.take()).toEqual([]);
      r.incomplete.length = 0;
      // Eight global and eight domain invalidations in one queue, four spaces each: one budget for the write.
      const reads = r.submit(...Array.from({ length: 8 }, () => [desc.iotlbGlobal(), desc.iotlbDomain(1)]).flat());
      expect(r.vtd.mmioRead(REG.IQH, 8)).toBe(BigInt(r.tail * 16)); // the queue completed
      // One table page at 4 levels: bounded by 4 tables' worth of reads (plus descriptors and contexts),
      // and the same for both leaf budgets: the reads do not grow with the paths walked.
      expect(reads).toBeLessThanOrEqual(readsFor(4) + 16 * 4 * 8 + 512);
      // Every device is reported once for the write; nothing was delivered (views as they were).
      expect(r.incomplete).toEqual(SIDS);
      for (const rec of recs) expect(rec.take()).toEqual([]);
    }
  });

  it('an aliased level-2 table (511 slots -> one level-1 table): every alias is mapped at its own IOVA, the level-1 table is read at most twice', () => {
    // L1 has 8 leaves: slot 3i -> frame 0x800 + i, perm rw for even i, r for odd.
    const tables = aliased(511, (t, l1) => {
      for (let i = 0; i < 8; i++) t.pte(l1, i * 3, slpte({ r: true, w: i % 2 === 0, addr: (0x800 + i) * 4096 }));
    });
    const r = rig(tables.build, [0x20]);
    const expected = (frame: (i: number) => number) => {
      const out: Array<[bigint, bigint, bigint, number]> = [];
      for (let j = 0; j < 511; j++) for (let i = 0; i < 8; i++) {
        out.push([(BigInt(j) << 21n) | (BigInt(i * 3) << 12n), 0xfffn, BigInt(frame(i)) << 12n, i % 2 === 0 ? 3 : 1]);
      }
      return out;
    };
    const before = r.mem.reads;
    const rec = r.listen(0x20, ALL);
    const replayReads = r.mem.reads - before;
    const view = () => r.vtd.addressSpace(0x20).notifiers.view(rec.handle).map((e): [bigint, bigint, bigint, number] => [e.iova, e.addrMask, e.translatedAddr, e.perm]);
    expect(view()).toEqual(expected((i) => 0x800 + i));
    // Three distinct tables plus the context; not 511 level-1 reads.
    expect(replayReads).toBeLessThanOrEqual(readsFor(3) + 64);
    expect(replayReads).toBeLessThan(511 * 512);
    // Retarget leaf 5 of the shared table: every alias changes (memo replays the new decode at each base).
    r.t.pte(tables.l1(), 15, slpte({ r: true, w: false, addr: 0x900 * 4096 }));
    rec.take();
    const reads = r.submit(desc.iotlbDomain(1));
    expect(reads).toBeLessThanOrEqual(readsFor(3) + 64);
    expect(view()).toEqual(expected((i) => (i === 5 ? 0x900 : 0x800 + i)));
    expect(rec.take().length).toBe(2 * 511); // one UNMAP and one MAP per alias
    expect(r.incomplete).toEqual([]);
  });

  it('a wait descriptor that writes into a page table between two syncs of one write: the second sync sees the write', () => {
    const tables = aliased(4, (t, l1) => t.pte(l1, 0, slpte({ r: true, w: true, addr: 0x800 * 4096 })));
    const r = rig(tables.build, [0x20]);
    const l1 = tables.l1();
    const rec = r.listen(0x20, ALL);
    // The status write stores 0x901003 in the low word of L1 slot 1: a new 4 KiB leaf -> frame 0x901, R|W.
    r.submit(desc.iotlbDomain(1), desc.wait({ sw: true, data: 0x90_1003, addr: BigInt(l1 + 8) }), desc.iotlbDomain(1));
    const got = r.vtd.addressSpace(0x20).notifiers.view(rec.handle).map((e) => [e.iova, e.translatedAddr]);
    const want: bigint[][] = [];
    for (let j = 0n; j < 4n; j++) want.push([j << 21n, 0x80_0000n], [(j << 21n) | 0x1000n, 0x90_1000n]);
    expect(got).toEqual(want);
  });

  it('address spaces of one domain share the walk: four devices cost about what one costs, not four times', () => {
    const build = (t: VtdTables): number => {
      const top = t.page();
      for (let k = 0; k < 16; k++) t.map(top, 3, BigInt(k) << 30n | 0x1000n, BigInt(0x1000 + k) << 12n);
      return top;
    };
    const costOf = (sids: number[]): number => {
      const r = rig(build, sids);
      for (const sid of sids) r.listen(sid, ALL);
      return r.submit(desc.iotlbDomain(1));
    };
    const one = costOf([0x20]);
    const four = costOf([0x20, 0x28, 0x30, 0x38]);
    // The second space re-reads each table once (to keep it), later ones read nothing but their contexts.
    expect(four).toBeLessThanOrEqual(2 * one + 3 * 64);
  });

  it('an abandoned sync still sends UNMAP-only listeners their UNMAPs (a vhost-like cache keeps nothing invalidated)', () => {
    const r = rig(selfReferencing, [0x20], 39, { syncLeafBudget: 1_000 });
    const vfio = r.listen(0x20, ALL);
    const vhost = r.listen(0x20, UNMAP, 0n, 0x7f_ffff_ffffn);
    expect(vfio.take()).toEqual([]);
    r.incomplete.length = 0;
    // A 1 GiB page-selective invalidation: 2^18 leaves in the block, over the bound of 1000.
    r.submit(desc.iotlbPage(1, 0x4000_0000n, 18));
    expect(r.incomplete).toEqual([0x20]);
    expect(vfio.take()).toEqual([]);
    const ev = vhost.take();
    expect(ev.every((e) => e.type === UNMAP && e.perm === 0)).toBe(true);
    expect(ev.map((e) => [e.iova, e.iova + e.mask])).toEqual([[0x4000_0000n, 0x7fff_ffffn]]);
  });

  it('a later write gets a fresh budget: a legitimate sync after an abandoned one completes', () => {
    let top = 0;
    const r = rig((t) => (top = selfReferencing(t)), [0x20], 39, { syncLeafBudget: 1_000 });
    const rec = r.listen(0x20, ALL);
    r.incomplete.length = 0;
    // Make the table sane: one valid 4 KiB leaf under fresh tables.
    for (let i = 0; i < 512; i++) r.t.pte(top, i, 0n);
    r.t.map(top, 3, 0x5000n, 0x66_6000n);
    r.submit(desc.iotlbGlobal());
    expect(r.incomplete).toEqual([]);
    expect(r.vtd.addressSpace(0x20).notifiers.view(rec.handle).map((e) => [e.iova, e.translatedAddr])).toEqual([[0x5000n, 0x66_6000n]]);
  });

  it('the limits are checked: a bound that is not a number >= 0 is refused, naming it', () => {
    const ram = new SparseRam([{ base: 0, size: 0x1000 }]);
    expect(() => createIntelVtd({}, ram, { syncWalkBudget: Number.NaN })).toThrow(/syncWalkBudget/);
    expect(() => createIntelVtd({}, ram, { syncLeafBudget: -1 })).toThrow(/syncLeafBudget/);
    expect(() => createIntelVtd({}, ram, { syncLeafBudget: Infinity })).not.toThrow();
  });
});

describe('the memo against a naive walk (aliasing and loops among a few tables)', () => {
  /**
   * Reference: every path of the tables, slot by slot, straight from the VT-d
   * layout (R bit 0, W bit 1, PS bit 7 at levels 2/3, address bits 38:12;
   * valid when R|W survives the AND with the parents). Entries here have no
   * reserved bits, so that is all the walk needs.
   */
  function naive(words: Map<number, [number, number]>, top: number, first: number, last: number): number[][] {
    const out: number[][] = [];
    const walk = (table: number, level: number, base: number, perm: number): void => {
      const span = 512 ** (level - 1);
      for (let i = 0; i < 512; i++) {
        const lo = base + i * span;
        if (lo > last || lo + span - 1 < first) continue;
        const [w0, w1] = words.get(table + i * 8) ?? [0, 0];
        const p = perm & w0 & 3;
        if (p === 0) continue;
        const target = (w1 % 128) * 2 ** 32 + ((w0 & 0xffff_f000) >>> 0);
        if (level === 1 || (w0 & 0x80) !== 0) out.push([lo, span, target / 4096, p]);
        else walk(target, level - 1, lo, p);
      }
    };
    walk(top, 3, 0, 3);
    return out;
  }

  it('property: same leaves, in order, for random aliasing tables and ranges', () => {
    let nonEmpty = 0;
    const PAGES = [0x10_0000, 0x10_1000, 0x10_2000, 0x10_3000, 0x10_4000];
    const entry = fc.record({
      page: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: PAGES.length - 1 })),
      slot: fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 511 })),
      to: fc.integer({ min: 0, max: PAGES.length - 1 }),
      perm: fc.constantFrom(0, 1, 2, 3, 3, 3),
      leaf2m: fc.boolean(),
    });
    fc.assert(fc.property(
      fc.array(entry, { maxLength: 80 }),
      fc.oneof(fc.integer({ min: 0, max: 2048 }), fc.integer({ min: 0, max: 2 ** 20 }), fc.integer({ min: 0, max: 2 ** 27 - 1 })),
      fc.integer({ min: 0, max: 2 ** 18 }),
      (entries, first, span) => {
        const ram = new SparseRam([{ base: 0, size: 0x20_0000 }]);
        const words = new Map<number, [number, number]>();
        // A chain to a few 4 KiB leaves (top slot 0 -> page 1, whose slots 0..3 all -> page 2, which holds
        // four leaves), then the random entries.
        const chain = [
          { page: 0, slot: 0, to: 1, perm: 3, leaf2m: false },
          ...[0, 1, 2, 3].map((slot) => ({ page: 1, slot, to: 2, perm: 3, leaf2m: false })),
          ...[0, 130, 260, 511].map((slot) => ({ page: 2, slot, to: 3 + (slot & 1), perm: 3, leaf2m: false })),
        ];
        for (const e of [...chain, ...entries]) {
          // A pointer to one of the pages, or PS with a 1 GiB-aligned address (a valid 2 MiB or 1 GiB leaf).
          const w0 = (e.leaf2m ? (0x4000_0000 * (1 + (e.to & 1))) | 0x80 : PAGES[e.to]!) | e.perm;
          const gpa = PAGES[e.page]! + e.slot * 8;
          ram.writeU32(gpa, w0 >>> 0);
          ram.writeU32(gpa + 4, 0);
          words.set(gpa, [w0 >>> 0, 0]);
        }
        const last = Math.min(first + span, 2 ** 27 - 1);
        const ctx = { did: 1, passThrough: false, slptptr: PAGES[0]!, levels: 3 as const, fpd: false, pasid: undefined };
        const got: number[][] = [];
        secondLevelWalker(ram, { ...DEFAULT_VTD_CONFIG }, ctx, 1e8)(first, last, (a, n, x, p) => got.push([a, n, x, p]));
        const want = naive(words, PAGES[0]!, first, last);
        if (want.length > 0) nonEmpty++;
        expect(got).toEqual(want);
        // And the whole space twice in one session (second time from the memo) gives the same as the reference.
        const session = new WalkSession(1e8);
        const walk = secondLevelWalker(ram, { ...DEFAULT_VTD_CONFIG }, ctx, session);
        const a: number[][] = [];
        const b: number[][] = [];
        walk(first, last, (p, n, x, q) => a.push([p, n, x, q]));
        walk(first, last, (p, n, x, q) => b.push([p, n, x, q]));
        expect(b).toEqual(a);
      },
    ), { numRuns: 300 });
    // The generator must reach tables that alias, not only empty walks.
    expect(nonEmpty).toBeGreaterThan(60);
  });

  it('the memo stops growing at its bound and is given back by the next action', () => {
    const s = new WalkSession(1e9);
    let wrong = 0;
    for (let i = 0; i < 2 ** 18; i++) if (s.node(i * 4096 * 16 + 7) !== i) wrong++;
    expect(wrong).toBe(0);
    expect(s.node(2 ** 18 * 4096 * 16 + 7)).toBe(-1); // full: walked unmemoised
    expect(s.node(5 * 4096 * 16 + 7)).toBe(5); // known tables are still found
    s.reset();
    expect(s.node(5 * 4096 * 16 + 7)).toBe(0);
  });
});
