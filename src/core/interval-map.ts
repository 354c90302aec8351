/**
 * A listener's view: disjoint, naturally aligned power-of-two intervals of
 * 4 KiB page frames, each with a translated frame and a permission. Internal
 * to core (exported from this module for tests only).
 *
 * Why not a JS object per entry: a vfio-like listener can hold 10^6 entries,
 * and an object per entry costs 50-100 bytes plus GC pressure. This is a
 * B+tree whose leaves live in a pool of typed arrays (start frame and
 * translated frame as float64, size order and perm packed in one byte): 17
 * bytes per slot (about 20 bytes per entry in practice). Leaves split in
 * half, except an insert after the last entry of the map, which opens a new
 * leaf for it alone, so ascending inserts (the common case: a replay) fill
 * leaves completely; an insert just after a full leaf goes to the front of
 * the next leaf when that has room. A leaf is merged into its
 * neighbour when both fit in one, so deletions do not leave the pool sparse.
 *
 * Cost: O(log n) for insert, remove and seek; O(1) per step of ordered
 * iteration (leaves are linked).
 */

/**
 * Slots per leaf. Small leaves keep the shifts of an insert or remove short
 * (measured: 16 beats 32 and 64 on MAP/UNMAP pairs over a 10^5-entry view).
 */
export const LEAF = 16;
/**
 * Children per inner node before it splits. With the branch-free in-node
 * search a wider node is nearly free, and 128 keeps a 10^5-entry view at two
 * inner levels (measured: seek ~5% faster than 64; 256 no better).
 */
const FANOUT = 128;

/** 2^order for order 0..63 (entry sizes in frames: `POW2[meta >> 2]`). */
export const POW2: Float64Array = (() => {
  const t = new Float64Array(64);
  for (let i = 0; i < 64; i++) t[i] = 2 ** i;
  return t;
})();

/** log2 of a power of two 1 <= pages <= 2^53. */
export function orderOf(pages: number): number {
  if (pages <= 0x80000000) return 31 - Math.clz32(pages);
  return 31 + orderOf(pages / 0x80000000);
}

interface Inner {
  /** keys[i] <= every start in kids[i], > every start in kids[i-1]; keys[0] = -Infinity. */
  keys: number[];
  /** Leaf ids (at the lowest inner level) or inner nodes. */
  kids: Array<Inner | number>;
}

export class IntervalMap {
  /** Number of entries. */
  size = 0;
  /**
   * Bumped by every update (insert, remove, clear): a reader holding raw
   * positions (the sync merge) knows they are stale when it changed.
   */
  version = 0;

  // Leaf pool: leaf l owns slots [l * LEAF, (l + 1) * LEAF).
  private starts: Float64Array;
  private xlats: Float64Array;
  /** order << 2 | perm. */
  private metas: Uint8Array;
  private counts: Uint8Array;
  private nexts: Int32Array;
  private prevs: Int32Array;
  private leafCap: number;
  private leafTop = 0;
  private freeLeaves: number[] = [];

  private root: Inner | number;
  /** 0: the root is a leaf. */
  private height = 0;
  private pathN: Inner[] = [];
  private pathI: number[] = [];

  /** Leaf of the last seek (any live leaf is a safe hint: see seek). */
  private hint = 0;
  /** Where the last seek(k) would insert k: leaf and slot (for insertAfterSeek). */
  private seekLeaf = -1;
  private seekPos = 0;
  private seekKey = NaN;
  /** A saved cursor (mark / backToMark). */
  private markL = -1;
  private markI = 0;
  /** Cursor: leaf id (-1: invalid) and index in it. */
  private cl = -1;
  private ci = 0;

  /** Children per inner node before it splits (FANOUT; smaller only in tests, for deep trees at small sizes). */
  private readonly fanout: number;

  /**
   * `fanout` exists for tests: with a fanout of 3 or 4 a few hundred
   * entries build a tree as deep as 10^6 entries do with the default.
   */
  constructor(initialLeaves = 2, fanout = FANOUT) {
    if (!Number.isInteger(fanout) || fanout < 3) throw new RangeError(`IntervalMap: fanout must be an integer >= 3, not ${fanout}`);
    this.fanout = fanout;
    this.leafCap = Math.max(1, initialLeaves);
    this.starts = new Float64Array(this.leafCap * LEAF);
    this.xlats = new Float64Array(this.leafCap * LEAF);
    this.metas = new Uint8Array(this.leafCap * LEAF);
    this.counts = new Uint8Array(this.leafCap);
    this.nexts = new Int32Array(this.leafCap);
    this.prevs = new Int32Array(this.leafCap);
    this.root = this.allocLeaf();
  }

  /** Drops every entry. */
  clear(): void {
    this.version++;
    this.seekLeaf = -1;
    this.size = 0;
    this.leafTop = 0;
    this.freeLeaves.length = 0;
    this.height = 0;
    this.cl = -1;
    this.root = this.allocLeaf();
    // Every other leaf is free now, with stale counts: seek must not trust an old hint.
    this.hint = this.root;
  }

  // ---- cursor ------------------------------------------------------------

  /**
   * Moves the cursor to the first entry whose last frame is >= `pfn` (the
   * entry containing `pfn`, or else the next one). False when there is none.
   */
  seek(pfn: number): boolean {
    // The leaf of the previous seek holds pfn's floor entry when pfn lies
    // between its first and last start (MAP then UNMAP of one entry, walks).
    let lf = this.hint;
    let n = this.counts[lf]!;
    if (n === 0 || pfn < this.starts[lf * LEAF]! || pfn > this.starts[lf * LEAF + n - 1]!) {
      lf = this.leafFor(pfn);
      n = this.counts[lf]!;
      this.hint = lf;
    }
    const base = lf * LEAF;
    const idx = this.floorIn(base, n, pfn);
    this.seekLeaf = lf;
    this.seekPos = idx + 1;
    this.seekKey = pfn;
    if (idx >= 0) {
      if (this.endAt(base + idx) >= pfn) return this.setCursor(lf, idx);
      if (idx + 1 < n) return this.setCursor(lf, idx + 1);
      const nx = this.nexts[lf]!;
      return nx >= 0 ? this.setCursor(nx, 0) : this.setCursor(-1, 0);
    }
    // Every start of this leaf is above pfn: the floor entry, if any, is the
    // last one of the previous leaf (it may extend past this leaf's separator).
    const pv = this.prevs[lf]!;
    if (pv >= 0) {
      const pn = this.counts[pv]!;
      if (this.endAt(pv * LEAF + pn - 1) >= pfn) return this.setCursor(pv, pn - 1);
    }
    return n > 0 ? this.setCursor(lf, 0) : this.setCursor(-1, 0);
  }

  /** Moves the cursor to the first entry. False when the map is empty. */
  first(): boolean {
    return this.seek(0);
  }

  /** Advances the cursor; false when it moved past the last entry. */
  next(): boolean {
    if (this.cl < 0) return false;
    if (this.ci + 1 < this.counts[this.cl]!) {
      this.ci++;
      return true;
    }
    const nx = this.nexts[this.cl]!;
    return this.setCursor(nx, 0);
  }

  /** True while the cursor is on an entry. */
  get valid(): boolean {
    return this.cl >= 0;
  }
  /** First frame of the entry under the cursor. */
  get curStart(): number {
    return this.starts[this.cl * LEAF + this.ci]!;
  }
  /** Size in frames (a power of two). */
  get curPages(): number {
    return POW2[this.metas[this.cl * LEAF + this.ci]! >> 2]!;
  }
  /** Last frame (inclusive). */
  get curEnd(): number {
    return this.endAt(this.cl * LEAF + this.ci);
  }
  get curXlat(): number {
    return this.xlats[this.cl * LEAF + this.ci]!;
  }
  get curPerm(): number {
    return this.metas[this.cl * LEAF + this.ci]! & 3;
  }

  /** Removes the entry under the cursor; the cursor becomes invalid (seek again). */
  removeAtCursor(): void {
    if (this.cl < 0) throw new Error('IntervalMap: cursor is not on an entry');
    this.version++;
    this.seekLeaf = -1;
    const lf = this.cl;
    const base = lf * LEAF;
    const n = this.counts[lf]!;
    const starts = this.starts;
    const xlats = this.xlats;
    const metas = this.metas;
    const key = starts[base + this.ci]!;
    // Plain loops: shifts are short (< 64 slots) and a native copyWithin call costs more.
    for (let i = base + this.ci, e = base + n - 1; i < e; i++) {
      starts[i] = starts[i + 1]!;
      xlats[i] = xlats[i + 1]!;
      metas[i] = metas[i + 1]!;
    }
    this.counts[lf] = n - 1;
    this.size--;
    this.cl = -1;
    if (this.height === 0) return;
    if (n - 1 === 0) this.dropLeaf(lf, key);
    else if (n - 1 <= LEAF / 4) this.maybeMerge(lf, key);
  }

  // ---- updates -------------------------------------------------------------

  /**
   * Inserts [start, start + pages - 1] -> xlat with perm. The caller guarantees
   * it overlaps no entry (the notifier list checks C4 first) and that pages is
   * a power of two.
   */
  insert(start: number, pages: number, xlat: number, perm: number): void {
    this.version++;
    this.seekLeaf = -1;
    const meta = (orderOf(pages) << 2) | (perm & 3);
    const lf = this.descend(start);
    const base = lf * LEAF;
    const n = this.counts[lf]!;
    const pos = this.floorIn(base, n, start) + 1;
    this.size++;
    this.cl = -1;
    if (n < LEAF) {
      this.putAt(lf, n, pos, start, xlat, meta);
      return;
    }
    if (pos === LEAF) {
      // After the last entry of a full leaf: when the next leaf has room, the
      // entry goes to its front (a MAP/UNMAP pair there would otherwise open
      // and drop a leaf, with inner-node splices, every time).
      const nx = this.nexts[lf]!;
      if (nx >= 0 && this.counts[nx]! < LEAF && this.lowerSeparator(start)) {
        this.putAt(nx, this.counts[nx]!, 0, start, xlat, meta);
        return;
      }
    }
    // Full leaf: split. Appending after the last entry of the map opens a
    // leaf for the new entry alone, so ascending inserts (a replay) fill
    // leaves completely; elsewhere it splits in half, so a MAP/UNMAP pair
    // next to a full leaf does not open and drop a leaf every time.
    const alone = pos === LEAF && this.nexts[lf]! < 0;
    const nl = this.allocLeaf();
    const nb = nl * LEAF;
    const ob = lf * LEAF; // the pool may have grown: recompute
    const nx = this.nexts[lf]!;
    this.nexts[nl] = nx;
    this.prevs[nl] = lf;
    if (nx >= 0) this.prevs[nx] = nl;
    this.nexts[lf] = nl;
    if (alone) {
      this.starts[nb] = start;
      this.xlats[nb] = xlat;
      this.metas[nb] = meta;
      this.counts[nl] = 1;
    } else {
      const half = LEAF / 2;
      this.starts.copyWithin(nb, ob + half, ob + LEAF);
      this.xlats.copyWithin(nb, ob + half, ob + LEAF);
      this.metas.copyWithin(nb, ob + half, ob + LEAF);
      this.counts[nl] = LEAF - half;
      this.counts[lf] = half;
      if (pos <= half) this.putAt(lf, half, pos, start, xlat, meta);
      else this.putAt(nl, LEAF - half, pos - half, start, xlat, meta);
    }
    this.insertKid(this.height - 1, this.starts[nb]!, nl);
  }

  /**
   * insert(start, ...) right after seek(start) found no overlap, without a
   * second descent when the leaf has room. The map must not have changed since.
   */
  insertAfterSeek(start: number, pages: number, xlat: number, perm: number): void {
    const lf = this.seekLeaf;
    const n = lf >= 0 ? this.counts[lf]! : LEAF;
    if (start !== this.seekKey || n >= LEAF) {
      this.insert(start, pages, xlat, perm);
      return;
    }
    this.putAt(lf, n, this.seekPos, start, xlat, (orderOf(pages) << 2) | (perm & 3));
    this.version++;
    this.size++;
    this.cl = -1;
    this.seekLeaf = -1;
  }

  /** Saves the cursor position. */
  mark(): void {
    this.markL = this.cl;
    this.markI = this.ci;
  }

  /** Returns to the position saved by mark() (the map must not have changed since). */
  backToMark(): boolean {
    return this.setCursor(this.markL, this.markI);
  }

  /** Removes the entry starting at `start`; false if there is none. */
  remove(start: number): boolean {
    if (!this.seek(start) || this.curStart !== start) return false;
    this.removeAtCursor();
    return true;
  }

  /** Calls fn for each entry in ascending order. Do not modify the map meanwhile. */
  forEach(fn: (start: number, pages: number, xlat: number, perm: number) => void): void {
    for (let ok = this.first(); ok; ok = this.next()) fn(this.curStart, this.curPages, this.curXlat, this.curPerm);
  }

  // ---- raw access (the sync merge reads leaves without a call per entry) ----
  // Valid until the next update (see `version`). Leaf l's entries are the
  // slots [l * LEAF, l * LEAF + rawCounts[l]), in ascending start order;
  // rawNexts[l] is the next leaf (-1 after the last).

  /** Leaf of the cursor (-1: not on an entry). */
  get cursorLeaf(): number {
    return this.cl;
  }
  /** Index of the cursor in its leaf. */
  get cursorIndex(): number {
    return this.ci;
  }
  get rawStarts(): Float64Array {
    return this.starts;
  }
  get rawXlats(): Float64Array {
    return this.xlats;
  }
  /** `order << 2 | perm` per slot. */
  get rawMetas(): Uint8Array {
    return this.metas;
  }
  get rawCounts(): Uint8Array {
    return this.counts;
  }
  get rawNexts(): Int32Array {
    return this.nexts;
  }

  /** Approximate bytes held (typed-array pool + inner nodes), for the bench. */
  get bytes(): number {
    return this.leafCap * (LEAF * 17 + 9);
  }

  /**
   * Checks the tree's structural invariants and throws an Error naming the
   * first one broken (tests and fuzzers; O(n)): every leaf at depth
   * `height`; an inner root with at least two kids (a root with one kid is
   * a level that should have been collapsed, and the next removal under it
   * would walk off the path); inner nodes with matching, ascending keys
   * starting at -Infinity; each leaf non-empty (but a root leaf), its starts
   * ascending and inside its separators; the leaf chain in tree order;
   * entries aligned, power-of-two and disjoint; `size` and the leaf pool
   * (tree leaves + free leaves) accounted for.
   */
  validate(): void {
    const fail = (why: string): never => {
      throw new Error(`IntervalMap invariant: ${why}`);
    };
    const order: number[] = [];
    const visit = (node: Inner | number, depth: number, lo: number, hi: number): void => {
      if (depth === this.height) {
        if (typeof node !== 'number') fail(`an inner node at leaf depth ${depth}`);
        order.push(node as number);
        const n = this.counts[node as number]!;
        if (n > LEAF) fail(`leaf ${node as number} holds ${n} > ${LEAF} slots`);
        if (n === 0 && this.height > 0) fail(`empty leaf ${node as number} under an inner node`);
        for (let i = 0; i < n; i++) {
          const s = this.starts[(node as number) * LEAF + i]!;
          if (s < lo || s >= hi) fail(`start ${s} in leaf ${node as number} outside its separators [${lo}, ${hi})`);
        }
        return;
      }
      if (typeof node === 'number') fail(`leaf ${node} at depth ${depth} < height ${this.height}`);
      const inner = node as Inner;
      const k = inner.kids.length;
      if (k === 0 || inner.keys.length !== k) fail(`inner node at depth ${depth} with ${k} kids and ${inner.keys.length} keys`);
      if (depth === 0 && k < 2) fail(`inner root with ${k} kid(s)`);
      if (k > this.fanout) fail(`inner node at depth ${depth} with ${k} > ${this.fanout} kids`);
      if (inner.keys[0] !== -Infinity) fail(`inner node at depth ${depth}: keys[0] = ${inner.keys[0]!}, not -Infinity`);
      for (let i = 0; i < k; i++) {
        const klo = i === 0 ? lo : inner.keys[i]!;
        const khi = i + 1 < k ? inner.keys[i + 1]! : hi;
        if (klo < lo || khi > hi || !(klo < khi)) fail(`inner node at depth ${depth}: separators out of order at kid ${i}`);
        visit(inner.kids[i]!, depth + 1, klo, khi);
      }
    };
    visit(this.root, 0, -Infinity, Infinity);
    const seen = new Set<number>();
    let total = 0;
    let prevEnd = -1;
    for (let j = 0; j < order.length; j++) {
      const lf = order[j]!;
      if (seen.has(lf)) fail(`leaf ${lf} reached twice`);
      seen.add(lf);
      const want = j + 1 < order.length ? order[j + 1]! : -1;
      if (this.nexts[lf] !== want) fail(`leaf ${lf}: next ${this.nexts[lf]!}, tree order says ${want}`);
      if (this.prevs[lf] !== (j > 0 ? order[j - 1]! : -1)) fail(`leaf ${lf}: prev ${this.prevs[lf]!} disagrees with tree order`);
      const n = this.counts[lf]!;
      total += n;
      for (let i = 0; i < n; i++) {
        const slot = lf * LEAF + i;
        const s = this.starts[slot]!;
        const pages = POW2[this.metas[slot]! >> 2]!;
        if (!Number.isInteger(s) || s < 0 || s % pages !== 0) fail(`entry at ${s} (${pages} frames) is not aligned`);
        if (s <= prevEnd) fail(`entry at ${s} overlaps or precedes the entry ending at ${prevEnd}`);
        prevEnd = s + pages - 1;
      }
    }
    if (total !== this.size) fail(`size ${this.size}, leaves hold ${total}`);
    for (const f of this.freeLeaves) if (seen.has(f)) fail(`leaf ${f} is both free and in the tree`);
    if (new Set(this.freeLeaves).size !== this.freeLeaves.length) fail('a leaf is free twice');
    if (seen.size + this.freeLeaves.length !== this.leafTop) fail(`${seen.size} tree leaves + ${this.freeLeaves.length} free != ${this.leafTop} allocated`);
  }

  // ---- internals ----------------------------------------------------------

  private setCursor(lf: number, idx: number): boolean {
    this.cl = lf;
    this.ci = idx;
    return lf >= 0;
  }

  private endAt(slot: number): number {
    return this.starts[slot]! + POW2[this.metas[slot]! >> 2]! - 1;
  }

  /** Largest index in the leaf at `base` with start <= key, or -1. */
  private floorIn(base: number, n: number, key: number): number {
    const s = this.starts;
    let lo = 0;
    let hi = n - 1;
    // Fast path for ascending inserts and lookups near the end.
    if (n > 0 && s[base + hi]! <= key) return hi;
    while (lo <= hi) {
      const mid = (lo + hi) >> 1;
      if (s[base + mid]! <= key) lo = mid + 1;
      else hi = mid - 1;
    }
    return hi;
  }

  /** The leaf whose key range holds `key` (no path recorded). */
  private leafFor(key: number): number {
    let node = this.root;
    for (let h = this.height; h > 0; h--) {
      const inner = node as Inner;
      node = inner.kids[floorKey(inner.keys, key)]!;
    }
    return node as number;
  }

  /** Like leafFor, recording the path (pathN / pathI) for splits and removals. */
  private descend(key: number): number {
    let node = this.root;
    for (let d = 0; d < this.height; d++) {
      const inner = node as Inner;
      const i = floorKey(inner.keys, key);
      this.pathN[d] = inner;
      this.pathI[d] = i;
      node = inner.kids[i]!;
    }
    return node as number;
  }

  /**
   * After descend(key) reached the leaf before the one `key` should now
   * start: lowers the separator between the two (held by their deepest
   * common ancestor) to `key`. Keys stay valid: `key` is above every start of
   * the left leaf and below every start of the right one.
   */
  private lowerSeparator(key: number): boolean {
    for (let d = this.height - 1; d >= 0; d--) {
      const node = this.pathN[d]!;
      const at = this.pathI[d]! + 1;
      if (at < node.kids.length) {
        node.keys[at] = key;
        return true;
      }
    }
    return false;
  }

  private putAt(lf: number, n: number, pos: number, start: number, xlat: number, meta: number): void {
    const base = lf * LEAF;
    const starts = this.starts;
    const xlats = this.xlats;
    const metas = this.metas;
    for (let i = base + n, e = base + pos; i > e; i--) {
      starts[i] = starts[i - 1]!;
      xlats[i] = xlats[i - 1]!;
      metas[i] = metas[i - 1]!;
    }
    starts[base + pos] = start;
    xlats[base + pos] = xlat;
    metas[base + pos] = meta;
    this.counts[lf] = n + 1;
  }

  /** Inserts (sep, kid) right after pathI[d] in pathN[d]; d = -1 grows a new root. */
  private insertKid(d: number, sep: number, kid: Inner | number): void {
    if (d < 0) {
      this.root = { keys: [-Infinity, sep], kids: [this.root, kid] };
      this.height++;
      return;
    }
    const node = this.pathN[d]!;
    const at = this.pathI[d]! + 1;
    node.keys.splice(at, 0, sep);
    node.kids.splice(at, 0, kid);
    if (node.kids.length <= this.fanout) return;
    // Split the inner node; an insert at its end moves only the new kid.
    const cut = at === node.kids.length - 1 ? at : node.kids.length >> 1;
    const right: Inner = { keys: node.keys.splice(cut), kids: node.kids.splice(cut) };
    const up = right.keys[0]!;
    right.keys[0] = -Infinity;
    this.insertKid(d - 1, up, right);
  }

  private allocLeaf(): number {
    let lf = this.freeLeaves.pop();
    if (lf === undefined) {
      if (this.leafTop === this.leafCap) this.growPool();
      lf = this.leafTop++;
    }
    this.counts[lf] = 0;
    this.nexts[lf] = -1;
    this.prevs[lf] = -1;
    return lf;
  }

  private growPool(): void {
    const cap = this.leafCap * 2;
    const grow = <T extends Float64Array | Uint8Array | Int32Array>(a: T, n: number, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.starts = grow(this.starts, cap * LEAF, (n) => new Float64Array(n));
    this.xlats = grow(this.xlats, cap * LEAF, (n) => new Float64Array(n));
    this.metas = grow(this.metas, cap * LEAF, (n) => new Uint8Array(n));
    this.counts = grow(this.counts, cap, (n) => new Uint8Array(n));
    this.nexts = grow(this.nexts, cap, (n) => new Int32Array(n));
    this.prevs = grow(this.prevs, cap, (n) => new Int32Array(n));
    this.leafCap = cap;
  }

  private unlinkLeaf(lf: number): void {
    const nx = this.nexts[lf]!;
    const pv = this.prevs[lf]!;
    if (pv >= 0) this.nexts[pv] = nx;
    if (nx >= 0) this.prevs[nx] = pv;
    this.freeLeaves.push(lf);
  }

  /** Removes the empty leaf `lf` (reached by `key`) from the tree. */
  private dropLeaf(lf: number, key: number): void {
    this.descend(key);
    this.unlinkLeaf(lf);
    this.removeKid(this.height - 1);
  }

  /** Removes kid pathI[d] of pathN[d], and the node itself when it becomes empty. */
  private removeKid(d: number): void {
    const node = this.pathN[d]!;
    const at = this.pathI[d]!;
    node.keys.splice(at, 1);
    node.kids.splice(at, 1);
    if (at === 0 && node.keys.length > 0) node.keys[0] = -Infinity;
    if (node.kids.length === 0) {
      // Only a non-root node can become empty (an inner root keeps >= 2 kids).
      this.removeKid(d - 1);
      return;
    }
    if (d === 0 && node.kids.length === 1) this.collapseRoot();
  }

  /**
   * Keeps the invariant that an inner root has at least two kids, which is
   * what stops removeKid's climb at depth 0. Inner nodes are never merged, so
   * a non-root node may hold a single kid (the right half of a split at the
   * end of a node takes the new kid alone; removals thin nodes out). When
   * the root is left with one kid that itself has one kid, dropping a single
   * level (as this code once did) left a one-kid root: the removal of that
   * subtree's last leaf then emptied the root and climbed to pathN[-1] (the
   * TypeError of issue 13 item 10, after a sync inserted 261 632 entries in
   * the middle of a view and unmapAll swept them out). Drop every such level.
   */
  private collapseRoot(): void {
    while (this.height > 0) {
      const root = this.root as Inner;
      if (root.kids.length !== 1) return;
      this.root = root.kids[0]!;
      this.height--;
    }
  }

  /** Merges an underfull leaf into its right sibling (or that into it) when they fit in one leaf. */
  private maybeMerge(lf: number, key: number): void {
    this.descend(key);
    const d = this.height - 1;
    const parent = this.pathN[d]!;
    const at = this.pathI[d]!;
    // Merge with the right sibling under the same parent, else the left one.
    let left: number;
    let right: number;
    if (at + 1 < parent.kids.length) {
      left = lf;
      right = parent.kids[at + 1] as number;
      this.pathI[d] = at + 1;
    } else if (at > 0) {
      left = parent.kids[at - 1] as number;
      right = lf;
    } else return;
    const ln = this.counts[left]!;
    const rn = this.counts[right]!;
    if (ln + rn > (LEAF * 3) / 4) return;
    const lb = left * LEAF;
    const rb = right * LEAF;
    this.starts.copyWithin(lb + ln, rb, rb + rn);
    this.xlats.copyWithin(lb + ln, rb, rb + rn);
    this.metas.copyWithin(lb + ln, rb, rb + rn);
    this.counts[left] = ln + rn;
    this.counts[right] = 0;
    this.unlinkLeaf(right);
    // pathI[d] points at `right`'s slot in the parent.
    this.removeKid(d);
  }
}

/**
 * Largest i with keys[i] <= key (keys[0] is -Infinity). Branch-free: a
 * random lookup mispredicts half the branches of a classic binary search;
 * adding `(keys[m] <= key) * half` (a boolean is 0 or 1) compiles to a
 * compare and a multiply (measured, with FANOUT 128: random seek at 10^5
 * entries 147 -> 108 ns). Leaves keep a classic search: 16 slots, an
 * end-of-leaf fast path, and neighbouring lookups predict well there.
 */
function floorKey(keys: number[], key: number): number {
  let n = keys.length;
  // Ascending inserts (a replay) land after the last key: no search.
  if (keys[n - 1]! <= key) return n - 1;
  let i = 0;
  while (n > 1) {
    const half = n >>> 1;
    i += ((keys[i + half]! <= key) as unknown as number) * half;
    n -= half;
  }
  return i;
}
