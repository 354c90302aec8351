import type TypedEventEmitter from 'typed-emitter';
import { EventEmitter } from 'node:events';
import type { TypedEmitter } from '../../src/core/typed-events';

type Events = { fault: (sid: number, reason: number) => void; msi: (m: { address: bigint }) => void };

// Type-level: the public twin must stay interchangeable with typed-emitter's
// declaration (the project's chosen event typing), in both directions.
type Mutual<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
const mutual: Mutual<TypedEmitter<Events>, TypedEventEmitter<Events>> = true;

describe('TypedEmitter (our structural twin of typed-emitter)', () => {
  it('is assignable both ways to typed-emitter and types a Node EventEmitter', () => {
    expect(mutual).toBe(true);
    const e = new EventEmitter() as TypedEmitter<Events>;
    const got: Array<[number, number]> = [];
    e.on('fault', (sid, reason) => got.push([sid, reason]));
    // @ts-expect-error wrong argument type is a compile error
    if (got.length > 99) e.emit('fault', 'x', 1);
    e.emit('fault', 3, 5);
    expect(got).toEqual([[3, 5]]);
  });
});
