/**
 * The trace replayer (docs/trace-format.md): applies a trace's events, in
 * order, to an IOMMU model and guest memory, checks every expectation and
 * every rule of the notifier contract, and reports what did not hold.
 *
 * With `model: "none"` there is no device model: each address space (sid) is
 * a core NotifierList in strict mode, each `notify` line is taken as a
 * notification that listener received, and the list checks it (C2..C6, C10);
 * a violating notification does not change the view.
 */
import { IOMMUAccessFlags, permToString } from '../core/access';
import { appendRun, firstDifference } from '../core/runs';
import type { TranslationRun } from '../core/runs';
import { ContractViolation } from '../core/errors';
import type { ContractRule } from '../core/errors';
import { hasMmio, isFault, isVirtioIommuModel } from '../core/model';
import type { IOMMUAddressSpace, IOMMUModel, MsiMessage } from '../core/model';
import { NotifierList } from '../core/notifier-list';
import type { IOMMUNotifier, NotifierHandle } from '../core/notifier-list';
import { flagsToString, IOMMUNotifierFlag } from '../core/tlb-entry';
import type { IOMMUEventType, IOMMUTLBEntry, IOMMUTLBEvent } from '../core/tlb-entry';
import { dmaRead, dmaWrite } from '../memory/dma';
import { SparseRam } from '../memory/sparse-ram';
import { modelFactory } from './models';
import type { ModelFactory } from './models';
import { parseNotifyFast } from './parse';
import { readTrace } from './reader';
import type { ReadTraceOptions, TraceHandler, TraceInput } from './reader';
import { TraceFormatError } from './types';
import type { NotifyEvent, TraceEntry, TraceEvent, TraceHeader, TraceOp } from './types';
import { formatEvent, formatHeader, hex, hexBytes } from './writer';

/** An entry as reports print it. */
export interface ReportEntry {
  type?: 'MAP' | 'UNMAP' | 'DEVIOTLB_UNMAP';
  iova: string;
  mask: string;
  translated: string;
  perm: 'none' | 'r' | 'w' | 'rw';
}

/** An expectation that did not hold. `expected` and `got` are JSON values (hex strings, entries). */
export interface ReplayMismatch {
  line: number;
  op: TraceOp;
  expected: unknown;
  got: unknown;
  message: string;
}

/** A broken rule of the notifier contract. */
export interface ReplayViolation {
  line: number;
  rule: ContractRule;
  /** The trace id of the listener, when known. */
  listener: string | undefined;
  /** The offending notification, when there is one. */
  entry: ReportEntry | undefined;
  message: string;
}

export interface ReplayReport {
  model: string;
  /** Lines read (header included). */
  lines: number;
  /** Events applied. */
  events: number;
  /** Total counts (the lists keep the first `maxReported` of each). */
  mismatchCount: number;
  violationCount: number;
  mismatches: ReplayMismatch[];
  violations: ReplayViolation[];
  /** Set when the trace is malformed: nothing past this line was replayed (exit status 2). */
  malformed?: { line: number; reason: string };
  /** True when every expectation held and no rule was broken (exit status 0). */
  ok: boolean;
}

export interface ReplayOptions {
  /** Factory used instead of the registry (tests, embedders). */
  createModel?: ModelFactory;
  /** Receives the recorded trace, line by line (without newline): every `expect` filled from this run. */
  record?: (line: string) => void;
  /** How many mismatches and violations the report lists (each); counts stay exact. Default 1000. */
  maxReported?: number;
}

/** The request-level interface of virtio-iommu models (declared in core; re-exported for existing importers). */
export type { VirtioIommuOps } from '../core/model';

const TYPE_NAME: Record<number, 'MAP' | 'UNMAP' | 'DEVIOTLB_UNMAP'> = { 1: 'UNMAP', 2: 'MAP', 4: 'DEVIOTLB_UNMAP' };
const TWO53 = 2n ** 53n;
/** Notifications kept per listener between two notify groups, and interrupts waiting for msi.expect (memory bound). */
const MAX_PENDING = 1 << 16;

interface Listener {
  id: string;
  sid: number;
  handle: NotifierHandle;
  list: NotifierList;
  /** Model traces: notifications received since the last notify group (copies). */
  received: Array<{ type: IOMMUEventType; entry: TraceEntry }>;
  overflow: boolean;
}

function reportEntry(e: TraceEntry, type?: number): ReportEntry {
  const r: ReportEntry = { iova: hex(e.iova), mask: hex(e.mask), translated: hex(e.translated), perm: permToString(e.perm) };
  return type === undefined ? r : { type: TYPE_NAME[type]!, ...r };
}

function fromTlb(e: IOMMUTLBEntry): TraceEntry {
  return { iova: e.iova, mask: e.addrMask, translated: e.translatedAddr, perm: e.perm };
}

function describeNotification(n: { type: number; entry: TraceEntry }): string {
  const e = n.entry;
  return `${TYPE_NAME[n.type] ?? n.type} ${hex(e.iova)}/${hex(e.mask)} -> ${hex(e.translated)} ${permToString(e.perm)}`;
}

/**
 * Normalises entries into maximal runs of the function IOVA -> (address,
 * perm) (core/runs). Entries with perm NONE are not translations.
 */
function toRuns(entries: readonly TraceEntry[]): TranslationRun[] {
  const sorted = entries.filter((e) => e.perm !== 0).slice().sort((a, b) => (a.iova < b.iova ? -1 : a.iova > b.iova ? 1 : 0));
  const runs: TranslationRun[] = [];
  for (const e of sorted) appendRun(runs, e.iova, e.iova + e.mask, e.translated, e.perm);
  return runs;
}

function stableSortByIova<T extends { entry: TraceEntry }>(list: T[]): T[] {
  return list
    .map((x, i) => ({ x, i }))
    .sort((a, b) => (a.x.entry.iova < b.x.entry.iova ? -1 : a.x.entry.iova > b.x.entry.iova ? 1 : a.i - b.i))
    .map((p) => p.x);
}

function sameNotification(a: { type: number; entry: TraceEntry }, b: { type: number; entry: TraceEntry }): boolean {
  return a.type === b.type && a.entry.iova === b.entry.iova && a.entry.mask === b.entry.mask
    && a.entry.translated === b.entry.translated && a.entry.perm === b.entry.perm;
}

function gpaOf(gpa: bigint): number {
  return gpa < TWO53 ? Number(gpa) : -1;
}

function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
}

/**
 * Replays one trace, event by event (a TraceHandler: feed it a reader, or
 * call `header()` / `event()` yourself), then `finish()` gives the report.
 */
export class Replayer implements TraceHandler {
  private hdr: TraceHeader | undefined;
  private mem: SparseRam | undefined;
  private model: IOMMUModel | undefined;
  private none = false;
  private readonly listeners = new Map<string, Listener>();
  private readonly removed = new Set<string>();
  /** Removed listeners by id: a later notification to one is C10, which the list diagnoses from its handle. */
  private readonly removedHandles = new Map<string, Listener>();
  private readonly handleIds = new Map<NotifierHandle, string>();
  /** model-none address spaces. */
  private readonly lists = new Map<string, NotifierList>();
  /** Lists whose violations are being listened to. */
  private readonly watched = new WeakSet<NotifierList>();
  /** Violations already reported (thrown and emitted are the same object). */
  private readonly seen = new WeakSet<ContractViolation>();

  private line = 0;
  private eventCount = 0;
  private mismatchCount = 0;
  private violationCount = 0;
  /** Listeners named in a notify line so far: their notifications are all listed (model traces). */
  private readonly notifyListed = new Set<string>();
  /** The listener whose registration (and replay, C7) is under way. */
  private registering: Listener | undefined;
  private readonly mismatches: ReplayMismatch[] = [];
  private readonly violations: ReplayViolation[] = [];
  private readonly maxReported: number;
  private readonly record: ((line: string) => void) | undefined;

  /** Model traces: the current run of notify lines, per listener. */
  private notifyRun: Map<string, NotifyEvent[]> | undefined;
  /** MSIs sent and not yet matched by msi.expect, with the line that sent them. */
  private readonly msiQueue: Array<{ msi: MsiMessage; line: number; op: TraceOp }> = [];
  private inMsiRun = false;
  /** Recording: notifications and MSIs produced by the current event. */
  private readonly recNotifies: NotifyEvent[] = [];
  private readonly recMsis: MsiMessage[] = [];
  private currentOp: TraceOp = 'mem.write';

  constructor(private readonly options: ReplayOptions = {}) {
    this.maxReported = options.maxReported ?? 1000;
    this.record = options.record;
  }

  // ---- TraceHandler -------------------------------------------------------

  header(h: TraceHeader): void {
    this.hdr = h;
    this.line = 1;
    try {
      this.mem = new SparseRam(h.ram);
    } catch (e) {
      throw new TraceFormatError(1, `header ram: ${(e as Error).message}`);
    }
    if (h.model === 'none') {
      this.none = true;
    } else {
      let factory: ModelFactory;
      try {
        factory = this.options.createModel ?? modelFactory(h.model);
      } catch (e) {
        throw new TraceFormatError(1, (e as Error).message);
      }
      try {
        this.model = factory(h.config, this.mem);
      } catch (e) {
        throw new TraceFormatError(1, `model ${h.model}: bad config: ${(e as Error).message}`);
      }
      this.model.events.on('msi', (msi: MsiMessage) => {
        // Memory bound: an interrupt this far behind will not be expected any more.
        if (this.msiQueue.length >= MAX_PENDING) this.unexpectedMsi(this.msiQueue.shift()!);
        this.msiQueue.push({ msi: { address: msi.address, data: msi.data }, line: this.line, op: this.currentOp });
        if (this.record) this.recMsis.push({ address: msi.address, data: msi.data });
      });
      // A sync the model had to abandon (a hostile guest's tables over the
      // walk bound) leaves the listeners of that device possibly stale: C9
      // does not hold, so it is reported against each of them.
      this.model.events.on('syncIncomplete', (sid: number, reason: string) => {
        const names = [...this.listeners.values(), ...(this.registering ? [this.registering] : [])]
          .filter((l) => l.sid === sid).map((l) => l.id);
        for (const id of names.length ? names : [undefined]) {
          this.violation(this.line, 'C9', id, undefined, `sid ${hex(sid)}: notifier sync abandoned, the view may be stale: ${reason}`);
        }
      });
    }
    this.record?.(formatHeader(h));
  }

  /**
   * Fast path of model-none traces: a `notify` line of the canonical shape
   * is checked straight from its text with the list's numeric entry point.
   * Returns false when the line must go through the parser (same result).
   */
  fastLine(buf: Buffer, start: number, end: number, line: number): boolean {
    if (!this.none) return false;
    const n = scanNotify(buf, start, end);
    if (n === undefined) return false;
    this.line = line;
    this.eventCount++;
    this.currentOp = 'notify';
    const st = this.listenerByIdBytes(buf, n.idStart, n.idEnd);
    const type = n.type;
    if (st === undefined || type === DEV_T || n.iovaLow !== 0 || n.maskLow !== 0xfff || n.maskPfn >= 2 ** 52
      || (type === MAP_T ? n.xlLow !== 0 : !n.xlZero)) {
      // Irregular: through the parser (same result, with the full diagnosis).
      const ev = parseNotifyFast(buf.toString('utf8', start, end), line);
      if (ev === undefined) throw new Error(`internal: notify scanner and parser disagree on line ${line}`);
      this.applyNoneNotify(ev);
    } else {
      this.curBuf = buf;
      this.curStart = start;
      this.curEnd = end;
      try {
        st.list.notifyOnePages(st.handle, type, n.iovaPfn, n.maskPfn + 1, n.xlPfn, n.perm);
      } catch (e) {
        this.caught(e, undefined);
      }
      this.curBuf = undefined;
      this.curNotify = undefined;
    }
    if (this.record) this.record(buf.toString('utf8', start, end));
    return true;
  }

  /** Listener lookup by the id's bytes: the previous line's id is remembered, so most lines decode nothing. */
  private lastId = Buffer.alloc(64);
  private lastIdLen = -1;
  private lastIdGen = -1;
  private lastListener: Listener | undefined;
  /** Bumped whenever the set of listeners changes. */
  private listenerGen = 0;

  private listenerByIdBytes(buf: Buffer, s: number, e: number): Listener | undefined {
    const len = e - s;
    if (len === this.lastIdLen && this.lastIdGen === this.listenerGen) {
      const last = this.lastId;
      let i = 0;
      while (i < len && last[i] === buf[s + i]) i++;
      if (i === len) return this.lastListener;
    }
    const st = this.listeners.get(buf.toString('utf8', s, e));
    if (len <= this.lastId.length) {
      buf.copy(this.lastId, 0, s, e);
      this.lastIdLen = len;
      this.lastIdGen = this.listenerGen;
      this.lastListener = st;
    } else {
      this.lastIdLen = -1;
    }
    return st;
  }

  /** The notify line being checked (model none), for reports: parsed from its text only when needed. */
  private curBuf: Buffer | undefined;
  private curStart = 0;
  private curEnd = 0;
  private curNotify: NotifyEvent | undefined;

  private currentNotify(): NotifyEvent | undefined {
    if (this.curNotify) return this.curNotify;
    if (this.curBuf === undefined) return undefined;
    return (this.curNotify = parseNotifyFast(this.curBuf.toString('utf8', this.curStart, this.curEnd), this.line));
  }

  event(ev: TraceEvent): void {
    this.line = ev.line;
    this.eventCount++;
    if (ev.op !== 'notify' && this.notifyRun !== undefined) this.closeNotifyRun();
    if (ev.op !== 'msi.expect' && this.inMsiRun) this.closeMsiRun();
    this.currentOp = ev.op;
    try {
      this.apply(ev);
    } catch (e) {
      this.caught(e, undefined);
    }
    if (this.record) this.recordEvent(ev);
  }

  /** Ends the replay: checks what only the end can tell (unexpected MSIs, the last notify group) and reports. */
  finish(lines = this.line): ReplayReport {
    if (this.notifyRun !== undefined) this.closeNotifyRun();
    for (const st of [...this.listeners.values(), ...this.removedHandles.values()]) this.unlisted(st, lines);
    if (this.inMsiRun) this.closeMsiRun();
    for (const q of this.msiQueue.splice(0)) this.unexpectedMsi(q);
    return this.report(lines);
  }

  /** The report so far (used when the trace turns out to be malformed). */
  report(lines = this.line): ReplayReport {
    return {
      model: this.hdr?.model ?? '',
      lines,
      events: this.eventCount,
      mismatchCount: this.mismatchCount,
      violationCount: this.violationCount,
      mismatches: this.mismatches,
      violations: this.violations,
      ok: this.mismatchCount === 0 && this.violationCount === 0,
    };
  }

  // ---- events ---------------------------------------------------------------

  private apply(ev: TraceEvent): void {
    const mem = this.mem!;
    switch (ev.op) {
      case 'mem.write': {
        const gpa = gpaOf(ev.gpa);
        if (!mem.write(gpa, ev.data)) this.mismatch(ev.line, ev.op, null, null, `guest write of ${ev.data.length} bytes at ${hex(ev.gpa)} is outside RAM`);
        return;
      }
      case 'mem.expect': {
        const got = new Uint8Array(ev.data.length);
        if (!mem.read(gpaOf(ev.gpa), got)) {
          this.mismatch(ev.line, ev.op, hexBytes(ev.data), null, `${ev.data.length} bytes at ${hex(ev.gpa)} are outside RAM`);
        } else if (!bytesEqual(got, ev.data)) {
          this.mismatch(ev.line, ev.op, hexBytes(ev.data), hexBytes(got), `guest memory at ${hex(ev.gpa)} differs`);
        }
        (ev as { got?: Uint8Array }).got = got;
        return;
      }
      case 'notifier.add':
        return this.none ? this.addNone(ev) : this.addModel(ev);
      case 'notifier.del': {
        const st = this.listeners.get(ev.id);
        if (st === undefined) {
          this.violation(ev.line, 'C10', ev.id, undefined, `notifier.del of listener "${ev.id}", which ${this.removed.has(ev.id) ? 'was already removed' : 'was never registered'}`);
          return;
        }
        this.listeners.delete(ev.id);
        this.listenerGen++;
        this.removed.add(ev.id);
        // Keep the handle: a later notify to it is C10, which the list diagnoses.
        this.removedHandles.set(ev.id, st);
        st.handle.dispose();
        return;
      }
      case 'notify':
        if (this.none) return this.applyNoneNotify(ev);
        {
          const run = (this.notifyRun ??= new Map<string, NotifyEvent[]>());
          const group = run.get(ev.id);
          if (group) group.push(ev);
          else run.set(ev.id, [ev]);
        }
        return;
      case 'view.expect':
        return this.viewExpect(ev);
      case 'msi.expect':
        return this.msiExpect(ev);
      default:
        return this.applyModel(ev);
    }
  }

  private applyModel(ev: TraceEvent): void {
    const model = this.model;
    if (model === undefined) {
      this.mismatch(ev.line, ev.op, null, null, `${ev.op} needs a device model; this trace has model "none"`);
      return;
    }
    const got = ev as { got?: unknown };
    switch (ev.op) {
      case 'mmio.write':
        if (!hasMmio(model)) return this.noMmio(model, ev);
        model.mmioWrite(ev.reg, ev.size, ev.value);
        return;
      case 'mmio.read': {
        if (!hasMmio(model)) return this.noMmio(model, ev);
        const v = model.mmioRead(ev.reg, ev.size);
        got.got = v;
        if (ev.expect !== undefined && v !== ev.expect) {
          this.mismatch(ev.line, ev.op, hex(ev.expect), hex(v), `register ${hex(ev.reg)} (size ${ev.size}) reads ${hex(v)}, expected ${hex(ev.expect)}`);
        }
        return;
      }
      case 'dma.read': {
        const r = dmaRead(this.mem!, (iova, write) => model.translate(ev.sid, iova, write ? IOMMUAccessFlags.WO : IOMMUAccessFlags.RO, ev.pasid), ev.iova, ev.len);
        const v: Uint8Array | 'fault' = r.faulted ? 'fault' : r.data;
        got.got = v;
        if (ev.expect !== undefined) {
          const same = ev.expect === 'fault' ? v === 'fault' : v !== 'fault' && bytesEqual(v, ev.expect);
          if (!same) {
            const show = (x: Uint8Array | 'fault') => (x === 'fault' ? 'fault' : hexBytes(x));
            const why = v === 'fault'
              ? `faulted at iova ${r.faultIovas.map((x) => hex(x)).join(', ')}`
              : ev.expect === 'fault' ? 'every page translated' : 'data differs';
            this.mismatch(ev.line, ev.op, show(ev.expect), show(v), `dma.read of ${ev.len} bytes at ${hex(ev.iova)} (sid ${hex(ev.sid)}): ${why}`);
          }
        }
        return;
      }
      case 'dma.write': {
        const r = dmaWrite(this.mem!, (iova, write) => model.translate(ev.sid, iova, write ? IOMMUAccessFlags.WO : IOMMUAccessFlags.RO, ev.pasid), ev.iova, ev.data);
        const v = r.faulted ? 'fault' : 'ok';
        got.got = v;
        if (ev.expect !== undefined && v !== ev.expect) {
          const why = r.faulted ? `faulted at iova ${r.faultIovas.map((x) => hex(x)).join(', ')}` : 'every page translated';
          this.mismatch(ev.line, ev.op, ev.expect, v, `dma.write of ${ev.data.length} bytes at ${hex(ev.iova)} (sid ${hex(ev.sid)}): ${why}`);
        }
        return;
      }
      case 'translate': {
        const t = model.translate(ev.sid, ev.iova, ev.access, ev.pasid);
        const v = isFault(t)
          ? { fault: true as const }
          : { translated: t.translatedAddr & ~t.addrMask, mask: t.addrMask, perm: t.perm };
        got.got = v;
        if (ev.expect !== undefined) {
          const x = ev.expect;
          // trace-v1 gives `translated` next to `mask`, as an IOMMUTLBEntry has
          // it (the page's address); a trace that wrote the translated address
          // of the requested byte itself (page address | iova offset) states
          // the same translation, so both spellings are accepted.
          const same = 'fault' in x ? 'fault' in v
            : !('fault' in v) && v.mask === x.mask && v.perm === x.perm
              && (v.translated === x.translated || (v.translated | (ev.iova & v.mask)) === x.translated);
          if (!same) this.mismatch(ev.line, ev.op, translateJson(x), translateJson(v), `translate of ${hex(ev.iova)} (sid ${hex(ev.sid)}, ${permToString(ev.access)})`);
        }
        return;
      }
      case 'virtio.config.read':
      case 'virtio.config.write':
      case 'virtio.features':
      case 'virtio.request':
      case 'virtio.event.expect':
      case 'virtio.reset':
        return this.applyVirtio(model, ev);
      default:
        return;
    }
  }

  private noMmio(model: IOMMUModel, ev: TraceEvent): void {
    this.mismatch(ev.line, ev.op, null, null, `${ev.op} is not supported by model ${model.kind} (it has no MMIO registers)`);
  }

  private applyVirtio(model: IOMMUModel, ev: TraceEvent): void {
    if (!isVirtioIommuModel(model)) {
      this.mismatch(ev.line, ev.op, null, null, `${ev.op} is not supported by model ${model.kind} (a virtio-iommu op)`);
      return;
    }
    const got = ev as { got?: unknown };
    switch (ev.op) {
      case 'virtio.config.read': {
        const v = model.virtioConfigRead(ev.offset, ev.size);
        got.got = v;
        if (ev.expect !== undefined && v !== ev.expect) this.mismatch(ev.line, ev.op, hex(ev.expect), hex(v), `config offset ${ev.offset}`);
        return;
      }
      case 'virtio.config.write':
        model.virtioConfigWrite(ev.offset, ev.size, ev.value);
        return;
      case 'virtio.features':
        model.virtioFeatures(ev.value);
        return;
      case 'virtio.request': {
        const v = model.virtioRequest(ev.data, ev.writable);
        got.got = v;
        if (ev.expect !== undefined && !bytesEqual(v, ev.expect)) this.mismatch(ev.line, ev.op, hexBytes(ev.expect), hexBytes(v), 'request answer differs');
        return;
      }
      case 'virtio.event.expect': {
        // One report per line, in order (a DMA may queue several).
        const first = model.virtioTakeEvent();
        if (first === undefined || !bytesEqual(first, ev.data)) {
          this.mismatch(ev.line, ev.op, hexBytes(ev.data), first ? hexBytes(first) : null, first ? 'event differs' : 'no event was queued');
        }
        return;
      }
      case 'virtio.reset':
        model.virtioReset();
        return;
      default:
        return;
    }
  }

  // ---- listeners ------------------------------------------------------------

  private checkNewId(ev: { id: string; line: number; op: TraceOp }): boolean {
    if (!this.listeners.has(ev.id)) return true;
    this.mismatch(ev.line, ev.op, null, null, `listener id "${ev.id}" is already registered`);
    return false;
  }

  private watch(list: NotifierList): void {
    if (this.watched.has(list)) return;
    this.watched.add(list);
    list.events.on('violation', (v) => this.caught(v, undefined));
  }

  private addNone(ev: Extract<TraceEvent, { op: 'notifier.add' }>): void {
    if (!this.checkNewId(ev)) return;
    // One address space per (sid, pasid), as in a model.
    const key = ev.pasid === undefined ? hex(ev.sid) : `${hex(ev.sid)} pasid ${ev.pasid}`;
    let list = this.lists.get(key);
    if (list === undefined) {
      list = new NotifierList({ mode: 'strict', name: `sid ${key}` });
      this.lists.set(key, list);
      this.watch(list);
    }
    const notifier: IOMMUNotifier = { flags: ev.flags, start: ev.start, end: ev.end, notify: () => {} };
    try {
      const handle = list.register(notifier);
      this.addListener(ev, handle, list);
    } catch (e) {
      this.caughtC1(e, ev);
    }
  }

  private addModel(ev: Extract<TraceEvent, { op: 'notifier.add' }>): void {
    if (!this.checkNewId(ev)) return;
    const model = this.model!;
    let as: IOMMUAddressSpace;
    try {
      as = model.addressSpace(ev.sid, ev.pasid);
    } catch (e) {
      this.mismatch(ev.line, ev.op, null, null, `model has no address space for sid ${hex(ev.sid)}: ${(e as Error).message}`);
      return;
    }
    this.watch(as.notifiers);
    const id = ev.id;
    // The listener exists before registerNotifier returns: the model replays (C7) inside it.
    const pending: Listener = { id, sid: ev.sid, handle: undefined as unknown as NotifierHandle, list: as.notifiers, received: [], overflow: false };
    const notifier: IOMMUNotifier = {
      flags: ev.flags, start: ev.start, end: ev.end,
      notify: (event: IOMMUTLBEvent) => this.received(pending, event),
    };
    this.registering = pending;
    try {
      pending.handle = as.registerNotifier(notifier);
      this.listeners.set(id, pending);
      this.listenerGen++;
      this.handleIds.set(pending.handle, id);
      this.removed.delete(id);
      this.removedHandles.delete(id);
    } catch (e) {
      this.caughtC1(e, ev);
    } finally {
      this.registering = undefined;
    }
  }

  private addListener(ev: { id: string; sid: number }, handle: NotifierHandle, list: NotifierList): void {
    this.listeners.set(ev.id, { id: ev.id, sid: ev.sid, handle, list, received: [], overflow: false });
    this.listenerGen++;
    this.handleIds.set(handle, ev.id);
    this.removed.delete(ev.id);
    this.removedHandles.delete(ev.id);
  }

  /** A notification a listener received from the model (model traces). */
  private received(st: Listener, event: IOMMUTLBEvent): void {
    const entry = fromTlb(event.entry);
    if (st.received.length < MAX_PENDING) st.received.push({ type: event.type, entry });
    else st.overflow = true;
    if (this.record) {
      this.recNotifies.push({ op: 'notify', line: 0, id: st.id, type: event.type, ...entry });
    }
  }

  /** model none: the trace says listener `id` received this event; check it. */
  private applyNoneNotify(ev: NotifyEvent): void {
    const st = this.listeners.get(ev.id) ?? this.removedHandles.get(ev.id);
    if (st === undefined) {
      this.violation(ev.line, 'C10', ev.id, reportEntry(ev, ev.type), `notification to listener "${ev.id}", which was never registered`);
      return;
    }
    const event: IOMMUTLBEvent = { type: ev.type, entry: { iova: ev.iova, addrMask: ev.mask, translatedAddr: ev.translated, perm: ev.perm } };
    this.curNotify = ev;
    try {
      st.list.notifyOne(st.handle, event);
    } catch (e) {
      this.caught(e, ev);
    }
    this.curNotify = undefined;
  }

  private closeNotifyRun(): void {
    const run = this.notifyRun!;
    this.notifyRun = undefined;
    for (const [id, expected] of run) {
      const st = this.listeners.get(id) ?? this.removedHandles.get(id);
      const first = expected[0]!;
      if (st === undefined) {
        this.mismatch(first.line, 'notify', expected.map((e) => describeNotification({ type: e.type, entry: e })), null, `notify lines for listener "${id}", which was never registered`);
        continue;
      }
      if (st.overflow) {
        this.mismatch(first.line, 'notify', `${expected.length} notifications`, `more than ${MAX_PENDING}`, `listener "${id}" received too many notifications to compare`);
        continue;
      }
      const want = stableSortByIova(expected.map((e) => ({ type: e.type, entry: e as TraceEntry })));
      const got = stableSortByIova(st.received);
      let bad = want.length !== got.length;
      for (let i = 0; !bad && i < want.length; i++) bad = !sameNotification(want[i]!, got[i]!);
      if (bad) {
        this.mismatch(first.line, 'notify', want.map(describeNotification), got.map(describeNotification),
          `listener "${id}" received ${got.length} notification(s), the trace expects ${want.length} (compared after a stable sort by iova)`);
      }
    }
    // A listener the trace has listed notifications for before is listed
    // whole: what it received since and the trace does not list is a
    // mismatch. Listeners never named in a notify line are not checked
    // here (a trace may check views only, as the vtd-notify scenarios do).
    for (const id of run.keys()) this.notifyListed.add(id);
    const firstLine = run.values().next().value?.[0]?.line ?? this.line;
    for (const st of [...this.listeners.values(), ...this.removedHandles.values()]) {
      if (!run.has(st.id)) this.unlisted(st, firstLine);
      st.received = [];
      st.overflow = false;
    }
  }

  /** Notifications a listed listener received that no notify line states. */
  private unlisted(st: Listener, line: number): void {
    if (!this.notifyListed.has(st.id) || (st.received.length === 0 && !st.overflow)) return;
    this.mismatch(line, 'notify', [], st.received.map(describeNotification),
      `listener "${st.id}" received ${st.overflow ? 'many' : st.received.length} notification(s) the trace does not list`);
  }

  private viewExpect(ev: Extract<TraceEvent, { op: 'view.expect' }>): void {
    const st = this.listeners.get(ev.id);
    let actual: TraceEntry[];
    if (st === undefined) {
      this.mismatch(ev.line, ev.op, ev.entries.map((e) => reportEntry(e)), null,
        `listener "${ev.id}" ${this.removed.has(ev.id) ? 'has been removed' : 'was never registered'}`);
      return;
    }
    actual = st.list.view(st.handle).map(fromTlb);
    (ev as { got?: TraceEntry[] }).got = actual;
    const diff = firstDifference(toRuns(ev.entries), toRuns(actual));
    if (diff !== undefined) {
      this.mismatch(ev.line, ev.op, ev.entries.map((e) => reportEntry(e)), actual.map((e) => reportEntry(e)), `listener "${ev.id}": views differ ${diff}`);
    }
  }

  // ---- MSIs -------------------------------------------------------------------

  private msiExpect(ev: Extract<TraceEvent, { op: 'msi.expect' }>): void {
    this.inMsiRun = true;
    const want = { address: ev.addr, data: ev.data };
    const head = this.msiQueue.shift();
    if (head === undefined) {
      this.mismatch(ev.line, ev.op, msiJson(want), null, `expected interrupt ${msiText(want)} was not sent`);
    } else if (head.msi.address !== want.address || head.msi.data !== want.data) {
      this.mismatch(ev.line, ev.op, msiJson(want), msiJson(head.msi), `interrupt sent (line ${head.line}) differs from the expected one`);
    }
  }

  /** After a run of msi.expect lines, what was sent before it and not expected is a mismatch. */
  private closeMsiRun(): void {
    this.inMsiRun = false;
    for (const q of this.msiQueue.splice(0)) this.unexpectedMsi(q);
  }

  private unexpectedMsi(q: { msi: MsiMessage; line: number; op: TraceOp }): void {
    this.mismatch(q.line, q.op, null, msiJson(q.msi), `the IOMMU sent an interrupt no msi.expect expected (${msiText(q.msi)})`);
  }

  // ---- reporting --------------------------------------------------------------

  private mismatch(line: number, op: TraceOp, expected: unknown, got: unknown, message: string): void {
    this.mismatchCount++;
    if (this.mismatches.length < this.maxReported) this.mismatches.push({ line, op, expected, got, message });
  }

  private violation(line: number, rule: ContractRule, listener: string | undefined, entry: ReportEntry | undefined, message: string): void {
    this.violationCount++;
    if (this.violations.length < this.maxReported) this.violations.push({ line, rule, listener, entry, message });
  }

  /** Reports a caught error: contract violations (with `others`), else a model error on this line. */
  private caught(e: unknown, notify: NotifyEvent | undefined): void {
    if (ContractViolation.is(e)) {
      if (notify === undefined) notify = this.currentNotify();
      for (const v of [e, ...e.others]) {
        if (this.seen.has(v)) continue;
        this.seen.add(v);
        const listener = notify?.id ?? (v.notifier ? this.handleIds.get(v.notifier) : undefined);
        const entry = notify ? reportEntry(notify, notify.type) : v.event ? reportEntry(fromTlb(v.event.entry), v.event.type) : undefined;
        this.violation(this.line, v.rule, listener, entry, v.message);
      }
      return;
    }
    this.mismatch(this.line, this.currentOp, null, null, `the model threw: ${e instanceof Error ? e.message : String(e)}`);
  }

  private caughtC1(e: unknown, ev: Extract<TraceEvent, { op: 'notifier.add' }>): void {
    if (ContractViolation.is(e)) {
      if (!this.seen.has(e)) {
        this.seen.add(e);
        this.violation(ev.line, 'C1', ev.id, undefined, e.message);
      } else {
        // Reported through the list's event without the listener id: name it.
        const last = this.violations[this.violations.length - 1];
        if (last && last.line === ev.line && last.rule === 'C1') last.listener = ev.id;
      }
      return;
    }
    this.violation(ev.line, 'C1', ev.id, undefined,
      `the model refused listener "${ev.id}" (${flagsToString(ev.flags)} [${hex(ev.start)}, ${hex(ev.end)}]): ${e instanceof Error ? e.message : String(e)}`);
  }

  // ---- recording --------------------------------------------------------------

  private recordEvent(ev: TraceEvent): void {
    const out = this.record!;
    const got = (ev as { got?: unknown }).got;
    const copy = { ...ev } as TraceEvent & { got?: unknown };
    delete copy.got;
    switch (copy.op) {
      case 'notify':
        // Model traces: replaced by what the listeners received (below). model none: the stream itself.
        if (this.none) out(formatEvent(copy));
        return;
      case 'msi.expect':
        return; // replaced by the interrupts actually sent
      case 'mem.expect':
        if (got instanceof Uint8Array) copy.data = got;
        break;
      case 'view.expect':
        if (Array.isArray(got)) copy.entries = got as TraceEntry[];
        break;
      case 'mmio.read':
      case 'virtio.config.read':
        if (typeof got === 'bigint') copy.expect = got;
        break;
      case 'dma.read':
        if (got !== undefined) copy.expect = got as Uint8Array | 'fault';
        break;
      case 'dma.write':
        if (got !== undefined) copy.expect = got as 'ok' | 'fault';
        break;
      case 'translate':
        if (got !== undefined) copy.expect = got as typeof copy.expect;
        break;
      case 'virtio.request':
        if (got instanceof Uint8Array) copy.expect = got;
        break;
      default:
        break;
    }
    out(formatEvent(copy));
    for (const n of this.recNotifies.splice(0)) out(formatEvent(n));
    for (const m of this.recMsis.splice(0)) out(formatEvent({ op: 'msi.expect', line: 0, addr: m.address, data: m.data }));
  }
}

const MAP_T = IOMMUNotifierFlag.MAP;

const DEV_T = IOMMUNotifierFlag.DEVIOTLB_UNMAP;

/** What `scanNotify` read (one shared object: the hot path allocates nothing). */
interface ScannedNotify {
  idStart: number; idEnd: number; type: IOMMUEventType;
  iovaPfn: number; iovaLow: number; maskPfn: number; maskLow: number; xlPfn: number; xlLow: number; xlZero: boolean;
  perm: number;
}
const scanned: ScannedNotify = { idStart: 0, idEnd: 0, type: 2, iovaPfn: 0, iovaLow: 0, maskPfn: 0, maskLow: 0, xlPfn: 0, xlLow: 0, xlZero: false, perm: 0 };
/** Results of scanHex (module scope: no allocation). */
let hexPfnOut = 0;
let hexLowOut = 0;

const B_ID = Buffer.from('{"op":"notify","id":"');
const B_TYPE = Buffer.from('","type":"');
const B_MAP = Buffer.from('MAP"');
const B_UNMAP = Buffer.from('UNMAP"');
const B_DEV = Buffer.from('DEVIOTLB_UNMAP"');
const B_IOVA = Buffer.from(',"iova":"');
const B_MASK = Buffer.from(',"mask":"');
const B_XL = Buffer.from(',"translated":"');
const B_PERM = Buffer.from(',"perm":"');

/** Whether `buf` holds `lit` at `p` (before `end`). */
function bytesAt(buf: Buffer, p: number, end: number, lit: Buffer): boolean {
  const n = lit.length;
  if (p + n > end) return false;
  for (let i = 0; i < n; i++) if (buf[p + i] !== lit[i]) return false;
  return true;
}

/**
 * Reads a canonical hex number `0x...` (lowercase, no leading zero, 1..16
 * digits) and its closing `"` at `p`; the value goes to hexPfnOut (>> 12,
 * exact) and hexLowOut (& 0xfff). Returns the index after the quote, or -1.
 */
function scanHex(buf: Buffer, p: number, end: number): number {
  if (p + 3 > end || buf[p] !== 0x30 || buf[p + 1] !== 0x78) return -1;
  p += 2;
  const first = p;
  let pfn = 0;
  let low = 0;
  while (p < end) {
    const c = buf[p]!;
    let d: number;
    if (c >= 0x30 && c <= 0x39) d = c - 0x30;
    else if (c >= 0x61 && c <= 0x66) d = c - 0x57;
    else break;
    low = low * 16 + d;
    pfn = pfn * 16 + (low >>> 12);
    low &= 0xfff;
    p++;
  }
  const digits = p - first;
  if (digits === 0 || digits > 16 || (digits > 1 && buf[first] === 0x30) || p >= end || buf[p] !== 0x22) return -1;
  hexPfnOut = pfn;
  hexLowOut = low;
  return p + 1;
}

/**
 * The numeric fast path's reader of a `notify` line, on its UTF-8 bytes:
 * accepts exactly the lines `parseNotifyFast` accepts (the canonical shape) and
 * reads the numbers without building strings or bigints. Undefined for
 * anything else.
 */
function scanNotify(buf: Buffer, start: number, end: number): ScannedNotify | undefined {
  if (!bytesAt(buf, start, end, B_ID)) return undefined;
  const n = scanned;
  const idStart = start + B_ID.length;
  let p = idStart;
  for (;;) {
    if (p >= end) return undefined;
    const c = buf[p]!;
    if (c === 0x22) break;
    if (c < 0x20 || c === 0x5c) return undefined;
    p++;
  }
  n.idStart = idStart;
  n.idEnd = p;
  if (!bytesAt(buf, p, end, B_TYPE)) return undefined;
  p += B_TYPE.length;
  if (bytesAt(buf, p, end, B_MAP)) { n.type = 2; p += B_MAP.length; }
  else if (bytesAt(buf, p, end, B_UNMAP)) { n.type = 1; p += B_UNMAP.length; }
  else if (bytesAt(buf, p, end, B_DEV)) { n.type = 4; p += B_DEV.length; }
  else return undefined;
  if (!bytesAt(buf, p, end, B_IOVA) || (p = scanHex(buf, p + B_IOVA.length, end)) < 0) return undefined;
  n.iovaPfn = hexPfnOut; n.iovaLow = hexLowOut;
  if (!bytesAt(buf, p, end, B_MASK) || (p = scanHex(buf, p + B_MASK.length, end)) < 0) return undefined;
  n.maskPfn = hexPfnOut; n.maskLow = hexLowOut;
  const xl = p + B_XL.length;
  if (!bytesAt(buf, p, end, B_XL) || (p = scanHex(buf, xl, end)) < 0) return undefined;
  n.xlPfn = hexPfnOut; n.xlLow = hexLowOut;
  n.xlZero = p - xl === 4; // 0x0"
  if (!bytesAt(buf, p, end, B_PERM)) return undefined;
  p += B_PERM.length;
  // perm, then `"}` closing the line.
  const c0 = buf[p];
  let q: number;
  if (c0 === 0x72) {
    if (buf[p + 1] === 0x77) { n.perm = 3; q = p + 2; } else { n.perm = 1; q = p + 1; }
  } else if (c0 === 0x77) { n.perm = 2; q = p + 1; }
  else if (c0 === 0x6e && buf[p + 1] === 0x6f && buf[p + 2] === 0x6e && buf[p + 3] === 0x65) { n.perm = 0; q = p + 4; }
  else return undefined;
  return q + 2 === end && buf[q] === 0x22 && buf[q + 1] === 0x7d ? n : undefined;
}


function msiJson(m: MsiMessage): { addr: string; data: string } {
  return { addr: hex(m.address), data: hex(m.data) };
}

function msiText(m: MsiMessage): string {
  return `addr ${hex(m.address)} data ${hex(m.data)}`;
}

function translateJson(x: { fault: true } | { translated: bigint; mask: bigint; perm: IOMMUAccessFlags }): unknown {
  return 'fault' in x ? { fault: true } : { translated: hex(x.translated), mask: hex(x.mask), perm: permToString(x.perm) };
}

/**
 * Reads and replays a trace (path, bytes or stream). A malformed trace gives a
 * report with `malformed` set (nothing past that line was replayed); an
 * unreadable input (missing file, corrupt gzip) throws.
 */
export async function replayTrace(input: TraceInput, options: ReplayOptions & ReadTraceOptions = {}): Promise<ReplayReport> {
  const replayer = new Replayer(options);
  try {
    const { lines } = await readTrace(input, replayer, options);
    return replayer.finish(lines);
  } catch (e) {
    if (e instanceof TraceFormatError) {
      const report = replayer.report(e.line - 1);
      report.malformed = { line: e.line, reason: e.reason };
      report.ok = false;
      return report;
    }
    throw e;
  }
}
