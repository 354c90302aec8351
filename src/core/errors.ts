import type { IOMMUTLBEntry, IOMMUTLBEvent } from './tlb-entry';
import type { NotifierHandle } from './notifier-list';

/** The rules of contract.md. */
export type ContractRule = 'C1' | 'C2' | 'C3' | 'C4' | 'C5' | 'C6' | 'C7' | 'C8' | 'C9' | 'C10';

/**
 * A notification (or registration) that breaks a rule of the notifier
 * contract. In `strict` mode the event was not delivered to `notifier`.
 */
export class ContractViolation extends Error {
  override readonly name = 'ContractViolation';
  constructor(
    message: string,
    readonly rule: ContractRule,
    /** The notifier the event was (not) delivered to; undefined for C1 before registration. */
    readonly notifier: NotifierHandle | undefined,
    /** The offending event. */
    readonly event: IOMMUTLBEvent | undefined,
    /** The entry of the notifier's view the event conflicts with, if any. */
    readonly conflicting: IOMMUTLBEntry | undefined,
    /** Further violations raised by the same call (one notify() reaching several notifiers). */
    readonly others: readonly ContractViolation[] = [],
  ) {
    super(message);
  }

  static is(e: unknown): e is ContractViolation {
    return e instanceof ContractViolation;
  }
}
