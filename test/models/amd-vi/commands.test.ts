/**
 * Registers, the command buffer, the event log and the MSI, from the spec
 * (48882) in the spec profile and from the shared findings in the QEMU 7.2
 * profile.
 */
import { IOMMUAccessFlags } from '../../../src/core/access';
import type { MsiMessage } from '../../../src/core/model';
import { AmdGuest, CMDBUF, EVTLOG, STORE, completionWait, completionWaitInterruptOnly, invAll, invDevtab, invPages } from './guest';
import { createAmdVi } from '../../../src/models/amd-vi';
import { SparseRam } from '../../../src/memory/sparse-ram';

const MSI = { msiAddr: '0xfee00000', msiData: '0x4061' };

function msis(g: AmdGuest): MsiMessage[] {
  const out: MsiMessage[] = [];
  g.iommu.events.on('msi', (m) => out.push(m));
  return out;
}

describe('registers', () => {
  test('reset values: EXT_FEATURES 0x29d3 (read-only), everything else 0', () => {
    for (const profile of ['spec', 'qemu-7.2'] as const) {
      const g = new AmdGuest({ profile });
      expect(g.iommu.mmioRead(0x30, 8)).toBe(0x29d3n);
      g.iommu.mmioWrite(0x30, 8, 0n);
      expect(g.iommu.mmioRead(0x30, 8)).toBe(0x29d3n);
      for (const r of [0x0, 0x8, 0x10, 0x18, 0x20, 0x28, 0x38, 0x2000, 0x2008, 0x2010, 0x2018, 0x2020]) expect(g.iommu.mmioRead(r, 8)).toBe(0n);
    }
  });

  test('spec: STATUS bits 0-2 are write-1-to-clear, head/tail keep bits 18:4 only, the run bits follow CONTROL', () => {
    const g = new AmdGuest();
    g.bringUp();
    expect(g.iommu.mmioRead(0x2020, 4)).toBe(0x18n); // CmdBufRun | EventLogRun
    g.submit(completionWaitInterruptOnly());
    expect(g.iommu.mmioRead(0x2020, 4)).toBe(0x1cn);
    g.iommu.mmioWrite(0x2020, 4, 0x4n);
    expect(g.iommu.mmioRead(0x2020, 4)).toBe(0x18n);
    g.iommu.mmioWrite(0x2010, 4, 0x3n);
    expect(g.iommu.mmioRead(0x2010, 4)).toBe(0n);
    g.iommu.mmioWrite(0x18, 8, 0x1n); // IommuEn only
    expect(g.iommu.mmioRead(0x2020, 4)).toBe(0n);
  });

  test('qemu-7.2: STATUS ignores writes, head/tail read back every bit, the device table base latches on the high dword', () => {
    const g = new AmdGuest({ profile: 'qemu-7.2' });
    g.bringUp();
    g.submit(completionWaitInterruptOnly());
    g.iommu.mmioWrite(0x2020, 4, 0x4n);
    expect(g.iommu.mmioRead(0x2020, 4)).toBe(0x1cn);
    g.iommu.mmioWrite(0x2010, 4, 0x3n);
    expect(g.iommu.mmioRead(0x2010, 4)).toBe(0x3n);
    g.iommu.mmioWrite(0x20, 8, 0x500_0003n);
    expect(g.iommu.mmioRead(0x20, 8)).toBe(0n); // EXCL_BASE ignores writes
  });
});

describe('command buffer', () => {
  test('COMPLETION_WAIT stores its second quadword at the address in bits 51:3', () => {
    const g = new AmdGuest();
    g.bringUp();
    g.submit(completionWait(STORE + 0x18, 0x0123_4567_89ab_cdefn));
    expect(g.read64(STORE + 0x18)).toBe(0x0123_4567_89ab_cdefn);
    expect(g.iommu.mmioRead(0x2000, 8)).toBe(0x10n);
  });

  test('spec: COMPLETION_WAIT I=1 interrupts only with ComWaitIntEn, once per rise of ComWaitInt', () => {
    const g = new AmdGuest(MSI as never);
    const sent = msis(g);
    g.bringUp(0x1005n);
    g.submit(completionWaitInterruptOnly());
    expect(sent).toEqual([]);
    g.iommu.mmioWrite(0x2020, 4, 0x4n);
    g.iommu.mmioWrite(0x18, 8, 0x1015n); // + ComWaitIntEn
    g.submit(completionWaitInterruptOnly());
    g.submit(completionWaitInterruptOnly()); // ComWaitInt still set: no new interrupt
    expect(sent).toEqual([{ address: 0xfee0_0000n, data: 0x4061 }]);
  });

  test('qemu-7.2: COMPLETION_WAIT I=1 sends the MSI every time, ComWaitIntEn or not', () => {
    const g = new AmdGuest({ profile: 'qemu-7.2', ...MSI } as never);
    const sent = msis(g);
    g.bringUp(0x1005n);
    g.submit(completionWaitInterruptOnly());
    g.submit(completionWaitInterruptOnly());
    expect(sent).toHaveLength(2);
  });

  test('spec: an illegal opcode logs ILLEGAL_COMMAND_ERROR and halts at the command; CmdBufEn 0 -> 1 restarts', () => {
    const g = new AmdGuest();
    g.bringUp();
    g.submit([9n << 60n, 0n], completionWait(STORE, 0x77n));
    expect(g.read64(STORE)).toBe(0n); // the wait behind it did not run
    expect(g.iommu.mmioRead(0x2000, 8)).toBe(0n); // head on the bad command
    expect(g.iommu.mmioRead(0x2020, 4) & 0x10n).toBe(0n); // CmdBufRun clear
    expect(g.read64(EVTLOG) >> 60n).toBe(5n);
    expect(g.read64(EVTLOG + 8)).toBe(BigInt(CMDBUF)); // address of the command
    // The driver replaces it by a no-op wait and restarts the processor.
    g.write64(CMDBUF, (1n << 60n));
    g.write64(CMDBUF + 8, 0n);
    g.iommu.mmioWrite(0x18, 8, 0x0005n);
    g.iommu.mmioWrite(0x18, 8, 0x1005n);
    expect(g.read64(STORE)).toBe(0x77n);
    expect(g.iommu.mmioRead(0x2000, 8)).toBe(0x20n);
  });

  test('spec: reserved bits make a command illegal (INVALIDATE_IOMMU_ALL with a set bit)', () => {
    const g = new AmdGuest();
    g.bringUp();
    g.submit([(8n << 60n) | 1n, 0n]);
    expect(g.read64(EVTLOG) >> 60n).toBe(5n);
  });

  test('qemu-7.2: illegal opcodes are skipped and later commands run; nothing is logged', () => {
    const g = new AmdGuest({ profile: 'qemu-7.2' });
    g.bringUp();
    g.submit([0n, 0n], [15n << 60n, 0n], completionWait(STORE, 0x66n));
    expect(g.read64(STORE)).toBe(0x66n);
    expect(g.iommu.mmioRead(0x2000, 8)).toBe(0x30n);
    expect(g.read64(EVTLOG)).toBe(0n);
  });

  test('qemu-7.2: after the last slot CMD_HEAD reads the buffer size; the next command fixes it', () => {
    const g = new AmdGuest({ profile: 'qemu-7.2' });
    g.bringUp();
    for (let i = 0; i < 255; i++) g.write64(CMDBUF + i * 16, 1n << 60n);
    g.iommu.mmioWrite(0x2008, 8, 0xff0n);
    expect(g.iommu.mmioRead(0x2000, 8)).toBe(0xff0n);
    g.write64(CMDBUF + 0xff0, 1n << 60n);
    g.iommu.mmioWrite(0x2008, 8, 0n);
    expect(g.iommu.mmioRead(0x2000, 8)).toBe(0x1000n);
    g.write64(CMDBUF, 1n << 60n);
    g.iommu.mmioWrite(0x2008, 8, 0x10n);
    expect(g.iommu.mmioRead(0x2000, 8)).toBe(0x10n);
  });

  test('spec: the head wraps to 0 after the last slot', () => {
    const g = new AmdGuest();
    g.bringUp();
    for (let i = 0; i < 256; i++) g.write64(CMDBUF + i * 16, 1n << 60n);
    g.iommu.mmioWrite(0x2008, 8, 0xff0n);
    g.iommu.mmioWrite(0x2008, 8, 0n);
    expect(g.iommu.mmioRead(0x2000, 8)).toBe(0n);
  });

  test('INVALIDATE_DEVTAB_ENTRY: spec caches DTEs until invalidated; QEMU 7.2 re-reads them on every miss', () => {
    for (const profile of ['spec', 'qemu-7.2'] as const) {
      const g = new AmdGuest({ profile });
      g.setDte(0x20, { v: false });
      g.bringUp();
      expect(g.iommu.translate(0x20, 0x1000n, IOMMUAccessFlags.RO)).toMatchObject({ translatedAddr: 0x1000n });
      g.setDte(0x20, { mode: 3, root: g.alloc(), domid: 1 }); // now translating, nothing mapped
      const before = g.iommu.translate(0x20, 0x1000n, IOMMUAccessFlags.RO);
      expect('fault' in before).toBe(profile === 'qemu-7.2');
      expect(g.run(invDevtab(0x20))).toBe(true);
      expect('fault' in g.iommu.translate(0x20, 0x1000n, IOMMUAccessFlags.RO)).toBe(true);
    }
  });

  test('qemu-7.2: INVALIDATE_IOMMU_PAGES drops every page of the domain whatever the address; INVALIDATE_IOMMU_ALL drops all', () => {
    const g = new AmdGuest({ profile: 'qemu-7.2' });
    g.setDte(0x20, { mode: 0, perm: 3, domid: 4 }); // untranslated, cached under DomainID 4
    g.bringUp();
    g.iommu.translate(0x20, 0x5000n, IOMMUAccessFlags.RO);
    g.setDte(0x20, { mode: 0, perm: 1, domid: 4 });
    expect(g.iommu.translate(0x20, 0x5000n, IOMMUAccessFlags.RO)).toMatchObject({ perm: 3 }); // hit
    expect(g.run(invPages(4, 0x9000_0000n))).toBe(true);
    expect(g.iommu.translate(0x20, 0x5000n, IOMMUAccessFlags.RO)).toMatchObject({ perm: 1 });
    g.setDte(0x20, { mode: 0, perm: 2, domid: 4 });
    expect(g.run(invAll())).toBe(true);
    expect(g.iommu.translate(0x20, 0x5000n, IOMMUAccessFlags.WO)).toMatchObject({ perm: 2 });
  });
});

describe('event log', () => {
  test('spec: a full log sets EventOverflow, stops logging (EventLogRun clear) and interrupts with EventIntEn', () => {
    const g = new AmdGuest(MSI as never);
    const sent = msis(g);
    g.setDte(0x20, { mode: 3, root: g.alloc(), domid: 1 });
    g.bringUp(0x100dn); // IommuEn, EventLogEn, EventIntEn, CmdBufEn
    // 256 entries, head 0: the log holds 255 before it is full.
    for (let i = 0; i < 255; i++) g.iommu.translate(0x20, BigInt(i) << 12n, IOMMUAccessFlags.RO);
    expect(g.iommu.mmioRead(0x2018, 8)).toBe(0xff0n);
    expect(g.iommu.mmioRead(0x2020, 4) & 3n).toBe(2n); // EventLogInt, no overflow yet
    expect(sent).toHaveLength(1); // one rise of EventLogInt
    g.iommu.translate(0x20, 0x100_0000n, IOMMUAccessFlags.RO);
    expect(g.iommu.mmioRead(0x2020, 4) & 0xbn).toBe(3n); // EventOverflow | EventLogInt, EventLogRun clear
    expect(g.iommu.mmioRead(0x2018, 8)).toBe(0xff0n);
    expect(sent).toHaveLength(2);
    // The driver drains the log, clears the status and re-enables it.
    g.iommu.mmioWrite(0x2010, 8, 0xff0n);
    g.iommu.mmioWrite(0x2020, 4, 3n);
    g.iommu.mmioWrite(0x18, 8, 0x1009n);
    g.iommu.mmioWrite(0x18, 8, 0x100dn);
    g.iommu.translate(0x20, 0x100_0000n, IOMMUAccessFlags.RO);
    expect(g.iommu.mmioRead(0x2018, 8)).toBe(0n);
    expect(g.read64(EVTLOG + 0xff0 + 8)).toBe(0x100_0000n);
  });

  test('spec: DTE SE suppresses IO_PAGE_FAULT events, SA every event of the device', () => {
    const g = new AmdGuest();
    g.setDte(0x20, { mode: 3, root: g.alloc(), domid: 1, se: true });
    g.setDte(0x28, { mode: 7, sa: true });
    g.bringUp();
    const f = g.iommu.translate(0x20, 0x1000n, IOMMUAccessFlags.RO);
    expect(f).toMatchObject({ fault: true, reason: 2, recorded: false });
    expect(g.iommu.translate(0x28, 0x1000n, IOMMUAccessFlags.RO)).toMatchObject({ fault: true, reason: 1, recorded: false });
    expect(g.iommu.mmioRead(0x2018, 8)).toBe(0n);
  });

  test('no MSI capability programmed: no interrupt; setMsi programs it', () => {
    const ram = new SparseRam([{ base: 0n, size: 0x100_0000n }]);
    const io = createAmdVi({}, ram);
    const sent: MsiMessage[] = [];
    io.events.on('msi', (m) => sent.push(m));
    io.mmioWrite(0x08, 8, 0x1_0000n | (8n << 56n));
    io.mmioWrite(0x18, 8, 0x1015n);
    ram.writeU64(0x1_0000, (1n << 60n) | 2n);
    io.mmioWrite(0x2008, 8, 0x10n);
    expect(sent).toEqual([]);
    io.mmioWrite(0x2020, 4, 4n);
    io.setMsi(0xfee0_1000n, 0x41);
    ram.writeU64(0x1_0010, (1n << 60n) | 2n);
    io.mmioWrite(0x2008, 8, 0x20n);
    expect(sent).toEqual([{ address: 0xfee0_1000n, data: 0x41 }]);
  });
});
