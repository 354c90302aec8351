/**
 * Names in a trace (event types, flags) are looked up among the names
 * trace-v1 defines only: `constructor`, `toString` and other names every JS
 * object has are malformed input (exit 2 with the line), not a rule of the
 * contract.
 */
import { parseEventLine, TraceFormatError } from '../../src/trace';

const NOTIFY = (type: string) => `{"op":"notify","id":"a","type":"${type}","iova":"0x1000","mask":"0xfff","translated":"0x2000","perm":"none"}`;
const ADD = (flag: string) => `{"op":"notifier.add","id":"a","sid":"0x20","flags":["${flag}"],"start":"0x0","end":"0xfff"}`;

describe('trace names', () => {
  test.each(['constructor', 'toString', '__proto__', 'hasOwnProperty'])('notify type "%s" is malformed', (name) => {
    expect(() => parseEventLine(NOTIFY(name), 7)).toThrow(TraceFormatError);
    try { parseEventLine(NOTIFY(name), 7); } catch (e) { expect((e as TraceFormatError).line).toBe(7); }
  });
  test.each(['constructor', 'toString', 'valueOf'])('notifier flag "%s" is malformed', (name) => {
    expect(() => parseEventLine(ADD(name), 3)).toThrow(TraceFormatError);
  });
  test('the defined names parse', () => {
    expect(parseEventLine(NOTIFY('UNMAP'), 2)).toMatchObject({ op: 'notify', type: 1 });
    expect(parseEventLine(ADD('DEVIOTLB_UNMAP'), 2)).toMatchObject({ op: 'notifier.add', flags: 4 });
  });
});
