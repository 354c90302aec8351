import fc from 'fast-check';
import { SparseRam } from '../../src/memory';

describe('SparseRam', () => {
  test('starts zero-filled and reads of unwritten pages allocate nothing', () => {
    const ram = new SparseRam([{ base: 0, size: 0x8000000 }]);
    expect(ram.readU32(0x1000)).toBe(0);
    expect(ram.readU64(0x7fffff8)).toBe(0n);
    const buf = new Uint8Array(10000).fill(7);
    expect(ram.read(0x123, buf)).toBe(true);
    expect(buf.every((b) => b === 0)).toBe(true);
    expect(ram.pagesAllocated).toBe(0);
    expect(ram.bytesAllocated).toBe(0);
  });

  test('a huge sparse region costs only the pages written', () => {
    const ram = new SparseRam([{ base: 0n, size: 0x10_0000_0000n /* 64 GiB */ }]);
    expect(ram.writeU64(0xf_ffff_fff8, 0x1122334455667788n)).toBe(true);
    expect(ram.writeU32(0x8_0000_0000, 0xdeadbeef)).toBe(true);
    expect(ram.pagesAllocated).toBe(2);
    expect(ram.bytesAllocated).toBe(8192);
    expect(ram.readU64(0xf_ffff_fff8)).toBe(0x1122334455667788n);
    expect(ram.readU32(0xf_ffff_fffc)).toBe(0x11223344);
    expect(ram.readU32(0x8_0000_0000)).toBe(0xdeadbeef);
    expect(ram.readU32(0x10_0000_0000)).toBe(-1);
  });

  test('little-endian u32/u64 layout', () => {
    const ram = new SparseRam([{ base: 0, size: 0x10000 }]);
    ram.write(0x100, Uint8Array.from([0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x88]));
    expect(ram.readU32(0x100)).toBe(0x04030201);
    expect(ram.readU32(0x104)).toBe(0x88070605);
    expect(ram.readU64(0x100)).toBe(0x8807060504030201n);
    expect(ram.readU32(0x101)).toBe(0x05040302);
    ram.writeU64(0x200, 0xfedcba9876543210n);
    const b = new Uint8Array(8);
    ram.read(0x200, b);
    expect(Array.from(b)).toEqual([0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe]);
  });

  test('unaligned and page-straddling accesses', () => {
    const ram = new SparseRam([{ base: 0, size: 0x10000 }]);
    expect(ram.writeU32(0xffe, 0xaabbccdd)).toBe(true);
    expect(ram.readU32(0xffe)).toBe(0xaabbccdd);
    expect(ram.readU32(0x1000)).toBe(0xaabb);
    expect(ram.readU32(0xffc)).toBe(0xccdd0000);
    expect(ram.writeU64(0x1ffd, 0x0102030405060708n)).toBe(true);
    expect(ram.readU64(0x1ffd)).toBe(0x0102030405060708n);
    expect(ram.pagesAllocated).toBe(3);
  });

  test('region edges: last bytes readable, one past fails, nothing written', () => {
    const ram = new SparseRam([{ base: 0x1000, size: 0x2000 }]);
    expect(ram.readU32(0x2ffc)).toBe(0);
    expect(ram.readU32(0x2ffd)).toBe(-1);
    expect(ram.readU32(0xffc)).toBe(-1);
    expect(ram.readU32(0xfff)).toBe(-1);
    expect(ram.readU64(0x2ff8)).toBe(0n);
    expect(ram.readU64(0x2ffc)).toBeUndefined();
    expect(ram.writeU32(0x2ffe, 0xffffffff)).toBe(false);
    expect(ram.writeU64(0xffc, 0xffffffffffffffffn)).toBe(false);
    expect(ram.write(0x2fff, new Uint8Array([1, 2]))).toBe(false);
    expect(ram.pagesAllocated).toBe(0);
    expect(ram.readU32(0x2ffc)).toBe(0);
    expect(ram.readU32(0x1000)).toBe(0);
    expect(ram.write(0x2fff, new Uint8Array([9]))).toBe(true);
    expect(ram.readU32(0x2ffc)).toBe(0x09000000);
  });

  test('outside RAM: negative, fractional, NaN, >= 2^53', () => {
    const ram = new SparseRam([{ base: 0, size: 0x10000 }]);
    for (const gpa of [-4, -1, 0.5, 4.5, NaN, Infinity, 2 ** 53, 2 ** 60]) {
      expect(ram.readU32(gpa)).toBe(-1);
      expect(ram.readU64(gpa)).toBeUndefined();
      expect(ram.writeU32(gpa, 1)).toBe(false);
      expect(ram.read(gpa, new Uint8Array(1))).toBe(false);
    }
    expect(ram.pagesAllocated).toBe(0);
  });

  test('adjacent regions: an access spanning both succeeds; a gap fails', () => {
    const ram = new SparseRam([{ base: 0x3000, size: 0x1000 }, { base: 0x1000, size: 0x2000 }, { base: 0x6000, size: 0x1000 }]);
    expect(ram.writeU64(0x2ffc, 0x1122334455667788n)).toBe(true);
    expect(ram.readU64(0x2ffc)).toBe(0x1122334455667788n);
    expect(ram.readU32(0x3ffe)).toBe(-1);
    expect(ram.readU32(0x6000)).toBe(0);
    expect(ram.readU32(0x5ffe)).toBe(-1);
  });

  test('constructor rejects overlap, empty, out-of-range regions with the region named', () => {
    expect(() => new SparseRam([{ base: 0, size: 0x2000 }, { base: 0x1000, size: 0x1000 }])).toThrow(/overlaps/);
    expect(() => new SparseRam([{ base: 0x1000, size: 0 }])).toThrow(/region 0 .*empty/);
    expect(() => new SparseRam([{ base: 2n ** 53n, size: 1 }])).toThrow(/2\^53/);
    expect(() => new SparseRam([{ base: 2 ** 52 - 4096, size: 8192 }])).toThrow(/above 2\^52/);
    expect(() => new SparseRam([{ base: -1, size: 1 }])).toThrow(/region 0 base/);
    expect(() => new SparseRam([{ base: 0.5, size: 1 }])).toThrow(/region 0 base/);
  });

  test('no RAM at all: every access fails', () => {
    const ram = new SparseRam([]);
    expect(ram.readU32(0)).toBe(-1);
    expect(ram.write(0, new Uint8Array(1))).toBe(false);
  });

  test('matches a flat byte-array model (property)', () => {
    const SIZE = 0x4000;
    fc.assert(fc.property(
      fc.array(fc.record({
        kind: fc.constantFrom('w8', 'w32', 'w64', 'r32', 'r64', 'rb'),
        gpa: fc.integer({ min: -8, max: SIZE + 8 }),
        value: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }),
        len: fc.integer({ min: 0, max: 5000 }),
      }), { maxLength: 40 }),
      (ops) => {
        const base = 0x1000;
        const ram = new SparseRam([{ base, size: SIZE }]);
        const flat = new Uint8Array(SIZE);
        const inside = (gpa: number, n: number) => gpa >= base && gpa + n <= base + SIZE;
        const flatRead = (gpa: number, n: number) => {
          let v = 0n;
          for (let i = n - 1; i >= 0; i--) v = (v << 8n) | BigInt(flat[gpa - base + i]!);
          return v;
        };
        for (const op of ops) {
          const gpa = op.gpa + base;
          switch (op.kind) {
            case 'w8': {
              const b = new Uint8Array([Number(op.value & 0xffn)]);
              expect(ram.write(gpa, b)).toBe(inside(gpa, 1));
              if (inside(gpa, 1)) flat[gpa - base] = b[0]!;
              break;
            }
            case 'w32':
              expect(ram.writeU32(gpa, Number(op.value & 0xffffffffn))).toBe(inside(gpa, 4));
              if (inside(gpa, 4)) for (let i = 0; i < 4; i++) flat[gpa - base + i] = Number((op.value >> BigInt(8 * i)) & 0xffn);
              break;
            case 'w64':
              expect(ram.writeU64(gpa, op.value)).toBe(inside(gpa, 8));
              if (inside(gpa, 8)) for (let i = 0; i < 8; i++) flat[gpa - base + i] = Number((op.value >> BigInt(8 * i)) & 0xffn);
              break;
            case 'r32':
              expect(ram.readU32(gpa)).toBe(inside(gpa, 4) ? Number(flatRead(gpa, 4)) : -1);
              break;
            case 'r64':
              expect(ram.readU64(gpa)).toBe(inside(gpa, 8) ? flatRead(gpa, 8) : undefined);
              break;
            case 'rb': {
              const dst = new Uint8Array(op.len);
              const ok = ram.read(gpa, dst);
              expect(ok).toBe(op.len === 0 ? gpa >= 0 : inside(gpa, op.len));
              if (ok && op.len > 0) expect(Array.from(dst)).toEqual(Array.from(flat.subarray(gpa - base, gpa - base + op.len)));
              break;
            }
          }
        }
      },
    ), { numRuns: 200 });
  });
});
