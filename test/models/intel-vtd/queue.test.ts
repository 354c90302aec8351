/**
 * Queued invalidation (VT-d spec 6.5.2, register 11.4.9/10) as QEMU 7.2
 * processes it: descriptors of every type, valid and invalid (reserved bits,
 * bad granularity, AM > MAMV, unknown types), IQH advance, IQE stopping the
 * queue at the bad descriptor, tails beyond the queue, 256-bit descriptors,
 * wait descriptors, and register-based invalidation.
 */
import { decodeDescriptor, parseRawDescriptor } from '../../../src/models/intel-vtd/descriptors';
import { writeWords, le64 } from './helpers/tables';
import { GCMD, QUEUE, REG, RO, SID_A, STATUS, bringUp, desc, makeBench } from './helpers/device';

const FSTS_IQE = 0x10n;

describe('descriptor decoding (binary-parser)', () => {
  const dec = (d: [bigint, bigint]) => decodeDescriptor(parseRawDescriptor(le64(d[0], d[1])));

  it('decodes the fields of each type from their spec bit positions', () => {
    expect(dec(desc.contextDevice(7, 0x1234, 2))).toEqual({ type: 'context-cache', granularity: 3, did: 7, sid: 0x1234, fm: 2 });
    expect(dec(desc.iotlbPage(9, 0x7654_3000n, 3, true))).toEqual({
      type: 'iotlb', granularity: 3, did: 9, dr: false, dw: false, addr: 0x7654_3000n, am: 3, ih: true,
    });
    expect(dec(desc.deviceIotlb(0x28, 0x5000n, true))).toEqual({ type: 'device-iotlb', sid: 0x28, s: true, addr: 0x5000n });
    expect(dec(desc.wait({ sw: true, data: 0xdeadbeef, addr: 0x1234n }))).toEqual({
      type: 'wait', iflag: false, sw: true, fn: false, statusData: 0xdeadbeef, statusAddr: 0x1234n,
    });
    expect(dec(desc.iec(false, 5))).toMatchObject({ type: 'iec', global: false, index: 5 });
    expect(dec([0x6n, 0n]).type).toBe('pasid-iotlb');
    expect(dec([0x7n, 0n]).type).toBe('pasid-cache');
  });

  it('decodes a 256-bit descriptor from its first 128 bits', () => {
    const raw = parseRawDescriptor(le64(...desc.iotlbDomain(3), 0n, 0n));
    expect(raw).toEqual({ lo: 0x2n | (2n << 4n) | (3n << 16n), hi: 0n, v2: 0n, v3: 0n });
  });

  it.each([
    ['unknown type 0', [0x0n, 0n]],
    ['unknown type 8', [0x8n, 0n]],
    ['unknown type 15', [0xfn, 0n]],
    ['context-cache granularity 0', [0x1n, 0n]],
    ['context-cache reserved bit 6', [0x1n | (1n << 4n) | (1n << 6n), 0n]],
    ['context-cache reserved bit 50', [0x1n | (1n << 4n) | (1n << 50n), 0n]],
    ['context-cache high word set', [0x1n | (1n << 4n), 1n]],
    ['IOTLB granularity 0', [0x2n, 0n]],
    ['IOTLB reserved bit 8', [0x2n | (1n << 4n) | (1n << 8n), 0n]],
    ['IOTLB reserved bit 40', [0x2n | (1n << 4n) | (1n << 40n), 0n]],
    ['IOTLB reserved hi bit 7', [0x2n | (3n << 4n), 1n << 7n]],
    ['IOTLB AM 19 > MAMV', desc.iotlbPage(1, 0n, 19)],
    ['device-IOTLB reserved bit 3 of hi', [0x3n, 1n << 3n]],
    ['device-IOTLB reserved bit 21', [0x3n | (1n << 21n), 0n]],
    ['wait with neither SW nor IF', desc.wait({ fn: true })],
    ['wait reserved bit 7', [0x5n | (1n << 5n) | (1n << 7n), 0n]],
    ['wait status address bits 1:0', desc.wait({ sw: true, addr: 0x1002n })],
  ] as Array<[string, [bigint, bigint]]>)('%s is invalid', (_name, d) => {
    expect(dec(d).type).toBe('invalid');
  });

  it('IOTLB AM 18 (= MAMV) is valid', () => {
    expect(dec(desc.iotlbPage(1, 0n, 18)).type).toBe('iotlb');
  });
});

describe('queue processing', () => {
  it('processes on IQT write, advances IQH one descriptor (16 bytes) at a time, writes wait status', () => {
    const b = bringUp();
    b.submit(desc.iotlbGlobal(), desc.wait({ sw: true, data: 0x1234_5678, addr: BigInt(STATUS) }));
    expect(b.read(REG.IQH, 8)).toBe(0x20n);
    expect(b.ram.readU32(STATUS)).toBe(0x1234_5678);
    expect(b.read(REG.FSTS)).toBe(0n);
  });

  it.each([
    ['context-cache global', desc.contextGlobal()],
    ['context-cache domain', desc.contextDomain(1)],
    ['context-cache device', desc.contextDevice(1, SID_A, 3)],
    ['IOTLB global', desc.iotlbGlobal()],
    ['IOTLB domain', desc.iotlbDomain(1)],
    ['IOTLB page', desc.iotlbPage(1, 0x1000n, 2, true)],
    ['device-IOTLB (accepted without device-iotlb)', desc.deviceIotlb(SID_A, 0x1000n)],
    ['interrupt entry cache (accepted without intremap)', desc.iec()],
    ['PASID-IOTLB (no-op in 7.2)', [0x6n, 0n]],
    ['PASID-cache (no-op in 7.2)', [0x7n, 0n]],
  ] as Array<[string, [bigint, bigint]]>)('%s is accepted', (_n, d) => {
    const b = bringUp();
    b.submit(d);
    expect(b.read(REG.IQH, 8)).toBe(0x10n);
    expect(b.read(REG.FSTS)).toBe(0n);
  });

  it('an invalid descriptor sets IQE, leaves IQH at it, stops the queue, raises the fault event', () => {
    const b = bringUp();
    b.write(REG.FEDATA, 0x41n);
    b.write(REG.FEADDR, 0xfee0_0000n);
    b.write(REG.FECTL, 0n);
    b.submit(desc.wait({ sw: true, data: 1, addr: BigInt(STATUS) }), [0x0n, 0n], desc.wait({ sw: true, data: 2, addr: BigInt(STATUS + 4) }));
    expect(b.read(REG.FSTS)).toBe(FSTS_IQE);
    expect(b.read(REG.IQH, 8)).toBe(0x10n);
    expect(b.ram.readU32(STATUS)).toBe(1);
    expect(b.ram.readU32(STATUS + 4)).toBe(0);
    expect(b.msis).toEqual([{ address: 0xfee0_0000n, data: 0x41 }]);
    // IQT writes while IQE is set only record the tail.
    b.write(REG.IQT, 0x30n, 8);
    expect(b.read(REG.IQH, 8)).toBe(0x10n);
    // Clearing IQE does not resume; the next IQT write does (from IQH).
    writeWords(b.ram, QUEUE + 0x10, ...desc.wait({ sw: true, data: 3, addr: BigInt(STATUS + 8) }));
    b.write(REG.FSTS, FSTS_IQE);
    expect(b.read(REG.FSTS)).toBe(0n);
    expect(b.read(REG.IQH, 8)).toBe(0x10n);
    b.write(REG.IQT, 0x30n, 8);
    expect(b.read(REG.IQH, 8)).toBe(0x30n);
    expect(b.ram.readU32(STATUS + 8)).toBe(3);
    expect(b.ram.readU32(STATUS + 4)).toBe(2);
  });

  it('a tail beyond the queue sets IQE and processes nothing', () => {
    const b = bringUp();
    writeWords(b.ram, QUEUE, ...desc.wait({ sw: true, data: 9, addr: BigInt(STATUS) }));
    b.write(REG.IQT, 256n * 16n, 4); // QS=0: 256 entries, index 256 is past the end
    expect(b.read(REG.FSTS)).toBe(FSTS_IQE);
    expect(b.ram.readU32(STATUS)).toBe(0);
    expect(b.read(REG.IQH, 8)).toBe(0n);
  });

  it('a queue outside RAM stops at the unreadable descriptor with IQE (bounded, no throw)', () => {
    const b = makeBench();
    b.setRoot();
    b.enableQueue(0x7fff_f000_0000n);
    expect(() => b.write(REG.IQT, 0x10n, 8)).not.toThrow();
    expect(b.read(REG.FSTS)).toBe(FSTS_IQE);
    expect(b.read(REG.IQH, 8)).toBe(0n);
  });

  it('wraps around at the end of the queue', () => {
    const b = bringUp();
    for (let i = 0; i < 255; i++) b.submit(desc.iec());
    b.submit(desc.iec(), desc.wait({ sw: true, data: 7, addr: BigInt(STATUS) }));
    expect(b.read(REG.IQH, 8)).toBe(0x10n);
    expect(b.ram.readU32(STATUS)).toBe(7);
  });

  it('a wait descriptor whose status write fails is invalid (IQE)', () => {
    const b = bringUp();
    b.submit(desc.wait({ sw: true, data: 1, addr: 0x7fff_0000_0000n }));
    expect(b.read(REG.FSTS)).toBe(FSTS_IQE);
    expect(b.read(REG.IQH, 8)).toBe(0n);
  });

  it('IF sets ICS.IWC and sends the completion MSI; masked it sets IECTL.IP; one pending at a time', () => {
    const b = bringUp();
    b.write(REG.IEDATA, 0x55n);
    b.write(REG.IEADDR, 0xfee0_1000n);
    b.submit(desc.wait({ iflag: true }));
    expect(b.read(REG.ICS)).toBe(1n);
    expect(b.read(REG.IECTL)).toBe(0xc000_0000n); // IM set at reset: pending
    expect(b.msis).toEqual([]);
    b.write(REG.IECTL, 0n); // unmask: the pending message goes out
    expect(b.msis).toEqual([{ address: 0xfee0_1000n, data: 0x55 }]);
    expect(b.read(REG.IECTL)).toBe(0n);
    b.submit(desc.wait({ iflag: true })); // IWC still set: nothing
    expect(b.msis).toHaveLength(1);
    b.write(REG.ICS, 1n);
    expect(b.read(REG.ICS)).toBe(0n);
    b.submit(desc.wait({ iflag: true }));
    expect(b.msis).toHaveLength(2);
  });

  it('clearing IWC with IP set clears IP', () => {
    const b = bringUp();
    b.submit(desc.wait({ iflag: true }));
    expect(b.read(REG.IECTL)).toBe(0xc000_0000n);
    b.write(REG.ICS, 1n);
    expect(b.read(REG.IECTL)).toBe(0x8000_0000n);
  });

  it('SW and IF together: status written, then the completion event (spec; QEMU 7.2 aborts)', () => {
    const b = bringUp();
    b.write(REG.IECTL, 0n);
    b.submit(desc.wait({ sw: true, iflag: true, data: 0xabc, addr: BigInt(STATUS) }));
    expect(b.ram.readU32(STATUS)).toBe(0xabc);
    expect(b.read(REG.ICS)).toBe(1n);
    expect(b.msis).toHaveLength(1);
    expect(b.read(REG.FSTS)).toBe(0n);
  });

  it('QIE can be disabled once an empty queue ended with a wait descriptor; IQH resets to 0', () => {
    const b = bringUp();
    b.submit(desc.iotlbGlobal());
    b.write(REG.GCMD, GCMD.TE); // QIE off refused: last descriptor is not a wait
    expect(b.read(REG.GSTS) & GCMD.QIE).toBe(GCMD.QIE);
    b.submit(desc.wait({ sw: true, addr: BigInt(STATUS) }));
    b.write(REG.GCMD, GCMD.TE);
    expect(b.read(REG.GSTS) & GCMD.QIE).toBe(0n);
    expect(b.read(REG.IQH, 8)).toBe(0n);
    expect(b.read(REG.IQT, 8)).toBe(0x20n);
  });

  it('enabling QIE with a non-zero tail processes at once (QEMU Windows quirk)', () => {
    const b = makeBench();
    b.setRoot();
    writeWords(b.ram, QUEUE, ...desc.wait({ sw: true, data: 5, addr: BigInt(STATUS) }));
    b.write(REG.IQA, BigInt(QUEUE), 8);
    b.write(REG.IQT, 0x10n, 8);
    expect(b.ram.readU32(STATUS)).toBe(0);
    b.write(REG.GCMD, GCMD.QIE);
    expect(b.ram.readU32(STATUS)).toBe(5);
    expect(b.read(REG.IQH, 8)).toBe(0x10n);
  });
});

describe('256-bit descriptors (IQA.DW, scalable mode only)', () => {
  it('with scalable mode, DW=1 uses 32-byte descriptors and IQH counts in 32 bytes', () => {
    const b = makeBench({ scalableMode: true });
    b.setRoot();
    b.write(REG.IQA, BigInt(QUEUE) | (1n << 11n), 8);
    b.write(REG.GCMD, GCMD.QIE);
    writeWords(b.ram, QUEUE, ...desc.iotlbGlobal(), 0n, 0n, ...desc.wait({ sw: true, data: 6, addr: BigInt(STATUS) }), 0n, 0n);
    b.write(REG.IQT, 2n << 5n, 8);
    expect(b.read(REG.IQH, 8)).toBe(0x40n);
    expect(b.ram.readU32(STATUS)).toBe(6);
  });

  it('an IQT with bit 4 set under DW=1 is ignored (QEMU 7.2)', () => {
    const b = makeBench({ scalableMode: true });
    b.write(REG.IQA, BigInt(QUEUE) | (1n << 11n), 8);
    b.write(REG.GCMD, GCMD.QIE);
    writeWords(b.ram, QUEUE, ...desc.wait({ sw: true, data: 6, addr: BigInt(STATUS) }), 0n, 0n);
    b.write(REG.IQT, 0x30n, 8);
    expect(b.ram.readU32(STATUS)).toBe(0);
    expect(b.read(REG.FSTS)).toBe(0n);
  });

  it('without scalable mode DW is ignored: 16-byte descriptors', () => {
    const b = makeBench({});
    b.write(REG.IQA, BigInt(QUEUE) | (1n << 11n), 8);
    b.write(REG.GCMD, GCMD.QIE);
    writeWords(b.ram, QUEUE, ...desc.iotlbGlobal(), ...desc.wait({ sw: true, data: 8, addr: BigInt(STATUS) }));
    b.write(REG.IQT, 0x20n, 8);
    expect(b.read(REG.IQH, 8)).toBe(0x20n);
    expect(b.ram.readU32(STATUS)).toBe(8);
  });
});

describe('register-based invalidation', () => {
  const setup = () => {
    const b = makeBench({});
    b.device(SID_A, 1);
    b.setRoot();
    b.enableTranslation();
    return b;
  };

  it('CCMD: domain-selective is performed and reported as global; device-selective reports CAIG=3', () => {
    const b = setup();
    b.write(REG.CCMD, (1n << 63n) | (2n << 61n) | 1n, 8);
    expect(b.read(REG.CCMD, 8)).toBe(0x4800_0000_0000_0001n);
    b.write(REG.CCMD, (1n << 63n) | (3n << 61n) | (BigInt(SID_A) << 16n) | 1n, 8);
    expect(b.read(REG.CCMD, 8)).toBe(0x7800_0000_0000_0001n);
  });

  it('CCMD with CIRG 0 completes with CAIG 0', () => {
    const b = setup();
    b.write(REG.CCMD, 1n << 63n, 8);
    expect(b.read(REG.CCMD, 8)).toBe(0n);
  });

  it('IOTLB register: IVT clears, IAIG = IIRG, DR/DW/DID kept; AM > MAMV reports IAIG 0', () => {
    const b = setup();
    b.write(REG.IVA, 0x1000n, 8);
    b.write(REG.IOTLB, (1n << 63n) | (3n << 60n) | (3n << 48n) | (1n << 32n), 8);
    expect(b.read(REG.IOTLB, 8)).toBe(0x3603_0001_0000_0000n);
    b.write(REG.IOTLB, (1n << 63n) | (1n << 60n) | (3n << 48n), 8);
    expect(b.read(REG.IOTLB, 8)).toBe(0x1203_0000_0000_0000n);
    b.write(REG.IVA, 0x1000n | 19n, 8);
    b.write(REG.IOTLB, (1n << 63n) | (3n << 60n) | (1n << 32n), 8);
    expect(b.read(REG.IOTLB, 8)).toBe(0x3000_0001_0000_0000n);
  });

  it('the IOTLB register invalidates cached translations', () => {
    const b = setup();
    b.map(SID_A, 0x5000n, 0x40_0000n);
    expect(b.vtd.translate(SID_A, 0x5000n, RO)).toMatchObject({ translatedAddr: 0x40_0000n });
    b.map(SID_A, 0x5000n, 0x50_0000n);
    expect(b.vtd.translate(SID_A, 0x5000n, RO)).toMatchObject({ translatedAddr: 0x40_0000n }); // cached
    b.write(REG.IVA, 0x5000n, 8);
    b.write(REG.IOTLB + 4, ((1n << 63n) | (3n << 60n) | (1n << 32n)) >> 32n, 4); // high dword acts
    expect(b.vtd.translate(SID_A, 0x5000n, RO)).toMatchObject({ translatedAddr: 0x50_0000n });
  });

  it('ignored while queued invalidation is on: ICC / IVT stay set', () => {
    const b = bringUp();
    b.write(REG.CCMD, (1n << 63n) | (1n << 61n), 8);
    expect(b.read(REG.CCMD, 8)).toBe(0xa000_0000_0000_0000n);
    b.write(REG.IOTLB, (1n << 63n) | (1n << 60n), 8);
    expect(b.read(REG.IOTLB, 8)).toBe(0x9000_0000_0000_0000n);
  });
});
