import { IOMMUNotifierFlag as F } from '../../src/core';
import type { IOMMUNotifier, IOMMUTLBEntry, IOMMUTLBEvent, NotifierHandle } from '../../src/core';

export const U64_MAX = (1n << 64n) - 1n;
export const KiB4 = 0xfffn;
export const MiB2 = 0x1fffffn;

export function entry(iova: bigint, translatedAddr: bigint, addrMask: bigint, perm: 0 | 1 | 2 | 3): IOMMUTLBEntry {
  return { iova, translatedAddr, addrMask, perm };
}
export function map(iova: bigint, xlat: bigint, mask = KiB4, perm: 1 | 2 | 3 = 3): IOMMUTLBEvent {
  return { type: F.MAP, entry: entry(iova, xlat, mask, perm) };
}
export function unmap(iova: bigint, mask = KiB4): IOMMUTLBEvent {
  return { type: F.UNMAP, entry: entry(iova, 0n, mask, 0) };
}

/** A copied event as received, with the receiving notifier's id. */
export interface Got { id: number; type: number; iova: bigint; translatedAddr: bigint; addrMask: bigint; perm: number }

/** A notifier that records what it receives (copies: entries are only valid during the call). */
export function recorder(log: Got[], flags: number = F.ALL, start = 0n, end = U64_MAX, extra: Partial<IOMMUNotifier> = {}): IOMMUNotifier {
  return {
    flags, start, end,
    notify(ev: IOMMUTLBEvent, h: NotifierHandle) {
      log.push(copyEvent(ev, h));
    },
    ...extra,
  };
}

export function short(g: Got): string {
  const t = g.type === F.MAP ? 'MAP' : g.type === F.UNMAP ? 'UNMAP' : 'DEV';
  return g.type === F.MAP
    ? `${t} ${g.iova.toString(16)}+${g.addrMask.toString(16)}->${g.translatedAddr.toString(16)}/${g.perm}`
    : `${t} ${g.iova.toString(16)}+${g.addrMask.toString(16)}`;
}

interface RefEntry { iova: bigint; last: bigint; xlat: bigint; perm: number }

/**
 * An independent checker of the contract, written from contract.md (not from
 * the implementation): it follows what one MAP|UNMAP notifier with range
 * [start, end] receives and throws on the first event that breaks C2..C6.
 */
export class RefChecker {
  view: RefEntry[] = [];
  constructor(readonly start: bigint, readonly end: bigint, readonly flags: number = F.ALL) {}

  feed(g: Got): void {
    const last = g.iova + g.addrMask;
    const where = `${g.type === F.MAP ? 'MAP' : g.type === F.UNMAP ? 'UNMAP' : 'DEVIOTLB_UNMAP'} [${g.iova.toString(16)}, ${last.toString(16)}]`;
    if (g.iova < 0n || g.addrMask < 0n || ((g.addrMask + 1n) & g.addrMask) !== 0n || (g.iova & g.addrMask) !== 0n || last > U64_MAX) throw new Error(`C2 ${where}`);
    if (g.type === F.MAP && (g.translatedAddr & g.addrMask) !== 0n) throw new Error(`C2 xlat ${where}`);
    if (g.type === F.MAP ? g.perm === 0 : g.perm !== 0) throw new Error(`C3 ${where}`);
    if (!(g.type & this.flags) || g.iova < this.start || last > this.end) throw new Error(`C6 ${where}`);
    // A device-IOTLB invalidation is not part of the view (contract: MAPs minus UNMAPs).
    if (g.type === F.DEVIOTLB_UNMAP) return;
    const over = this.view.filter((e) => e.iova <= last && g.iova <= e.last);
    if (g.type === F.MAP) {
      if (over.length) throw new Error(`C4 ${where} overlaps [${over[0]!.iova.toString(16)}, ${over[0]!.last.toString(16)}]`);
      this.view.push({ iova: g.iova, last, xlat: g.translatedAddr, perm: g.perm });
      this.view.sort((a, b) => (a.iova < b.iova ? -1 : 1));
    } else {
      for (const e of over) if (e.iova < g.iova || e.last > last) throw new Error(`C5 ${where} cuts [${e.iova.toString(16)}, ${e.last.toString(16)}]`);
      this.view = this.view.filter((e) => !over.includes(e));
    }
  }

  /** The translation of the 4 KiB page at frame pfn ([xlatFrame, perm]), or undefined. */
  at(pfn: number): [number, number] | undefined {
    const a = BigInt(pfn) << 12n;
    const e = this.view.find((v) => v.iova <= a && a <= v.last);
    return e ? [Number((e.xlat + (a - e.iova)) >> 12n), e.perm] : undefined;
  }
}

/** A copy of a received event (entries are only valid during the call). */
export function copyEvent(ev: IOMMUTLBEvent, h: NotifierHandle): Got {
  const e = ev.entry;
  return { id: h.id, type: ev.type, iova: e.iova, translatedAddr: e.translatedAddr, addrMask: e.addrMask, perm: e.perm };
}

/** A RefChecker's view as entries, to compare with NotifierList.view(). */
export function refView(ref: RefChecker): IOMMUTLBEntry[] {
  return ref.view.map((e) => entry(e.iova, e.xlat, e.last - e.iova, e.perm as 0 | 1 | 2 | 3));
}
