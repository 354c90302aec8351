/**
 * The trace recorder: sits between a host emulator and an IOMMU model and
 * writes a trace v1 (docs/trace-format.md) of what the guest and its
 * devices did, with every expectation filled from the live run, so that the
 * run can be replayed offline (`viommu replay`) and must replay clean.
 *
 * ```ts
 * const out = createWriteStream('run.jsonl');
 * const rec = new TraceRecorder({ memory: ram, ram: [{ base: 0, size: 1 << 30 }],
 *   model: 'intel-vtd', config: { cachingMode: true }, writeBytes: (b) => out.write(b) });
 * rec.mmioWrite(0x20, 8, rootTable);              // instead of model.mmioWrite
 * rec.dmaWrite(0x10, iova, bytes);                 // a device's DMA
 * rec.addressSpace(0x10).registerNotifier(n, 'vfio');
 * rec.flush(); out.end();                          // at the end: the last chunk
 * ```
 *
 * Every model: a register-based one (VT-d, SMMUv3, AMD-Vi) is driven through
 * `mmioRead`/`mmioWrite`, a request-based one (virtio-iommu) through the
 * `virtio*` methods, which mirror VirtioIommuOps (src/core/model.ts) and
 * record trace-v1's request-level ops (`virtio.config.read` with `expect`,
 * `virtio.config.write`, `virtio.features`, `virtio.request` with `expect`,
 * `virtio.event.expect` for each fault report the emulator takes,
 * `virtio.reset`). Calling an op the model does not have throws an Error
 * naming the model, before anything is recorded.
 *
 * PASID: a listener registered on a PASID address space is recorded with
 * `notifier.add`'s `pasid` field (docs/trace-format.md), so a replay registers
 * it on the same address space; `translate` and DMA carry their PASID too.
 *
 * Guest CPU writes to RAM: the design choice. The emulator hands the recorder
 * its GuestMemory and the recorder builds the model over a wrapping
 * GuestMemory, but the guest CPU writes RAM directly, so the wrapper cannot
 * see those writes. Instead of asking the emulator for a write hook, the
 * recorder keeps a SHADOW: for every 4 KiB page the model or a recorded DMA
 * has touched, a copy of what a replayer's RAM holds at that point of the
 * trace (replay RAM starts zero-filled, so a page never seen has an all-zero
 * shadow). The first time an operation touches a page, the page is compared
 * with its shadow (one memcmp) and the bytes that differ become `mem.write`
 * lines placed before that operation's line; writes the model or a DMA makes
 * through the wrapper are applied to the shadow too, since the replay makes
 * them again. The trace therefore holds exactly the guest writes that the
 * IOMMU (or DMA) could observe, at the point they became observable.
 * Cost: nothing per guest CPU write and nothing for an operation that touches
 * no guest memory (register accesses, translations that hit the IOTLB); per
 * operation, one map lookup per page access and one 4 KiB compare per distinct
 * page it touches; memory, 4 KiB per page ever touched (page tables, queues,
 * DMA buffers). A DMA's payload is written as hex (trace v1), which is most
 * of a recorded DMA's cost: it goes from the guest's bytes to the output
 * without JS strings (recorder-out.ts: a WebAssembly SIMD encoder, lines
 * packed into byte chunks for a `writeBytes` sink).
 *
 * Recording does not change behaviour: every call goes to the model with the
 * same arguments and its result is returned as is. What trace v1 cannot
 * express is reported in `warnings` instead of being refused: a recorded
 * operation started from inside another one (a notifier or MSI callback that
 * calls back into the recorder) is performed at once and its lines follow the
 * outer operation's lines; likewise a notifier removed during a delivery.
 */
import { IOMMUAccessFlags } from '../core/access';
import { hex } from '../core/guest-addr';
import { isFault, isVirtioIommuModel, requireMmio } from '../core/model';
import type { IOMMUAddressSpace, IOMMUModel, MsiMessage, TranslateResult, VirtioIommuModel } from '../core/model';
import type { IOMMUNotifier, NotifierHandle, NotifierList } from '../core/notifier-list';
import type { IOMMUEventType, IOMMUTLBEvent } from '../core/tlb-entry';
import { dmaRead, dmaWrite } from '../memory/dma';
import type { DmaReadResult, DmaResult } from '../memory/dma';
import type { GuestMemory } from '../memory/guest-memory';
import { modelFactory } from './models';
import type { ModelFactory } from './models';
import type { DmaReadEvent, DmaWriteEvent, TraceEvent, TraceHeader, TranslateEvent } from './types';
import { TraceOutput } from './recorder-out';
import type { PayloadEvent } from './recorder-out';
import { formatEvent, formatHeader } from './writer';

/** Options of a TraceRecorder. */
export interface TraceRecorderOptions {
  /** The emulator's guest RAM. The recorder only reads it, except for the writes the model and DMA make. */
  memory: GuestMemory;
  /** Guest RAM regions, for the header (a replay starts them zero-filled). */
  ram: ReadonlyArray<{ base: number | bigint; size: number | bigint }>;
  /** Trace-v1 model name (`intel-vtd`, ...). */
  model: string;
  /** The model's options, written to the header and given to the factory. */
  config: Record<string, unknown>;
  /** Builds the model; default: the replayer's registry (`modelFactory(model)`), so replay builds the same model. */
  createModel?: ModelFactory;
  /**
   * Receives each trace line as a string, without newline (for a file:
   * `(l) => traceWriter.line(l)`). Give this or `writeBytes`.
   */
  write?: (line: string) => void;
  /**
   * Receives the trace as UTF-8 bytes: chunks of whole lines, each ending in
   * `\n`, of about 64 KiB, handed over when a chunk is full and on `flush()`
   * (call it before closing the file). A chunk is the sink's to keep, so it
   * can be queued as is (`(b) => stream.write(b)`). Cheaper than `write`:
   * DMA payloads go from the guest's bytes to hex in the chunk without
   * building JS strings. Give this or `write`.
   */
  writeBytes?: (chunk: Uint8Array) => void;
  /** Header `source`. */
  source?: string;
}

/** Counters of a recording. */
export interface TraceRecorderStats {
  /** Lines written, header included. */
  lines: number;
  /** `mem.write` lines written, and the bytes they carry. */
  memWrites: number;
  memWriteBytes: number;
  /** Pages with a shadow (4 KiB each). */
  shadowPages: number;
}

/** A notifier registered through the recorder: disposing it records `notifier.del`. */
export interface RecordedNotifierHandle extends NotifierHandle {
  /** The trace id of the listener. */
  readonly traceId: string;
}

/** The recorder's view of an address space: registrations are recorded. */
export interface RecordingAddressSpace {
  readonly sid: number;
  readonly pasid: number | undefined;
  /** The model's address space (its notifier list, for inspection; do not register on it directly). */
  readonly inner: IOMMUAddressSpace;
  /**
   * Registers `notifier` on the model's address space (which replays current
   * translations to it, C7) and records `notifier.add` with `id` (default
   * `n1`, `n2`, ...) and the replayed notifications. A registration the model
   * refuses is rethrown and not recorded (see `warnings`).
   */
  registerNotifier(notifier: IOMMUNotifier, id?: string): RecordedNotifierHandle;
}

const PAGE = 4096;
/** Runs of differences after which the page diff stops checking whether the rest of the page is equal. */
const RUNS_BEFORE_SCAN = 4;
const TYPE_OK: Record<number, true> = { 1: true, 2: true, 4: true };

interface ShadowPage {
  bytes: Uint8Array;
  words: Int32Array;
  /** Operation generation of the last compare with live memory. */
  gen: number;
}

/** Where a nested operation's notifications and MSIs start in the pending lists. */
interface NestedMark {
  notifies: number;
  msis: number;
}

/**
 * Records a trace of a live IOMMU model. Drive the model only through the
 * recorder (its methods mirror IOMMUModel's plus DMA); `model` is exposed for
 * inspection.
 */
export class TraceRecorder {
  /** The model, built over `memory` (the recorder's wrapper). */
  readonly model: IOMMUModel;
  /** The wrapping GuestMemory the model uses. */
  readonly memory: GuestMemory;
  readonly stats: TraceRecorderStats = { lines: 0, memWrites: 0, memWriteBytes: 0, shadowPages: 0 };
  /** What the trace could not express faithfully (nesting, refused registrations). */
  readonly warnings: string[] = [];

  private readonly live: GuestMemory;
  private readonly out: TraceOutput;
  private readonly shadows = new Map<number, ShadowPage>();
  private gen = 1;
  /** True while an operation is being recorded. */
  private inOp = false;
  /** Lines that follow the current operation's own (nested operations, notifier.del). */
  private readonly post: string[] = [];
  private readonly notifies: string[] = [];
  private readonly msis: string[] = [];
  private readonly spaces = new Map<string, RecordingAddressSpace>();
  private readonly ids = new Set<string>();
  private readonly handles = new WeakMap<RecordedNotifierHandle, { inner: NotifierHandle; list: NotifierList }>();
  private nextId = 1;
  /** Scratch page for compares. */
  private readonly scratch = Buffer.alloc(PAGE);
  private readonly scratchWords = new Int32Array(this.scratch.buffer, this.scratch.byteOffset, PAGE / 4);
  private readonly translateFor = new Map<string, (iova: bigint, write: boolean) => TranslateResult>();

  constructor(options: TraceRecorderOptions) {
    this.live = options.memory;
    if ((options.write === undefined) === (options.writeBytes === undefined)) {
      throw new Error('TraceRecorder: give exactly one of the options write and writeBytes');
    }
    this.out = new TraceOutput(options.write, options.writeBytes);
    this.memory = new RecordingMemory(this, options.memory);
    const factory = options.createModel ?? modelFactory(options.model);
    this.model = factory(options.config, this.memory);
    this.model.events.on('msi', (m: MsiMessage) => this.onMsi(m));
    const header: TraceHeader = {
      trace: 'viommu',
      version: 1,
      model: options.model,
      config: options.config,
      ram: options.ram.map((r) => ({ base: BigInt(r.base), size: BigInt(r.size) })),
    };
    if (options.source !== undefined) header.source = options.source;
    this.emit(formatHeader(header));
  }

  /** Guest write of a register (`mmio.write`). */
  mmioWrite(reg: number, size: 4 | 8, value: bigint): void {
    const nested = this.begin();
    try {
      requireMmio(this.model).mmioWrite(reg, size, value);
    } finally {
      this.finish(nested, { op: 'mmio.write', line: 0, reg, size, value });
    }
  }

  /** Guest read of a register (`mmio.read` with `expect`). */
  mmioRead(reg: number, size: 4 | 8): bigint {
    const nested = this.begin();
    let v: bigint | undefined;
    try {
      v = requireMmio(this.model).mmioRead(reg, size);
    } finally {
      this.finish(nested, { op: 'mmio.read', line: 0, reg, size, expect: v ?? 0n });
    }
    return v;
  }

  /** Read of the virtio-iommu configuration space (`virtio.config.read` with `expect`). */
  virtioConfigRead(offset: number, size: number): bigint {
    const model = this.virtio('virtio.config.read');
    return this.recordOp(() => model.virtioConfigRead(offset, size),
      (v) => ({ op: 'virtio.config.read', line: 0, offset, size, ...(v === undefined ? {} : { expect: v }) }));
  }

  /** Write of the virtio-iommu configuration space (`virtio.config.write`). */
  virtioConfigWrite(offset: number, size: number, value: bigint): void {
    const model = this.virtio('virtio.config.write');
    this.recordOp(() => model.virtioConfigWrite(offset, size, value), () => ({ op: 'virtio.config.write', line: 0, offset, size, value }));
  }

  /** The feature bits the driver acknowledged (`virtio.features`). */
  virtioFeatures(value: bigint): void {
    const model = this.virtio('virtio.features');
    this.recordOp(() => model.virtioFeatures(value), () => ({ op: 'virtio.features', line: 0, value }));
  }

  /**
   * One request from the request queue (`virtio.request` with `expect`, the
   * bytes the device wrote), then the notifications it caused. `data` is
   * written out before this returns, so the emulator may reuse its buffer.
   */
  virtioRequest(data: Uint8Array, writable: number): Uint8Array {
    const model = this.virtio('virtio.request');
    return this.recordOp(() => model.virtioRequest(data, writable),
      (v) => ({ op: 'virtio.request', line: 0, data, writable, ...(v === undefined ? {} : { expect: v }) }));
  }

  /**
   * The oldest fault report on the event queue, as the emulator takes it to
   * hand to the driver (`virtio.event.expect`, in order). Nothing is
   * recorded when there is none (trace v1 has no "no event" check).
   */
  virtioTakeEvent(): Uint8Array | undefined {
    const model = this.virtio('virtio.event.expect');
    return this.recordOp(() => model.virtioTakeEvent(), (e) => (e === undefined ? undefined : { op: 'virtio.event.expect', line: 0, data: e }));
  }

  /** Device reset by the driver (`virtio.reset`): the listeners' UNMAPs (C8) follow it. */
  virtioReset(): void {
    const model = this.virtio('virtio.reset');
    this.recordOp(() => model.virtioReset(), () => ({ op: 'virtio.reset', line: 0 }));
  }

  /** One translation as a device requests it (`translate` with `expect`). */
  translate(sid: number, iova: bigint, access: IOMMUAccessFlags, pasid?: number): TranslateResult {
    const nested = this.begin();
    let t: TranslateResult | undefined;
    try {
      t = this.model.translate(sid, iova, access, pasid);
    } finally {
      const ev: TranslateEvent = { op: 'translate', line: 0, sid, iova, access };
      if (pasid !== undefined) ev.pasid = pasid;
      if (t !== undefined) {
        ev.expect = isFault(t) ? { fault: true } : { translated: t.translatedAddr & ~t.addrMask, mask: t.addrMask, perm: t.perm };
      }
      this.finish(nested, ev);
    }
    return t;
  }

  /** A device reads `len` bytes at `iova` through the IOMMU (`dma.read` with `expect`), page by page as trace v1 says. */
  dmaRead(sid: number, iova: bigint, len: number, pasid?: number): DmaReadResult {
    const nested = this.begin();
    let r: DmaReadResult | undefined;
    try {
      r = dmaRead(this.memory, this.translator(sid, pasid), iova, len);
    } finally {
      const ev: DmaReadEvent = { op: 'dma.read', line: 0, sid, iova, len };
      if (pasid !== undefined) ev.pasid = pasid;
      if (r !== undefined) ev.expect = r.faulted ? 'fault' : r.data;
      this.finish(nested, ev);
    }
    return r;
  }

  /** A device writes `data` at `iova` through the IOMMU (`dma.write` with `expect`). */
  dmaWrite(sid: number, iova: bigint, data: Uint8Array, pasid?: number): DmaResult {
    const nested = this.begin();
    let r: DmaResult | undefined;
    try {
      r = dmaWrite(this.memory, this.translator(sid, pasid), iova, data);
    } finally {
      const ev: DmaWriteEvent = { op: 'dma.write', line: 0, sid, iova, data };
      if (pasid !== undefined) ev.pasid = pasid;
      if (r !== undefined) ev.expect = r.faulted ? 'fault' : 'ok';
      this.finish(nested, ev);
    }
    return r;
  }

  /**
   * Hands the lines not yet given to a `writeBytes` sink over to it (they are
   * kept in chunks of about 64 KiB); call it when the recording ends. Nothing
   * to do for a `write` sink, which gets every line at once.
   */
  flush(): void {
    this.out.flush();
  }

  /**
   * Records a `view.expect` for a listener registered through the recorder:
   * its view now (what its MAP and UNMAP notifications add up to, as the
   * model's notifier list tracks it), a checkpoint for the replay.
   */
  expectView(handle: RecordedNotifierHandle): void {
    const st = this.handles.get(handle);
    if (st === undefined || !st.inner.registered) {
      throw new Error('TraceRecorder: expectView of a listener that is not registered');
    }
    const entries = st.list.view(st.inner).map((e) => ({ iova: e.iova, mask: e.addrMask, translated: e.translatedAddr, perm: e.perm }));
    this.finish(this.begin(), { op: 'view.expect', line: 0, id: handle.traceId, entries });
  }

  /** The recording view of the address space of `sid` (and PASID). */
  addressSpace(sid: number, pasid?: number): RecordingAddressSpace {
    const key = `${sid}/${pasid ?? ''}`;
    let as = this.spaces.get(key);
    if (as === undefined) {
      const inner = this.model.addressSpace(sid, pasid);
      as = {
        sid, pasid, inner,
        registerNotifier: (notifier, id) => this.register(inner, sid, pasid, notifier, id),
      };
      this.spaces.set(key, as);
    }
    return as;
  }

  // ---- internals --------------------------------------------------------------

  /**
   * One recorded operation of the control path (a closure, unlike the DMA
   * path): `run` on the model, then its line from the result (undefined
   * when `run` threw: the line is still written, without expectation, and
   * the error propagates), then what it caused.
   */
  private recordOp<T>(run: () => T, line: (result: T | undefined) => TraceEvent | undefined): T {
    const nested = this.begin();
    let result: T | undefined;
    try {
      result = run();
    } finally {
      this.finish(nested, line(result));
    }
    return result;
  }

  /** The model as a virtio-iommu, or an Error naming the model and the op (nothing recorded). */
  private virtio(op: string): VirtioIommuModel {
    if (!isVirtioIommuModel(this.model)) throw new Error(`TraceRecorder: ${op} needs a virtio-iommu model; this one is ${this.model.kind}`);
    return this.model;
  }

  private translator(sid: number, pasid: number | undefined): (iova: bigint, write: boolean) => TranslateResult {
    const key = `${sid}/${pasid ?? ''}`;
    let f = this.translateFor.get(key);
    if (f === undefined) {
      const model = this.model;
      f = (iova, write) => model.translate(sid, iova, write ? IOMMUAccessFlags.WO : IOMMUAccessFlags.RO, pasid);
      this.translateFor.set(key, f);
    }
    return f;
  }

  private register(inner: IOMMUAddressSpace, sid: number, pasid: number | undefined, notifier: IOMMUNotifier, id: string | undefined): RecordedNotifierHandle {
    let traceId = id;
    if (traceId === undefined) {
      do traceId = `n${this.nextId++}`; while (this.ids.has(traceId));
    } else if (this.ids.has(traceId)) {
      throw new Error(`TraceRecorder: listener id "${traceId}" is already registered`);
    }
    const tid = traceId;
    let innerHandle: NotifierHandle | undefined;
    const recorder = this;
    const handle: RecordedNotifierHandle = {
      traceId: tid,
      get id() { return innerHandle?.id ?? -1; },
      notifier,
      get registered() { return innerHandle?.registered ?? false; },
      dispose() {
        if (innerHandle === undefined || !innerHandle.registered) return;
        recorder.unregister(tid, innerHandle);
      },
    };
    const wrapped: IOMMUNotifier = {
      flags: notifier.flags,
      start: notifier.start,
      end: notifier.end,
      notify: (event: IOMMUTLBEvent) => {
        this.onNotify(tid, event);
        notifier.notify(event, handle);
      },
    };
    if (notifier.iommuIdx !== undefined) wrapped.iommuIdx = notifier.iommuIdx;
    let refused: unknown;
    const ev: TraceEvent = { op: 'notifier.add', line: 0, id: tid, sid, ...(pasid === undefined ? {} : { pasid }), flags: notifier.flags, start: notifier.start, end: notifier.end };
    const nested = this.begin();
    try {
      innerHandle = inner.registerNotifier(wrapped);
    } catch (e) {
      refused = e;
    } finally {
      this.finish(nested, refused === undefined ? ev : undefined);
    }
    if (refused !== undefined) {
      this.warnings.push(`listener "${tid}" (sid ${hex(sid)}) was refused by the model and not recorded: ${refused instanceof Error ? refused.message : String(refused)}`);
      throw refused;
    }
    this.ids.add(tid);
    this.handles.set(handle, { inner: innerHandle!, list: inner.notifiers });
    return handle;
  }

  private unregister(id: string, inner: NotifierHandle): void {
    inner.dispose();
    this.ids.delete(id);
    const line = formatEvent({ op: 'notifier.del', line: 0, id });
    if (this.inOp) {
      this.warnings.push(`listener "${id}" was removed during an operation; its notifier.del follows that operation's lines`);
      this.post.push(line);
    } else {
      this.emit(line);
    }
  }

  private onNotify(id: string, event: IOMMUTLBEvent): void {
    const e = event.entry;
    if (!TYPE_OK[event.type]) return;
    const line = formatEvent({
      op: 'notify', line: 0, id, type: event.type as IOMMUEventType,
      iova: e.iova, mask: e.addrMask, translated: e.translatedAddr, perm: e.perm,
    });
    if (this.inOp) this.notifies.push(line);
    else {
      this.warnings.push(`listener "${id}" was notified outside any recorded operation (the model was driven directly)`);
      this.emit(line);
    }
  }

  private onMsi(m: MsiMessage): void {
    const line = formatEvent({ op: 'msi.expect', line: 0, addr: m.address, data: m.data });
    if (this.inOp) this.msis.push(line);
    else {
      this.warnings.push('the model sent an MSI outside any recorded operation (the model was driven directly)');
      this.emit(line);
    }
  }

  /**
   * Starts one recorded operation (no closures: this is the DMA hot path).
   * Returns undefined for an operation of its own, or where a nested one
   * (started from a notifier or MSI callback) starts in the pending lists.
   * The lines of an operation: the guest writes it made observable (written
   * by `sync` as they are found, before anything else of the operation), its
   * own line, its notifications, its MSIs, then `post`.
   */
  private begin(): NestedMark | undefined {
    if (this.inOp) {
      this.warnings.push('a recorded operation was started from inside another one (notifier or MSI callback); its lines follow the outer operation');
      return { notifies: this.notifies.length, msis: this.msis.length };
    }
    this.inOp = true;
    this.gen++;
    return undefined;
  }

  /** Ends the operation `begin` started; `ev` is its line (undefined: none). */
  private finish(nested: NestedMark | undefined, ev: TraceEvent | undefined): void {
    if (nested !== undefined) {
      // Nested: performed at once, lines after the outer op's.
      if (ev !== undefined) this.post.push(formatEvent(ev));
      this.post.push(...this.notifies.splice(nested.notifies), ...this.msis.splice(nested.msis));
      return;
    }
    this.inOp = false;
    if (ev !== undefined) this.emitEvent(ev);
    if (this.notifies.length) { for (const l of this.notifies) this.emit(l); this.notifies.length = 0; }
    if (this.msis.length) { for (const l of this.msis) this.emit(l); this.msis.length = 0; }
    if (this.post.length) { for (const l of this.post) this.emit(l); this.post.length = 0; }
  }

  /** An event's line; payloads are written as hex straight into the output. */
  private emitEvent(ev: TraceEvent): void {
    if (ev.op === 'dma.write' || (ev.op === 'dma.read' && ev.expect instanceof Uint8Array)) {
      this.stats.lines++;
      this.out.payloadEvent(ev as PayloadEvent);
    } else {
      this.emit(formatEvent(ev));
    }
  }

  private emit(line: string): void {
    this.stats.lines++;
    this.out.line(line);
  }

  /** Last page compared, to skip the map for runs of accesses to one page (PTE words, queue entries). */
  private lastPfn = -1;
  private lastPage: ShadowPage | undefined;

  /**
   * Called before any access through the wrapper to [gpa, gpa + len): brings
   * every page it touches in line with the shadow, emitting the difference.
   * @internal
   */
  touch(gpa: number, len: number): void {
    if (!(gpa >= 0) || !Number.isSafeInteger(gpa) || len <= 0) return;
    const first = Math.floor(gpa / PAGE);
    const last = Math.floor((gpa + len - 1) / PAGE);
    for (let pfn = first; pfn <= last; pfn++) {
      if (pfn === this.lastPfn && this.lastPage!.gen === this.gen) continue;
      this.sync(pfn);
    }
  }

  /** Mirrors a write the model or a DMA made (it succeeded on live memory) into the shadow. @internal */
  wrote(gpa: number, src: Uint8Array): void {
    let done = 0;
    while (done < src.length) {
      const a = gpa + done;
      const pfn = Math.floor(a / PAGE);
      const off = a - pfn * PAGE;
      const n = Math.min(src.length - done, PAGE - off);
      // touch() ran before the write, so the page has a shadow.
      const page = pfn === this.lastPfn ? this.lastPage : this.shadows.get(pfn);
      if (page !== undefined) page.bytes.set(src.subarray(done, done + n), off);
      done += n;
    }
  }

  private sync(pfn: number): void {
    let page = this.shadows.get(pfn);
    if (page === undefined) {
      const buf = new ArrayBuffer(PAGE);
      page = { bytes: new Uint8Array(buf), words: new Int32Array(buf), gen: 0 };
      this.shadows.set(pfn, page);
      this.stats.shadowPages++;
    }
    this.lastPfn = pfn;
    this.lastPage = page;
    if (page.gen === this.gen) return;
    page.gen = this.gen;
    const live = this.scratch;
    const base = pfn * PAGE;
    if (!this.live.read(base, live)) {
      // A page only partly RAM (a region edge): byte by byte, zeros where nothing is.
      const one = new Uint8Array(1);
      for (let i = 0; i < PAGE; i++) live[i] = this.live.read(base + i, one) ? one[0]! : 0;
    }
    const shadow = page.bytes;
    if (live.compare(shadow) === 0) return;
    // Runs of differing 32-bit words; runs closer than 16 bytes are merged (fewer lines).
    const lw = this.scratchWords;
    const sw = page.words;
    const WORDS = PAGE / 4;
    let i = 0;
    let runs = 0;
    while (i < WORDS) {
      if (lw[i] === sw[i]) { i++; continue; }
      const start = i;
      let end = i + 1;
      for (let j = end; j < WORDS && j - end < 4; j++) if (lw[j] !== sw[j]) end = j + 1;
      // Trim to the bytes that differ.
      let a = start * 4;
      let b = end * 4;
      while (live[a] === shadow[a]) a++;
      while (live[b - 1] === shadow[b - 1]) b--;
      const data = live.subarray(a, b);
      shadow.set(data, a);
      this.stats.memWrites++;
      this.stats.memWriteBytes += data.length;
      // Written at once: nothing else of the current operation has been written yet.
      this.stats.lines++;
      this.out.payloadEvent({ op: 'mem.write', line: 0, gpa: BigInt(base + a), data });
      i = end;
      // After the first few runs, one native compare of the rest of the page usually ends the scan (guest writes are few and small).
      if (++runs <= RUNS_BEFORE_SCAN && live.compare(shadow, i * 4, PAGE, i * 4, PAGE) === 0) break;
    }
  }
}

/** The GuestMemory the model sees: every access first syncs the pages it touches; writes are mirrored. */
class RecordingMemory implements GuestMemory {
  constructor(private readonly rec: TraceRecorder, private readonly live: GuestMemory) {}

  read(gpa: number, dst: Uint8Array): boolean {
    this.rec.touch(gpa, dst.length);
    return this.live.read(gpa, dst);
  }

  write(gpa: number, src: Uint8Array): boolean {
    // Synced first like a read, so that the guest's earlier writes to the page keep their place before this operation.
    this.rec.touch(gpa, src.length);
    const ok = this.live.write(gpa, src);
    if (ok) this.rec.wrote(gpa, src);
    return ok;
  }

  readU32(gpa: number): number {
    this.rec.touch(gpa, 4);
    return this.live.readU32(gpa);
  }

  readU64(gpa: number): bigint | undefined {
    this.rec.touch(gpa, 8);
    return this.live.readU64(gpa);
  }

  private readonly b4 = new Uint8Array(4);
  private readonly b8 = new Uint8Array(8);

  writeU32(gpa: number, value: number): boolean {
    const b = this.b4;
    new DataView(b.buffer).setUint32(0, value >>> 0, true);
    return this.write(gpa, b);
  }

  writeU64(gpa: number, value: bigint): boolean {
    const b = this.b8;
    new DataView(b.buffer).setBigUint64(0, BigInt.asUintN(64, value), true);
    return this.write(gpa, b);
  }
}
