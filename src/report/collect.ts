/**
 * What the HTML report draws, collected during one replay: per listener,
 * every notification it was sent (with the trace line that caused it), the
 * contract violations, and the model's translation faults.
 *
 * The replayer has no delivery stream of its own, so this looks from the
 * outside (src/trace/batch-replay's tap): in a model-none trace each
 * `notify` line is the notification; in a model trace each notifier the
 * replayer registers is wrapped so that what the model delivers is seen,
 * and the model's `fault` event is observed. Violations come from the
 * replayer's report.
 */
import { hex } from '../core/guest-addr';
import type { IOMMUAddressSpace, IOMMUFault, IOMMUModel } from '../core/model';
import type { IOMMUNotifier } from '../core/notifier-list';
import type { IOMMUTLBEvent } from '../core/tlb-entry';
import { IOMMUNotifierFlag } from '../core/tlb-entry';
import { replayTapped } from '../trace/batch-replay';
import type { TraceInput } from '../trace/reader';
import type { ReplayReport } from '../trace/replay';
import type { TraceEvent, TraceHeader } from '../trace/types';

export type MarkKind = 'map' | 'unmap' | 'violation' | 'fault';

/** One thing drawn: a notification, a violation or a fault, at a trace line, over [iova, last]. */
export interface Mark {
  kind: MarkKind;
  /** The listener id; for a fault on a device with no listener, `sid 0x..`. */
  listener: string;
  /** The trace line (event index) that caused it. */
  line: number;
  /** Inclusive IOVA range; undefined for a violation without an entry (C1). */
  iova?: bigint;
  last?: bigint;
  /** MAP, UNMAP, DEVIOTLB_UNMAP; the rule for a violation; the fault reason for a fault. */
  label: string;
  /** Translated address and perm (notifications), or the message (violations). */
  detail: string;
}

/** A listener as registered by the trace (the last registration under its id). */
export interface ListenerInfo {
  id: string;
  sid?: number;
  flags?: number;
  start?: bigint;
  end?: bigint;
  /** Lines of its notifier.del events (a removed listener's view ends there; QEMU sends no UNMAP). */
  delLines: number[];
}

export interface CollectedRun {
  header: TraceHeader | undefined;
  report: ReplayReport;
  listeners: ListenerInfo[];
  /** The marks kept: the first `maxMarks` notifications and faults in trace order, and the violations the report lists (up to max(1000, `maxMarks`)). */
  marks: Mark[];
  /** How many marks of each kind there were in all (kept or not). */
  totals: Record<MarkKind, number>;
  maxMarks: number;
}

export interface CollectOptions {
  /** Notification and fault marks kept for drawing; the counts stay exact (default 20000). */
  maxMarks?: number;
}

const TYPE_NAME: Record<number, string> = { [IOMMUNotifierFlag.MAP]: 'MAP', [IOMMUNotifierFlag.UNMAP]: 'UNMAP', [IOMMUNotifierFlag.DEVIOTLB_UNMAP]: 'DEVIOTLB_UNMAP' };
const PERM = ['none', 'r', 'w', 'rw'];

/**
 * Replays `file` (a path, bytes or a stream such as stdin) and collects the
 * marks of each listener. Throws only when the input cannot be read; a
 * malformed trace gives what came before the bad line, with
 * `report.malformed` set.
 */
export async function collectRun(file: TraceInput, options: CollectOptions = {}): Promise<CollectedRun> {
  const maxMarks = options.maxMarks ?? 20000;
  const marks: Mark[] = [];
  const totals: Record<MarkKind, number> = { map: 0, unmap: 0, violation: 0, fault: 0 };
  const listeners = new Map<string, ListenerInfo>();
  const sidListeners = new Map<number, Set<string>>();
  let none = false;
  let line = 1;
  let current: TraceEvent | undefined;

  const lane = (id: string): ListenerInfo => {
    let l = listeners.get(id);
    if (l === undefined) listeners.set(id, (l = { id, delLines: [] }));
    return l;
  };
  // Violations are never crowded out by notifications: they have their own cap (the report's list).
  let kept = 0;
  const push = (m: Mark) => {
    totals[m.kind]++;
    if (m.kind === 'violation') marks.push(m);
    else if (kept < maxMarks) { kept++; marks.push(m); }
  };
  const notification = (id: string, ev: IOMMUTLBEvent) => {
    const e = ev.entry;
    lane(id);
    push({
      kind: ev.type === IOMMUNotifierFlag.MAP ? 'map' : 'unmap', listener: id, line,
      iova: e.iova, last: e.iova + e.addrMask, label: TYPE_NAME[ev.type] ?? String(ev.type),
      detail: ev.type === IOMMUNotifierFlag.MAP ? `-> ${hex(e.translatedAddr)} ${PERM[e.perm] ?? e.perm}` : `perm ${PERM[e.perm] ?? e.perm}`,
    });
  };
  const fault = (f: IOMMUFault) => {
    const ids = sidListeners.get(f.sid);
    const detail = `sid ${hex(f.sid)} ${PERM[f.access] ?? f.access} access, reason ${hex(f.reason)}${f.recorded ? '' : ' (not recorded)'}`;
    // A fault is the device's: it is marked on each listener of that device, or on a lane of its own.
    const on = ids !== undefined && ids.size > 0 ? [...ids] : [`sid ${hex(f.sid)}`];
    for (const id of on) {
      lane(id);
      push({ kind: 'fault', listener: id, line, iova: f.iova & ~0xfffn, last: (f.iova & ~0xfffn) + 0xfffn, label: `fault ${hex(f.reason)}`, detail });
    }
  };
  const wrapSpace = (as: IOMMUAddressSpace, wrapped: WeakSet<IOMMUAddressSpace>): IOMMUAddressSpace => {
    if (wrapped.has(as)) return as;
    wrapped.add(as);
    const register = as.registerNotifier.bind(as);
    // An own property shadows the method: the model keeps using its own object.
    (as as { registerNotifier: IOMMUAddressSpace['registerNotifier'] }).registerNotifier = (n: IOMMUNotifier) => {
      // The replayer registers inside its notifier.add: the current event names the listener.
      const id = current?.op === 'notifier.add' ? current.id : '?';
      return register({ ...n, notify: (ev: IOMMUTLBEvent, h) => { notification(id, ev); n.notify(ev, h); } });
    };
    return as;
  };

  const { report, header } = await replayTapped(file, {
    fast: false,
    event(ev) {
      current = ev;
      line = ev.line;
      if (ev.op === 'notifier.add') {
        const l = lane(ev.id);
        l.sid = ev.sid; l.flags = ev.flags; l.start = ev.start; l.end = ev.end;
        let s = sidListeners.get(ev.sid);
        if (s === undefined) sidListeners.set(ev.sid, (s = new Set()));
        s.add(ev.id);
      } else if (ev.op === 'notifier.del') {
        lane(ev.id).delLines.push(ev.line);
      } else if (ev.op === 'notify' && none) {
        notification(ev.id, { type: ev.type, entry: { iova: ev.iova, addrMask: ev.mask, translatedAddr: ev.translated, perm: ev.perm } });
      }
    },
    header(h) { none = h.model === 'none'; },
    model(m: IOMMUModel) {
      const wrapped = new WeakSet<IOMMUAddressSpace>();
      const addressSpace = m.addressSpace.bind(m);
      (m as { addressSpace: IOMMUModel['addressSpace'] }).addressSpace = (sid, pasid) => wrapSpace(addressSpace(sid, pasid), wrapped);
      m.events.on('fault', fault);
      return m;
    },
  }, { maxReported: Math.max(1000, maxMarks) });

  // Violations, from the report (exact lines, rules, listeners, entries).
  for (const v of report.violations) {
    const id = v.listener ?? '?';
    lane(id);
    const e = v.entry;
    const m: Mark = { kind: 'violation', listener: id, line: v.line, label: v.rule, detail: v.message };
    if (e !== undefined) {
      m.iova = BigInt(e.iova);
      m.last = m.iova + BigInt(e.mask);
    }
    push(m);
  }
  // Counted in full even when the report listed only some.
  totals.violation += report.violationCount - report.violations.length;
  return { header, report, listeners: [...listeners.values()], marks, totals, maxMarks };
}
