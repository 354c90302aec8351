import { replayTrace, readTraceAll } from '../../src/trace';
import type { ReplayReport } from '../../src/trace';
import { FakeModel, mapValue } from './fake-model';

const HEADER = '{"trace":"viommu","version":1,"model":"fake","config":{},"ram":[{"base":"0x0","size":"0x100000"}]}';

async function run(lines: string[], opts: { refuseMap?: boolean; record?: string[] } = {}): Promise<ReplayReport & { fakeModel: FakeModel | undefined }> {
  let model: FakeModel | undefined;
  const report = await replayTrace(Buffer.from([HEADER, ...lines].join('\n') + '\n'), {
    createModel: (_c, mem) => (model = new FakeModel(mem, opts.refuseMap)),
    ...(opts.record ? { record: (l: string) => { opts.record!.push(l); } } : {}),
  });
  return Object.assign(report, { fakeModel: model });
}

const W = (reg: number, value: string) => `{"op":"mmio.write","reg":"0x${reg.toString(16)}","size":8,"value":"${value}"}`;
const MAP = (pfn: number, xlat: number, perm = 3) => W(0, mapValue(pfn, xlat, perm));
const UNMAP = (pfn: number) => W(8, '0x' + pfn.toString(16));
const MSI = (data: number) => W(0x10, '0x' + data.toString(16));
const ADD = (id: string, flags = '"MAP","UNMAP"', start = '0x0', end = '0xffffffffffffffff') =>
  `{"op":"notifier.add","id":"${id}","sid":"0x20","flags":[${flags}],"start":"${start}","end":"${end}"}`;
const NOTIFY = (id: string, type: string, iova: number, translated: number, perm: string) =>
  `{"op":"notify","id":"${id}","type":"${type}","iova":"0x${iova.toString(16)}","mask":"0xfff","translated":"0x${translated.toString(16)}","perm":"${perm}"}`;
const MSIX = (data: number) => `{"op":"msi.expect","addr":"0xfee00000","data":"0x${data.toString(16)}"}`;

describe('replay engine: expectations', () => {
  test('notifier.add with pasid registers on that PASID address space of the model', async () => {
    const r = await run([
      '{"op":"notifier.add","id":"a","sid":"0x20","pasid":7,"flags":["UNMAP"],"start":"0x0","end":"0xffff"}',
      '{"op":"notifier.add","id":"b","sid":"0x20","flags":["UNMAP"],"start":"0x0","end":"0xffff"}',
    ]);
    expect(r.ok).toBe(true);
    expect(r.fakeModel!.spaceCalls).toEqual([[0x20, 7], [0x20, undefined]]);
  });

  test('mem.write / mem.expect', async () => {
    const r = await run([
      '{"op":"mem.write","gpa":"0x100","data":"01020304"}',
      '{"op":"mem.expect","gpa":"0x100","data":"01020304"}',
      '{"op":"mem.expect","gpa":"0x102","data":"0304ff"}',
      '{"op":"mem.expect","gpa":"0xffffe","data":"000000"}',
    ]);
    expect(r.mismatches.map((m) => [m.line, m.op, m.expected, m.got])).toEqual([
      [4, 'mem.expect', '0304ff', '030400'],
      [5, 'mem.expect', '000000', null],
    ]);
    expect(r.ok).toBe(false);
  });

  test('mmio.read expect; absent expect only records', async () => {
    const r = await run([
      W(0x20, '0xdead'),
      '{"op":"mmio.read","reg":"0x20","size":8,"expect":"0xdead"}',
      '{"op":"mmio.read","reg":"0x20","size":8,"expect":"0xbeef"}',
      '{"op":"mmio.read","reg":"0x20","size":8}',
    ]);
    expect(r.mismatches).toHaveLength(1);
    expect(r.mismatches[0]).toMatchObject({ line: 4, op: 'mmio.read', expected: '0xbeef', got: '0xdead' });
  });

  test('dma.write / dma.read with partial-DMA semantics', async () => {
    const r = await run([
      MAP(0x10, 0x40),
      MAP(0x12, 0x41),
      '{"op":"dma.write","sid":"0x20","iova":"0x10ffe","data":"aabbccdd","expect":"fault"}',
      '{"op":"dma.write","sid":"0x20","iova":"0x12000","data":"1122","expect":"ok"}',
      '{"op":"mem.expect","gpa":"0x40ffe","data":"aabb"}',
      '{"op":"dma.read","sid":"0x20","iova":"0x10ffe","len":2,"expect":"aabb"}',
      '{"op":"dma.read","sid":"0x20","iova":"0x11ffe","len":4,"expect":"fault"}',
      '{"op":"dma.read","sid":"0x20","iova":"0x12000","len":2,"expect":"1122"}',
      // mismatches:
      '{"op":"dma.read","sid":"0x20","iova":"0x12000","len":2,"expect":"fault"}',
      '{"op":"dma.write","sid":"0x20","iova":"0x13000","data":"00","expect":"ok"}',
      '{"op":"dma.read","sid":"0x20","iova":"0x12000","len":2,"expect":"1123"}',
    ]);
    expect(r.mismatches.map((m) => [m.line, m.op, m.expected, m.got])).toEqual([
      [10, 'dma.read', 'fault', '1122'],
      [11, 'dma.write', 'ok', 'fault'],
      [12, 'dma.read', '1123', '1122'],
    ]);
    expect(r.mismatches[1]!.message).toContain('0x13000');
  });

  test('translate expect: translated / mask / perm, or fault', async () => {
    const r = await run([
      MAP(0x10, 0x40, 1),
      '{"op":"translate","sid":"0x20","iova":"0x10123","access":"r","expect":{"translated":"0x40000","mask":"0xfff","perm":"r"}}',
      '{"op":"translate","sid":"0x20","iova":"0x10123","access":"w","expect":{"fault":true}}',
      '{"op":"translate","sid":"0x20","iova":"0x10123","access":"r","expect":{"translated":"0x40000","mask":"0xfff","perm":"rw"}}',
      '{"op":"translate","sid":"0x20","iova":"0x10123","access":"r","expect":{"fault":true}}',
    ]);
    expect(r.mismatches.map((m) => [m.line, m.expected, m.got])).toEqual([
      [5, { translated: '0x40000', mask: '0xfff', perm: 'rw' }, { translated: '0x40000', mask: '0xfff', perm: 'r' }],
      [6, { fault: true }, { translated: '0x40000', mask: '0xfff', perm: 'r' }],
    ]);
  });

  test('translate expect: the translated address of the byte itself states the same translation', async () => {
    const r = await run([
      MAP(0x10, 0x40, 1),
      '{"op":"translate","sid":"0x20","iova":"0x10123","access":"r","expect":{"translated":"0x40123","mask":"0xfff","perm":"r"}}',
      '{"op":"translate","sid":"0x20","iova":"0x10123","access":"r","expect":{"translated":"0x40124","mask":"0xfff","perm":"r"}}',
      '{"op":"translate","sid":"0x20","iova":"0x10123","access":"r","expect":{"translated":"0x41000","mask":"0xfff","perm":"r"}}',
    ]);
    expect(r.mismatches.map((m) => m.line)).toEqual([4, 5]);
  });

  describe('msi.expect', () => {
    test('interrupts expected in order match', async () => {
      expect((await run([MSI(1), MSI(2), MSIX(1), MSIX(2), MSI(3), MSIX(3)])).ok).toBe(true);
    });
    test('an expected interrupt that was not sent', async () => {
      const r = await run([MSI(1), MSIX(1), MSIX(2)]);
      expect(r.mismatches).toEqual([expect.objectContaining({ line: 4, op: 'msi.expect', expected: { addr: '0xfee00000', data: '0x2' }, got: null })]);
    });
    test('interrupts in another order', async () => {
      const r = await run([MSI(1), MSI(2), MSIX(2), MSIX(1)]);
      expect(r.mismatches.map((m) => m.line)).toEqual([4, 5]);
    });
    test('an interrupt never expected before the end is a mismatch at the line that sent it', async () => {
      const r = await run([MSI(1), MSIX(1), MSI(7), W(0x20, '0x0')]);
      expect(r.mismatches).toEqual([expect.objectContaining({ line: 4, op: 'mmio.write', got: { addr: '0xfee00000', data: '0x7' } })]);
    });
    test('an interrupt not expected before the next msi.expect run is a mismatch', async () => {
      const r = await run([MSI(5), MSI(1), MSIX(5), W(0x20, '0x0'), MSI(2), MSIX(2)]);
      expect(r.mismatches).toEqual([expect.objectContaining({ line: 3, got: { addr: '0xfee00000', data: '0x1' } })]);
    });
  });

  describe('notify groups (model traces)', () => {
    test('a group matches after a stable sort by iova, whatever order the model used', async () => {
      const r = await run([
        ADD('vfio'),
        '{"op":"mem.write","gpa":"0x0","data":"00"}',
        MAP(0x20, 0x50), MAP(0x10, 0x40),
        NOTIFY('vfio', 'MAP', 0x10000, 0x40000, 'rw'),
        NOTIFY('vfio', 'MAP', 0x20000, 0x50000, 'rw'),
        UNMAP(0x10),
        NOTIFY('vfio', 'UNMAP', 0x10000, 0, 'none'),
      ]);
      expect(r.mismatches).toEqual([]);
      expect(r.ok).toBe(true);
    });

    test('UNMAP-before-MAP for one iova stays ordered: swapped lines are a mismatch', async () => {
      const r = await run([
        ADD('vfio'),
        MAP(0x10, 0x40),
        NOTIFY('vfio', 'MAP', 0x10000, 0x40000, 'rw'),
        UNMAP(0x10), MAP(0x10, 0x41),
        NOTIFY('vfio', 'MAP', 0x10000, 0x41000, 'rw'),
        NOTIFY('vfio', 'UNMAP', 0x10000, 0, 'none'),
      ]);
      expect(r.mismatches).toHaveLength(1);
      expect(r.mismatches[0]).toMatchObject({ line: 7, op: 'notify' });
    });

    test('a missing or extra notification is a mismatch naming the listener; other listeners are compared on their own', async () => {
      const r = await run([
        ADD('vfio'), ADD('vhost', '"UNMAP"'),
        MAP(0x10, 0x40), UNMAP(0x10),
        NOTIFY('vfio', 'MAP', 0x10000, 0x40000, 'rw'),
        NOTIFY('vhost', 'UNMAP', 0x10000, 0, 'none'),
      ]);
      expect(r.mismatches).toHaveLength(1);
      expect(r.mismatches[0]!.message).toContain('"vfio"');
      expect(r.mismatches[0]!.got).toEqual(['MAP 0x10000/0xfff -> 0x40000 rw', 'UNMAP 0x10000/0xfff -> 0x0 none']);
    });

    test('notifications of a replay at registration (C7) are part of the next group', async () => {
      const r = await run([MAP(0x10, 0x40), ADD('late'), NOTIFY('late', 'MAP', 0x10000, 0x40000, 'rw')]);
      expect(r.ok).toBe(true);
    });
  });

  test('view.expect: compared as a function of IOVA, split or merged entries match', async () => {
    const r = await run([
      ADD('vfio'),
      MAP(0x10, 0x40), MAP(0x11, 0x41), MAP(0x13, 0x50, 1),
      '{"op":"view.expect","id":"vfio","entries":[{"iova":"0x10000","mask":"0x1fff","translated":"0x40000","perm":"rw"},{"iova":"0x13000","mask":"0xfff","translated":"0x50000","perm":"r"}]}',
      '{"op":"view.expect","id":"vfio","entries":[{"iova":"0x10000","mask":"0x1fff","translated":"0x40000","perm":"rw"},{"iova":"0x13000","mask":"0xfff","translated":"0x50000","perm":"rw"}]}',
      '{"op":"view.expect","id":"vfio","entries":[{"iova":"0x10000","mask":"0xfff","translated":"0x40000","perm":"rw"}]}',
      '{"op":"view.expect","id":"nobody","entries":[]}',
    ]);
    expect(r.mismatches.map((m) => m.line)).toEqual([7, 8, 9]);
    expect(r.mismatches[0]!.message).toContain('0x13000');
    expect(r.mismatches[1]!.message).toMatch(/at iova 0x11000: expected nothing, got 0x41000 rw/);
    expect(r.mismatches[2]!.message).toMatch(/never registered/);
  });

  test('a 1 GiB view against 2^18 4 KiB expected entries would be slow page by page; runs compare it at once', async () => {
    const entries = [{ iova: '0x40000000', mask: '0x3fffffff', translated: '0x80000000', perm: 'rw' }];
    const r = await replayTrace(Buffer.from([
      '{"trace":"viommu","version":1,"model":"none","ram":[]}',
      ADD('vfio'),
      '{"op":"notify","id":"vfio","type":"MAP","iova":"0x40000000","mask":"0x3fffffff","translated":"0x80000000","perm":"rw"}',
      JSON.stringify({ op: 'view.expect', id: 'vfio', entries }),
      JSON.stringify({ op: 'view.expect', id: 'vfio', entries: [
        { iova: '0x40000000', mask: '0x1fffffff', translated: '0x80000000', perm: 'rw' },
        { iova: '0x60000000', mask: '0x1fffffff', translated: '0xc0000000', perm: 'rw' },
      ] }),
    ].join('\n')));
    expect(r.mismatches.map((m) => m.line)).toEqual([5]);
    expect(r.mismatches[0]!.message).toMatch(/at iova 0x60000000: expected 0xc0000000 rw, got 0xa0000000 rw/);
  });

  test('contract violations by the model are reported with line and rule, and replay goes on', async () => {
    const r = await run([
      ADD('vfio'),
      MAP(0x10, 0x40),
      W(0x18, '0x10'),
      '{"op":"mmio.read","reg":"0x20","size":8,"expect":"0x1"}',
    ]);
    expect(r.violations).toEqual([expect.objectContaining({ line: 4, rule: 'C4', listener: 'vfio', entry: { type: 'MAP', iova: '0x10000', mask: '0xfff', translated: '0x40000', perm: 'rw' } })]);
    expect(r.violationCount).toBe(1);
    expect(r.mismatches).toEqual([expect.objectContaining({ line: 5, op: 'mmio.read' })]);
  });

  test('a listener the model refuses is a C1 violation naming it', async () => {
    const r = await run([ADD('vfio'), ADD('vhost', '"UNMAP"'), MAP(0x10, 0x40)], { refuseMap: true });
    expect(r.violations).toEqual([expect.objectContaining({ line: 2, rule: 'C1', listener: 'vfio' })]);
    expect(r.violations[0]!.message).toMatch(/caching mode/);
  });

  test('ops a model lacks are reported as unsupported (virtio-iommu ops on a non-virtio model)', async () => {
    const r = await run(['{"op":"virtio.request","data":"00","writable":4}']);
    expect(r.mismatches).toEqual([expect.objectContaining({ line: 2, op: 'virtio.request' })]);
    expect(r.mismatches[0]!.message).toMatch(/not supported by model fake/);
  });

  test('device ops in a model-none trace are reported', async () => {
    const r = await replayTrace(Buffer.from('{"trace":"viommu","version":1,"model":"none","ram":[]}\n{"op":"mmio.read","reg":"0x0","size":4}\n'));
    expect(r.mismatches).toEqual([expect.objectContaining({ line: 2, op: 'mmio.read' })]);
  });

  test('a malformed line stops the replay: what came before is reported, nothing after', async () => {
    const r = await run([
      '{"op":"mem.expect","gpa":"0x0","data":"01"}',
      '{"op":"mem.expect","gpa":"0x0",',
      '{"op":"mem.expect","gpa":"0x0","data":"02"}',
    ]);
    expect(r.malformed).toEqual({ line: 3, reason: expect.stringMatching(/bad JSON/) });
    expect(r.mismatches.map((m) => m.line)).toEqual([2]);
    expect(r.ok).toBe(false);
  });

  test('an unknown model is a clear error on line 1', async () => {
    const r = await replayTrace(Buffer.from('{"trace":"viommu","version":1,"model":"quantum-iommu","ram":[]}\n'));
    expect(r.malformed).toEqual({ line: 1, reason: expect.stringMatching(/unknown model "quantum-iommu".*intel-vtd/) });
  });

  test('--record: every expect filled from this run; the recorded trace replays clean', async () => {
    const lines = [
      ADD('vfio'),
      W(0x20, '0x77'),
      '{"op":"mmio.read","reg":"0x20","size":8,"expect":"0x1"}',
      MAP(0x10, 0x40),
      NOTIFY('vfio', 'MAP', 0x99000, 0x40000, 'rw'),
      '{"op":"dma.write","sid":"0x20","iova":"0x10000","data":"abcd"}',
      '{"op":"dma.read","sid":"0x20","iova":"0x10000","len":3,"expect":"fault"}',
      '{"op":"translate","sid":"0x20","iova":"0x20000","access":"r"}',
      MSI(9),
      '{"op":"view.expect","id":"vfio","entries":[]}',
      '{"op":"mem.expect","gpa":"0x40000","data":"0000"}',
    ];
    const recorded: string[] = [];
    const first = await run(lines, { record: recorded });
    expect(first.ok).toBe(false);
    const again = await replayTrace(Buffer.from(recorded.join('\n') + '\n'), { createModel: (_c, mem) => new FakeModel(mem) });
    expect(again.mismatches).toEqual([]);
    expect(again.ok).toBe(true);
    const { events } = await readTraceAll(Buffer.from(recorded.join('\n')));
    expect(events.find((e) => e.op === 'mmio.read')).toMatchObject({ expect: 0x77n });
    expect(events.find((e) => e.op === 'dma.write')).toMatchObject({ expect: 'ok' });
    expect(events.find((e) => e.op === 'dma.read')).toMatchObject({ expect: new Uint8Array([0xab, 0xcd, 0]) });
    expect(events.find((e) => e.op === 'translate')).toMatchObject({ expect: { fault: true } });
    expect(events.filter((e) => e.op === 'notify')).toEqual([expect.objectContaining({ iova: 0x10000n, translated: 0x40000n })]);
    expect(events.filter((e) => e.op === 'msi.expect')).toEqual([expect.objectContaining({ data: 9 })]);
    expect(events.find((e) => e.op === 'view.expect')).toMatchObject({ entries: [{ iova: 0x10000n, mask: 0xfffn, translated: 0x40000n, perm: 3 }] });
    expect(events.find((e) => e.op === 'mem.expect')).toMatchObject({ data: new Uint8Array([0xab, 0xcd]) });
  });
});
