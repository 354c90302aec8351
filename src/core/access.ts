/**
 * Access permissions of a translation (QEMU `IOMMUAccessFlags`): bit 0 read,
 * bit 1 write. A translation with `NONE` is not a translation (an UNMAP).
 */
export const IOMMUAccessFlags = {
  NONE: 0,
  RO: 1,
  WO: 2,
  RW: 3,
} as const;
export type IOMMUAccessFlags = (typeof IOMMUAccessFlags)[keyof typeof IOMMUAccessFlags];

/** Short text form used by traces and messages: `none`, `r`, `w`, `rw`. */
export function permToString(perm: IOMMUAccessFlags): 'none' | 'r' | 'w' | 'rw' {
  return (['none', 'r', 'w', 'rw'] as const)[perm];
}

/** Parses `none`/`r`/`w`/`rw`; returns undefined for anything else. */
export function permFromString(text: string): IOMMUAccessFlags | undefined {
  switch (text) {
    case 'none': return IOMMUAccessFlags.NONE;
    case 'r': return IOMMUAccessFlags.RO;
    case 'w': return IOMMUAccessFlags.WO;
    case 'rw': return IOMMUAccessFlags.RW;
    default: return undefined;
  }
}
