import { Capture } from '../helpers/cli';
import { ProgressBar } from '../../src/cli/progress';


describe('ProgressBar', () => {
  test('draws the fraction done on one line and erases itself', () => {
    const out = new Capture();
    const bar = new ProgressBar(out, 4 << 20);
    bar.update(1 << 20);
    expect(out.text).toMatch(/^\r\[#+\.+\]  25% 1\/4 MB /);
    expect(out.text).not.toContain('\n');
    bar.clear();
    expect(out.text.endsWith('\r\x1b[K')).toBe(true);
  });

  test('redraws at most every 100 ms', () => {
    const out = new Capture();
    const bar = new ProgressBar(out, 100);
    bar.update(10);
    const once = out.text;
    bar.update(20);
    expect(out.text).toBe(once);
  });

  test('nothing drawn, nothing erased', () => {
    const out = new Capture();
    new ProgressBar(out, 100).clear();
    expect(out.text).toBe('');
  });
});
