/**
 * Parsing of single trace-v1 lines into typed records, with errors that name
 * the line and the field. Unknown keys are ignored (trace-v1 "Encoding");
 * an unknown `op` is an error.
 */
import { IOMMUAccessFlags, permFromString } from '../core/access';
import { IOMMUNotifierFlag } from '../core/tlb-entry';
import type { IOMMUEventType } from '../core/tlb-entry';
import { TraceFormatError } from './types';
import type {
  NotifyEvent, TraceEntry, TraceEvent, TraceHeader, TraceOp, TraceRamRegion, TranslateExpect,
} from './types';

type Json = Record<string, unknown>;

const HEX_RE = /^0x[0-9a-fA-F]+$/;
const DATA_RE = /^(?:[0-9a-fA-F]{2})*$/;
const U64_LIMIT = 1n << 64n;
/** Largest `len` of a DMA the replayer allocates for (64 MiB): a bigger one is a malformed trace, not an out-of-memory crash. */
const MAX_DMA_LEN = 1 << 26;

/** Field readers: each throws TraceFormatError naming the line and the field. */
class Fields {
  constructor(readonly o: Json, readonly line: number, readonly op: string) {}

  fail(reason: string): never {
    throw new TraceFormatError(this.line, `${this.op}: ${reason}`);
  }

  has(key: string): boolean {
    return this.o[key] !== undefined;
  }

  /** A `0x` hex string below 2^bits (64 by default). */
  hex(key: string, bits = 64): bigint {
    const v = this.o[key];
    if (v === undefined) this.fail(`missing field "${key}"`);
    return this.hexValue(v, key, bits);
  }

  hexValue(v: unknown, key: string, bits = 64): bigint {
    if (typeof v !== 'string' || !HEX_RE.test(v)) this.fail(`field "${key}" must be a 0x-prefixed hex string, got ${show(v)}`);
    const n = BigInt(v);
    if (n >= (bits === 64 ? U64_LIMIT : 1n << BigInt(bits))) this.fail(`field "${key}" ${v} does not fit ${bits} bits`);
    return n;
  }

  /** A non-negative integer given as a JSON number (or, leniently, a hex string) below `max`. */
  int(key: string, max: number): number {
    const v = this.o[key];
    if (v === undefined) this.fail(`missing field "${key}"`);
    let n: number;
    if (typeof v === 'number') n = v;
    else if (typeof v === 'string' && HEX_RE.test(v)) n = v.length > 16 ? Infinity : Number(BigInt(v));
    else this.fail(`field "${key}" must be a number, got ${show(v)}`);
    if (!Number.isSafeInteger(n) || n < 0 || n > max) this.fail(`field "${key}" must be an integer in [0, ${max}], got ${show(v)}`);
    return n;
  }

  size48(key: string): 4 | 8 {
    const n = this.int(key, 8);
    if (n !== 4 && n !== 8) this.fail(`field "${key}" must be 4 or 8, got ${n}`);
    return n;
  }

  data(key: string): Uint8Array {
    const v = this.o[key];
    if (v === undefined) this.fail(`missing field "${key}"`);
    return this.dataValue(v, key);
  }

  dataValue(v: unknown, key: string): Uint8Array {
    if (typeof v !== 'string' || !DATA_RE.test(v)) this.fail(`field "${key}" must be hex bytes (an even number of hex digits, no 0x), got ${show(v)}`);
    return new Uint8Array(Buffer.from(v, 'hex'));
  }

  str(key: string): string {
    const v = this.o[key];
    if (typeof v === 'string') return v;
    if (typeof v === 'number' && Number.isFinite(v)) return String(v);
    if (v === undefined) this.fail(`missing field "${key}"`);
    return this.fail(`field "${key}" must be a string, got ${show(v)}`);
  }

  perm(key: string, v: unknown = this.o[key]): IOMMUAccessFlags {
    const p = typeof v === 'string' ? permFromString(v) : undefined;
    if (p === undefined) this.fail(`field "${key}" must be one of none, r, w, rw, got ${show(v)}`);
    return p;
  }

  entry(v: unknown, where: string): TraceEntry {
    if (!isObject(v)) this.fail(`${where} must be an object`);
    const f: Fields = new Fields(v, this.line, `${this.op} ${where}`);
    return { iova: f.hex('iova'), mask: f.hex('mask'), translated: f.hex('translated'), perm: f.perm('perm') };
  }

  note(): string | undefined {
    const v = this.o['note'];
    return typeof v === 'string' ? v : undefined;
  }
}

function isObject(v: unknown): v is Json {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v) ?? String(v);
  return s.length > 40 ? s.slice(0, 37) + '...' : s;
}

const EVENT_TYPES: Record<string, IOMMUEventType> = {
  MAP: IOMMUNotifierFlag.MAP, UNMAP: IOMMUNotifierFlag.UNMAP, DEVIOTLB_UNMAP: IOMMUNotifierFlag.DEVIOTLB_UNMAP,
};

/** The event type of a trace name, looked up in EVENT_TYPES' own keys only (never `constructor`, `toString`, ...). */
function eventType(name: string): IOMMUEventType | undefined {
  return Object.hasOwn(EVENT_TYPES, name) ? EVENT_TYPES[name] : undefined;
}

function parseJson(text: string, line: number): Json {
  let o: unknown;
  try {
    o = JSON.parse(text);
  } catch (e) {
    throw new TraceFormatError(line, `bad JSON: ${(e as Error).message}`);
  }
  if (!isObject(o)) throw new TraceFormatError(line, 'a trace line must be a JSON object');
  return o;
}

/** Parses line 1. */
export function parseHeader(text: string, line = 1): TraceHeader {
  const o = parseJson(text, line);
  const f: Fields = new Fields(o, line, 'header');
  if (o['trace'] !== 'viommu') f.fail(`"trace" must be "viommu", got ${show(o['trace'])} (is this a viommu trace?)`);
  if (o['version'] !== 1) f.fail(`unsupported version ${show(o['version'])} (this reader knows version 1)`);
  const model = o['model'];
  if (typeof model !== 'string' || model === '') f.fail(`"model" must be a model name, got ${show(model)}`);
  const config = o['config'] ?? {};
  if (!isObject(config)) f.fail('"config" must be an object');
  const ramIn = o['ram'] ?? [];
  if (!Array.isArray(ramIn)) f.fail('"ram" must be a list of {base, size}');
  const ram: TraceRamRegion[] = ramIn.map((r, i) => {
    if (!isObject(r)) f.fail(`ram[${i}] must be an object {base, size}`);
    const rf: Fields = new Fields(r, line, `header ram[${i}]`);
    return { base: rf.hex('base'), size: rf.hex('size') };
  });
  const header: TraceHeader = { trace: 'viommu', version: 1, model, config, ram };
  if (typeof o['source'] === 'string') header.source = o['source'];
  return header;
}

/** Parses one event line (any op) through JSON.parse. */
export function parseEvent(text: string, line: number): TraceEvent {
  const o = parseJson(text, line);
  const op = o['op'];
  if (typeof op !== 'string') throw new TraceFormatError(line, `missing "op" (got ${show(op)})`);
  const f: Fields = new Fields(o, line, op);
  const ev = parseOp(f, op as TraceOp, line);
  const note = f.note();
  if (note !== undefined) ev.note = note;
  return ev;
}

function optPasid(f: Fields): { pasid?: number } {
  return f.has('pasid') ? { pasid: f.int('pasid', 0xfffff) } : {};
}

function parseOp(f: Fields, op: TraceOp, line: number): TraceEvent {
  switch (op) {
    case 'mem.write':
    case 'mem.expect':
      return { op, line, gpa: f.hex('gpa'), data: f.data('data') };
    case 'mmio.write': {
      const size = f.size48('size');
      return { op, line, reg: f.int('reg', 0xffffffff), size, value: f.hex('value', size * 8) };
    }
    case 'mmio.read': {
      const size = f.size48('size');
      const ev: TraceEvent = { op, line, reg: f.int('reg', 0xffffffff), size };
      if (f.has('expect')) ev.expect = f.hex('expect', size * 8);
      return ev;
    }
    case 'dma.read': {
      const ev: TraceEvent = { op, line, sid: f.int('sid', 0xffffffff), ...optPasid(f), iova: f.hex('iova'), len: f.int('len', MAX_DMA_LEN) };
      if (f.has('expect')) ev.expect = f.o['expect'] === 'fault' ? 'fault' : f.dataValue(f.o['expect'], 'expect');
      return ev;
    }
    case 'dma.write': {
      const ev: TraceEvent = { op, line, sid: f.int('sid', 0xffffffff), ...optPasid(f), iova: f.hex('iova'), data: f.data('data') };
      if (f.has('expect')) {
        const x = f.o['expect'];
        if (x !== 'ok' && x !== 'fault') f.fail(`field "expect" must be "ok" or "fault", got ${show(x)}`);
        ev.expect = x;
      }
      return ev;
    }
    case 'translate': {
      const access = f.perm('access');
      if (access === IOMMUAccessFlags.NONE) f.fail('field "access" must be r, w or rw');
      const ev: TraceEvent = { op, line, sid: f.int('sid', 0xffffffff), ...optPasid(f), iova: f.hex('iova'), access };
      if (f.has('expect')) {
        const x = f.o['expect'];
        if (!isObject(x)) f.fail('field "expect" must be {translated, mask, perm} or {fault: true}');
        let e: TranslateExpect;
        if (x['fault'] === true) e = { fault: true };
        else {
          const xf: Fields = new Fields(x, line, 'translate expect');
          e = { translated: xf.hex('translated'), mask: xf.hex('mask'), perm: xf.perm('perm') };
        }
        ev.expect = e;
      }
      return ev;
    }
    case 'notifier.add': {
      const fl = f.o['flags'];
      if (!Array.isArray(fl)) f.fail(`field "flags" must be a list of MAP, UNMAP, DEVIOTLB_UNMAP, got ${show(fl)}`);
      let flags = 0;
      for (const name of fl) {
        const bit = typeof name === 'string' ? eventType(name) : undefined;
        if (bit === undefined) f.fail(`unknown flag ${show(name)} (MAP, UNMAP, DEVIOTLB_UNMAP)`);
        flags |= bit;
      }
      return { op, line, id: f.str('id'), sid: f.int('sid', 0xffffffff), ...optPasid(f), flags, start: f.hex('start'), end: f.hex('end') };
    }
    case 'notifier.del':
      return { op, line, id: f.str('id') };
    case 'notify': {
      const id = f.str('id');
      const t = f.o['type'];
      const type = typeof t === 'string' ? eventType(t) : undefined;
      if (type === undefined) f.fail(`field "type" must be MAP, UNMAP or DEVIOTLB_UNMAP, got ${show(t)}`);
      return {
        op, line, id, type, iova: f.hex('iova'), mask: f.hex('mask'), translated: f.hex('translated'), perm: f.perm('perm'),
      };
    }
    case 'view.expect': {
      const es = f.o['entries'];
      if (!Array.isArray(es)) f.fail('field "entries" must be a list');
      return { op, line, id: f.str('id'), entries: es.map((e, i) => f.entry(e, `entries[${i}]`)) };
    }
    case 'msi.expect':
      return { op, line, addr: f.hex('addr'), data: Number(f.hex('data', 32)) };
    case 'virtio.config.read': {
      const ev: TraceEvent = { op, line, offset: f.int('offset', 0xffff), size: f.int('size', 8) };
      if (f.has('expect')) ev.expect = f.hex('expect');
      return ev;
    }
    case 'virtio.config.write':
      return { op, line, offset: f.int('offset', 0xffff), size: f.int('size', 8), value: f.hex('value') };
    case 'virtio.features':
      return { op, line, value: f.hex('value') };
    case 'virtio.request': {
      const ev: TraceEvent = { op, line, data: f.data('data'), writable: f.int('writable', MAX_DMA_LEN) };
      if (f.has('expect')) ev.expect = f.data('expect');
      return ev;
    }
    case 'virtio.event.expect':
      return { op, line, data: f.data('data') };
    case 'virtio.reset':
      return { op, line };
    default:
      throw new TraceFormatError(line, `unknown op ${show(op)}`);
  }
}

/**
 * The canonical shape of a `notify` line, as the writer produces it: keys in
 * this order, canonical lowercase hex (no leading zero, at most 16 digits), a
 * plain id. Anything else
 * goes through JSON.parse (the result is the same, only slower).
 */
const NOTIFY_RE =
  /^\{"op":"notify","id":"([^"\\\x00-\x1f]*)","type":"(MAP|UNMAP|DEVIOTLB_UNMAP)","iova":"(0x(?:0|[1-9a-f][0-9a-f]{0,15}))","mask":"(0x(?:0|[1-9a-f][0-9a-f]{0,15}))","translated":"(0x(?:0|[1-9a-f][0-9a-f]{0,15}))","perm":"(none|rw|r|w)"\}$/;

/**
 * Matches a canonical `notify` line: groups 1..6 are id, type, iova, mask,
 * translated, perm (as text). Null for any other line.
 */
function matchNotify(text: string): RegExpExecArray | null {
  return text.charCodeAt(7) === 0x6e /* {"op":"n */ ? NOTIFY_RE.exec(text) : null;
}

const PERMS: Record<string, IOMMUAccessFlags> = { none: 0, r: 1, w: 2, rw: 3 };

/**
 * Fast path for the common `notify` line: a regular expression instead of
 * JSON.parse. Returns undefined when the line has any other shape; then
 * `parseEvent` gives the answer. Where it answers, it equals `parseEvent`.
 */
export function parseNotifyFast(text: string, line: number): NotifyEvent | undefined {
  const m = matchNotify(text);
  if (m === null) return undefined;
  return {
    op: 'notify', line, id: m[1]!, type: EVENT_TYPES[m[2]!]!,
    iova: BigInt(m[3]!), mask: BigInt(m[4]!), translated: BigInt(m[5]!), perm: PERMS[m[6]!]!,
  };
}

/** Parses one event line: the fast path when it applies, else JSON.parse. */
export function parseEventLine(text: string, line: number): TraceEvent {
  return parseNotifyFast(text, line) ?? parseEvent(text, line);
}
