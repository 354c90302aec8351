export type { GuestMemory, RamExtentSource } from './guest-memory';
export { SparseRam } from './sparse-ram';
export type { RamRegion } from './sparse-ram';
export { dmaRead, dmaWrite } from './dma';
export type { DmaTranslate, DmaResult, DmaReadResult } from './dma';
