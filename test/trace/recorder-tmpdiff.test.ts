import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { SparseRam } from '../../src/memory';
import { readTraceAll } from '../../src/trace';
import { TraceRecorder } from '../../src/trace/recorder';
import { TraceRecorder as Old } from '../../src/trace/recorder-old';
async function rr(file: string, Ctor: any): Promise<string[]> {
  const { header, events } = await readTraceAll(file);
  const ram = new SparseRam(header.ram);
  const lines: string[] = [];
  const rec = new Ctor({ memory: ram, ram: header.ram, model: header.model, config: header.config, write: (l: string) => lines.push(l) });
  const handles = new Map<string, any>();
  for (const ev of events) {
    switch (ev.op) {
      case 'mem.write': ram.write(Number(ev.gpa), ev.data); break;
      case 'mmio.write': rec.mmioWrite(ev.reg, ev.size, ev.value); break;
      case 'mmio.read': rec.mmioRead(ev.reg, ev.size); break;
      case 'dma.read': rec.dmaRead(ev.sid, ev.iova, ev.len, ev.pasid); break;
      case 'dma.write': rec.dmaWrite(ev.sid, ev.iova, ev.data, ev.pasid); break;
      case 'translate': rec.translate(ev.sid, ev.iova, ev.access, ev.pasid); break;
      case 'notifier.add': handles.set(ev.id, rec.addressSpace(ev.sid).registerNotifier({ flags: ev.flags, start: ev.start, end: ev.end, notify: () => {} }, ev.id)); break;
      case 'notifier.del': handles.get(ev.id)!.dispose(); break;
      case 'view.expect': rec.expectView(handles.get(ev.id)!); break;
      default: break;
    }
  }
  return lines;
}
const dirs = ['qemu-vtd', 'vtd-notify'].map((d) => join(__dirname, '../../fixtures', d));
const files = dirs.flatMap((d) => readdirSync(d).filter((f) => f.endsWith('.jsonl')).map((f) => join(d, f)));
test.each(files)('%s', async (f) => {
  const a = await rr(f, Old); const b = await rr(f, TraceRecorder);
  if (a.join('\n') !== b.join('\n')) {
    const sa = [...a].sort(); const sb = [...b].sort();
    console.log(f, a.length, b.length, 'same multiset:', sa.join('\n') === sb.join('\n'));
  }
});
test('show', async () => {
  const f = join(__dirname, '../../fixtures/qemu-vtd/sl-4k-rw-basic.jsonl');
  const a = await rr(f, Old); const b = await rr(f, TraceRecorder);
  require('fs').writeFileSync('/tmp/a.txt', a.join('\n')); require('fs').writeFileSync('/tmp/b.txt', b.join('\n'));
});
