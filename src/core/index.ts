export { IOMMUAccessFlags, permToString, permFromString } from './access';
export { IOMMUNotifierFlag, flagsToString } from './tlb-entry';
export type { IOMMUTLBEntry, IOMMUTLBEvent, IOMMUEventType } from './tlb-entry';
export { NotifierList } from './notifier-list';
export type {
  IOMMUNotifier, NotifierHandle, NotifierListOptions, NotifierListEvents, ContractRepair, NotifierListStats,
} from './notifier-list';
export { ContractViolation } from './errors';
export type { ContractRule } from './errors';
export { PAGE_SHIFT, PAGE_SIZE } from './leaf';
export type { LeafSink, LeafWalker } from './leaf';
export { isFault, hasMmio, requireMmio, isVirtioIommuModel } from './model';
export type { IOMMUFault, TranslateResult, MsiMessage, IOMMUModelEvents, IOMMUAddressSpace, IOMMUModel, MmioIOMMUModel, VirtioIommuOps, VirtioIommuModel } from './model';
export { alignedPow2Chunks, dmaAlignedPow2Mask } from './pow2';
export type { Pow2Chunk } from './pow2';
export type { TypedEmitter, EventMap } from './typed-events';
export {
  U64_MAX, hex, PAGE_SIZE_4K, PAGE_OFFSET_MASK, pfnOf, pfnToAddr, pageBase, isAligned, checkedOffset, isValidRange,
  rangeFromStartLen, rangeLength, rangeContains, rangeContainsRange, rangeOverlaps, isRangeAligned, X86_MSI_RANGE,
} from './guest-addr';
export type { InclusiveRange } from './guest-addr';
export { WalkLimitError } from './walk-budget';
export type { SyncLimits } from './walk-budget';
