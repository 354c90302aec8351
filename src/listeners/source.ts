/**
 * Where a listener registers: an IOMMU address space (which replays current
 * translations on registration, C7) or a bare NotifierList (registration
 * only; the listener replays itself when given a page-table walker).
 */
import type { IOMMUAddressSpace } from '../core/model';
import type { IOMMUNotifier, NotifierHandle, NotifierList } from '../core/notifier-list';
import type { LeafWalker } from '../core/leaf';

/** Anything a listener can attach to. */
export type NotifierSource = Pick<IOMMUAddressSpace, 'registerNotifier'> | NotifierList;

/** Registers `notifier` on `source`; for a bare NotifierList, replays `walk` to it when given. */
export function registerOn(source: NotifierSource, notifier: IOMMUNotifier, walk?: LeafWalker): NotifierHandle {
  if (typeof (source as Partial<IOMMUAddressSpace>).registerNotifier === 'function') {
    return (source as Pick<IOMMUAddressSpace, 'registerNotifier'>).registerNotifier(notifier);
  }
  const list = source as NotifierList;
  const handle = list.register(notifier);
  if (walk !== undefined) list.replay(handle, walk);
  return handle;
}
