/**
 * Domains and endpoints (virtio 1.2 section 5.13.6.3/4; QEMU 7.2's
 * VirtIOIOMMUDomain and VirtIOIOMMUEndpoint).
 */
import { MappingStore } from './mappings';

/**
 * An entry of the endpoint tree. QEMU 7.2 keys the tree by the full 32-bit
 * endpoint id of the request but finds the device by bits 15:0, so
 * `id` > 0xffff names an alias of device `sid` = id & 0xffff: it can be
 * attached and detached, while DMA of that device looks up the entry whose
 * id is its sid.
 */
export interface Endpoint {
  readonly id: number;
  readonly sid: number;
  domain: Domain | undefined;
}

export class Domain {
  /** Attached endpoints, in attach order. */
  readonly endpoints = new Set<Endpoint>();
  readonly mappings = new MappingStore();

  /** `bypass`: created by an ATTACH with ATTACH_F_BYPASS: identity, no mappings. */
  constructor(readonly id: number, readonly bypass: boolean) {}
}
