/**
 * The bench table marks every figure against its target (issue 12, item 8):
 * the verdict follows the comparison written in the target, and the summary
 * names each missed figure.
 */
import { judgeTarget, targetSummary } from '../../bench/harness';

describe('bench targets', () => {
  test.each([
    // The run of issue 12: 774,767 replay lines/s against >= 1e6 was not flagged.
    [774_767, '>= 1e6', 'missed'],
    [1e6, '>= 1e6', 'met'],
    [1_000_001, '>= 1e6', 'met'],
    [340, '<= 340', 'met'],
    [340.5, '<= 340', 'missed'],
    [64, '< 64', 'missed'],
    [63.9, '< 64', 'met'],
    [0, '> 0', 'missed'],
    [8.3e6, '>= 8.3e6', 'met'],
    [8.29e6, '>=8.3e6', 'missed'],
    [Number.NaN, '>= 1', 'missed'],
    [Number.NaN, '<= 1', 'missed'],
    [5, 'constant', 'unchecked'],
    [5, undefined, 'unchecked'],
  ] as const)('%p against %p: %s', (value, target, verdict) => {
    expect(judgeTarget(value, target)).toBe(verdict);
  });

  test('the summary counts met targets and names the missed ones', () => {
    const f = (key: string, value: number, target?: string) => ({ key, label: key, value, unit: 'x', ...(target === undefined ? {} : { target }) });
    expect(targetSummary([f('a', 2, '>= 1'), f('b', 0.5, '>= 1'), f('c', 9, '<= 3'), f('d', 1, 'constant'), f('e', 1)]))
      .toBe('targets: 1 met, 2 MISSED (b, c), 1 not checkable from one run');
    expect(targetSummary([f('a', 2, '>= 1')])).toBe('targets: 1 met, 0 missed');
  });
});
