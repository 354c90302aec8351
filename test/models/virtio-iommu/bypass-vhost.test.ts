/**
 * Regression (found by `npm run fuzz -- --model virtio-iommu`): a device in
 * no domain translates by config.bypass, identity when it is 1 (virtio 1.2
 * 5.13.4/5.13.6.3). A vhost-like UNMAP listener caches what translate()
 * answered, identity included. When the identity ends (the endpoint is
 * ATTACHed to a translating domain, bypass is turned off, a system reset
 * with boot-bypass off), those entries cease to exist and the listener
 * must be told (contract C8), or the device keeps DMA access to every page
 * it touched in bypass. Expectations come from the spec: after the change,
 * the page is not mapped, so nothing may serve it.
 */
import { IOMMUAccessFlags } from '../../../src/core/access';
import { SparseRam } from '../../../src/memory/sparse-ram';
import { VhostListener } from '../../../src/listeners';
import { isFault } from '../../../src/core/model';
import { createVirtioIommu, encodeAttach, VirtioIommuFeature, VirtioIommuStatus as S } from '../../../src/models/virtio-iommu';
import type { VirtioIommu } from '../../../src/models/virtio-iommu';

const EP = 0x20;
const PAGE = 0x1234_5000n;
const ram = new SparseRam([{ base: 0, size: 1 << 20 }]);

function vhostOn(dev: VirtioIommu): VhostListener {
  const l = new VhostListener({ miss: (iova, perm) => { const t = dev.translate(EP, iova, perm); return isFault(t) ? undefined : t; } });
  l.attach(dev.addressSpace(EP));
  // In bypass: identity, cached.
  expect(l.translate(PAGE, IOMMUAccessFlags.RW)?.uaddr).toBe(PAGE);
  expect(l.lookup(PAGE)).toBeDefined();
  return l;
}

describe('identity translations of a bypassed endpoint are invalidated when bypass ends', () => {
  for (const profile of ['qemu', 'spec'] as const) {
    test(`${profile}: ATTACH to a translating domain drops the cached identity`, () => {
      const dev = createVirtioIommu({ bootBypass: true, endpoints: [EP], profile }, ram);
      const l = vhostOn(dev);
      expect(dev.virtioRequest(encodeAttach(1, EP), 4)[0]).toBe(S.OK);
      expect(l.lookup(PAGE)).toBeUndefined();
      expect(l.translate(PAGE, IOMMUAccessFlags.RO)).toBeUndefined(); // no mapping in domain 1: the device faults
    });
  }

  test('ATTACH to a bypass domain keeps identity (nothing changed)', () => {
    const dev = createVirtioIommu({ bootBypass: true, endpoints: [EP] }, ram);
    const l = vhostOn(dev);
    expect(dev.virtioRequest(encodeAttach(1, EP, 1), 4)[0]).toBe(S.OK);
    expect(l.translate(PAGE, IOMMUAccessFlags.RW)?.uaddr).toBe(PAGE);
  });

  test('config.bypass 1 -> 0 drops it', () => {
    const dev = createVirtioIommu({ bootBypass: true, endpoints: [EP] }, ram);
    dev.virtioFeatures(1n << BigInt(VirtioIommuFeature.BYPASS_CONFIG));
    const l = vhostOn(dev);
    dev.virtioConfigWrite(36, 1, 0n);
    expect(dev.virtioConfigRead(36, 1)).toBe(0n);
    expect(l.lookup(PAGE)).toBeUndefined();
    expect(l.translate(PAGE, IOMMUAccessFlags.RO)).toBeUndefined();
  });

  test('system reset back to boot-bypass off drops it', () => {
    const dev = createVirtioIommu({ bootBypass: false, endpoints: [EP] }, ram);
    dev.virtioFeatures(1n << BigInt(VirtioIommuFeature.BYPASS_CONFIG));
    dev.virtioConfigWrite(36, 1, 1n);
    const l = vhostOn(dev);
    dev.reset();
    expect(l.lookup(PAGE)).toBeUndefined();
    expect(l.translate(PAGE, IOMMUAccessFlags.RO)).toBeUndefined();
  });
});
