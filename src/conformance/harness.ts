/**
 * The kit's harness: it drives an implementation through its adapter, keeps
 * its own model of the guest's page tables (from the calls it made) and of
 * every listener's view (from the events the listener received), checks each
 * event against the contract (docs/contract.md C2..C6, C10) when it
 * arrives, and compares views with the tables after every step (C7..C9).
 * It never asks the implementation for its own idea of a view.
 *
 * Scenarios are written in kit-relative IOVAs [0, 4 GiB); the harness
 * places them at the base the adapter's capabilities allow (clear of its
 * reserved windows, inside its IOVA width), and registers listeners
 * without MAP when the implementation serves UNMAP notifiers only.
 */
import { hex, U64_MAX } from '../core/guest-addr';
import type { IOMMUTLBEvent } from '../core/tlb-entry';
import type { ConformanceAdapter, ConformanceNotifierHandle, PageSize, ResolvedCapabilities } from './types';
import { ConformanceFailure, resolveCapabilities, scenarioIovaBase } from './types';
import { EntrySet, describeEntry, diffSets } from './entries';
import type { KitEntry } from './entries';

const MAP = 0x2;
const UNMAP = 0x1;
const DEVIOTLB = 0x4;
const TYPE = { 1: 'UNMAP', 2: 'MAP', 4: 'DEVIOTLB_UNMAP' } as Record<number, string>;

/** A listener the kit registered, with the view it computes from the events received. */
export class KitListener {
  registered = false;
  handle: ConformanceNotifierHandle | undefined;
  readonly view = new EntrySet();
  /** Events received (all types). */
  received = 0;
  /** Called after each received event has been checked (scenarios hook unregistration here). */
  onEvent: ((event: IOMMUTLBEvent, l: KitListener) => void) | undefined;

  constructor(readonly name: string, readonly flags: number, readonly start: bigint, readonly end: bigint) {}

  get tracksView(): boolean {
    return (this.flags & (MAP | UNMAP)) === (MAP | UNMAP);
  }
}

/** One scenario run against one implementation instance. */
export class Harness<Ctx = unknown> {
  /** The guest's page tables as the kit's calls made them. */
  readonly tables = new EntrySet();
  readonly listeners: KitListener[] = [];
  /** Where the scenario is (for messages). */
  step = 'start';
  private readonly failures: ConformanceFailure[] = [];
  private translationOn = true;

  private constructor(
    readonly adapter: ConformanceAdapter<Ctx>, readonly ctx: Ctx, readonly scenario: string,
    readonly caps: ResolvedCapabilities,
    /** Where kit-relative IOVA 0 is. */
    readonly base: bigint,
  ) {}

  static async create<C>(adapter: ConformanceAdapter<C>, scenario: string): Promise<Harness<C>> {
    const caps = resolveCapabilities(adapter);
    const b = scenarioIovaBase(caps);
    // runScenario skips such a scenario first (unavailable); a direct run gets the reason.
    if ('reason' in b) throw new Error(`conformance kit: scenario "${scenario}" cannot run: ${b.reason}`);
    const ctx = await adapter.create({ mapNotifiers: caps.mapNotifiers, cachingMode: caps.mapNotifiers });
    return new Harness(adapter, ctx, scenario, caps, b.base);
  }

  /** The IOVA of kit-relative `iova`. */
  at(iova: bigint): bigint {
    return this.base + iova;
  }

  /** What the guest did to change the IOMMU: page tables and an invalidation, or the requests an invalidation sends. */
  private get guestChange(): string {
    return this.caps.mapping === 'requests' ? 'the requests for' : 'invalidating';
  }

  fail(rule: string, message: string): void {
    this.failures.push(new ConformanceFailure(rule, this.scenario, this.step, message));
  }

  /** Throws the first failure recorded so far (event checks cannot throw into the implementation). */
  flush(): void {
    const f = this.failures[0];
    if (f !== undefined) {
      if (this.failures.length > 1) f.message += ` (and ${this.failures.length - 1} more failure(s))`;
      throw f;
    }
  }

  // ---- guest actions ------------------------------------------------------------

  /**
   * Writes a leaf at kit-relative `rel` (replacing whatever overlaps it in
   * the tables); not visible until invalidated. Returns the kit-relative span
   * the change affects (the new leaf and every leaf it replaced).
   */
  async map(rel: bigint, gpa: bigint, size: PageSize, asked: number): Promise<[bigint, bigint]> {
    const iova = this.at(rel);
    // Write-only (2) where the tables cannot say it: read-write (capabilities.writeOnly).
    const perm = asked === 2 && !this.caps.writeOnly ? 3 : asked;
    this.step = `map ${hex(iova)} -> ${hex(gpa)} size ${hex(size)} perm ${perm}`;
    let lo = iova;
    let hi = iova + size - 1n;
    for (const e of this.tables.overlapping(lo, hi)) {
      if (e.iova < lo) lo = e.iova;
      if (e.last > hi) hi = e.last;
    }
    this.tables.removeOverlapping(iova, iova + size - 1n);
    this.tables.add({ iova, last: iova + size - 1n, xlat: gpa, perm });
    await this.adapter.map(this.ctx, iova, gpa, size, perm as 1 | 2 | 3);
    return [lo - this.base, hi - this.base];
  }

  /** Clears the slot of `size` at kit-relative `rel` (every leaf inside it); returns the kit-relative span. */
  async unmap(rel: bigint, size: PageSize): Promise<[bigint, bigint]> {
    const iova = this.at(rel);
    this.step = `unmap ${hex(iova)} size ${hex(size)}`;
    const last = iova + size - 1n;
    const bigger = this.tables.overlapping(iova, last).find((e) => e.iova < iova || e.last > last);
    if (bigger) throw new Error(`conformance kit bug: unmap of ${hex(iova)}/${hex(size)} inside the larger leaf ${describeEntry(bigger)}`);
    this.tables.removeContained(iova, last);
    await this.adapter.unmap(this.ctx, iova, size);
    return [rel, rel + size - 1n];
  }

  /**
   * The guest's invalidation; then checks. `settled`: every change since the
   * previous check lies inside the invalidated range, so every view must now
   * equal the tables (C9 everywhere). Otherwise only C9 inside the range,
   * and outside it each view entry must come from the previous view or the
   * tables (a whole-entry UNMAP or a whole leaf may reach past the range).
   */
  async invalidate(rel: bigint, size: bigint | 'domain' | 'global', settled = true): Promise<void> {
    const iova = typeof size === 'string' ? rel : this.at(rel);
    this.step = `invalidate ${typeof size === 'string' ? size : `${hex(iova)} size ${hex(size)}`}`;
    const before = this.listeners.map((l) => l.view.copy());
    await this.adapter.invalidate(this.ctx, iova, size);
    this.flush();
    if (!this.translationOn) return;
    if (settled || typeof size === 'string') {
      this.checkViews('C9');
      return;
    }
    const lo = iova;
    const hi = iova + size - 1n;
    this.listeners.forEach((l, i) => {
      if (!l.registered || !l.tracksView) return;
      const a = lo > l.start ? lo : l.start;
      const b = hi < l.end ? hi : l.end;
      if (a <= b) {
        const d = diffSets(this.tables, l.view, a, b);
        if (d !== undefined) this.fail('C9', `listener ${l.name}: after ${this.guestChange} [${hex(lo)}, ${hex(hi)}], its view inside that range differs from the page tables ${d}`);
      }
      for (const e of l.view.entries) {
        for (const [s, t] of outside(e, lo, hi)) {
          if (!before[i]!.covers(e, s, t) && !this.tables.covers(e, s, t)) {
            this.fail('C9', `listener ${l.name}: entry ${describeEntry(e)} outside the invalidated range [${hex(lo)}, ${hex(hi)}] is neither in its previous view nor in the page tables`);
          }
        }
      }
    });
    this.flush();
  }

  async disableTranslation(): Promise<void> {
    this.step = 'disable translation';
    await this.optional('disableTranslation')(this.ctx);
    this.translationOn = false;
    this.flush();
    for (const l of this.listeners) {
      if (l.registered && l.tracksView && l.view.size > 0) {
        this.fail('C8', `listener ${l.name}: after translation was disabled its view still holds ${l.view.size} entr${l.view.size === 1 ? 'y' : 'ies'}, first ${describeEntry(l.view.entries[0]!)}`);
      }
    }
    this.flush();
  }

  /** Turns translation on again; the caller then invalidates globally, as a guest does. */
  async enableTranslation(): Promise<void> {
    this.step = 'enable translation';
    await this.optional('enableTranslation')(this.ctx);
    this.translationOn = true;
  }

  /**
   * An optional adapter method, or a clear error naming it (runScenario skips
   * scenarios needing a missing one; this guards a scenario run directly).
   */
  private optional(method: 'disableTranslation' | 'enableTranslation'): (ctx: Ctx) => unknown {
    const fn = this.adapter[method];
    if (typeof fn !== 'function') throw new Error(`conformance kit: scenario "${this.scenario}" needs the adapter's optional ${method}, which it does not have`);
    return (ctx) => fn.call(this.adapter, ctx);
  }

  // ---- listeners ------------------------------------------------------------------

  /**
   * Registers a listener over kit-relative [start, end] ([0, 2^64 - 1]: the
   * whole space, as is); checks C7 (the replay delivered exactly the tables
   * in its range). Without MAP notifiers served, MAP is left out of `flags`
   * (a MAP-only listener becomes an UNMAP one) and the name says so.
   */
  async register(name: string, flags: number, relStart = 0n, relEnd = U64_MAX, onEvent?: KitListener['onEvent']): Promise<KitListener> {
    const whole = relStart === 0n && relEnd === U64_MAX;
    const start = whole ? relStart : this.at(relStart);
    const end = whole ? relEnd : this.at(relEnd);
    if (!this.caps.mapNotifiers && (flags & MAP) !== 0) {
      flags = (flags & ~MAP) | UNMAP;
      name += ' (UNMAP only)';
    }
    this.step = `register ${name} (flags ${flags}, [${hex(start)}, ${hex(end)}])`;
    const l = new KitListener(name, flags, start, end);
    l.onEvent = onEvent;
    l.registered = true;
    this.listeners.push(l);
    try {
      l.handle = await this.adapter.registerNotifier(this.ctx, { flags, start, end }, (event) => this.receive(l, event));
    } catch (e) {
      l.registered = false;
      throw e;
    }
    this.flush();
    if (l.tracksView && this.translationOn) {
      const d = diffSets(this.tables, l.view, start, end);
      if (d !== undefined) this.fail('C7', `listener ${name}: the replay on registration did not deliver the current translations ${d}`);
      this.flush();
    }
    return l;
  }

  async unregister(l: KitListener): Promise<void> {
    this.step = `unregister ${l.name}`;
    l.registered = false;
    await l.handle?.unregister();
  }

  /** Every MAP|UNMAP listener's view equals the tables inside its range. */
  checkViews(rule = 'C9'): void {
    for (const l of this.listeners) {
      if (!l.registered || !l.tracksView) continue;
      const d = diffSets(this.tables, l.view, l.start, l.end);
      if (d !== undefined) this.fail(rule, `listener ${l.name}: its view (from the events it received) differs from the page tables ${d}`);
    }
    this.flush();
  }

  /** Translations of a sample of mapped pages (and of one hole) agree with the tables. */
  async checkTranslations(samples = 8): Promise<void> {
    this.step = 'translate';
    const leaves = this.tables.entries;
    const step = Math.max(1, Math.floor(leaves.length / samples));
    for (let i = 0; i < leaves.length; i += step) {
      const e = leaves[i]!;
      const off = ((e.last - e.iova) >> 1n) & ~0xfffn;
      const iova = e.iova + off + 0x123n;
      const t = await this.adapter.translate(this.ctx, iova, e.perm as 1 | 2 | 3);
      if ('fault' in t) {
        this.fail('C9', `translate ${hex(iova)}: faulted, the tables map it to ${hex(e.xlat + off + 0x123n)}`);
        continue;
      }
      const got = (t.translatedAddr & ~t.addrMask) | (iova & t.addrMask);
      if (got !== e.xlat + off + 0x123n || t.perm !== e.perm) {
        this.fail('C9', `translate ${hex(iova)}: got ${hex(got)} perm ${t.perm}, the tables say ${hex(e.xlat + off + 0x123n)} perm ${e.perm}`);
      }
    }
    this.flush();
  }

  async destroy(): Promise<void> {
    await this.adapter.destroy?.(this.ctx);
  }

  // ---- event checks ---------------------------------------------------------------

  private receive(l: KitListener, event: IOMMUTLBEvent): void {
    l.received++;
    const { type, entry } = event;
    const name = TYPE[type] ?? `type ${type}`;
    const what = `${name} ${hex(entry.iova)}/${hex(entry.addrMask)} -> ${hex(entry.translatedAddr)} perm ${entry.perm}`;
    const bad = (rule: string, why: string) => this.fail(rule, `listener ${l.name} received ${what}: ${why}`);
    if (!l.registered) return bad('C10', 'it was unregistered before this event');
    if ((l.flags & type) === 0 || (type !== MAP && type !== UNMAP && type !== DEVIOTLB)) return bad('C6', `the listener did not ask for ${name} (flags ${l.flags})`);
    const mask = entry.addrMask;
    const size = mask + 1n;
    if ((size & mask) !== 0n || (entry.iova & mask) !== 0n || (type === MAP && (entry.translatedAddr & mask) !== 0n)) {
      return bad('C2', 'the entry is not naturally aligned and power-of-two sized');
    }
    if (type === MAP ? entry.perm === 0 : entry.perm !== 0) return bad('C3', type === MAP ? 'a MAP must carry a permission' : 'an UNMAP must carry perm NONE');
    const lo = entry.iova;
    const hi = entry.iova + mask;
    if (hi < l.start || lo > l.end) return bad('C6', `outside the listener's range [${hex(l.start)}, ${hex(l.end)}]`);
    if (type !== DEVIOTLB && (lo < l.start || hi > l.end)) return bad('C6', `not wholly inside the listener's range [${hex(l.start)}, ${hex(l.end)}] (the model must split at range edges)`);
    if ((l.flags & MAP) !== 0 && type === MAP) {
      const live = l.view.overlapping(lo, hi);
      if (live.length > 0) {
        const same = live.length === 1 && live[0]!.iova === lo && live[0]!.last === hi && live[0]!.xlat === entry.translatedAddr && live[0]!.perm === entry.perm;
        return bad('C4', same ? 'a MAP repeating an identical live entry' : `a MAP over the live entry ${describeEntry(live[0]!)} (a change must be UNMAP then MAP)`);
      }
      l.view.add({ iova: lo, last: hi, xlat: entry.translatedAddr, perm: entry.perm });
    } else if ((l.flags & MAP) !== 0 && type === UNMAP) {
      const cut = l.view.overlapping(lo, hi).find((e: KitEntry) => e.iova < lo || e.last > hi);
      l.view.removeOverlapping(lo, hi);
      if (cut && l.tracksView) return bad('C5', `it cuts the live entry ${describeEntry(cut)}`);
    }
    l.onEvent?.(event, l);
  }
}

/** The parts of entry e outside [lo, hi]. */
function outside(e: KitEntry, lo: bigint, hi: bigint): Array<[bigint, bigint]> {
  const out: Array<[bigint, bigint]> = [];
  if (e.iova < lo) out.push([e.iova, e.last < lo - 1n ? e.last : lo - 1n]);
  if (e.last > hi) out.push([e.iova > hi + 1n ? e.iova : hi + 1n, e.last]);
  return out;
}
