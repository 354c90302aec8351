/**
 * The README's API tour, run for real: if the documented names or behaviour
 * change, this fails. Expected values are what the page tables written here
 * say (VT-d spec 9.1-9.8 layouts), not the model's output.
 */
import {
  SparseRam, createIntelVtd, IOMMUNotifierFlag, IOMMUAccessFlags, isFault, NotifierList, ContractViolation,
} from '../src';
import type { IOMMUTLBEvent, LeafWalker } from '../src';
import { replayTrace } from '../src/trace';
import { VtdTables, legacyRootEntry } from './models/intel-vtd/helpers/tables';

describe('README tour', () => {
  test('memory, a VT-d unit, a notifier, translate and DMA', () => {
    const ram = new SparseRam([{ base: 0, size: 128 << 20 }]);
    const vtd = createIntelVtd({ awBits: 48, cachingMode: true }, ram);
    const msis: Array<{ address: bigint; data: number }> = [];
    vtd.events.on('msi', (m) => msis.push(m));

    // Tables: root (bus 0) -> context (devfn 0x20) -> 4-level second-level tree, DID 1.
    const t = new VtdTables(ram, 0x10_0000);
    const root = t.page();
    const ctx = t.page();
    const slpt = t.page();
    t.root(root, 0, legacyRootEntry({ ctp: ctx }));
    t.legacyContext(ctx, 0x20, { slptptr: slpt, aw: 2, did: 1 });
    t.map(slpt, 4, 0x1234_5000n, 0x0200_0000n);            // 4 KiB, RW
    ram.write(0x0200_0000, new Uint8Array([1, 2, 3, 4]));

    vtd.mmioWrite(0x20, 8, BigInt(root));                      // RTADDR
    vtd.mmioWrite(0x18, 4, 0x4000_0000n);                      // GCMD.SRTP
    vtd.mmioWrite(0x18, 4, 0x8000_0000n);                      // GCMD.TE
    expect(vtd.mmioRead(0x1c, 4)).toBe(0xc000_0000n);          // GSTS: TES | RTPS

    const events: IOMMUTLBEvent[] = [];
    const handle = vtd.addressSpace(0x0020).registerNotifier({
      flags: IOMMUNotifierFlag.ALL, start: 0n, end: 2n ** 64n - 1n,
      notify: (ev) => events.push({ type: ev.type, entry: { ...ev.entry } }),
    });
    // C7: the replay on registration maps what the tables hold.
    expect(events).toEqual([{ type: IOMMUNotifierFlag.MAP, entry: expect.objectContaining({ iova: 0x1234_5000n, translatedAddr: 0x0200_0000n, addrMask: 0xfffn, perm: IOMMUAccessFlags.RW }) }]);

    const r = vtd.translate(0x0020, 0x1234_5004n, IOMMUAccessFlags.RW);
    expect(isFault(r)).toBe(false);
    if (!isFault(r)) expect(r.translatedAddr | (0x1234_5004n & r.addrMask)).toBe(0x0200_0004n);
    const { data, faulted } = vtd.dmaRead(0x0020, 0x1234_5000n, 4);
    expect(faulted).toBe(false);
    expect([...data]).toEqual([1, 2, 3, 4]);

    // An unmapped IOVA faults and raises the fault event (FECTL.IM is set at reset: no MSI until unmasked).
    expect(isFault(vtd.translate(0x0020, 0x9999_0000n, IOMMUAccessFlags.RO))).toBe(true);
    expect(msis).toEqual([]);
    handle.dispose();
    expect(handle.registered).toBe(false);
  });

  test('replaying a trace from code', async () => {
    const report = await replayTrace('fixtures/vtd-notify/notify-aw48-9101.jsonl');
    expect(report.ok).toBe(true);
    expect(report.mismatches).toEqual([]);
    expect(report.violations).toEqual([]);
  });

  test('the notifier list on its own: strict refusal, sync, teardown', () => {
    const F = IOMMUNotifierFlag;
    const cachingMode = false;
    const list = new NotifierList({
      mode: 'strict',
      notifyFlagChanged: (_old, flags) => {
        if (flags & F.MAP && !cachingMode) throw new Error('MAP notifiers need caching mode');
      },
    });
    expect(() => list.register({ flags: F.ALL, start: 0n, end: 0xffff_ffffn, notify: () => {} })).toThrow('caching mode');

    const ok = new NotifierList({ mode: 'strict' });
    const got: string[] = [];
    ok.register({ flags: F.ALL, start: 0n, end: 0xffff_ffffn, notify: (ev) => got.push(`${ev.type}:${ev.entry.iova.toString(16)}`) });
    ok.notify({ type: F.MAP, entry: { iova: 0x1000n, translatedAddr: 0x5000n, addrMask: 0xfffn, perm: 3 } });
    // A MAP over the live entry is refused (C4).
    expect(() => ok.notify({ type: F.MAP, entry: { iova: 0x1000n, translatedAddr: 0x6000n, addrMask: 0xfffn, perm: 3 } })).toThrow(ContractViolation);
    // The tables now hold one 2 MiB leaf at 0 -> 0x40_0000: the 4 KiB entry is unmapped whole, the leaf mapped.
    const walker: LeafWalker = (first, last, sink) => { if (first <= 511 && last >= 0) sink(0, 512, 0x400, 3); };
    ok.sync(0n, 0x1f_ffffn, walker);
    ok.unmapAll();
    expect(got).toEqual([`${F.MAP}:1000`, `${F.UNMAP}:1000`, `${F.MAP}:0`, `${F.UNMAP}:0`]);
  });
});
