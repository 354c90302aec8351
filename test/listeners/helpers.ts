import { HostDomainError, SimHostDomain, VfioError } from '../../src/listeners';
import type { HostIommuDomain, VfioErrno } from '../../src/listeners';
import type { IOMMUNotifier, NotifierHandle } from '../../src/core/notifier-list';
import type { IOMMUTLBEntry, IOMMUEventType } from '../../src/core/tlb-entry';
import type { IOMMUAccessFlags } from '../../src/core/access';

export const K4 = 0x1000n;

/** Runs `fn` and returns the errno of the VfioError it throws ('no error' when it returns). */
export function errnoOf(fn: () => unknown): VfioErrno | 'no error' {
  try {
    fn();
  } catch (e) {
    if (e instanceof VfioError) return e.errno;
    throw e;
  }
  return 'no error';
}
export const M2 = 0x200000n;

/** A SimHostDomain whose next calls can be made to fail or to unmap a chosen size. */
export class FaultyDomain implements HostIommuDomain {
  readonly sim: SimHostDomain;
  /** Fail the next map calls with this errno (counted down). */
  failMaps = 0;
  failReserve = false;
  /** Make unreserve throw (a domain that cannot give a reservation back). */
  failUnreserve = false;
  /** Override what unmap returns (and removes): a function of (iova, size) -> bytes to remove from iova. */
  unmapOverride: ((iova: bigint, size: bigint) => bigint) | undefined;
  readonly calls: string[] = [];

  constructor(name: string, pgsizeBitmap?: bigint) {
    this.sim = new SimHostDomain({ name, ...(pgsizeBitmap !== undefined ? { pgsizeBitmap } : {}) });
  }
  get name(): string { return this.sim.name; }
  get pgsizeBitmap(): bigint { return this.sim.pgsizeBitmap; }
  get apertureEnd(): bigint { return this.sim.apertureEnd; }

  map(iova: bigint, paddr: bigint, size: bigint, prot: number): void {
    this.calls.push(`map ${iova.toString(16)}+${size.toString(16)}`);
    if (this.failMaps > 0) {
      this.failMaps--;
      throw new HostDomainError('ENOMEM', `${this.name}: injected map failure`);
    }
    this.sim.map(iova, paddr, size, prot);
  }

  unmap(iova: bigint, size: bigint): bigint {
    this.calls.push(`unmap ${iova.toString(16)}+${size.toString(16)}`);
    if (this.unmapOverride === undefined) return this.sim.unmap(iova, size);
    const n = this.unmapOverride(iova, size);
    // Remove exactly [iova, iova + n) from the simulated table, page by page.
    let done = 0n;
    while (done < n) {
      const got = this.sim.unmap(iova + done, K4);
      if (got === 0n) { done += K4; continue; }
      done += got;
    }
    return n;
  }

  reserve(start: bigint, last: bigint): void {
    if (this.failReserve) throw new HostDomainError('EBUSY', `${this.name}: injected reserve failure`);
    this.sim.reserve(start, last);
  }
  unreserve(start: bigint, last: bigint): void {
    this.calls.push(`unreserve ${start.toString(16)}-${last.toString(16)}`);
    if (this.failUnreserve) throw new HostDomainError('EFAULT', `${this.name}: injected unreserve failure`);
    this.sim.unreserve(start, last);
  }
}

/** Host pages of a SimHostDomain as a set of 4 KiB page IOVAs -> paddr|prot, for comparisons. */
export function pageSet(entries: Iterable<{ iova: bigint; size: bigint; paddr?: bigint; vaddr?: bigint; prot?: number; read?: boolean; write?: boolean }>): Map<bigint, string> {
  const out = new Map<bigint, string>();
  for (const e of entries) {
    const addr = e.paddr ?? e.vaddr!;
    const prot = e.prot ?? ((e.read ? 1 : 0) | (e.write ? 2 : 0));
    for (let off = 0n; off < e.size; off += K4) out.set(e.iova + off, `${(addr + off).toString(16)}/${prot}`);
  }
  return out;
}

/** A source that records registrations and lets the test deliver events by hand. */
export class FakeSource {
  readonly notifiers: Array<{ notifier: IOMMUNotifier; handle: NotifierHandle }> = [];

  registerNotifier(notifier: IOMMUNotifier): NotifierHandle {
    const self = this;
    let registered = true;
    const handle: NotifierHandle = {
      id: this.notifiers.length + 1,
      notifier,
      get registered() { return registered; },
      dispose() {
        registered = false;
        const i = self.notifiers.findIndex((n) => n.handle === handle);
        if (i >= 0) self.notifiers.splice(i, 1);
      },
    };
    this.notifiers.push({ notifier, handle });
    return handle;
  }

  send(type: IOMMUEventType, iova: bigint, addrMask: bigint, translatedAddr: bigint, perm: IOMMUAccessFlags): void {
    const entry: IOMMUTLBEntry = { iova, addrMask, translatedAddr, perm };
    for (const { notifier, handle } of [...this.notifiers]) {
      // C6: only notifiers whose range the event intersects (a model splits events at range edges;
      // the tests here send events that lie inside one range or deliberately cross an edge).
      if ((notifier.flags & type) !== 0 && iova <= notifier.end && iova + addrMask >= notifier.start) notifier.notify({ type, entry }, handle);
    }
  }
}
