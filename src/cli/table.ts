/**
 * The CLI's text tables (cli-table3): the batch summary and `check`'s
 * violations per rule and listener. Borderless, columns two spaces apart,
 * no colour, so that the output stays plain text that tools can split on
 * runs of spaces.
 */
import Table from 'cli-table3';

/** One table: `head`, then `rows`; numeric columns (`right`) are right-aligned. */
export function textTable(head: string[], rows: string[][], right: readonly number[] = []): string {
  const t = new Table({
    head,
    chars: {
      top: '', 'top-mid': '', 'top-left': '', 'top-right': '',
      bottom: '', 'bottom-mid': '', 'bottom-left': '', 'bottom-right': '',
      left: '', 'left-mid': '', mid: '', 'mid-mid': '', right: '', 'right-mid': '',
      middle: '  ',
    },
    style: { 'padding-left': 0, 'padding-right': 0, head: [], border: [] },
    colAligns: head.map((_, i) => (right.includes(i) ? 'right' : 'left')),
  });
  t.push(...rows);
  return t.toString().split('\n').map((l) => l.trimEnd()).join('\n') + '\n';
}
