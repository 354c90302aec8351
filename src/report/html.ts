/**
 * The self-contained HTML report of one trace: for each listener, a picture
 * of its view over the run (compressed IOVA across, trace line down; MAPs,
 * UNMAPs, violations and faults as distinct marks; each mapping's lifetime
 * as a shaded band), then the violations and the mismatches. Everything is
 * inline (CSS, SVG, a little JS); the page loads nothing.
 *
 * Every mark is an SVG element with class `mark` and `data-kind`
 * (map | unmap | violation | fault), `data-listener` and `data-line`, so
 * that tools and tests can count them.
 */
import { compressedAxis } from './axis';
import type { IovaAxis } from './axis';
import type { CollectedRun, ListenerInfo, Mark, MarkKind } from './collect';
import { flagsToString } from '../core/tlb-entry';
import { hex } from '../core/guest-addr';

const W = 960;
const LEFT = 70;
const RIGHT = 20;
const TOP = 46;
const BOTTOM = 16;
const PLOT_W = W - LEFT - RIGHT;
/** Unmaps larger than this do not widen the axis (a whole-space flush would flatten it); they are drawn across what they cover. */
const WIDE_UNMAP = 1n << 30n;
/** Above this many separate ranges, ticks and break lines are left out (they would only grey the picture). */
const MAX_TICKS = 200;

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
}

function clip(s: string, n: number): string {
  return s.length > n ? s.slice(0, n - 3) + '...' : s;
}

function json(v: unknown): string {
  if (v === null || v === undefined) return '(nothing)';
  return typeof v === 'string' ? v : JSON.stringify(v);
}

const CSS = `
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fff}
h1{font-size:1.4em;margin:0 0 .3em}h2{font-size:1.15em;margin:1.6em 0 .4em}h3{font-size:1em;margin:1.2em 0 .2em}
table{border-collapse:collapse;margin:.4em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}td.n{text-align:right}code,td.mono{font-family:ui-monospace,monospace;font-size:12px}
.ok{color:#176b2c;font-weight:bold}.bad{color:#b00020;font-weight:bold}
.note{background:#fff6d6;border:1px solid #e6cf7a;padding:4px 8px;display:inline-block}
svg.view{border:1px solid #ddd;background:#fcfcfc;display:block}
.map{fill:#1f8a3b}.unmap{fill:#d0342c}.live{fill:#1f8a3b;fill-opacity:.13}
.violation{stroke:#ff8c00;stroke-width:2.5;fill:none}.fault{fill:#7b2cbf;stroke:#fff;stroke-width:.8}
.axis{stroke:#888;stroke-width:1}.brk{stroke:#999;stroke-dasharray:2 2}.lbl{font:10px ui-monospace,monospace;fill:#555}
body.hide-map .map,body.hide-unmap .unmap,body.hide-violation .violation,body.hide-fault .fault,body.hide-live .live{display:none}
#info{position:sticky;top:0;background:#eef;padding:3px 8px;min-height:1.3em;font-family:ui-monospace,monospace;font-size:12px}
.legend span{margin-right:1.2em}
`;

/** Hover shows a mark's details; checkboxes hide kinds. */
const JS = `
(function(){
  var info=document.getElementById('info');
  document.addEventListener('mouseover',function(e){
    var t=e.target; if(!t||!t.getAttribute||!t.classList.contains('mark'))return;
    var d=t.querySelector('title'); info.textContent=d?d.textContent:'';
  });
  var boxes=document.querySelectorAll('input[data-toggle]');
  for(var i=0;i<boxes.length;i++){boxes[i].addEventListener('change',function(){
    document.body.classList.toggle('hide-'+this.getAttribute('data-toggle'),!this.checked);});}
  var n=document.querySelectorAll('svg .mark').length; var c=document.getElementById('drawn'); if(c)c.textContent=String(n);
})();
`;

/** The interval a mark covers, or undefined (a violation with no entry). */
function span(m: Mark): readonly [bigint, bigint] | undefined {
  return m.iova === undefined || m.last === undefined ? undefined : [m.iova, m.last];
}

function axisFor(marks: readonly Mark[]): IovaAxis {
  const content: Array<readonly [bigint, bigint]> = [];
  const all: Array<readonly [bigint, bigint]> = [];
  for (const m of marks) {
    const s = span(m);
    if (s === undefined) continue;
    all.push(s);
    if (m.kind !== 'unmap' || s[1] - s[0] < WIDE_UNMAP) content.push(s);
  }
  return compressedAxis(content.length > 0 ? content : all, PLOT_W);
}

function markTitle(m: Mark): string {
  const where = m.iova !== undefined && m.last !== undefined ? ` [${hex(m.iova)}, ${hex(m.last)}]` : '';
  return `line ${m.line}: ${m.listener}: ${m.label}${where} ${m.detail}`;
}

function attrs(m: Mark): string {
  let s = `class="mark ${m.kind}" data-kind="${m.kind}" data-listener="${esc(m.listener)}" data-line="${m.line}"`;
  if (m.iova !== undefined && m.last !== undefined) s += ` data-iova="${hex(m.iova)}" data-last="${hex(m.last)}"`;
  return s;
}

function panel(l: ListenerInfo, marks: readonly Mark[], maxLine: number, counts: Record<MarkKind, number>, violatingLines: Set<string>): string {
  const head = `<h3>${esc(l.id)}</h3><div>${l.sid !== undefined ? `sid <code>${hex(l.sid)}</code>, ` : ''}${l.flags !== undefined ? `flags <code>${flagsToString(l.flags)}</code>, ` : ''}${l.start !== undefined && l.end !== undefined ? `range <code>[${hex(l.start)}, ${hex(l.end)}]</code>, ` : ''}`
    + `${counts.map} MAP, ${counts.unmap} UNMAP, ${counts.violation} violation(s), ${counts.fault} fault(s)</div>`;
  if (marks.length === 0) return head + '<p>(nothing to draw)</p>';
  const axis = axisFor(marks);
  const distinct = new Set(marks.map((m) => m.line)).size;
  const plotH = Math.max(120, Math.min(720, distinct * 6));
  const H = TOP + plotH + BOTTOM;
  const y = (line: number) => TOP + ((line - 1) / Math.max(1, maxLine - 1)) * plotH;
  const X = (v: bigint) => LEFT + axis.x(v);
  const out: string[] = [];
  out.push(`<svg class="view" xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" data-listener="${esc(l.id)}">`);
  // IOVA axis: ranges with their first/last IOVA, breaks as dashed gaps.
  out.push(`<line class="axis" x1="${LEFT}" y1="${TOP - 4}" x2="${LEFT + PLOT_W}" y2="${TOP - 4}"/>`);
  // Labels on three rows; one that fits on no row is left out (the tick and the mark titles still say where).
  const rowEnd = [-Infinity, -Infinity, -Infinity];
  // Too many ranges to tell apart: no tick per range, no break lines (the note under the picture says how many).
  const dense = axis.ranges.length > MAX_TICKS;
  for (const r of axis.ranges) {
    const x0 = LEFT + r.x0;
    const text = hex(r.start);
    const row = x0 + text.length * 6.1 > W ? -1 : rowEnd.findIndex((end) => x0 >= end + 6);
    if (row >= 0) {
      out.push(`<text class="lbl" x="${x0.toFixed(1)}" y="${10 + row * 11}">${text}</text>`);
      rowEnd[row] = x0 + text.length * 6.1;
    }
    if (!dense) out.push(`<line class="axis" x1="${x0.toFixed(1)}" y1="${TOP - 8}" x2="${x0.toFixed(1)}" y2="${TOP}"/>`);
  }
  for (const b of dense ? [] : axis.breaks) {
    const xm = LEFT + (b.x0 + b.x1) / 2;
    out.push(`<line class="brk" x1="${xm.toFixed(1)}" y1="${TOP - 10}" x2="${xm.toFixed(1)}" y2="${H - BOTTOM}"><title>break: ${hex(b.after)} .. ${hex(b.before - 1n)} not drawn</title></line>`);
  }
  // Event axis (trace lines).
  out.push(`<line class="axis" x1="${LEFT - 4}" y1="${TOP}" x2="${LEFT - 4}" y2="${TOP + plotH}"/>`);
  for (let i = 0; i <= 4; i++) {
    const line = Math.round(1 + ((maxLine - 1) * i) / 4);
    out.push(`<text class="lbl" x="4" y="${(y(line) + 3).toFixed(1)}">line ${line}</text>`);
  }
  // Lifetimes: from each MAP to the first UNMAP that touches it (the view at a line is the horizontal cut).
  const live: Array<{ a: bigint; b: bigint; y0: number }> = [];
  const band = (e: { a: bigint; b: bigint; y0: number }, y1: number) => {
    const x0 = X(e.a);
    const w = Math.max(1, X(e.b + 1n) - x0);
    out.push(`<rect class="live" x="${x0.toFixed(1)}" y="${e.y0.toFixed(1)}" width="${w.toFixed(1)}" height="${Math.max(1, y1 - e.y0).toFixed(1)}"/>`);
  };
  const dels = l.delLines.slice().sort((a, b) => a - b);
  let d = 0;
  const closeAll = (y1: number) => { for (const e of live.splice(0)) band(e, y1); };
  for (const m of marks) {
    // A removed listener has no view any more: its lifetimes end at the notifier.del.
    while (d < dels.length && dels[d]! < m.line) closeAll(y(dels[d++]!));
    const s = span(m);
    if (s === undefined || violatingLines.has(`${m.listener}\n${m.line}`)) continue; // a refused event changes no view
    if (m.kind === 'map') live.push({ a: s[0], b: s[1], y0: y(m.line) });
    else if (m.kind === 'unmap') {
      for (let i = live.length - 1; i >= 0; i--) {
        const e = live[i]!;
        if (e.a <= s[1] && s[0] <= e.b) { band(e, y(m.line)); live.splice(i, 1); }
      }
    }
  }
  closeAll(d < dels.length ? y(dels[d]!) : TOP + plotH);
  // Marks.
  for (const m of marks) {
    const yy = y(m.line);
    const s = span(m);
    const t = `<title>${esc(markTitle(m))}</title>`;
    if (m.kind === 'map' || m.kind === 'unmap') {
      const x0 = X(s![0]);
      const w = Math.max(1.5, X(s![1] + 1n) - x0);
      // MAP a solid bar on the line, UNMAP a bar just below it: both visible when one line has both.
      out.push(`<rect ${attrs(m)} x="${x0.toFixed(1)}" y="${(m.kind === 'map' ? yy - 3 : yy).toFixed(1)}" width="${w.toFixed(1)}" height="3">${t}</rect>`);
    } else if (m.kind === 'fault') {
      const xc = (X(s![0]) + X(s![1] + 1n)) / 2;
      out.push(`<circle ${attrs(m)} cx="${xc.toFixed(1)}" cy="${yy.toFixed(1)}" r="4">${t}</circle>`);
    } else {
      const xc = s === undefined ? LEFT + 6 : (X(s[0]) + X(s[1] + 1n)) / 2;
      const d = `M${(xc - 5).toFixed(1)} ${(yy - 5).toFixed(1)}L${(xc + 5).toFixed(1)} ${(yy + 5).toFixed(1)}M${(xc - 5).toFixed(1)} ${(yy + 5).toFixed(1)}L${(xc + 5).toFixed(1)} ${(yy - 5).toFixed(1)}`;
      out.push(`<path ${attrs(m)} d="${d}">${t}</path>`);
    }
  }
  out.push('</svg>');
  const foot = dense ? `<div>${axis.ranges.length} separate IOVA ranges (${axis.breaks.length} breaks, not drawn).</div>` : '';
  return head + out.join('\n') + foot;
}

/** The report page of `run` (the trace at `file`), as one HTML string. */
export function renderReport(run: CollectedRun, file: string): string {
  const r = run.report;
  const totalMarks = run.totals.map + run.totals.unmap + run.totals.violation + run.totals.fault;
  const capped = run.marks.length < totalMarks;
  // When capped, the event axis ends at the last mark drawn so that the drawn part is not squashed.
  let lastMarkLine = 1;
  for (const m of run.marks) if (m.line > lastMarkLine) lastMarkLine = m.line;
  const maxLine = Math.max(2, capped ? lastMarkLine : Math.max(r.lines, lastMarkLine));
  const status = r.malformed ? 'MALFORMED' : r.ok ? 'OK' : 'FAILED';
  const parts: string[] = [];
  parts.push(`<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>viommu report: ${esc(file)}</title><style>${CSS}</style></head><body>`);
  parts.push(`<h1>viommu report</h1><div><code>${esc(file)}</code>, model <code>${esc(r.model || '?')}</code>${run.header?.source ? `, source: ${esc(clip(run.header.source, 200))}` : ''}</div>`);
  parts.push(`<table><tr><th>lines</th><th>events</th><th>mismatches</th><th>violations</th><th>MAP</th><th>UNMAP</th><th>faults</th><th>status</th></tr>`
    + `<tr><td class="n">${r.lines}</td><td class="n">${r.events}</td><td class="n">${r.mismatchCount}</td><td class="n">${r.violationCount}</td>`
    + `<td class="n">${run.totals.map}</td><td class="n">${run.totals.unmap}</td><td class="n">${run.totals.fault}</td>`
    + `<td class="${r.ok ? 'ok' : 'bad'}">${status}</td></tr></table>`);
  if (r.malformed) parts.push(`<p class="note">Malformed trace: line ${r.malformed.line}: ${esc(r.malformed.reason)}. Nothing past it was replayed.</p>`);
  if (capped) {
    parts.push(`<p class="note">Large trace: only the first ${run.marks.length} of ${totalMarks} marks (in trace order) are drawn, up to line ${lastMarkLine}: the first ${run.maxMarks} notifications and faults, and the violations listed below; the counts are complete. Use --max-marks to draw more.</p>`);
  }
  parts.push(`<h2>Listeners' views</h2><p>Across: IOVA, compressed (only the ranges that occur; dashed lines are breaks over IOVAs that do not occur; a range's width grows with the logarithm of its size). Down: trace line (event index).</p>`);
  parts.push(`<div class="legend"><span><svg width="14" height="8"><rect class="map" width="14" height="4" y="2"/></svg> MAP</span><span><svg width="14" height="8"><rect class="unmap" width="14" height="4" y="2"/></svg> UNMAP / DEVIOTLB_UNMAP</span>`
    + `<span><svg width="12" height="12"><path class="violation" d="M2 2L10 10M2 10L10 2"/></svg> contract violation</span><span><svg width="12" height="12"><circle class="fault" cx="6" cy="6" r="4"/></svg> translation fault</span>`
    + `<span><svg width="14" height="8"><rect class="live" width="14" height="8"/></svg> mapping alive</span></div>`);
  parts.push(`<div>${(['map', 'unmap', 'violation', 'fault', 'live'] as const).map((k) => `<label><input type="checkbox" checked data-toggle="${k}"> ${k}</label>`).join(' ')} &nbsp; marks drawn: <span id="drawn">(counted by the page script)</span></div><div id="info"></div>`);
  const violating = new Set<string>(run.marks.filter((m) => m.kind === 'violation').map((m) => `${m.listener}\n${m.line}`));
  const byListener = new Map<string, Mark[]>();
  for (const m of run.marks) {
    let a = byListener.get(m.listener);
    if (a === undefined) byListener.set(m.listener, (a = []));
    a.push(m);
  }
  const allCounts = new Map<string, Record<MarkKind, number>>();
  for (const m of run.marks) {
    let c = allCounts.get(m.listener);
    if (c === undefined) allCounts.set(m.listener, (c = { map: 0, unmap: 0, violation: 0, fault: 0 }));
    c[m.kind]++;
  }
  if (run.listeners.length === 0) parts.push('<p>(no listener in this trace)</p>');
  for (const l of run.listeners) {
    parts.push(panel(l, byListener.get(l.id) ?? [], maxLine, allCounts.get(l.id) ?? { map: 0, unmap: 0, violation: 0, fault: 0 }, violating));
  }
  // Violations, then mismatches, in line order.
  parts.push(`<h2>Contract violations (${r.violationCount})</h2>`);
  if (r.violations.length > 0) {
    parts.push('<table><tr><th>line</th><th>rule</th><th>listener</th><th>entry</th><th>message</th></tr>');
    for (const v of r.violations) {
      const e = v.entry ? `${v.entry.type ?? ''} ${v.entry.iova}/${v.entry.mask} -> ${v.entry.translated} ${v.entry.perm}` : '';
      parts.push(`<tr><td class="n">${v.line}</td><td>${v.rule}</td><td>${esc(v.listener ?? '')}</td><td class="mono">${esc(e)}</td><td>${esc(v.message)}</td></tr>`);
    }
    parts.push('</table>');
    if (r.violations.length < r.violationCount) parts.push(`<p class="note">${r.violationCount - r.violations.length} more not listed.</p>`);
  }
  parts.push(`<h2>Mismatches (${r.mismatchCount})</h2>`);
  if (r.mismatches.length > 0) {
    parts.push('<table id="mismatches"><tr><th>line</th><th>op</th><th>message</th><th>expected</th><th>got</th></tr>');
    for (const m of r.mismatches) {
      parts.push(`<tr class="mismatch" data-line="${m.line}"><td class="n">${m.line}</td><td>${esc(m.op)}</td><td>${esc(m.message)}</td><td class="mono">${esc(clip(json(m.expected), 400))}</td><td class="mono">${esc(clip(json(m.got), 400))}</td></tr>`);
    }
    parts.push('</table>');
    if (r.mismatches.length < r.mismatchCount) parts.push(`<p class="note">${r.mismatchCount - r.mismatches.length} more not listed.</p>`);
  }
  parts.push(`<script>${JS}</script></body></html>\n`);
  return parts.join('\n');
}
