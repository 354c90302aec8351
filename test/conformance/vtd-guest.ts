/**
 * The VT-d guest driver the conformance adapter and the recorder tests use:
 * the model's exported guest-side builder (`VtdGuest`,
 * src/models/intel-vtd/guest-tables.ts), which writes legacy-mode root and
 * context entries (VT-d spec 9.1, 9.3) and second-level page tables (9.8)
 * straight into guest RAM, and talks to the IOMMU through registers (11.4)
 * and the invalidation queue (6.5.2) with a status-writing wait after each
 * submission. Imported from the package root, so that the consumer
 * projects of test/package (which copy this file and import 'viommu') use
 * it as a user writing an adapter would.
 */
import { VtdGuest, VtdGuestReg } from '../../src/index';
import type { VtdMmioPort } from '../../src/index';

export { VtdGuest };
export type { VtdGuestOptions } from '../../src/index';

/** Where the guest's register accesses go (the model, or a TraceRecorder in front of it). */
export type VtdPort = VtdMmioPort;

export const GCMD = VtdGuestReg.GCMD;
export const GSTS = VtdGuestReg.GSTS;
export const RTADDR = VtdGuestReg.RTADDR;
export const FSTS = VtdGuestReg.FSTS;
export const FECTL = VtdGuestReg.FECTL;
export const FEDATA = VtdGuestReg.FEDATA;
export const FEADDR = VtdGuestReg.FEADDR;
export const IQH = VtdGuestReg.IQH;
export const IQT = VtdGuestReg.IQT;
export const IQA = VtdGuestReg.IQA;

export const K4 = 0x1000n;
export const M2 = 0x20_0000n;
export const G1 = 0x4000_0000n;
