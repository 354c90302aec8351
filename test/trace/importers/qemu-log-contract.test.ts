import { join } from 'node:path';
import { Writable } from 'node:stream';
import { importQemuLog } from '../../../src/trace/importers/qemu-log';
import { NotifierList, type NotifierHandle } from '../../../src/core/notifier-list';
import { ContractViolation } from '../../../src/core/errors';
import { IOMMUNotifierFlag, type IOMMUTLBEvent } from '../../../src/core/tlb-entry';
import { permFromString } from '../../../src/core/access';

const FIXTURES = join(__dirname, '../../../fixtures/qemu');

/** Imports a fixture and returns its JSON lines after the header. */
async function imported(name: string): Promise<Array<Record<string, string>>> {
  let text = '';
  const out = new Writable({ write(chunk: Buffer, _e, cb) { text += chunk.toString(); cb(); } });
  await importQemuLog(join(FIXTURES, name), out);
  return text.split('\n').filter(Boolean).slice(1).map((l) => JSON.parse(l) as Record<string, string>);
}

function toEvent(line: Record<string, string>): IOMMUTLBEvent {
  const perm = permFromString(line['perm']!);
  if (perm === undefined) throw new Error(`bad perm in ${JSON.stringify(line)}`);
  return {
    type: line['type'] === 'MAP' ? IOMMUNotifierFlag.MAP : IOMMUNotifierFlag.UNMAP,
    entry: { iova: BigInt(line['iova']!), addrMask: BigInt(line['mask']!), translatedAddr: BigInt(line['translated']!), perm },
  };
}

/** Replays imported lines through one strict NotifierList per listener; returns the violations in order. */
function check(lines: Array<Record<string, string>>): Array<{ index: number; rule: string; id: string }> {
  const lists = new Map<string, { list: NotifierList; handle: NotifierHandle }>();
  const found: Array<{ index: number; rule: string; id: string }> = [];
  lines.forEach((line, index) => {
    const id = line['id']!;
    if (line['op'] === 'notifier.add') {
      const list = new NotifierList({ mode: 'strict', name: id });
      const handle = list.register({
        flags: IOMMUNotifierFlag.MAP | IOMMUNotifierFlag.UNMAP,
        start: BigInt(line['start']!), end: BigInt(line['end']!), notify: () => undefined,
      });
      lists.set(id, { list, handle });
      return;
    }
    const l = lists.get(id);
    if (!l) throw new Error(`notify for undeclared listener ${id}`);
    try {
      l.list.notifyOne(l.handle, toEvent(line));
    } catch (e) {
      if (!ContractViolation.is(e)) throw e;
      found.push({ index, rule: e.rule, id });
    }
  });
  return found;
}

describe('imported QEMU notifications through a strict NotifierList', () => {
  test('the clean excerpt keeps the contract', async () => {
    expect(check(await imported('clean-map-unmap.log'))).toEqual([]);
    expect(check(await imported('shared-domain.log'))).toEqual([]);
  });

  test('QEMU 7.2 cutting a 2 MiB entry with a 4 KiB UNMAP is a C5 violation, then its 4 KiB MAP a C4 one', async () => {
    const lines = await imported('c5-split-2m.log');
    // lines: 0 notifier.add, 1 UNMAP whole, 2 MAP 2M, 3 UNMAP 4K (cuts the 2M), 4 MAP 4K (inside the still-valid 2M).
    expect(check(lines)).toEqual([
      { index: 3, rule: 'C5', id: 'vtd-00:04.0' },
      { index: 4, rule: 'C4', id: 'vtd-00:04.0' },
    ]);
  });
});
