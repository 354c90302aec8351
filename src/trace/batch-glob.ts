/**
 * A small path glob for `viommu replay` (no dependency): `*` matches any
 * run of characters within one path segment, `?` one character within a
 * segment, `**` any number of whole segments (also none). Everything else is
 * literal. Paths use `/` (the CLI's own separator; on Windows `\` is
 * converted before matching).
 */
import { readdirSync } from 'node:fs';
import type { Dirent } from 'node:fs';
import { join } from 'node:path';

/** Whether `text` contains glob syntax. */
export function hasGlob(text: string): boolean {
  return /[*?]/.test(text);
}

/** The regular expression equivalent to `pattern` (anchored). */
export function globToRegExp(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*') {
      if (pattern[i + 1] === '*') {
        const atStart = i === 0 || pattern[i - 1] === '/';
        i++;
        if (atStart && pattern[i + 1] === '/') {
          i++;
          re += '(?:[^/]*/)*'; // `**/`: zero or more whole segments
        } else {
          re += '.*';
        }
      } else {
        re += '[^/]*';
      }
    } else if (c === '?') {
      re += '[^/]';
    } else {
      re += /[\\^$.|+()[\]{}]/.test(c) ? '\\' + c : c;
    }
  }
  return new RegExp('^' + re + '$');
}

/** Whether `path` matches `pattern`. */
export function globMatch(pattern: string, path: string): boolean {
  return globToRegExp(pattern).test(path);
}

/**
 * The files matching `pattern`, sorted. The walk starts at the longest
 * literal leading directory of the pattern and goes no deeper than the
 * pattern can match (unbounded only under `**`). Unreadable directories are
 * skipped; symbolic links are not followed (no cycles).
 */
export function expandGlob(pattern: string): string[] {
  const pat = pattern.replace(/\\/g, '/');
  const segs = pat.split('/');
  let lit = 0;
  while (lit < segs.length - 1 && !hasGlob(segs[lit]!)) lit++;
  const baseSegs = segs.slice(0, lit);
  const base = baseSegs.length === 0 ? '.' : baseSegs.join('/') === '' ? '/' : baseSegs.join('/');
  const rest = segs.slice(lit);
  const maxDepth = rest.includes('**') || rest.some((s) => s.includes('**')) ? Infinity : rest.length;
  const re = globToRegExp(pat);
  const out: string[] = [];
  const walk = (dir: string, prefix: string, depth: number) => {
    let entries: Dirent[];
    try {
      entries = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const d of entries) {
      const rel = prefix === '' ? d.name : prefix.endsWith('/') ? prefix + d.name : prefix + '/' + d.name;
      if (d.isDirectory()) {
        if (depth + 1 < maxDepth) walk(join(dir, d.name), rel, depth + 1);
      } else if (d.isFile() && re.test(rel)) {
        out.push(rel);
      }
    }
  };
  walk(base, baseSegs.length === 0 ? '' : base, 0);
  return out.sort();
}

/** Trace files (`*.jsonl`, `*.jsonl.gz`) under `dir`, recursively, sorted. */
export function tracesInDir(dir: string): string[] {
  const d = dir.replace(/\\/g, '/').replace(/\/+$/, '');
  return expandGlob((d === '' ? '' : d + '/') + '**/*.jsonl').concat(expandGlob((d === '' ? '' : d + '/') + '**/*.jsonl.gz')).sort();
}
