/**
 * The SMMUv3 model runs the conformance kit (viommu/conformance) as an
 * UNMAP-only model: the architecture has no caching mode, so MAP notifiers
 * are refused (C1) and the kit checks what UNMAP and DEVIOTLB_UNMAP
 * listeners receive (C2, C3, C6, C10) and translations against its tables.
 *
 * The guest: one StreamID, 4K-granule tables with a 39-bit input range
 * (start level 1), built in RAM as the kit maps and unmaps; invalidations
 * are range TLBIs (TG 4K, SCALE = log2 pages), ASID/VMID-wide and global
 * ones, each followed by CMD_SYNC.
 *
 * Both stages run every scenario. AArch64 stage-1 descriptors cannot
 * express a write-only page (AP has no write-only encoding; Arm ARM
 * D8.4.1), so the stage-1 adapter states `writeOnly: false` and the kit maps
 * read-write where a scenario asks for write-only.
 */
import { conformanceScenarios, describeIommuConformance, runScenario } from '../../src/conformance';
import type { ConformanceAdapter } from '../../src/conformance';
import { SmmuEnv, AF, AP_RO, DESC_TABLE } from '../models/smmuv3/env';

const SID = 8;
const ASID = 1;
const VMID = 3;
const CD = 0x4_0000;

interface Ctx {
  env: SmmuEnv;
  root: number;
  stage: '1' | '2';
}

const levelOf = (size: bigint): number => (size === 1n << 30n ? 1 : size === 1n << 21n ? 2 : 3);
const shiftOf = (level: number): bigint => BigInt(12 + (3 - level) * 9);

/** Writes `desc` into the slot of `iova` at the level of `size`, replacing blocks on the way by empty tables. */
function setSlot(c: Ctx, iova: bigint, size: bigint, desc: bigint): void {
  const ram = c.env.ram;
  const target = levelOf(size);
  let base = c.root;
  for (let level = 1; level < target; level++) {
    const at = base + Number((iova >> shiftOf(level)) & 511n) * 8;
    const d = ram.readU64(at) ?? 0n;
    if ((d & 3n) === 3n) {
      base = Number(d & 0x0000_ffff_ffff_f000n);
    } else {
      const t = c.env.alloc.take(4096);
      ram.writeU64(at, BigInt(t) | DESC_TABLE);
      base = t;
    }
  }
  ram.writeU64(base + Number((iova >> shiftOf(target)) & 511n) * 8, desc);
}

function adapter(stage: '1' | '2'): ConformanceAdapter<Ctx> {
  return {
    // AArch64 stage-1 descriptors cannot say write-only (AP: RO or RW); stage 2's S2AP can.
    capabilities: { mapNotifiers: false, devIotlbUnmap: true, iovaBits: 39, writeOnly: stage !== '1' },
    create() {
      const env = new SmmuEnv(stage);
      const root = env.alloc.take(4096);
      if (stage === '1') {
        env.writeCd(CD, { asid: ASID, t0sz: 25, ttb0: root });
        env.writeSte(SID, { config: 0b101, ctxPtr: CD });
      } else {
        env.writeSte(SID, { config: 0b110, vmid: VMID, s2t0sz: 25, s2sl0: 1, s2tg: 0, s2ps: 4, s2ttb: root });
      }
      env.cfgiAll();
      return { env, root, stage };
    },
    map(c, iova, gpa, size, perm) {
      const type = levelOf(size) === 3 ? 3n : 1n;
      // Stage 1: AP[2] makes a page read-only (no write-only encoding); stage 2: S2AP = perm (bit 6 read, bit 7 write).
      const attrs = c.stage === '1' ? (perm === 1 ? AP_RO : 0n) : BigInt(perm) << 6n;
      setSlot(c, iova, size, gpa | type | AF | attrs);
    },
    unmap(c, iova, size) {
      setSlot(c, iova, size, 0n);
    },
    invalidate(c, iova, size) {
      const env = c.env;
      if (size === 'global') return void env.tlbiAll();
      if (size === 'domain') return void env.commands(c.stage === '1' ? [0x11, ASID << 16, 0, 0] : [0x28, VMID, 0, 0]);
      const scale = (size >> 12n).toString(2).length - 1; // (NUM + 1) << SCALE pages of 4 KiB, NUM 0
      const op = c.stage === '1' ? 0x12 : 0x2a;
      const w1 = c.stage === '1' ? ASID << 16 : VMID;
      env.commands([op | (scale << 20), w1, Number(iova & 0xffff_f000n) | (1 << 10), Number(iova >> 32n)]);
    },
    registerNotifier(c, n, notify) {
      const h = c.env.smmu.addressSpace(SID).registerNotifier({ ...n, notify });
      return { unregister: () => h.dispose() };
    },
    translate(c, iova, access) {
      return c.env.smmu.translate(SID, iova, access);
    },
    disableTranslation(c) {
      c.env.smmu.mmioWrite(0x20, 4, 0xcn);
    },
    enableTranslation(c) {
      c.env.smmu.mmioWrite(0x20, 4, 0xdn);
    },
  };
}

describeIommuConformance('smmuv3 stage 2', adapter('2'));

describeIommuConformance('smmuv3 stage 1', adapter('1'));

test('stage 1 claiming write-only leaves is caught by the kit (the capability is what lets it pass)', async () => {
  const a = adapter('1');
  const claiming: ConformanceAdapter<Ctx> = { ...a, capabilities: { ...a.capabilities, writeOnly: true } };
  const s = conformanceScenarios.find((x) => x.name === 'map and unmap 4K, 2M and 1G leaves')!;
  await expect(runScenario(s, claiming)).rejects.toThrow();
});
