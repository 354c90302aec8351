/**
 * VT-d translation structures for the model's tests: the model's exported
 * guest-side builder (src/models/intel-vtd/guest-tables.ts), which composes
 * every field from the VT-d spec's bit positions (root entry 9.1/9.2,
 * context entry 9.3/9.4, PASID directory/table entries 9.5/9.6,
 * second-level paging entries 9.8) and never from the model's decoders; its
 * layouts are checked against the spec in guest-tables.test.ts. The names
 * the tests use are kept here.
 */
import type { GuestMemory } from '../../../../src/memory/guest-memory';
import { VtdEntry, VtdGuestTables } from '../../../../src/models/intel-vtd';

/** Little-endian bytes of 64-bit words. */
export function le64(...words: bigint[]): Uint8Array {
  const out = new Uint8Array(words.length * 8);
  words.forEach((w, i) => {
    let v = BigInt.asUintN(64, w);
    for (let b = 0; b < 8; b++) {
      out[i * 8 + b] = Number(v & 0xffn);
      v >>= 8n;
    }
  });
  return out;
}

/** Writes 64-bit words at `gpa`; throws if the memory refuses (a test bug). */
export function writeWords(mem: GuestMemory, gpa: number, ...words: bigint[]): void {
  if (!mem.write(gpa, le64(...words))) throw new Error(`test tables: write at 0x${gpa.toString(16)} is outside RAM`);
}

/** Second-level paging entry (9.8). */
export const slpte = VtdEntry.slpte;
/** Legacy root entry (9.1). */
export const legacyRootEntry = VtdEntry.root;
/** Scalable root entry (9.2). */
export const scalableRootEntry = VtdEntry.scalableRoot;
/** Legacy context entry (9.3). */
export const legacyContextEntry = VtdEntry.legacyContext;
/** Scalable-mode context entry (9.4). */
export const scalableContextEntry = VtdEntry.scalableContext;
/** PASID directory entry (9.5). */
export const pasidDirEntry = VtdEntry.pasidDir;
/** PASID table entry (9.6), its 8 words. */
export const pasidEntryWords = VtdEntry.pasidEntry;
/** Bump allocator of table pages with the spec's entry offsets. */
export const VtdTables = VtdGuestTables;
export type VtdTables = VtdGuestTables;
