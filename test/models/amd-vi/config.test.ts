/** Configuration: trace-v1 header keys, defaults, refusals; the capability header's NpCache bit. */
import { SparseRam } from '../../../src/memory/sparse-ram';
import { AmdViConfigError, createAmdVi } from '../../../src/models/amd-vi';
import { modelFactory } from '../../../src/trace/models';

const ram = (): SparseRam => new SparseRam([{ base: 0n, size: 0x10_0000n }]);

test('a trace header config (hex strings) is accepted; defaults are the spec profile without NpCache', () => {
  const io = createAmdVi({ interruptRemapping: false, deviceIotlb: false, pt: true, mmioBase: '0xfed80000', msiAddr: '0xfee00000', msiData: '0x4061' }, ram());
  expect(io.config).toMatchObject({ profile: 'spec', npCache: false, mmioBase: 0xfed8_0000n, msiAddr: 0xfee0_0000n, msiData: 0x4061 });
  expect(io.kind).toBe('amd-vi');
});

test('unknown options, a bad profile, msiAddr without msiData are refused', () => {
  expect(() => createAmdVi({ awBits: 48 } as never, ram())).toThrow(AmdViConfigError);
  expect(() => createAmdVi({ profile: 'qemu-10' } as never, ram())).toThrow(/profile/);
  expect(() => createAmdVi({ msiAddr: '0xfee00000' } as never, ram())).toThrow(/msiData/);
  expect(() => createAmdVi({ npCache: 'yes' } as never, ram())).toThrow(/boolean/);
});

test('NpCache (capability header bit 26): advertised with npCache; QEMU 7.2 always set it', () => {
  expect(createAmdVi({}, ram()).capabilityHeader & (1 << 26)).toBe(0);
  expect(createAmdVi({ npCache: true }, ram()).capabilityHeader & (1 << 26)).not.toBe(0);
  expect(createAmdVi({ profile: 'qemu-7.2' }, ram()).capabilityHeader >>> 0).toBe(0x1f03_000f);
});

test('the replayer knows the model name', () => {
  expect(modelFactory('amd-vi')({ profile: 'qemu-7.2' }, ram()).kind).toBe('amd-vi');
});
