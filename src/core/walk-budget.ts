/**
 * Bounded work per guest action, for every model whose notifier syncs walk
 * guest page tables (contract C9 asks for a sync after every invalidation; a
 * hostile guest must not turn one MMIO write into unbounded work: issue 13
 * item 11). Model-neutral: a model sizes the bounds (VT-d:
 * VTD_SYNC_WALK_BUDGET / VTD_SYNC_LEAF_BUDGET) and its walker charges the
 * work it does; the per-action scope that resets the session and reports an
 * abandoned sync (`syncIncomplete`) is GuestActions in address-spaces.ts.
 *
 * The memo is the hook that makes loops and aliasing in radix page tables
 * cost O(distinct tables): a walker keys each table by (address, level, the
 * permission its parents let through) and keeps its decoded valid entries,
 * whatever the table format (VT-d second level: src/models/intel-vtd/translation.ts).
 */

/**
 * A walk passed its work or leaf bound (thrown by a model's walker before
 * reading the table or reporting the leaf that would pass it). Never escapes
 * a guest operation: the address space's error boundary abandons that sync.
 */
export class WalkLimitError extends Error {
  override readonly name = 'WalkLimitError';
}

/** Overrides of the work bound of one guest action (tests of hostile guests use small ones). */
export interface SyncLimits {
  /** Table entries one guest action may read (default: the model's walk budget). */
  syncWalkBudget?: number;
  /** Leaves one guest action may report to the notifier lists (default: the model's leaf budget). */
  syncLeafBudget?: number;
}

/** A work-bound option: a number >= 0 (Infinity allowed), else a RangeError naming the model and the option. */
export function budgetOption(model: string, name: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !(value >= 0)) throw new RangeError(`${model}: limits.${name} must be a number >= 0 (got ${String(value)})`);
  return value;
}

/**
 * Memo bounds, so that a hostile action's memo stays small (about 13 MB of
 * index and 32 MB of decoded entries at most): 2^18 tables is 1 GiB of page
 * tables, five times what a 10^6-page domain scattered in 64-page runs uses;
 * past either bound tables are walked from guest memory, unmemoised (the
 * work bound still holds).
 */
const MEMO_MAX_TABLES = 2 ** 18;
const MEMO_MAX_POOL = 2 ** 22;

/**
 * The work one guest action (an MMIO write, a notifier registration) may
 * spend on page-table walks, shared by every walk of that action (every
 * sync of every address space, every descriptor of a queue), and what those
 * walks learnt of the tables meanwhile (issue 13 item 11).
 *
 * Bounds: `workBudget` counts table entries read from guest memory, entries
 * visited in memoised tables and one unit per skipped empty subtree;
 * `leafBudget` counts leaves reported to the notifier lists. A walk that
 * would pass either throws `WalkLimitError` (before reading the table or
 * reporting the leaf that would pass it) and marks the session exhausted.
 *
 * Memo (loops and aliasing cost O(distinct tables), not O(paths)): a table
 * is known by (address, level, the permission its parents let through).
 * The first visit scans it from guest memory; the second full visit decodes
 * its valid entries once into `pool`, and later visits iterate them (at the
 * new IOVA base: the same table reached through another slot maps other
 * IOVAs). A full visit also records how many leaves the subtree holds, so a
 * subtree known empty costs one unit and a known large one is refused before
 * it is walked. Walks of address spaces that share a domain's tables hit the
 * same memo, so the tables are read once per action, not once per space.
 *
 * The memo assumes the tables do not change during one action except
 * through the model itself, which calls `forget()` when it writes guest
 * memory (VT-d: a wait descriptor's status write).
 *
 * Memo layout, for the walker: `node(key)` gives a table's slot; per slot
 * `count` (leaves of its whole subtree, -1 unknown), `seen` (1 once
 * visited), [`start`, `end`) of its decoded entries in `pool`, two numbers
 * per entry whose meaning the walker chooses (VT-d: slot << 3 | leaf << 2 |
 * perm, then the frame or next table).
 */
export class WalkSession {
  /** Work spent so far in this action. */
  work = 0;
  /** Leaves reported so far in this action. */
  leaves = 0;
  /** A walk of this action went over a bound: later syncs of the action are not attempted. */
  exhausted = false;

  // Memo index: open addressing over table keys (a Map keyed by doubles
  // above 2^31 allocates per entry); a slot is in use when its stamp is `gen`.
  private keys = new Float64Array(1024);
  private ids = new Int32Array(1024);
  private stamps = new Uint32Array(1024);
  private gen = 1;
  private nodes = 0;
  /** Per memoised table: leaves of its whole subtree (-1: not yet walked whole). */
  count = new Float64Array(256);
  /** Per memoised table: 1 once visited. */
  seen = new Uint8Array(256);
  /** Per memoised table: [start, end) of its decoded entries in `pool` (start -1: not decoded). */
  start = new Int32Array(256);
  end = new Int32Array(256);
  /** Decoded valid entries, two numbers each: slot << 3 | leaf << 2 | perm, then xlatPfn (leaf) or next table address. */
  pool = new Float64Array(1024);
  poolLen = 0;

  constructor(public workBudget: number, public leafBudget = Infinity) {}

  /** Starts a new action: nothing spent, nothing known; memory a large action took is given back. */
  reset(workBudget = this.workBudget, leafBudget = this.leafBudget): void {
    this.workBudget = workBudget;
    this.leafBudget = leafBudget;
    this.work = this.leaves = 0;
    this.exhausted = false;
    this.forget();
    if (this.keys.length > 1 << 17) {
      this.keys = new Float64Array(1024);
      this.ids = new Int32Array(1024);
      this.stamps = new Uint32Array(1024);
      this.count = new Float64Array(256);
      this.seen = new Uint8Array(256);
      this.start = new Int32Array(256);
      this.end = new Int32Array(256);
    }
  }

  /** Drops the memo (the tables may have changed); the work spent stays spent. */
  forget(): void {
    this.gen = (this.gen + 1) >>> 0;
    if (this.gen === 0) {
      this.stamps.fill(0);
      this.gen = 1;
    }
    this.nodes = 0;
    this.poolLen = 0;
    if (this.pool.length > 1 << 16) this.pool = new Float64Array(1024);
  }

  /** The memo slot of table `key`, created unseen; -1 when the memo is full (walk it unmemoised). */
  node(key: number): number {
    const mask = this.keys.length - 1;
    let h = hashKey(key) & mask;
    while (this.stamps[h] === this.gen) {
      if (this.keys[h] === key) return this.ids[h]!;
      h = (h + 1) & mask;
    }
    if (this.nodes >= MEMO_MAX_TABLES) return -1;
    const id = this.nodes++;
    if (id === this.count.length) {
      this.count = grow(this.count, id * 2);
      this.seen = grow(this.seen, id * 2);
      this.start = grow(this.start, id * 2);
      this.end = grow(this.end, id * 2);
    }
    this.count[id] = -1;
    this.seen[id] = 0;
    this.start[id] = -1;
    this.keys[h] = key;
    this.ids[h] = id;
    this.stamps[h] = this.gen;
    if (this.nodes * 2 > this.keys.length) this.rehash();
    return id;
  }

  /** Doubles the index (load factor <= 1/2). */
  private rehash(): void {
    const { keys, ids, stamps, gen } = this;
    const n = keys.length * 2;
    this.keys = new Float64Array(n);
    this.ids = new Int32Array(n);
    this.stamps = new Uint32Array(n);
    this.gen = 1;
    for (let i = 0; i < keys.length; i++) {
      if (stamps[i] !== gen) continue;
      let h = hashKey(keys[i]!) & (n - 1);
      while (this.stamps[h] === 1) h = (h + 1) & (n - 1);
      this.keys[h] = keys[i]!;
      this.ids[h] = ids[i]!;
      this.stamps[h] = 1;
    }
  }

  /** Whether 512 more decoded entries fit the memo. */
  get poolRoom(): boolean {
    return this.poolLen + 1024 <= MEMO_MAX_POOL;
  }

  /** Appends one decoded entry. */
  push(tag: number, value: number): void {
    if (this.poolLen + 2 > this.pool.length) this.pool = grow(this.pool, this.pool.length * 2);
    this.pool[this.poolLen++] = tag;
    this.pool[this.poolLen++] = value;
  }
}

/** Hash of a memo key: an exact non-negative number (VT-d: table address * 16 + level * 4 + perm, below 2^56). */
function hashKey(key: number): number {
  const lo = key >>> 0;
  const hi = (key / 4294967296) >>> 0;
  const h = Math.imul(lo ^ Math.imul(hi, 0x85ebca77), 0x9e3779b1);
  return (h ^ (h >>> 15)) >>> 0;
}

function grow<T extends Float64Array | Int32Array | Uint8Array>(a: T, n: number): T {
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}

