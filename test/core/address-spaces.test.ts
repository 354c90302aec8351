/**
 * The model plumbing of src/core/address-spaces.ts and walk-budget.ts,
 * model-neutral: a fake model whose "tables" are a list of leaves and whose
 * walker charges one unit per leaf to the action's WalkSession (throwing
 * WalkLimitError past it, as a model's walker must). Expected views and
 * events come from those leaves.
 */
import { EventEmitter } from 'node:events';
import { AddressSpaceRegistry, GuestActions, ModelAddressSpace, identityEntry } from '../../src/core/address-spaces';
import type { AddressSpaceOwner } from '../../src/core/address-spaces';
import { ContractViolation, IOMMUNotifierFlag as F } from '../../src/core';
import type { IOMMUModelEvents, LeafWalker, TypedEmitter } from '../../src/core';
import { WalkLimitError, WalkSession, budgetOption } from '../../src/core/walk-budget';
import { recorder, short } from './helpers';
import type { Got } from './helpers';

type Leaf = [number, number, number, number]; // iovaPfn, pages, xlatPfn, perm

class FakeModel implements AddressSpaceOwner {
  readonly events = new EventEmitter() as TypedEmitter<IOMMUModelEvents>;
  readonly actions: GuestActions;
  readonly registry: AddressSpaceRegistry;
  leaves: Leaf[] = [];
  errors: string[] = [];
  incomplete: Array<[number, string]> = [];
  refuseMap = false;

  constructor(workBudget = 100) {
    this.actions = new GuestActions(new WalkSession(workBudget), this.events, 'fake');
    this.registry = new AddressSpaceRegistry(this, 'fake', { actions: this.actions });
    this.events.on('guestError', (m) => this.errors.push(m));
    this.events.on('syncIncomplete', (sid, why) => this.incomplete.push([sid, why]));
  }

  checkNotifierFlags(name: string, flags: number): void {
    if (this.refuseMap && (flags & F.MAP)) throw new Error(`${name}: no MAP`);
  }

  walker(): LeafWalker {
    const s = this.actions.session;
    return (first, last, sink) => {
      if (s.exhausted) throw new WalkLimitError('already spent');
      for (const [p, n, x, perm] of this.leaves) {
        if (p + n - 1 < first || p > last) continue;
        if (++s.work > s.workBudget) {
          s.exhausted = true;
          throw new WalkLimitError(`fake walk over ${s.workBudget}`);
        }
        sink(p, n, x, perm);
      }
    };
  }

  notificationError(_as: ModelAddressSpace, message: string): void {
    this.errors.push(message);
  }
}

describe('AddressSpaceRegistry', () => {
  it('creates one space per (sid, PASID) on first use, in creation order, with the model factory', () => {
    class Tagged extends ModelAddressSpace { tag = 'mine'; }
    const m = new FakeModel();
    const reg = new AddressSpaceRegistry<Tagged>(m, 'fake', { create: (o, sid, pasid, name, index) => new Tagged(o, sid, pasid, name, index) });
    const a = reg.get(0x20);
    expect(reg.get(0x20)).toBe(a);
    const p = reg.get(0x20, 5);
    expect(p).not.toBe(a);
    expect(reg.get(0x20, 5)).toBe(p);
    expect([a.index, p.index, reg.get(0xffff).index]).toEqual([0, 1, 2]);
    expect([a.name, p.name, p.pasid, p.tag]).toEqual(['fake sid 0x20', 'fake sid 0x20 pasid 5', 5, 'mine']);
    expect(reg.peek(0x20)).toBe(a);
    expect(reg.peek(0x21)).toBeUndefined();
    expect(reg.spaces()).toEqual([a, p, reg.get(0xffff)]);
    expect(() => reg.get(0x10000)).toThrow(RangeError);
    expect(() => reg.get(-1)).toThrow(RangeError);
    expect(() => reg.get(1, 0x100000)).toThrow(/20-bit PASID/);
  });
});

describe('GuestActions and ModelAddressSpace', () => {
  it('registration replays the tables as one action (C7); the model veto refuses (C1)', () => {
    const m = new FakeModel();
    m.leaves = [[0x10, 1, 0x50, 3], [0x200, 512, 0x400, 1]];
    const log: Got[] = [];
    const as = m.registry.get(1);
    as.registerNotifier(recorder(log));
    expect(log.map(short)).toEqual(['MAP 10000+fff->50000/3', 'MAP 200000+1fffff->400000/1']);
    expect(m.actions.session.work).toBe(2);
    m.refuseMap = true;
    expect(() => m.registry.get(2).registerNotifier(recorder([]))).toThrow(/no MAP/);
  });

  it('a replay over the bound leaves the view empty, reports syncIncomplete once and a guestError', () => {
    const m = new FakeModel(1);
    m.leaves = [[0x10, 1, 0x50, 3], [0x20, 1, 0x60, 3]];
    const log: Got[] = [];
    const h = m.registry.get(7).registerNotifier(recorder(log));
    expect(log).toEqual([]);
    expect(m.registry.get(7).notifiers.view(h)).toEqual([]);
    expect(m.incomplete).toEqual([[7, 'fake walk over 1']]);
    expect(m.errors).toEqual(['fake: fake walk over 1; notifier sync abandoned']);
  });

  it('syncs after the bound is spent are abandoned: one report per device and action, UNMAP-only listeners still unmapped', () => {
    // Budget 4: the list may walk a range up to three times (its edges, then the body); eight leaves pass it.
    const m = new FakeModel(4);
    m.leaves = [[0x10, 1, 0x50, 3]];
    const a = m.registry.get(1);
    const b = m.registry.get(2);
    const mapLog: Got[] = [];
    const unmapLog: Got[] = [];
    const h = a.registerNotifier(recorder(mapLog));
    b.registerNotifier(recorder(unmapLog, F.UNMAP, 0x3000n, 0xffff_ffffn));
    m.leaves = Array.from({ length: 8 }, (_, i): Leaf => [0x10 + i, 1, 0x50 + i, 3]);
    m.actions.run(() => {
      a.sync(0n, 0xffff_ffffn, m.walker()); // spends the budget: abandoned
      a.sync(0n, 0xffff_ffffn, m.walker()); // not attempted
      b.sync(0x2000n, 0x8fffn, m.walker());
    });
    expect(a.notifiers.view(h).length).toBe(1); // unchanged: no new leaf was delivered
    expect(mapLog.length).toBe(1);
    expect(m.incomplete).toEqual([[1, 'fake walk over 4'], [2, 'fake walk over 4']]);
    expect(m.errors).toEqual(['fake: fake walk over 4; notifier sync abandoned']);
    // [0x3000, 0x8fff] inside the listener's range, as aligned power-of-two blocks (C2, C6).
    expect(unmapLog.map(short)).toEqual(['UNMAP 3000+fff', 'UNMAP 4000+3fff', 'UNMAP 8000+fff']);
    // The next action starts afresh.
    m.actions.run(() => a.sync(0x11000n, 0x11fffn, m.walker()));
    expect(mapLog.map(short).slice(1)).toEqual(['MAP 11000+fff->51000/3']);
  });

  it('nested actions share the outer budget; the boundary turns violations and walk limits into guestError', () => {
    const m = new FakeModel(10);
    m.actions.run(() => {
      m.actions.session.work = 7;
      m.actions.run(() => { expect(m.actions.session.work).toBe(7); });
      throw new WalkLimitError('cut');
    });
    m.actions.run(() => {
      expect(m.actions.session.work).toBe(0);
      throw new ContractViolation('bad map', 'C4', undefined, undefined, undefined);
    });
    expect(m.errors).toEqual(['fake: WalkLimitError: cut', 'fake: ContractViolation: bad map']);
    expect(() => m.actions.run(() => { throw new TypeError('a bug'); })).toThrow(TypeError);
  });

  it('identityEntry: the 4 KiB page of the address, untranslated', () => {
    expect(identityEntry(0x1234_5678n)).toEqual({ iova: 0x1234_5000n, translatedAddr: 0x1234_5000n, addrMask: 0xfffn, perm: 3 });
    expect(identityEntry(0xfee0_0010n, 2).perm).toBe(2);
  });

  it('budgetOption: numbers >= 0 (Infinity too), else a RangeError naming the model and option', () => {
    expect(budgetOption('m', 'syncWalkBudget', undefined, 5)).toBe(5);
    expect(budgetOption('m', 'syncWalkBudget', Infinity, 5)).toBe(Infinity);
    expect(() => budgetOption('m', 'syncWalkBudget', -1, 5)).toThrow('m: limits.syncWalkBudget must be a number >= 0 (got -1)');
    expect(() => budgetOption('m', 'syncLeafBudget', NaN, 5)).toThrow(RangeError);
  });
});
