/**
 * Fault reports on the event queue (virtio 1.2 section 5.13.6.9): struct
 * virtio_iommu_fault, 24 bytes: reason u8, reserved[3], flags le32,
 * endpoint le32, reserved[4], address le64.
 */

/** Fault reasons. */
export const VIRTIO_IOMMU_FAULT_R_UNKNOWN = 0;
export const VIRTIO_IOMMU_FAULT_R_DOMAIN = 1;
export const VIRTIO_IOMMU_FAULT_R_MAPPING = 2;

/** Fault flags. */
export const VIRTIO_IOMMU_FAULT_F_READ = 0x1;
export const VIRTIO_IOMMU_FAULT_F_WRITE = 0x2;
export const VIRTIO_IOMMU_FAULT_F_EXEC = 0x4;
export const VIRTIO_IOMMU_FAULT_F_ADDRESS = 0x100;

export const FAULT_REPORT_SIZE = 24;

/** A decoded fault report. */
export interface VirtioIommuFaultReport {
  reason: number;
  flags: number;
  endpoint: number;
  address: bigint;
}

/** The 24 bytes the device writes into an event buffer. */
export function encodeFaultReport(f: VirtioIommuFaultReport): Uint8Array {
  const b = new Uint8Array(FAULT_REPORT_SIZE);
  const v = new DataView(b.buffer);
  b[0] = f.reason;
  v.setUint32(4, f.flags, true);
  v.setUint32(8, f.endpoint, true);
  v.setBigUint64(16, BigInt.asUintN(64, f.address), true);
  return b;
}

export function decodeFaultReport(b: Uint8Array): VirtioIommuFaultReport | undefined {
  if (b.length < FAULT_REPORT_SIZE) return undefined;
  const v = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return { reason: b[0]!, flags: v.getUint32(4, true), endpoint: v.getUint32(8, true), address: v.getBigUint64(16, true) };
}

/**
 * Where fault reports go. `push` returns false when the report was dropped
 * (QEMU: "no buffer available in event queue to report event").
 */
export interface FaultSink {
  push(report: Uint8Array): boolean;
}

/** The request-level event queue: reports kept in order for the driver, up to `limit`, later ones dropped. */
export class EventQueue implements FaultSink {
  private readonly items: Uint8Array[] = [];
  private head = 0;

  constructor(private readonly limit: number) {}

  get length(): number {
    return this.items.length - this.head;
  }

  push(report: Uint8Array): boolean {
    if (this.length >= this.limit) return false;
    this.items.push(report);
    return true;
  }

  /** The oldest report, removed; undefined when empty. */
  shift(): Uint8Array | undefined {
    if (this.head >= this.items.length) return undefined;
    const r = this.items[this.head++];
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items.splice(0, this.head);
      this.head = 0;
    }
    return r;
  }

  clear(): void {
    this.items.length = 0;
    this.head = 0;
  }
}
