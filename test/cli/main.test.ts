import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnSync } from 'node:child_process';
import { cli } from '../helpers/cli';

const ROOT = join(__dirname, '../..');
const FIX = join(ROOT, 'fixtures/none');


const tmp = () => mkdtempSync(join(tmpdir(), 'viommu-cli-'));

describe('viommu replay', () => {
  test('a clean trace: exit 0 and a summary line', async () => {
    const r = await cli('replay', join(FIX, 'clean.jsonl'));
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/replay .*clean\.jsonl \(model none\): 31 events, 0 mismatches, 0 violations: OK\n$/);
    expect(r.err).toBe('');
  });

  test('a violation: exit 1, the line, rule, listener and event are listed', async () => {
    const r = await cli('replay', join(FIX, 'violation-c4.jsonl'));
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^line 4: C4 violation \(listener vfio\): /m);
    expect(r.out).toMatch(/event: MAP iova 0x1000 mask 0xfff -> 0x3000 rw/);
    expect(r.out).toMatch(/1 violation: FAILED/);
  });

  test('a mismatch: line, op, expected and got are listed', async () => {
    const d = tmp();
    const f = join(d, 't.jsonl');
    writeFileSync(f, [
      '{"trace":"viommu","version":1,"model":"none","ram":[{"base":"0x0","size":"0x1000"}]}',
      '{"op":"mem.write","gpa":"0x10","data":"abcd"}',
      '{"op":"mem.expect","gpa":"0x10","data":"abce"}',
    ].join('\n'));
    const r = await cli('replay', f);
    expect(r.code).toBe(1);
    expect(r.out).toContain('line 3: mem.expect: guest memory at 0x10 differs\n  expected: abce\n  got:      abcd\n');
  });

  test('--json prints one report object', async () => {
    const r = await cli('replay', join(FIX, 'violation-c6.jsonl'), '--json');
    expect(r.code).toBe(1);
    const report = JSON.parse(r.out);
    expect(report).toMatchObject({ schemaVersion: 1, command: 'replay', model: 'none', status: 1, ok: false, violationCount: 1, violations: [{ line: 3, rule: 'C6', listener: 'low' }] });
    expect(r.out.trim().split('\n')).toHaveLength(1);
  });

  test('a malformed trace: exit 2 with file, line and reason', async () => {
    const d = tmp();
    const f = join(d, 'bad.jsonl');
    writeFileSync(f, '{"trace":"viommu","version":1,"model":"none","ram":[]}\n{"op":"notify"}\n');
    const r = await cli('replay', f);
    expect(r.code).toBe(2);
    expect(r.err).toContain(`${f}:2: malformed trace: notify: missing field "id"`);
  });

  test('an unreadable file and usage errors: exit 2', async () => {
    expect((await cli('replay', '/nonexistent.jsonl')).code).toBe(2);
    expect((await cli('replay', '/nonexistent.jsonl')).err).toMatch(/cannot read \/nonexistent.jsonl: ENOENT/);
    expect((await cli('replay')).code).toBe(2);
    expect((await cli('replay', 'a', '--bogus')).code).toBe(2);
    expect((await cli('check', 'a', 'b')).code).toBe(2);
    expect((await cli('frobnicate')).err).toMatch(/unknown command 'frobnicate'/);
    expect((await cli()).code).toBe(2);
  });

  test('an unknown option is named, with the nearest known one, exit 2', async () => {
    for (const cmd of ['replay', 'check']) {
      const r = await cli(cmd, join(FIX, 'clean.jsonl'), '--jsn');
      expect(r.code).toBe(2);
      expect(r.out).toBe('');
      expect(r.err).toMatch(/^viommu: error: unknown option '--jsn'\n\(Did you mean --json\?\)\n/);
      expect(r.err).toContain(`viommu ${cmd} --help`);
    }
    const rep = await cli('report', join(FIX, 'clean.jsonl'), '-o', '/dev/null', '--max-mark', '3');
    expect(rep.code).toBe(2);
    expect(rep.err).toMatch(/unknown option '--max-mark'\n\(Did you mean --max-marks\?\)/);
  });

  test('--record writes the trace with expectations filled; it replays clean', async () => {
    const d = tmp();
    const out = join(d, 'rec.jsonl');
    const r = await cli('replay', join(FIX, 'violation-c4.jsonl'), '--record', out);
    expect(r.code).toBe(1);
    const rec = readFileSync(out, 'utf8');
    expect(rec.split('\n')[0]).toMatch(/^\{"trace":"viommu","version":1,"model":"none"/);
    expect(rec.trim().split('\n')).toHaveLength(4);
    const clean = join(d, 'clean.jsonl.gz');
    expect((await cli('replay', join(FIX, 'clean.jsonl'), '--record', clean)).code).toBe(0);
    expect(readFileSync(clean).subarray(0, 2)).toEqual(Buffer.from([0x1f, 0x8b]));
    expect((await cli('replay', clean)).code).toBe(0);
  });

  test('--help and per-command help, in one format', async () => {
    const top = await cli('--help');
    expect(top.code).toBe(0);
    expect(top.out).toMatch(/^Usage: viommu \[options\] \[command\]$/m);
    for (const c of ['replay', 'check', 'report', 'import', 'help']) expect(top.out).toMatch(new RegExp(`^  ${c} `, 'm'));
    expect(top.out).toMatch(/Exit status \(trace-v1\): 0 /);
    expect((await cli('help')).out).toBe(top.out);
    for (const c of ['replay', 'check', 'report', 'import']) {
      const viaOption = await cli(c, '--help');
      const viaHelp = await cli('help', c);
      expect([c, viaOption.code, viaHelp.code]).toEqual([c, 0, 0]);
      expect(viaHelp.out).toBe(viaOption.out);
      // Every command's help has the same parts: usage, description, arguments, options, exit status.
      expect(viaOption.out).toMatch(new RegExp(`^Usage: viommu ${c} \\[options\\] <`, 'm'));
      expect(viaOption.out).toMatch(/^Arguments:$/m);
      expect(viaOption.out).toMatch(/^Options:\n(.|\n)*  -h, --help +this help$/m);
      expect(viaOption.out).toMatch(/Exit status/);
    }
    const replay = await cli('replay', '--help');
    expect(replay.out).toMatch(/--record <OUT>/);
    // The help describes the batch table's columns with the word the table uses.
    expect(replay.out).toMatch(/one row per trace: events,/);
    expect((await cli('help', 'check')).out).toMatch(/Usage: viommu check/);
  });

  test('help for an unknown command is an error naming it, exit 2', async () => {
    const r = await cli('help', 'foo');
    expect(r.code).toBe(2);
    expect(r.out).toBe('');
    expect(r.err).toMatch(/unknown command "foo" \(commands: replay, check, report, import, help\)/);
  });

  test('--version prints the version in package.json', async () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    for (const flag of ['--version', '-V']) {
      const r = await cli(flag);
      expect(r.code).toBe(0);
      expect(r.out).toBe(`${pkg.version}\n`);
    }
  });
});

describe('viommu check', () => {
  test('reports each violation and a table per rule and listener; mismatches are not its business', async () => {
    const d = tmp();
    const f = join(d, 't.jsonl');
    writeFileSync(f, [
      '{"trace":"viommu","version":1,"model":"none","ram":[]}',
      '{"op":"notifier.add","id":"v","sid":"0x1","flags":["MAP","UNMAP"],"start":"0x0","end":"0xffffffffffffffff"}',
      '{"op":"notify","id":"v","type":"MAP","iova":"0x1000","mask":"0xfff","translated":"0x2000","perm":"rw"}',
      '{"op":"notify","id":"v","type":"MAP","iova":"0x1000","mask":"0xfff","translated":"0x3000","perm":"rw"}',
      '{"op":"notify","id":"v","type":"MAP","iova":"0x1000","mask":"0xfff","translated":"0x4000","perm":"rw"}',
      '{"op":"notify","id":"w","type":"MAP","iova":"0x1000","mask":"0xfff","translated":"0x4000","perm":"rw"}',
      '{"op":"view.expect","id":"v","entries":[]}',
    ].join('\n'));
    const r = await cli('check', f);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^line 4: C4 violation/m);
    expect(r.out).toMatch(/^line 5: C4 .*\n  event: MAP iova 0x1000 mask 0xfff -> 0x4000 rw$/m);
    expect(r.out).toMatch(/^line 6: C10 violation \(listener w\)/m);
    expect(r.out).not.toMatch(/view.expect/);
    expect(r.out).toMatch(/^rule +listener +count$/m);
    expect(r.out).toMatch(/^C4 +v +2$/m);
    expect(r.out).toMatch(/^C10 +w +1$/m);
    expect(r.out).toMatch(/check .*: 6 events, 3 violations: FAILED/);
    expect((await cli('check', join(FIX, 'clean.jsonl'))).code).toBe(0);
  });
});

describe('bin/viommu.js', () => {
  test('the built command runs and returns the exit status', () => {
    // Build dist/ as `npm run build` does (other areas may be mid-edit: emit happens even with type errors elsewhere).
    spawnSync(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(ROOT, 'tsconfig.build.json')], { cwd: ROOT, encoding: 'utf8' });
    expect(existsSync(join(ROOT, 'dist/cli/main.js'))).toBe(true);
    const ok = spawnSync(process.execPath, [join(ROOT, 'bin/viommu.js'), 'replay', join(FIX, 'clean.jsonl')], { encoding: 'utf8' });
    expect(ok.status).toBe(0);
    expect(ok.stdout).toMatch(/OK/);
    const bad = spawnSync(process.execPath, [join(ROOT, 'bin/viommu.js'), 'replay', join(FIX, 'violation-c10.jsonl'), '--json'], { encoding: 'utf8' });
    expect(bad.status).toBe(1);
    expect(JSON.parse(bad.stdout).violations[0].rule).toBe('C10');
    // dist/cli finds package.json two levels up, as src/cli does.
    const version = spawnSync(process.execPath, [join(ROOT, 'bin/viommu.js'), '--version'], { encoding: 'utf8' });
    expect(version.status).toBe(0);
    expect(version.stdout).toBe(`${(JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version}\n`);
    const typo = spawnSync(process.execPath, [join(ROOT, 'bin/viommu.js'), 'replay', join(FIX, 'clean.jsonl'), '--jsn'], { encoding: 'utf8' });
    expect(typo.status).toBe(2);
    expect(typo.stderr).toMatch(/unknown option '--jsn'/);
  }, 240_000);
});
