/**
 * DMA translation (vtd-facts.md §5, qemu-7.2-findings.md "DMA semantics"):
 * identity when translation is off or pass-through, the IOTLB (hit returns
 * the cached entry, hits skip the permission fault path, invalidation
 * granularities, the 1024-entry cap), the context cache, DMA page by page,
 * and hostile tables.
 */
import * as fc from 'fast-check';
import { isFault } from '../../../src/core/model';
import { IOMMUNotifierFlag } from '../../../src/core/tlb-entry';
import { CONTEXT, GCMD, REG, RO, SID_A, SID_B, WO, bringUp, desc, makeBench, Recorder } from './helpers/device';
import { slpte } from './helpers/tables';

describe('identity translations', () => {
  it('translation disabled: iova = gpa, 4 KiB, RW', () => {
    const b = makeBench({});
    expect(b.vtd.translate(SID_A, 0x1234_5678n, WO)).toEqual({ iova: 0x1234_5000n, translatedAddr: 0x1234_5000n, addrMask: 0xfffn, perm: 3 });
  });

  it('pass-through context (TT=2): identity, never cached', () => {
    const b = makeBench({});
    b.device(SID_A, 1, { tt: 2 });
    b.setRoot();
    b.enableTranslation();
    expect(b.vtd.translate(SID_A, 0x7777_7000n, WO)).toEqual({ iova: 0x7777_7000n, translatedAddr: 0x7777_7000n, addrMask: 0xfffn, perm: 3 });
  });
});

describe('second-level translation', () => {
  it('4 KiB, 2 MiB and 1 GiB leaves: iova aligned to addrMask, translated address of the leaf', () => {
    const b = makeBench({ awBits: 48, cachingMode: true });
    b.device(SID_A, 1);
    b.map(SID_A, 0x1000n, 0x40_0000n);
    b.map(SID_A, 0x4000_0000n, 0x8_0000_0000n, { leafLevel: 3 });
    b.map(SID_A, 0x20_0000n, 0x60_0000n, { leafLevel: 2, w: false });
    b.setRoot();
    b.enableTranslation();
    expect(b.vtd.translate(SID_A, 0x1abcn, RO)).toEqual({ iova: 0x1000n, translatedAddr: 0x40_0000n, addrMask: 0xfffn, perm: 3 });
    expect(b.vtd.translate(SID_A, 0x2345_6789n + 0x4000_0000n, WO)).toEqual({ iova: 0x4000_0000n, translatedAddr: 0x8_0000_0000n, addrMask: 0x3fff_ffffn, perm: 3 });
    expect(b.vtd.translate(SID_A, 0x3f_fff0n, RO)).toEqual({ iova: 0x20_0000n, translatedAddr: 0x60_0000n, addrMask: 0x1f_ffffn, perm: 1 });
  });

  it('an IOTLB hit returns the cached entry object itself', () => {
    const b = bringUp();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    const first = b.vtd.translate(SID_A, 0x1000n, RO);
    expect(b.vtd.translate(SID_A, 0x1ff8n, RO)).toBe(first);
  });

  it('an IOTLB hit skips the permission fault path: the DMA fails, nothing is recorded (QEMU)', () => {
    const b = bringUp();
    b.map(SID_A, 0x1000n, 0x40_0000n, { w: false });
    expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ perm: 1 });
    const w = b.vtd.dmaWrite(SID_A, 0x1000n, new Uint8Array([1, 2, 3]));
    expect(w.faulted).toBe(true);
    expect(b.read(REG.FSTS)).toBe(0n);
    expect(b.ram.readU32(0x40_0000)).toBe(0);
  });

  it('translations are cached until invalidated: PSI, DSI and global drop them', () => {
    const b = bringUp();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    b.map(SID_B, 0x1000n, 0x50_0000n);
    b.vtd.translate(SID_A, 0x1000n, RO);
    b.vtd.translate(SID_B, 0x1000n, RO);
    b.map(SID_A, 0x1000n, 0x41_0000n);
    b.map(SID_B, 0x1000n, 0x51_0000n);
    b.submit(desc.iotlbPage(2, 0x9000n)); // other page of DID 2: nothing changes
    b.submit(desc.iotlbPage(1, 0x0n, 1)); // AM=1 covers 0x0-0x1fff of DID 1
    expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ translatedAddr: 0x41_0000n });
    expect(b.vtd.translate(SID_B, 0x1000n, RO)).toMatchObject({ translatedAddr: 0x50_0000n });
    b.submit(desc.iotlbDomain(2));
    expect(b.vtd.translate(SID_B, 0x1000n, RO)).toMatchObject({ translatedAddr: 0x51_0000n });
    b.map(SID_A, 0x1000n, 0x42_0000n);
    b.submit(desc.iotlbGlobal());
    expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ translatedAddr: 0x42_0000n });
  });

  it('a PSI inside a 2 MiB leaf drops that leaf (matched by its own mask)', () => {
    const b = bringUp();
    b.map(SID_A, 0x20_0000n, 0x60_0000n, { leafLevel: 2 });
    b.vtd.translate(SID_A, 0x20_0000n, RO);
    b.map(SID_A, 0x20_0000n, 0x80_0000n, { leafLevel: 2 });
    b.submit(desc.iotlbPage(1, 0x23_4000n));
    expect(b.vtd.translate(SID_A, 0x20_0000n, RO)).toMatchObject({ translatedAddr: 0x80_0000n });
  });

  it('the IOTLB holds at most 1024 entries and is flushed whole when full', () => {
    const b = bringUp();
    for (let i = 0; i < 1025; i++) b.map(SID_A, BigInt(i) << 12n, 0x100_0000n + (BigInt(i) << 12n));
    const first = b.vtd.translate(SID_A, 0n, RO);
    for (let i = 1; i < 1024; i++) b.vtd.translate(SID_A, BigInt(i) << 12n, RO);
    expect(b.vtd.translate(SID_A, 0n, RO)).toBe(first); // 1024 entries: still cached
    b.vtd.translate(SID_A, 1024n << 12n, RO); // the 1025th insert flushes the table first
    expect(b.vtd.translate(SID_A, 0n, RO)).not.toBe(first);
  });

  it('the context cache keeps a context until a context-cache invalidation covers it', () => {
    const b = bringUp();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    b.vtd.translate(SID_A, 0x1000n, RO);
    b.tables.legacyContext(CONTEXT, SID_A, { present: false }); // guest clears the context...
    b.submit(desc.iotlbGlobal()); // ...but only flushes the IOTLB
    expect(isFault(b.vtd.translate(SID_A, 0x1000n, RO))).toBe(false);
    // (Each step also flushes the IOTLB: in legacy mode an IOTLB hit is served before the context is looked at.)
    b.submit(desc.contextDevice(1, SID_B), desc.iotlbGlobal()); // another device: still cached
    expect(isFault(b.vtd.translate(SID_A, 0x1000n, RO))).toBe(false);
    b.submit(desc.contextDevice(1, SID_B, 3), desc.iotlbGlobal()); // FM=3 masks devfn bits 2:0: 00:04.x and 00:05.x differ in bit 3
    expect(isFault(b.vtd.translate(SID_A, 0x1000n, RO))).toBe(false);
    b.submit(desc.contextDevice(1, SID_A | 0x7, 3), desc.iotlbGlobal()); // 00:04.7 with FM=3 covers 00:04.0
    expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ fault: true, reason: 2 });
  });

  it('context-cache global and domain invalidations drop every cached context', () => {
    for (const d of [desc.contextGlobal(), desc.contextDomain(7)]) {
      const b = bringUp();
      b.map(SID_A, 0x1000n, 0x40_0000n);
      b.vtd.translate(SID_A, 0x1000n, RO);
      b.tables.legacyContext(CONTEXT, SID_A, { present: false });
      b.submit(d, desc.iotlbGlobal());
      expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ fault: true, reason: 2 });
    }
  });

  it('SRTP and TE changes flush both caches', () => {
    const b = bringUp();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    b.vtd.translate(SID_A, 0x1000n, RO);
    b.map(SID_A, 0x1000n, 0x41_0000n);
    b.write(REG.GCMD, GCMD.QIE | GCMD.TE | GCMD.SRTP);
    expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ translatedAddr: 0x41_0000n });
    b.map(SID_A, 0x1000n, 0x42_0000n);
    b.write(REG.GCMD, GCMD.QIE);
    b.write(REG.GCMD, GCMD.QIE | GCMD.TE);
    expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ translatedAddr: 0x42_0000n });
  });
});

describe('DMA', () => {
  it('reads and writes page by page; a faulting page reads zeros, later pages still land', () => {
    const b = bringUp();
    b.map(SID_A, 0x1000n, 0x40_0000n);
    b.map(SID_A, 0x3000n, 0x41_0000n);
    b.ram.write(0x40_0ff0, new Uint8Array(16).fill(0xaa));
    b.ram.write(0x41_0000, new Uint8Array(16).fill(0xbb));
    const r = b.vtd.dmaRead(SID_A, 0x1ff0n, 0x1020);
    expect(r.faulted).toBe(true);
    expect(r.data.subarray(0, 16)).toEqual(new Uint8Array(16).fill(0xaa));
    expect(r.data.subarray(16, 16 + 0x1000)).toEqual(new Uint8Array(0x1000));
    expect(r.data.subarray(0x1010)).toEqual(new Uint8Array(16).fill(0xbb));
    const w = b.vtd.dmaWrite(SID_A, 0x2ff8n, new Uint8Array(16).fill(0xcc));
    expect(w.faulted).toBe(true);
    expect(b.ram.readU32(0x41_0000)).toBe(0xcccc_cccc);
  });

  it('property: a DMA through an identity-mapped window matches plain memory', () => {
    fc.assert(fc.property(fc.integer({ min: 0, max: 0x3fff }), fc.uint8Array({ minLength: 1, maxLength: 0x1800 }), (off, data) => {
      const b = bringUp();
      for (let p = 0n; p < 8n; p++) b.map(SID_A, 0x10_0000_0000n + (p << 12n), 0x200_0000n + (p << 12n));
      const w = b.vtd.dmaWrite(SID_A, 0x10_0000_0000n + BigInt(off), data);
      const got = new Uint8Array(data.length);
      b.ram.read(0x200_0000 + off, got);
      const r = b.vtd.dmaRead(SID_A, 0x10_0000_0000n + BigInt(off), data.length);
      return !w.faulted && !r.faulted && Buffer.from(got).equals(Buffer.from(data)) && Buffer.from(r.data).equals(Buffer.from(data));
    }), { numRuns: 25 });
  });
});

describe('hostile guest', () => {
  it('a table whose entries all point at itself: translation is bounded, the sync gives up with a guestError', () => {
    // Small budgets keep the test quick; the default ones bound the same work at a larger size.
    const b = makeBench({ awBits: 48, cachingMode: true }, 0x800_0000, { syncWalkBudget: 100_000, syncLeafBudget: 10_000 });
    const top = b.device(SID_A, 1);
    // Every level-4/3/2 slot points back at the same table (R+W).
    for (let i = 0; i < 512; i++) b.tables.pte(top, i, slpte({ r: true, w: true, addr: top }));
    b.setRoot();
    b.enableQueue();
    b.enableTranslation();
    // A translation walks four levels and lands on the table page itself as a 4 KiB leaf.
    expect(b.vtd.translate(SID_A, 0x1000n, RO)).toMatchObject({ translatedAddr: BigInt(top) });
    const rec = new Recorder();
    rec.handle = b.vtd.addressSpace(SID_A).registerNotifier({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: (1n << 64n) - 1n, notify: rec.notify });
    expect(b.guestErrors.filter((m) => /more than/.test(m))).toHaveLength(1);
    expect(() => b.submit(desc.iotlbGlobal())).not.toThrow();
    expect(b.guestErrors.filter((m) => /more than/.test(m))).toHaveLength(2);
    expect(b.read(REG.IQH, 8)).toBe(0x10n);
  });

  it('the table-entry budget stops an aliasing walk before the leaf budget does', () => {
    const b = makeBench({ awBits: 48, cachingMode: true }, 0x800_0000, { syncWalkBudget: 5_000 });
    const top = b.device(SID_A, 1);
    for (let i = 0; i < 512; i++) b.tables.pte(top, i, slpte({ r: true, addr: top }));
    b.setRoot();
    b.enableQueue();
    b.enableTranslation();
    const rec = new Recorder();
    rec.handle = b.vtd.addressSpace(SID_A).registerNotifier({ flags: IOMMUNotifierFlag.ALL, start: 0n, end: (1n << 64n) - 1n, notify: rec.notify });
    b.submit(desc.iotlbDomain(1));
    expect(b.guestErrors.filter((m) => /read more than 5000 table entries/.test(m))).toHaveLength(2);
    expect(b.read(REG.IQH, 8)).toBe(0x10n);
  });
});
