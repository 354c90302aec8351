/**
 * The type of a Node EventEmitter whose events are typed by a map of event
 * name -> listener signature (the `typed-emitter` convention).
 *
 * Why our own declaration: `typed-emitter` ships only types, yet as a runtime
 * dependency it made every consumer install rxjs (12 MB) through its optional
 * dependencies, and as a dev dependency our emitted `.d.ts` could not resolve
 * it in a consumer project that type-checks libraries (`skipLibCheck: false`).
 * So the public types carry this structural twin; `test/core/typed-events.test.ts`
 * checks that it stays assignable both ways to `typed-emitter`'s, which stays
 * a dev dependency for that check.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type EventMap = { [event: string]: (...args: any[]) => void };

export interface TypedEmitter<Events extends EventMap> {
  addListener<E extends keyof Events>(event: E, listener: Events[E]): this;
  on<E extends keyof Events>(event: E, listener: Events[E]): this;
  once<E extends keyof Events>(event: E, listener: Events[E]): this;
  prependListener<E extends keyof Events>(event: E, listener: Events[E]): this;
  prependOnceListener<E extends keyof Events>(event: E, listener: Events[E]): this;
  off<E extends keyof Events>(event: E, listener: Events[E]): this;
  removeAllListeners<E extends keyof Events>(event?: E): this;
  removeListener<E extends keyof Events>(event: E, listener: Events[E]): this;
  emit<E extends keyof Events>(event: E, ...args: Parameters<Events[E]>): boolean;
  eventNames(): (keyof Events | string | symbol)[];
  rawListeners<E extends keyof Events>(event: E): Events[E][];
  listeners<E extends keyof Events>(event: E): Events[E][];
  listenerCount<E extends keyof Events>(event: E): number;
  getMaxListeners(): number;
  setMaxListeners(maxListeners: number): this;
}
