import { EventEmitter } from 'node:events';
import type TypedEmitter from 'typed-emitter';
import { NotifierList, IOMMUNotifierFlag } from '../../src/core';
import type { IOMMUAddressSpace, IOMMUModel, IOMMUModelEvents, IOMMUNotifier, TranslateResult, IOMMUAccessFlags } from '../../src/core';
import type { GuestMemory } from '../../src/memory';

/**
 * A tiny IOMMU for replayer tests: one flat table of 4 KiB pages shared by every sid.
 * Registers (8-byte writes):
 *   0x00 map:    value = iovaPfn | xlatPfn << 24 | perm << 48, notifies MAP
 *   0x08 unmap:  value = iovaPfn, notifies UNMAP
 *   0x10 msi:    sends an MSI {0xfee00000, value}
 *   0x18 buggy:  re-sends MAP of page `value` (a C4 violation when it is mapped)
 *   0x20 scratch register (read back as written)
 * `refuseMap`: MAP notifiers are refused (as VT-d without caching mode).
 */
export class FakeModel implements IOMMUModel {
  readonly kind = 'fake';
  readonly events = new EventEmitter() as TypedEmitter<IOMMUModelEvents>;
  readonly table = new Map<number, { xlat: number; perm: number }>();
  private readonly spaces = new Map<number, IOMMUAddressSpace>();
  private scratch = 0n;
  translations = 0;

  constructor(readonly mem: GuestMemory, readonly refuseMap = false) {}

  mmioRead(offset: number): bigint {
    return offset === 0x20 ? this.scratch : 0n;
  }

  mmioWrite(offset: number, _size: 4 | 8, value: bigint): void {
    const v = Number(value & 0xffffffffffffn);
    switch (offset) {
      case 0x00: {
        const pfn = v % 2 ** 24;
        const xlat = Math.floor(v / 2 ** 24);
        const perm = Number(value >> 48n) & 3;
        this.table.set(pfn, { xlat, perm });
        this.notifyAll(IOMMUNotifierFlag.MAP, pfn, xlat, perm);
        break;
      }
      case 0x08:
        this.table.delete(v);
        this.notifyAll(IOMMUNotifierFlag.UNMAP, v, 0, 0);
        break;
      case 0x10:
        this.events.emit('msi', { address: 0xfee00000n, data: v });
        break;
      case 0x18: {
        const e = this.table.get(v);
        if (e) this.notifyAll(IOMMUNotifierFlag.MAP, v, e.xlat, e.perm);
        break;
      }
      case 0x20:
        this.scratch = value;
        break;
    }
  }

  private notifyAll(type: 1 | 2, pfn: number, xlat: number, perm: number): void {
    for (const as of this.spaces.values()) {
      as.notifiers.notify({ type, entry: { iova: BigInt(pfn) << 12n, addrMask: 0xfffn, translatedAddr: BigInt(xlat) << 12n, perm: perm as IOMMUAccessFlags } });
    }
  }

  translate(sid: number, iova: bigint, access: IOMMUAccessFlags): TranslateResult {
    this.translations++;
    const e = this.table.get(Number(iova >> 12n));
    if (!e || (e.perm & access) !== access) return { fault: true, reason: 6, recorded: true, sid, iova, access };
    return { iova: iova & ~0xfffn, translatedAddr: BigInt(e.xlat) << 12n, addrMask: 0xfffn, perm: e.perm as IOMMUAccessFlags };
  }

  /** Every addressSpace() call, as [sid, pasid]. */
  readonly spaceCalls: Array<[number, number | undefined]> = [];

  addressSpace(sid: number, pasid?: number): IOMMUAddressSpace {
    this.spaceCalls.push([sid, pasid]);
    let as = this.spaces.get(sid);
    if (!as) {
      const notifiers = new NotifierList({
        name: `fake sid ${sid}`,
        notifyFlagChanged: (_old, flags) => {
          if (this.refuseMap && flags & IOMMUNotifierFlag.MAP) throw new Error('MAP notifiers need caching mode');
        },
      });
      const table = this.table;
      as = {
        sid, pasid: undefined, notifiers,
        registerNotifier(n: IOMMUNotifier) {
          const h = notifiers.register(n);
          notifiers.replay(h, (first, last, sink) => {
            for (const [pfn, e] of [...table].sort((a, b) => a[0] - b[0])) if (pfn >= first && pfn <= last) sink(pfn, 1, e.xlat, e.perm);
          });
          return h;
        },
      };
      this.spaces.set(sid, as);
    }
    return as;
  }

  reset(): void {}
}

/** `map` register value. */
export function mapValue(iovaPfn: number, xlatPfn: number, perm: number): string {
  return '0x' + ((BigInt(perm) << 48n) | (BigInt(xlatPfn) << 24n) | BigInt(iovaPfn)).toString(16);
}
