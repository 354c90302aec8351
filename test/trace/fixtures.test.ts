import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { Replayer, readTrace, replayTrace, formatEvent } from '../../src/trace';
import type { ReplayReport, TraceEvent, TraceHandler } from '../../src/trace';

const FIXTURES = join(__dirname, '../../fixtures/none');
// The QEMU reference traces, copied into the repository with their MANIFEST.md files.
const TRACES = join(__dirname, '../../fixtures');

describe('model-none fixtures', () => {
  test('clean.jsonl replays clean', async () => {
    const r = await replayTrace(join(FIXTURES, 'clean.jsonl'));
    expect(r.mismatches).toEqual([]);
    expect(r.violations).toEqual([]);
    expect(r.ok).toBe(true);
    expect(r.events).toBe(31);
  });

  // Rule and line of each fixture's one violation, by construction (contract.md).
  test.each([
    ['violation-c1.jsonl', 'C1', 3, 'none'],
    ['violation-c2.jsonl', 'C2', 3, 'vfio'],
    ['violation-c3.jsonl', 'C3', 4, 'vfio'],
    ['violation-c4.jsonl', 'C4', 4, 'vfio'],
    ['violation-c5.jsonl', 'C5', 4, 'vfio'],
    ['violation-c6.jsonl', 'C6', 3, 'low'],
    ['violation-c10.jsonl', 'C10', 5, 'vfio'],
  ])('%s is rejected with %s on line %i', async (file, rule, line, listener) => {
    const r = await replayTrace(join(FIXTURES, file));
    expect(r.ok).toBe(false);
    expect(r.mismatches).toEqual([]);
    expect(r.violations).toHaveLength(1);
    expect(r.violations[0]).toMatchObject({ rule, line, listener });
    expect(r.violations[0]!.message).toContain(rule);
  });

  test('a violating event does not change the view; replay goes on and reports every violation', async () => {
    const text = [
      '{"trace":"viommu","version":1,"model":"none","ram":[]}',
      '{"op":"notifier.add","id":"v","sid":"0x1","flags":["MAP","UNMAP"],"start":"0x0","end":"0xffffffffffffffff"}',
      '{"op":"notify","id":"v","type":"MAP","iova":"0x1000","mask":"0xfff","translated":"0x2000","perm":"rw"}',
      '{"op":"notify","id":"v","type":"MAP","iova":"0x1000","mask":"0xfff","translated":"0x3000","perm":"rw"}',
      '{"op":"notify","id":"v","type":"MAP","iova":"0x0","mask":"0x1fff","translated":"0x3000","perm":"rw"}',
      '{"op":"view.expect","id":"v","entries":[{"iova":"0x1000","mask":"0xfff","translated":"0x2000","perm":"rw"}]}',
      '{"op":"notify","id":"ghost","type":"UNMAP","iova":"0x0","mask":"0xfff","translated":"0x0","perm":"none"}',
    ].join('\n');
    const r = await replayTrace(Buffer.from(text));
    expect(r.violations.map((v) => [v.line, v.rule])).toEqual([[4, 'C4'], [5, 'C2'], [7, 'C10']]);
    expect(r.mismatches).toEqual([]);
  });
});

describe('fast path equivalence (model none)', () => {
  const ids = ['a', 'b', 'c'];
  const pfn = fc.integer({ min: 0, max: 7 });
  const big = (n: number) => BigInt(n) * 4096n;
  const event: fc.Arbitrary<Omit<TraceEvent, 'line'>> = fc.oneof(
    { weight: 1, arbitrary: fc.record({
      op: fc.constant('notifier.add' as const), id: fc.constantFrom(...ids), sid: fc.constantFrom(1, 2),
      flags: fc.integer({ min: 0, max: 7 }), start: pfn.map(big), end: fc.oneof(pfn.map((p) => big(p) + 4095n), fc.constant(2n ** 64n - 1n)),
    }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('notifier.del' as const), id: fc.constantFrom(...ids, 'zz') }) },
    { weight: 1, arbitrary: fc.record({ op: fc.constant('view.expect' as const), id: fc.constantFrom(...ids), entries: fc.constant([]) }) },
    { weight: 10, arbitrary: fc.record({
      op: fc.constant('notify' as const), id: fc.constantFrom(...ids, 'zz'), type: fc.constantFrom(1, 2, 2, 4) as fc.Arbitrary<1 | 2 | 4>,
      iova: fc.oneof({ weight: 5, arbitrary: pfn.map(big) }, { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
      mask: fc.oneof({ weight: 5, arbitrary: fc.constantFrom(0xfffn, 0xfffn, 0x1fffn, 0x3fffn, 0x1fffffn, 2n ** 64n - 1n) },
        { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
      translated: fc.oneof({ weight: 5, arbitrary: pfn.map(big) }, { weight: 2, arbitrary: fc.constant(0n) },
        { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
      perm: fc.constantFrom(0, 1, 2, 3) as fc.Arbitrary<0 | 1 | 2 | 3>,
    }) },
  );

  async function replay(text: string, fast: boolean): Promise<ReplayReport> {
    const replayer = new Replayer();
    const handler: TraceHandler = fast ? replayer : { header: (h) => replayer.header(h), event: (e) => replayer.event(e) };
    const { lines } = await readTrace(Buffer.from(text), handler);
    return replayer.finish(lines);
  }

  test('property: the numeric fast path and the JSON.parse path report identically', async () => {
    await fc.assert(fc.asyncProperty(fc.array(event, { maxLength: 60 }), async (events) => {
      const text = ['{"trace":"viommu","version":1,"model":"none","ram":[]}',
        ...events.map((e, i) => formatEvent({ ...e, line: i + 2 } as TraceEvent))].join('\n');
      const [fast, slow] = [await replay(text, true), await replay(text, false)];
      expect(fast).toEqual(slow);
    }), { numRuns: 300 });
  });
});

describe('fast path equivalence on damaged lines', () => {
  const line = '{"op":"notify","id":"a","type":"MAP","iova":"0x1000","mask":"0xfff","translated":"0x2000","perm":"rw"}';
  const head = '{"trace":"viommu","version":1,"model":"none","ram":[]}\n'
    + '{"op":"notifier.add","id":"a","sid":"0x1","flags":["MAP","UNMAP"],"start":"0x0","end":"0xffffffffffffffff"}\n';
  const alphabet = '{}":,0123456789abcdefxAFMNPUrw\\ \u00e9';

  async function report(text: string, fast: boolean): Promise<unknown> {
    const replayer = new Replayer();
    const handler: TraceHandler = fast ? replayer : { header: (h) => replayer.header(h), event: (e) => replayer.event(e) };
    try {
      const { lines } = await readTrace(Buffer.from(text), handler);
      return replayer.finish(lines);
    } catch (e) {
      return (e as Error).message;
    }
  }

  test('property: a notify line with characters changed, inserted or deleted is handled identically by both paths', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.record({ at: fc.nat(line.length), op: fc.constantFrom('set', 'insert', 'delete'), ch: fc.constantFrom(...alphabet) }), { minLength: 1, maxLength: 3 }),
      async (edits) => {
        let l = line;
        for (const e of edits) {
          const at = Math.min(e.at, l.length);
          l = e.op === 'set' ? l.slice(0, at) + e.ch + l.slice(at + 1) : e.op === 'insert' ? l.slice(0, at) + e.ch + l.slice(at) : l.slice(0, at) + l.slice(at + 1);
        }
        const text = head + line + '\n' + l + '\n' + l + '\n';
        expect(await report(text, true)).toEqual(await report(text, false));
      },
    ), { numRuns: 3000 });
  });
});

describe('QEMU reference traces', () => {
  const dirs = ['qemu-vtd', 'vtd-notify', 'linux-guest'];
  const files = dirs.flatMap((d) =>
    (readFileSync(join(TRACES, d, 'MANIFEST.md'), 'utf8').match(/`[^`]+\.jsonl(?:\.gz)?`/g) ?? []).map((f) => join(TRACES, d, f.slice(1, -1))));

  test('the reference traces are there', () => {
    expect(files.length).toBeGreaterThan(20);
  });

  test.each(files)('%s replays clean against intel-vtd', async (file) => {
    const r = await replayTrace(file);
    expect(r.malformed).toBeUndefined();
    expect(r.mismatches).toEqual([]);
    expect(r.violations).toEqual([]);
  });

  test('--record of a QEMU trace reproduces its event lines byte for byte (key order, lowercase hex)', async () => {
    const file = join(TRACES, 'qemu-vtd/fault-event-msi.jsonl');
    const recorded: string[] = [];
    const r = await replayTrace(file, { record: (l) => { recorded.push(l); } });
    expect(r.ok).toBe(true);
    const original = readFileSync(file, 'utf8').trimEnd().split('\n');
    expect(recorded.slice(1)).toEqual(original.slice(1));
    expect(JSON.parse(recorded[0]!)).toEqual(JSON.parse(original[0]!));
  });

  test('a changed expectation in a reference trace is a mismatch on its line', async () => {
    const lines = readFileSync(join(TRACES, 'qemu-vtd/sl-4k-rw-basic.jsonl'), 'utf8').trimEnd().split('\n');
    const k = lines.findIndex((l) => l.includes('"op":"dma.read"') && l.includes('"expect":"'));
    lines[k] = lines[k]!.replace(/"expect":"(..)/, (_m, b: string) => `"expect":"${b === '00' ? '01' : '00'}`);
    const r = await replayTrace(Buffer.from(lines.join('\n')));
    expect(r.mismatches.map((m) => [m.line, m.op])).toEqual([[k + 1, 'dma.read']]);
  });
});
