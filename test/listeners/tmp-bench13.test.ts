import { VfioContainer, VfioListener } from '../../src/listeners';
import { NotifierList } from '../../src/core/notifier-list';
const n = 1_800_000;
const walk = (first: number, last: number, sink: (a: number, b: number, c: number, d: number) => void) => { for (let i = Math.max(first, 0x100); i < 0x100 + n && i <= last; i++) sink(i, 1, i, 3); };
test('bench', () => {
  for (let rep = 0; rep < 2; rep++) {
    const list0 = new NotifierList();
    let t0 = Date.now();
    const h = list0.register({ flags: 3, start: 0n, end: 0xfedfffffn, notify: () => undefined });
    list0.replay(h, walk);
    const base = Date.now() - t0;
    const c = new VfioContainer();
    const l = new VfioListener(c);
    t0 = Date.now();
    l.attach(new NotifierList(), walk);
    console.log('noop-listener ms', base, 'vfio ms', Date.now() - t0, l.stats().limitRefusals, c.stats().mappings);
  }
});
