import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

describe('src/listeners layering', () => {
  test('imports only src/core, its own files and runtime dependencies (never a model, memory or trace)', () => {
    const dir = join(__dirname, '../../src/listeners');
    const bad: string[] = [];
    for (const f of readdirSync(dir).filter((n) => n.endsWith('.ts'))) {
      const text = readFileSync(join(dir, f), 'utf8');
      for (const m of text.matchAll(/from '([^']+)'/g)) {
        const spec = m[1]!;
        const ok = spec.startsWith('./') || spec.startsWith('../core/') || ['node:events', 'typed-emitter', 'immer'].includes(spec);
        if (!ok) bad.push(`${f}: ${spec}`);
      }
    }
    expect(bad).toEqual([]);
  });
});
