/**
 * `viommu import qemu-log`: converts the text log that QEMU's intel-iommu
 * prints with `-trace 'vtd_*'` (log backend) into a `model: "none"` trace
 * (docs/trace-format.md), so that `viommu check` can tell whether a real
 * QEMU run kept the notifier contract (docs/contract.md).
 *
 * ## Input
 * One trace event per line, `[PID@SECONDS:]name args` (the `PID@SECONDS:`
 * prefix is printed by QEMU's log backend only with `-msg timestamp=on`;
 * both forms are accepted, also mixed, and CRLF line ends). Plain text or
 * gzip (detected by the magic bytes 1f 8b, not by the file name). The input
 * is streamed: memory does not grow with the log (only with the number of
 * devices, domains and listeners it names); a line longer than 64 KiB is
 * counted as unknown and dropped.
 *
 * Event formats are those of QEMU 7.2's hw/i386/trace-events. Differences
 * from other versions: before 7.0 `vtd_page_walk_one` printed the domain
 * as `0x%u` (decimal behind a `0x`, fixed by "hw: Fix misleading
 * hexadecimal format"); such a log is read as hex, so domain ids >= 10 of
 * an old log come out wrong (only the listener attribution uses them).
 * Newer QEMUs add PASID variants (`vtd_inv_desc_iotlb_pasid_pages`,
 * `vtd_inv_desc_iotlb_pasid`), which are read as invalidations too.
 *
 * ## When QEMU prints what (hw/i386/intel_iommu.c, 7.2)
 * - `vtd_page_walk_one domain D iova I -> gpa G mask M perm P` is printed by
 *   `vtd_page_walk_one()` immediately before it calls the walk's hook, so
 *   each such line is exactly one event delivered: MAP when P != 0, UNMAP
 *   when P == 0 (also the "emulated UNMAP" QEMU sends before re-mapping a
 *   changed translation: it carries the NEW entry's iova/mask, which is how
 *   QEMU cuts a 2 MiB entry with a 4 KiB UNMAP, contract rule C5).
 *   Events filtered by the per-address-space IOVA tree print
 *   `vtd_page_walk_one_skip_map` / `_skip_unmap` instead and are not
 *   delivered (so they produce nothing here).
 * - Sync path (`vtd_sync_shadow_page_table*`, after IOTLB and context
 *   invalidations): the hook is `memory_region_notify_iommu`, i.e. every
 *   notifier of the device's address space. Replay path (`vtd_iommu_replay`,
 *   printed after `vtd_replay_ce_valid` for the device): the hook delivers to
 *   the one notifier being replayed.
 * - `vtd_as_unmap_whole Device B:D.F start S size N` is printed by
 *   `vtd_address_space_unmap()` after it sent one notifier UNMAPs over
 *   [S, S+N-1] split into aligned power-of-two chunks
 *   (`dma_aligned_pow2_mask`, translated_addr 0).
 * - UNMAP-only notifiers (vhost) get their UNMAPs from
 *   `vtd_iotlb_page_invalidate_notify` without any trace line, so a log of a
 *   run without a MAP notifier has no notifications to import.
 *
 * ## Mapping decisions
 * - Listeners. The log does not name notifiers. The trace declares one
 *   listener per address space the notification lines show, flags
 *   MAP|UNMAP, range [0, 2^64-1], registered (`notifier.add`) just before
 *   its first `notify` line. Id `vtd-BB:DD.F` with `sid` = bus<<8|devfn
 *   when the device is known; when the log never tied the domain to a
 *   device, one listener per domain, id `vtd-domain-0xD`, `sid` `0x0` (it
 *   stands for the address spaces of that domain's devices).
 * - Which device a page-walk line belongs to:
 *   1. After `vtd_inv_desc_cc_device B:D.F` (device-selective context
 *      invalidation: QEMU switches and re-syncs that device's address
 *      space), `vtd_replay_ce_valid ... device B:D.F domain D` (replay of
 *      that device) or `vtd_as_unmap_whole Device B:D.F`, the walk lines up
 *      to the next cause line are that device's, and their domain is
 *      recorded as the device's domain.
 *   2. Otherwise (IOTLB invalidations, which walk every address space whose
 *      context has the invalidated domain id) the line goes to the devices
 *      last known to be in its domain. Known from: rule 1,
 *      `vtd_replay_ce_valid`, `vtd_iotlb_cc_update` / `vtd_iotlb_cc_hit`
 *      (legacy context entry DID = high[23:8]; not used once
 *      `vtd_reg_dmar_root ... scalable 1` was seen) and
 *      `vtd_iotlb_page_update` / `vtd_iotlb_page_hit` (sid, domain).
 *      `vtd_replay_ce_invalid` forgets the device's domain.
 *   3. Several devices in one domain: QEMU walks their address spaces one
 *      after the other, each walk starting with a `vtd_page_walk_level`
 *      line equal to the first one after the cause. The n-th such walk of a
 *      domain goes to its n-th device in ascending sid order (QEMU's own
 *      order, `vtd_as_with_notifiers`, is not in the log: assumed). Without
 *      `vtd_page_walk_level` lines every walk goes to the lowest sid.
 *   4. No device known for the domain: the domain listener.
 * - Cause: the lines that start a notification-producing action
 *   (`vtd_inv_desc_iotlb_*`, `vtd_inv_desc_cc_*`, `vtd_context_cache_reset`,
 *   `vtd_dmar_enable`, `vtd_reg_dmar_root`, `vtd_replay_ce_*`) become a
 *   `note` (the line without its prefix) on the first `notify` line of each
 *   listener that follows them, up to the next cause. A
 *   `vtd_as_unmap_whole` line inside an invalidation's group is appended to
 *   that note (`<cause>; vtd_as_unmap_whole ...`); on its own (replay at
 *   registration, which prints it before `vtd_replay_ce_*`) it is the cause.
 * - Fields: perm 0 -> `none` (type UNMAP), 1 `r`, 2 `w`, 3 `rw` (MAP);
 *   mask -> `mask`, gpa -> `translated` (as printed, also for UNMAPs); hex
 *   is written lowercase. Other perm values make the line malformed.
 * - Counting: per event kind (every event name of QEMU 7.2's intel-iommu
 *   trace-events is a known kind), `read` lines, `used` and `skipped`.
 *   Used: `vtd_page_walk_one` that became a notify line; a cause whose
 *   note a notify line carries (its group produced notifications); a line
 *   that updated the device/domain state that attributes walks (context
 *   and IOTLB-fill lines, `vtd_page_walk_level` walk delimiters). Skipped:
 *   malformed lines, causes followed by no notification, and events that
 *   carry nothing a notification needs (`_skip_map` / `_skip_unmap`,
 *   `vtd_switch_address_space` and `vtd_dmar_translate`, which name a
 *   device but no domain, registers, interrupt remapping, ...).
 *   Other lines (other subsystems' events, garbage, blank) are `unknown`.
 *   A malformed known line is skipped with a warning naming its line
 *   number (the first 100 are kept); nothing in the input makes the import
 *   throw, except a read error or a corrupt gzip stream.
 * - Output is deterministic: it depends on the input lines only.
 */
import { createReadStream } from 'node:fs';
import { basename } from 'node:path';
import { once } from 'node:events';
import { Readable, pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { StringDecoder } from 'node:string_decoder';
import { permToString, type IOMMUAccessFlags } from '../../core/access';
import { hex as hexStr, rangeFromStartLen } from '../../core/guest-addr';
import { alignedPow2Chunks } from '../../core/pow2';

/** Lines read, used and skipped for one event kind. */
export interface ImportKindCounts {
  read: number;
  used: number;
  skipped: number;
}

/** A line that has a known event name but could not be read. */
export interface ImportWarning {
  /** 1-based line number in the (decompressed) log. */
  line: number;
  kind: string;
  reason: string;
  /** The line, cut to 200 characters. */
  text: string;
}

/** What an import read and wrote. */
export interface ImportSummary {
  /** The name the header's `source` uses (file name, or `options.sourceName`). */
  source: string;
  /** True when the input was gzip-compressed. */
  gzip: boolean;
  /** Lines in the (decompressed) log. */
  lines: number;
  /** Per known event kind, in alphabetical order of kind; kinds never read are absent. */
  kinds: Record<string, ImportKindCounts>;
  /** Lines that are not a known event (other trace events, garbage, blank lines). */
  unknown: number;
  /** Unknown lines per event name (names that look like one; at most 100 names, the rest under `(other)`). */
  unknownKinds: Record<string, number>;
  /** Known lines that could not be read (each also counted as skipped). */
  malformed: number;
  /** The first malformed lines. */
  warnings: ImportWarning[];
  /** Ids of the listeners declared, in order of declaration. */
  listeners: string[];
  /** `notify` lines written. */
  notifyLines: number;
}

export interface ImportQemuLogOptions {
  /** Name for the header's `source` (default: the file's base name, or `stdin` for a stream). */
  sourceName?: string;
  /** How many warnings to keep (default 100). */
  maxWarnings?: number;
}

/** Every event of QEMU 7.2's intel-iommu (plus the PASID variants of later versions). */
const KNOWN_KINDS: ReadonlySet<string> = new Set([
  'vtd_inv_desc', 'vtd_inv_desc_cc_domain', 'vtd_inv_desc_cc_global', 'vtd_inv_desc_cc_device',
  'vtd_inv_desc_cc_devices', 'vtd_inv_desc_iotlb_global', 'vtd_inv_desc_iotlb_domain',
  'vtd_inv_desc_iotlb_pages', 'vtd_inv_desc_iotlb_pasid_pages', 'vtd_inv_desc_iotlb_pasid',
  'vtd_inv_desc_wait_sw', 'vtd_inv_desc_wait_irq', 'vtd_inv_desc_wait_write_fail', 'vtd_inv_desc_iec',
  'vtd_inv_qi_enable', 'vtd_inv_qi_setup', 'vtd_inv_qi_head', 'vtd_inv_qi_tail', 'vtd_inv_qi_fetch',
  'vtd_context_cache_reset', 'vtd_re_not_present', 'vtd_ce_not_present', 'vtd_iotlb_page_hit',
  'vtd_iotlb_page_update', 'vtd_iotlb_cc_hit', 'vtd_iotlb_cc_update', 'vtd_iotlb_reset',
  'vtd_fault_disabled', 'vtd_replay_ce_valid', 'vtd_replay_ce_invalid', 'vtd_page_walk_level',
  'vtd_page_walk_one', 'vtd_page_walk_one_skip_map', 'vtd_page_walk_one_skip_unmap',
  'vtd_page_walk_skip_read', 'vtd_page_walk_skip_reserve', 'vtd_switch_address_space',
  'vtd_as_unmap_whole', 'vtd_translate_pt', 'vtd_pt_enable_fast_path', 'vtd_irq_generate',
  'vtd_reg_read', 'vtd_reg_write', 'vtd_reg_dmar_root', 'vtd_reg_ir_root', 'vtd_reg_write_gcmd',
  'vtd_reg_write_fectl', 'vtd_reg_write_iectl', 'vtd_reg_ics_clear_ip', 'vtd_dmar_translate',
  'vtd_dmar_enable', 'vtd_dmar_fault', 'vtd_ir_enable', 'vtd_ir_irte_get', 'vtd_ir_remap',
  'vtd_ir_remap_type', 'vtd_ir_remap_msi', 'vtd_ir_remap_msi_req', 'vtd_fsts_ppf', 'vtd_fsts_clear_ip',
  'vtd_frr_new', 'vtd_warn_invalid_qi_tail', 'vtd_warn_ir_vector', 'vtd_warn_ir_trigger',
]);

/** Longest line kept; longer ones are dropped (constant memory on input without newlines). */
const MAX_LINE = 64 * 1024;
const MAX_UNKNOWN_NAMES = 100;

// Field patterns of the 7.2 formats. `0x%"PRIx64"` prints 1..16 hex digits.
const HEX = '0x([0-9a-fA-F]{1,16})';
const DEC = '(\\d{1,10})';
const BDF = '([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\\.([0-9a-fA-F]{1,2})';
const RE = {
  pageWalkOne: new RegExp(`^domain ${HEX} iova ${HEX} -> gpa ${HEX} mask ${HEX} perm (-?\\d{1,10})$`),
  pageWalkLevel: new RegExp(`^walk \\(base=${HEX}, level=${DEC}\\) iova range ${HEX} - ${HEX}$`),
  skipMap: new RegExp(`^iova ${HEX} mask ${HEX} translated ${HEX}$`),
  skipUnmap: new RegExp(`^iova ${HEX} mask ${HEX}$`),
  iotlbPages: new RegExp(`^iotlb invalidate domain ${HEX} addr ${HEX} mask ${HEX}$`),
  iotlbPasidPages: new RegExp(`^iotlb invalidate domain ${HEX} addr ${HEX} mask ${HEX} pasid ${HEX}$`),
  iotlbDomain: new RegExp(`^iotlb invalidate whole domain ${HEX}$`),
  iotlbPasid: new RegExp(`^iotlb invalidate domain ${HEX} pasid ${HEX}$`),
  iotlbGlobal: /^iotlb invalidate global$/,
  ccGlobal: /^context invalidate globally$/,
  ccDomain: new RegExp(`^context invalidate domain ${HEX}$`),
  ccDevice: new RegExp(`^context invalidate device ${BDF}$`),
  ccDevices: new RegExp(`^context invalidate devices sid ${HEX} fmask ${HEX}$`),
  switchAs: new RegExp(`^Device ${BDF} switching address space \\(iommu enabled=([01])\\)$`),
  unmapWhole: new RegExp(`^Device ${BDF} start ${HEX} size ${HEX}$`),
  replayValid: new RegExp(`^(?:[^:]*): replay valid context device ${BDF} domain ${HEX} hi ${HEX} lo ${HEX}$`),
  replayInvalid: new RegExp(`^replay invalid context device ${BDF}$`),
  ccUpdate: new RegExp(`^IOTLB context update bus ${HEX} devfn ${HEX} high ${HEX} low ${HEX} gen ${DEC} -> gen ${DEC}$`),
  ccHit: new RegExp(`^IOTLB context hit bus ${HEX} devfn ${HEX} high ${HEX} low ${HEX} gen ${DEC}$`),
  pageUpdate: new RegExp(`^IOTLB page (?:update|hit) sid ${HEX} iova ${HEX} slpte ${HEX} domain ${HEX}$`),
  dmarTranslate: new RegExp(`^dev ${BDF} iova ${HEX} -> gpa ${HEX} mask ${HEX}$`),
  dmarEnable: /^enable ([01])$/,
  dmarRoot: new RegExp(`^addr ${HEX} scalable ([01])$`),
  empty: /^$/,
} as const;

const hex = (s: string | undefined): bigint => BigInt('0x' + (s ?? '0'));

/** bus<<8 | dev<<3 | fn from the three printed fields; undefined when out of range. */
function bdfOf(bus: string | undefined, dev: string | undefined, fn: string | undefined): number | undefined {
  const b = parseInt(bus ?? '', 16), d = parseInt(dev ?? '', 16), f = parseInt(fn ?? '', 16);
  if (!(b <= 0xff && d <= 0x1f && f <= 7)) return undefined;
  return (b << 8) | (d << 3) | f;
}

function deviceName(bdf: number): string {
  const p2 = (n: number): string => n.toString(16).padStart(2, '0');
  return `${p2(bdf >> 8)}:${p2((bdf >> 3) & 0x1f)}.${(bdf & 7).toString(16)}`;
}

/** Thrown inside the importer for a malformed known line; never escapes it. */
class Malformed {
  constructor(readonly reason: string) {}
}

type WalkTarget = { device: number } | undefined;
/** How a line counts: `cause` lines are counted when their group ends. */
type Outcome = 'used' | 'skipped' | 'cause';

/** The conversion state machine: one instance per import. */
class QemuLogConverter {
  readonly summary: ImportSummary;
  private readonly out: string[] = [];
  private readonly maxWarnings: number;
  /** Device (bus<<8|devfn) -> domain id it was last seen in. */
  private readonly deviceDomain = new Map<number, number>();
  private readonly declared = new Set<string>();
  private scalable = false;
  /** Current cause: its note and the kind that gets `used` when a notify line carries it. */
  private cause: { note: string; kind: string; used: boolean } | undefined;
  private noted = new Set<string>();
  private walkTarget: WalkTarget;
  /** First `vtd_page_walk_level` line after the cause: (level, start, end) of a walk's top. */
  private walkTop: string | undefined;
  private walkSegment = 0;
  /** Per domain: which of its devices the current walk goes to (rule 3). */
  private domainWalk = new Map<number, { segment: number; index: number }>();

  constructor(source: string, gzip: boolean, maxWarnings: number) {
    this.maxWarnings = maxWarnings;
    this.summary = {
      source, gzip, lines: 0, kinds: {}, unknown: 0, unknownKinds: {}, malformed: 0,
      warnings: [], listeners: [], notifyLines: 0,
    };
  }

  header(): string {
    const text = `imported from QEMU trace log ${this.summary.source}: each vtd_page_walk_one line is one`
      + ' notification QEMU delivered (perm 0 = UNMAP), vtd_as_unmap_whole lines are UNMAP chunks;'
      + ' one MAP|UNMAP listener per device address space (or per domain when the log never tied'
      + ' the domain to a device); the invalidation that caused a group is the note of its first notify line';
    return JSON.stringify({ trace: 'viommu', version: 1, model: 'none', config: {}, ram: [], source: text }) + '\n';
  }

  /** Takes the output lines produced so far. */
  drain(): string {
    const s = this.out.join('');
    this.out.length = 0;
    return s;
  }

  unknownLine(name: string | undefined): void {
    this.summary.unknown++;
    if (name === undefined) return;
    const u = this.summary.unknownKinds;
    const key = name in u || Object.keys(u).length < MAX_UNKNOWN_NAMES ? name : '(other)';
    u[key] = (u[key] ?? 0) + 1;
  }

  warn(lineNo: number, kind: string, reason: string, text: string): void {
    this.summary.malformed++;
    if (this.summary.warnings.length < this.maxWarnings) {
      this.summary.warnings.push({ line: lineNo, kind, reason, text: text.slice(0, 200) });
    }
  }

  line(lineNo: number, raw: string): void {
    this.summary.lines++;
    // Optional `PID@SECONDS:` prefix of the log backend.
    const text = raw.replace(/^\d+@\d+(?:\.\d+)?:/, '');
    const m = /^([A-Za-z0-9_]+)(?: (.*))?$/.exec(text);
    const name = m?.[1];
    if (name === undefined || !KNOWN_KINDS.has(name)) {
      // Only names shaped like trace events (`subsystem_event`) are listed by name.
      this.unknownLine(/^[a-z][a-z0-9]*_[a-z0-9_]+$/.test(name ?? '') ? name : undefined);
      return;
    }
    const args = (m?.[2] ?? '').trimEnd();
    const counts = (this.summary.kinds[name] ??= { read: 0, used: 0, skipped: 0 });
    counts.read++;
    let outcome: Outcome;
    try {
      outcome = this.event(name, args, `${name} ${args}`.trimEnd());
    } catch (e) {
      if (!(e instanceof Malformed)) throw e;
      this.warn(lineNo, name, e.reason, raw);
      outcome = 'skipped';
    }
    // A cause is counted when its group ends (endCause): used if a notify line carried its note.
    if (outcome === 'used') counts.used++;
    else if (outcome === 'skipped') counts.skipped++;
  }

  private endCause(): void {
    const c = this.cause && this.summary.kinds[this.cause.kind];
    if (c) {
      if (this.cause!.used) c.used++;
      else c.skipped++;
    }
    this.cause = undefined;
  }

  /** Called at the end: counts the last cause. */
  finish(): void {
    this.endCause();
    const sorted: Record<string, ImportKindCounts> = {};
    for (const k of Object.keys(this.summary.kinds).sort()) sorted[k] = this.summary.kinds[k]!;
    this.summary.kinds = sorted;
  }

  private startCause(kind: string, note: string, target: WalkTarget): void {
    this.endCause();
    this.cause = { note, kind, used: false };
    this.noted.clear();
    this.walkTarget = target;
    this.walkTop = undefined;
    this.walkSegment = 0;
    this.domainWalk.clear();
  }

  private match(re: RegExp, args: string): RegExpExecArray {
    const m = re.exec(args);
    if (!m) throw new Malformed('does not match the QEMU 7.2 format');
    return m;
  }

  private device(bus: string | undefined, dev: string | undefined, fn: string | undefined): number {
    const bdf = bdfOf(bus, dev, fn);
    if (bdf === undefined) throw new Malformed('device number out of range');
    return bdf;
  }

  /** Handles one known line. */
  private event(name: string, args: string, note: string): Outcome {
    switch (name) {
      case 'vtd_page_walk_one': {
        const m = this.match(RE.pageWalkOne, args);
        const perm = Number(m[5]);
        if (!(perm >= 0 && perm <= 3)) throw new Malformed(`perm ${m[5]} is not 0..3`);
        const domain = Number(hex(m[1]));
        if (domain > 0xffff) throw new Malformed('domain id above 0xffff');
        const listener = this.walkListener(domain);
        this.notify(listener, perm === 0 ? 'UNMAP' : 'MAP', hex(m[2]), hex(m[4]), hex(m[3]), perm as IOMMUAccessFlags);
        return 'used';
      }
      case 'vtd_page_walk_level': {
        const m = this.match(RE.pageWalkLevel, args);
        const top = `${m[2]} ${m[3]} ${m[4]}`;
        if (this.walkTop === undefined) this.walkTop = top;
        else if (top === this.walkTop) this.walkSegment++;
        return 'used';
      }
      case 'vtd_page_walk_one_skip_map':
        this.match(RE.skipMap, args);
        return 'skipped';
      case 'vtd_page_walk_one_skip_unmap':
        this.match(RE.skipUnmap, args);
        return 'skipped';
      case 'vtd_as_unmap_whole': {
        const m = this.match(RE.unmapWhole, args);
        const bdf = this.device(m[1], m[2], m[3]);
        const start = hex(m[4]);
        const size = hex(m[5]);
        if (rangeFromStartLen(start, size) === undefined) throw new Malformed('empty or wrapping range');
        // Printed after the UNMAPs went to one notifier of the device. Within an
        // invalidation's group the invalidation stays the cause (the note says both);
        // on its own (replay at registration, TE change) the line is the cause.
        const own = this.cause === undefined || this.cause.kind === 'vtd_replay_ce_valid'
          || this.cause.kind === 'vtd_replay_ce_invalid' || this.cause.kind === name;
        if (own) this.startCause(name, note, { device: bdf });
        else this.walkTarget = { device: bdf };
        // QEMU's loop sends chunks while at least 4 KiB remain (7.2 vtd_address_space_unmap).
        const end = start + (size & ~0xfffn) - 1n;
        if (end < start) return own ? 'cause' : 'skipped';
        const listener = this.deviceListener(bdf);
        let extra: string | undefined = own ? undefined : note;
        for (const c of alignedPow2Chunks(start, end)) {
          this.notify(listener, 'UNMAP', c.iova, c.addrMask, 0n, 0, extra);
          extra = undefined;
        }
        return own ? 'cause' : 'used';
      }
      case 'vtd_inv_desc_iotlb_pages':
        this.match(RE.iotlbPages, args);
        this.startCause(name, note, undefined);
        return 'cause';
      case 'vtd_inv_desc_iotlb_pasid_pages':
        this.match(RE.iotlbPasidPages, args);
        this.startCause(name, note, undefined);
        return 'cause';
      case 'vtd_inv_desc_iotlb_domain':
        this.match(RE.iotlbDomain, args);
        this.startCause(name, note, undefined);
        return 'cause';
      case 'vtd_inv_desc_iotlb_pasid':
        this.match(RE.iotlbPasid, args);
        this.startCause(name, note, undefined);
        return 'cause';
      case 'vtd_inv_desc_iotlb_global':
        this.match(RE.iotlbGlobal, args);
        this.startCause(name, note, undefined);
        return 'cause';
      case 'vtd_inv_desc_cc_global':
        this.match(RE.ccGlobal, args);
        this.startCause(name, note, undefined);
        return 'cause';
      case 'vtd_inv_desc_cc_domain':
        this.match(RE.ccDomain, args);
        this.startCause(name, note, undefined);
        return 'cause';
      case 'vtd_inv_desc_cc_devices':
        this.match(RE.ccDevices, args);
        this.startCause(name, note, undefined);
        return 'cause';
      case 'vtd_inv_desc_cc_device': {
        const m = this.match(RE.ccDevice, args);
        this.startCause(name, note, { device: this.device(m[1], m[2], m[3]) });
        return 'cause';
      }
      case 'vtd_context_cache_reset':
        this.match(RE.empty, args);
        this.startCause(name, note, undefined);
        return 'cause';
      case 'vtd_dmar_enable':
        this.match(RE.dmarEnable, args);
        this.startCause(name, note, undefined);
        return 'cause';
      case 'vtd_reg_dmar_root': {
        const m = this.match(RE.dmarRoot, args);
        // Scalable-mode context entries keep the domain id in the PASID entry, not in `high`.
        this.scalable = m[2] === '1';
        this.startCause(name, note, undefined);
        return 'cause';
      }
      case 'vtd_replay_ce_valid': {
        const m = this.match(RE.replayValid, args);
        const bdf = this.device(m[1], m[2], m[3]);
        const domain = Number(hex(m[4]));
        if (domain > 0xffff) throw new Malformed('domain id above 0xffff');
        this.deviceDomain.set(bdf, domain);
        this.startCause(name, note, { device: bdf });
        return 'cause';
      }
      case 'vtd_replay_ce_invalid': {
        const m = this.match(RE.replayInvalid, args);
        const bdf = this.device(m[1], m[2], m[3]);
        this.deviceDomain.delete(bdf);
        this.startCause(name, note, { device: bdf });
        return 'cause';
      }
      case 'vtd_iotlb_cc_update':
      case 'vtd_iotlb_cc_hit': {
        const m = this.match(name === 'vtd_iotlb_cc_hit' ? RE.ccHit : RE.ccUpdate, args);
        const bus = hex(m[1]), devfn = hex(m[2]);
        if (bus > 0xffn || devfn > 0xffn) throw new Malformed('bus or devfn above 0xff');
        if (this.scalable) return 'skipped';
        // Legacy context entry: DID is bits 23:8 of the high quadword (VT-d spec 9.3).
        this.deviceDomain.set(Number((bus << 8n) | devfn), Number((hex(m[3]) >> 8n) & 0xffffn));
        return 'used';
      }
      case 'vtd_iotlb_page_update':
      case 'vtd_iotlb_page_hit': {
        const m = this.match(RE.pageUpdate, args);
        const sid = hex(m[1]), domain = hex(m[4]);
        if (sid > 0xffffn || domain > 0xffffn) throw new Malformed('sid or domain above 0xffff');
        this.deviceDomain.set(Number(sid), Number(domain));
        return 'used';
      }
      case 'vtd_switch_address_space':
        this.device(...this.match(RE.switchAs, args).slice(1, 4) as [string, string, string]);
        return 'skipped';
      case 'vtd_dmar_translate':
        this.device(...this.match(RE.dmarTranslate, args).slice(1, 4) as [string, string, string]);
        return 'skipped';
      default:
        // A known event that carries nothing about notifications.
        return 'skipped';
    }
  }

  /** The listener a page-walk line of `domain` goes to (mapping rules 1-4). */
  private walkListener(domain: number): string {
    if (this.walkTarget !== undefined) {
      this.deviceDomain.set(this.walkTarget.device, domain);
      return this.deviceListener(this.walkTarget.device);
    }
    const devices: number[] = [];
    for (const [bdf, d] of this.deviceDomain) if (d === domain) devices.push(bdf);
    if (devices.length === 0) return this.domainListener(domain);
    devices.sort((a, b) => a - b);
    let w = this.domainWalk.get(domain);
    if (w === undefined) {
      w = { segment: this.walkSegment, index: 0 };
      this.domainWalk.set(domain, w);
    } else if (w.segment !== this.walkSegment) {
      w.segment = this.walkSegment;
      w.index++;
    }
    return this.deviceListener(devices[Math.min(w.index, devices.length - 1)]!);
  }

  private deviceListener(bdf: number): string {
    const id = `vtd-${deviceName(bdf)}`;
    this.declare(id, bdf, undefined);
    return id;
  }

  private domainListener(domain: number): string {
    const id = `vtd-domain-${hexStr(domain)}`;
    this.declare(id, 0, `device unknown: stands for the address space(s) of domain ${hexStr(domain)}`);
    return id;
  }

  private declare(id: string, sid: number, note: string | undefined): void {
    if (this.declared.has(id)) return;
    this.declared.add(id);
    this.summary.listeners.push(id);
    this.out.push(`{"op":"notifier.add","id":${JSON.stringify(id)},"sid":"${hexStr(sid)}","flags":["MAP","UNMAP"],`
      + `"start":"0x0","end":"0xffffffffffffffff"${note === undefined ? '' : `,"note":${JSON.stringify(note)}`}}\n`);
  }

  /** Writes one notify line; the first one of each listener after a cause carries the cause as note (`extra` appended). */
  private notify(id: string, type: 'MAP' | 'UNMAP', iova: bigint, mask: bigint, translated: bigint, perm: IOMMUAccessFlags, extra?: string): void {
    let text: string | undefined;
    if (this.cause !== undefined && !this.noted.has(id)) {
      this.noted.add(id);
      this.cause.used = true;
      text = this.cause.note;
    }
    if (extra !== undefined) text = text === undefined ? extra : `${text}; ${extra}`;
    const note = text === undefined ? '' : `,"note":${JSON.stringify(text)}`;
    this.summary.notifyLines++;
    this.out.push(`{"op":"notify","id":${JSON.stringify(id)},"type":"${type}","iova":"${hexStr(iova)}",`
      + `"mask":"${hexStr(mask)}","translated":"${hexStr(translated)}","perm":"${permToString(perm)}"${note}}\n`);
  }
}

/** Reads up to the first two bytes of `stream` and returns them with an iterator over the rest. */
async function sniff(stream: NodeJS.ReadableStream): Promise<{ head: Buffer; rest: AsyncIterator<unknown> }> {
  const rest = (stream as AsyncIterable<unknown>)[Symbol.asyncIterator]();
  const parts: Buffer[] = [];
  let n = 0;
  while (n < 2) {
    const r = await rest.next();
    if (r.done) break;
    const b = typeof r.value === 'string' ? Buffer.from(r.value) : (r.value as Buffer);
    parts.push(b);
    n += b.length;
  }
  return { head: Buffer.concat(parts), rest };
}

/**
 * Converts a QEMU `-trace 'vtd_*'` log (path or stream; plain or gzip) into a
 * `model: "none"` trace written to `output` (not ended). Streams the input.
 * Resolves with what was read and written; rejects only when the input cannot
 * be read (missing file, corrupt gzip) or `output` fails. See the module
 * comment for how lines are mapped.
 */
export async function importQemuLog(
  input: NodeJS.ReadableStream | string,
  output: NodeJS.WritableStream,
  options: ImportQemuLogOptions = {},
): Promise<ImportSummary> {
  const raw = typeof input === 'string' ? createReadStream(input) : input;
  const source = options.sourceName ?? (typeof input === 'string' ? basename(input) : 'stdin');
  const { head, rest } = await sniff(raw);
  const gzip = head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b;
  async function* all(): AsyncGenerator<Buffer> {
    if (head.length) yield head;
    for (;;) {
      const r = await rest.next();
      if (r.done) return;
      yield typeof r.value === 'string' ? Buffer.from(r.value) : (r.value as Buffer);
    }
  }
  let chunks: AsyncIterable<unknown> = all();
  if (gzip) {
    const gunzip = createGunzip();
    // pipeline forwards a source error to gunzip, so iterating gunzip rejects with it.
    chunks = pipeline(Readable.from(all()), gunzip, () => undefined);
  }

  const conv = new QemuLogConverter(source, gzip, options.maxWarnings ?? 100);
  const write = async (s: string): Promise<void> => {
    if (s.length && !output.write(s)) await once(output as unknown as NodeJS.EventEmitter, 'drain');
  };
  await write(conv.header());

  const decoder = new StringDecoder('utf8');
  let pending = '';
  let overlong = false;
  let lineNo = 0;
  const take = (text: string): void => {
    lineNo++;
    if (overlong) {
      overlong = false;
      conv.summary.lines++;
      conv.unknownLine(undefined);
      return;
    }
    conv.line(lineNo, text.endsWith('\r') ? text.slice(0, -1) : text);
  };
  try {
    for await (const chunk of chunks) {
      pending += decoder.write(chunk as Buffer);
      let nl: number;
      while ((nl = pending.indexOf('\n')) >= 0) {
        take(pending.slice(0, nl));
        pending = pending.slice(nl + 1);
      }
      if (pending.length > MAX_LINE) {
        overlong = true;
        pending = '';
      }
      await write(conv.drain());
    }
  } catch (e) {
    const why = e instanceof Error ? e.message : String(e);
    throw new Error(`${source}: cannot read${gzip ? ' gzip' : ''} input after line ${lineNo}: ${why}`);
  }
  pending += decoder.end();
  if (pending.length || overlong) take(pending);
  conv.finish();
  await write(conv.drain());
  return conv.summary;
}

/**
 * Whether the input was a QEMU intel-iommu trace log at all: at least one of
 * its lines is a known `vtd_*` event. A file with none (another program's
 * output, a trace-v1 file, a log of a QEMU run without `-trace 'vtd_*'`)
 * gives an empty trace, which `viommu import` refuses rather than passing
 * off as a clean run.
 */
export function isQemuTraceLog(s: ImportSummary): boolean {
  return Object.keys(s.kinds).length > 0;
}

/** The summary as text: one row per event kind read, then unknown lines and warnings. */
export function formatImportSummary(s: ImportSummary): string {
  const rows = Object.entries(s.kinds);
  const w = Math.max(28, ...rows.map(([k]) => k.length));
  const pad = (v: string | number, n: number): string => String(v).padStart(n);
  const lines = [
    `${s.source}${s.gzip ? ' (gzip)' : ''}: ${s.lines} lines; wrote ${s.notifyLines} notify line(s) for ${s.listeners.length} listener(s)`
      + (s.listeners.length ? ` (${s.listeners.join(', ')})` : ''),
    `  ${'event kind'.padEnd(w)} ${pad('read', 7)} ${pad('used', 7)} ${pad('skipped', 7)}`,
    ...rows.map(([k, c]) => `  ${k.padEnd(w)} ${pad(c.read, 7)} ${pad(c.used, 7)} ${pad(c.skipped, 7)}`),
    `  ${'unknown lines'.padEnd(w)} ${pad(s.unknown, 7)} ${pad(0, 7)} ${pad(s.unknown, 7)}`,
  ];
  const unknownNames = Object.entries(s.unknownKinds).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1));
  if (unknownNames.length) lines.push(`    (${unknownNames.map(([k, n]) => `${k} ${n}`).join(', ')})`);
  if (s.malformed) {
    lines.push(`  ${s.malformed} malformed line(s)${s.malformed > s.warnings.length ? `, first ${s.warnings.length}` : ''}:`);
    for (const x of s.warnings) lines.push(`    line ${x.line}: ${x.kind}: ${x.reason}: ${x.text}`);
  }
  return lines.join('\n') + '\n';
}
