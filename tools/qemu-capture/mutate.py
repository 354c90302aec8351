#!/usr/bin/env python3
"""Seeded random mutations of an intel-vtd reference trace, for differential testing against QEMU 7.2.

    python3 tools/qemu-capture/mutate.py IN.jsonl OUT.jsonl --seed N [--count K] [--kinds pte,ctx,...]

Reads a trace-v1 file (e.g. fixtures/qemu-vtd/*.jsonl), drops every expectation (expect fields and
msi.expect lines; capture.py refills them from QEMU) and applies K (default 1-3) random mutations,
chosen with random.Random(seed). The header's `source` names the input, seed and mutations, so
a capture is reproducible. Mutations stay inside what keeps QEMU 7.2 alive and capture.py able
to drive it (README.md of this folder):

  pte   flip/set one bit of an 8-byte page-table entry (R, W, PS, reserved 3..6/8..11, 52..63,
        address bits at/above the configured AW)
  root  flip one bit of a root entry (P, reserved, CTP above AW)
  ctx   flip one bit of a context entry (P, FPD, TT, reserved, AW, DID, SLPTPTR above AW);
        scalable-mode context entries: P, FPD, DTE/PASIDE/PRE, PDTS, reserved, high bits
  pasid flip one bit of a PASID directory/table entry (P, FPD, AW, PGTT, reserved, DID, SLPTPTR)
  dma   move a non-staging DMA's iova within its page or to a neighbour page, or shorten it
        (length stays <= 0xfff and inside the edu buffer rules capture.py follows)
  desc  change an invalidation descriptor: granularity, DID, SID, FM, AM, IH, DR/DW, address,
        wait flags (never SW and IF together: QEMU 7.2 asserts in vtd_process_wait_desc),
        one reserved bit
  reg   change the value of a 4-byte (or 64-bit-register 8-byte) mmio.write; sizes never change
        (8-byte writes to 32-bit-only registers assert in QEMU 7.2)
  repeat another DMA (read + conditional write-back, or write of staged bytes) to the page of an
        earlier DMA: exercises QEMU's IOTLB-hit path after remaps/permission mutations
  slot  write a table entry a few slots (entry sizes) away from where it belongs
  order drop an invalidation descriptor write / swap two adjacent table-entry writes / drop an
        IQT or invalidation register write

Scratch/pattern identity maps (note "(scratch/pattern)") and write-back DMAs are left alone so
the capture can still reveal read data; a mutation can still make a capture impossible (e.g. a
staging read that now faults): capture.py then fails and the variant is discarded.
"""
import argparse
import json
import random
import sys

KINDS = ["pte", "root", "ctx", "pasid", "dma", "desc", "reg", "order", "repeat", "slot"]
REG64 = {0x20, 0x28, 0x80, 0x88, 0x90, 0xF0, 0xF8, 0x220, 0x228}


def le_int(hexdata):
    return int.from_bytes(bytes.fromhex(hexdata), "little")


def le_hex(v, n):
    return (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little").hex()


class Mutator:
    def __init__(self, header, events, rng):
        self.h = header
        self.ev = events
        self.r = rng
        cfg = header.get("config", {})
        self.aw = cfg.get("awBits", 39)
        self.sm = bool(cfg.get("scalableMode"))
        self.done = []
        self.queue = self._queue_ranges()

    def _queue_ranges(self):
        """gpa ranges of invalidation queues (IQA writes), to recognise descriptor writes."""
        out = []
        for e in self.ev:
            if e.get("op") == "mmio.write" and int(e["reg"], 16) == 0x90 and int(e["size"]) == 8:
                v = int(e["value"], 16)
                base = v & ~0xFFF & ((1 << 64) - 1)
                out.append((base, base + (0x1000 << (v & 7))))
        return out

    def _in_queue(self, gpa):
        return any(b <= gpa < t for b, t in self.queue)

    def _writes(self, pred):
        return [i for i, e in enumerate(self.ev) if e.get("op") == "mem.write" and pred(e)]

    def _flip(self, i, bit, why):
        e = self.ev[i]
        n = len(e["data"]) // 2
        v = le_int(e["data"]) ^ (1 << bit)
        e["data"] = le_hex(v, n)
        self.done.append("%s: line %d bit %d" % (why, i + 2, bit))

    # ---- kinds
    def pte(self):
        c = self._writes(lambda e: len(e["data"]) == 16 and not self._in_queue(int(e["gpa"], 16))
                         and "scratch" not in e.get("note", "") and "pattern" not in e.get("note", "")
                         and "PASID directory" not in e.get("note", ""))
        if not c:
            return False
        i = self.r.choice(c)
        bit = self.r.choice([0, 0, 1, 1, 7, 7, 3, 4, 5, 6, 8, 9, 10, 11, 52, 55, 60, 62, 63,
                             self.aw, self.aw + 1, 47, 51, self.r.randrange(12, 52)])
        self._flip(i, bit, "pte")
        return True

    def root(self):
        c = self._writes(lambda e: "root entry" in e.get("note", ""))
        if not c:
            return False
        i = self.r.choice(c)
        bits = [0, 0, 1, 5, 11, 64, 65, 75, self.aw, self.aw + 2, 63, 127]
        self._flip(i, self.r.choice(bits), "root")
        return True

    def ctx(self):
        c = self._writes(lambda e: "context entry" in e.get("note", "") and len(e["data"]) in (32, 64)
                         or (e.get("note", "") in ("valid context entry again", "valid context again",
                                                  "multi-level translation again", "FPD clear again",
                                                  "pass-through context (identity)")))
        c = [i for i in c if not self._in_queue(int(self.ev[i]["gpa"], 16))]
        if not c:
            return False
        i = self.r.choice(c)
        if len(self.ev[i]["data"]) == 64:   # scalable-mode context entry (256-bit)
            bits = [0, 0, 1, 2, 3, 4, 5, 9, 10, 11, self.aw, 63, 64, 65, 66, 67, 70, 100, 127, 128, 200]
        else:
            bits = [0, 0, 1, 1, 2, 3, 2, 3, 4, 7, 11, self.aw, 63, 64, 65, 66, 64, 65, 66, 67, 70,
                    72, 73, 80, 87, 88, 100, 127]
        self._flip(i, self.r.choice(bits), "ctx")
        return True

    def pasid(self):
        c = self._writes(lambda e: "PASID" in e.get("note", "") and not self._in_queue(int(e["gpa"], 16)))
        if not c:
            return False
        i = self.r.choice(c)
        if len(self.ev[i]["data"]) == 16:   # directory entry
            bits = [0, 0, 1, 5, 11, self.aw, 63]
        else:
            # qword0: P(0) FPD(1) AW(4:2) PGTT(8:6) SLPTPTR(63:12); qword1: DID(79:64) ...
            bits = [0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, self.aw, 63, 64, 70, 79, 80, 88, 90,
                    95, 96, 127, 128, 150, 192, 255]
        self._flip(i, self.r.choice(bits), "pasid")
        return True

    def dma(self):
        c = [i for i, e in enumerate(self.ev) if e.get("op") in ("dma.read", "dma.write")
             and "scratch page" not in e.get("note", "") and not e.get("writeback")
             and int(e["iova"], 16) not in (0x122000, 0x123000)
             and not (e["op"] == "dma.write" and int(e["iova"], 16) in (0x120000, 0x121000))]
        if not c:
            return False
        i = self.r.choice(c)
        e = self.ev[i]
        iova = int(e["iova"], 16)
        n = int(e["len"]) if e["op"] == "dma.read" else len(e["data"]) // 2
        how = self.r.choice(["shift", "page", "len", "cross", "sid"])
        if how == "shift":
            iova = (iova & ~0xFFF) | self.r.randrange(0, 0x1000)
        elif how == "page":
            iova += self.r.choice([-0x1000, 0x1000, 0x200000, -0x200000, 0x40000000])
            iova = max(iova, 0)
        elif how == "cross":
            iova = (iova & ~0xFFF) + 0x1000 - self.r.randrange(1, max(2, min(n, 0x100)))
        elif how == "sid":
            e["sid"] = "0x28" if e["sid"] == "0x20" else "0x20"
        else:
            n = self.r.randrange(1, n + 1)
        if e["op"] == "dma.read":
            e["len"] = min(n, 0x7FE)
        else:
            e["data"] = e["data"][:2 * n]
        e["iova"] = "0x%x" % iova
        self.done.append("dma %s: line %d -> iova 0x%x len %d" % (how, i + 2, iova, n))
        return True

    def repeat(self):
        """Issue another DMA to a page a DMA just used (an IOTLB hit in QEMU): a read (with a
        conditional write-back revealing its data) or a write of bytes a staging write sent."""
        c = [i for i, e in enumerate(self.ev) if e.get("op") in ("dma.read", "dma.write")
             and "scratch page" not in e.get("note", "") and not e.get("writeback")
             and int(e["iova"], 16) not in (0x122000, 0x123000, 0x120000, 0x121000)]
        if not c:
            return False
        i = self.r.choice(c)
        e = self.ev[i]
        sid = e["sid"]
        wbs = [x for x in self.ev if x.get("op") == "dma.write" and x.get("sid") == sid
               and "scratch page" in x.get("note", "")]
        srcs = [x for x in self.ev[:i] if x.get("op") == "dma.write" and x.get("sid") == sid
                and int(x["iova"], 16) in (0x120000, 0x121000) and "scratch page" not in x.get("note", "")]
        j = i + 1
        while j < len(self.ev) and self.ev[j].get("op") == "dma.write" and "scratch page" in self.ev[j].get("note", ""):
            j += 1
        iova = (int(e["iova"], 16) & ~0xFFF) | self.r.randrange(0, 0xF00)
        if (self.r.random() < 0.5 or not srcs) and wbs:
            n = self.r.randrange(1, 0x100)
            new = [{"op": "dma.read", "sid": sid, "iova": "0x%x" % iova, "len": n},
                   {"op": "dma.write", "sid": sid, "iova": wbs[0]["iova"], "writeback": "if-ok",
                    "note": "repeat: write-back if the read did not fault"}]
            what = "read"
        elif srcs:
            d = srcs[-1]["data"]
            k = self.r.randrange(1, min(len(d) // 2, 0xF00 - (iova & 0xFFF)) + 1)
            new = [{"op": "dma.write", "sid": sid, "iova": "0x%x" % iova, "data": d[:2 * k]}]
            what = "write"
        else:
            return False
        self.ev[j:j] = new
        self.done.append("repeat %s: after line %d at 0x%x" % (what, j + 1, iova))
        return True

    def slot(self):
        """Write a table entry (PTE, root, context, PASID) one or a few slots away from where it belongs."""
        c = self._writes(lambda e: not self._in_queue(int(e["gpa"], 16)) and len(e["data"]) in (16, 32, 64, 128)
                         and "scratch" not in e.get("note", "") and "pattern" not in e.get("note", "") and ("entry" in e.get("note", "") or "map" in e.get("note", "")))
        if not c:
            return False
        i = self.r.choice(c)
        e = self.ev[i]
        n = len(e["data"]) // 2
        d = n * self.r.choice([1, -1, 2, 8, 0x10, -0x10, 0x40])
        gpa = max(int(e["gpa"], 16) + d, 0)
        e["gpa"] = "0x%x" % gpa
        self.done.append("slot: line %d -> gpa 0x%x" % (i + 2, gpa))
        return True

    def desc(self):
        c = self._writes(lambda e: self._in_queue(int(e["gpa"], 16)) and len(e["data"]) in (32, 64))
        if not c:
            return False
        i = self.r.choice(c)
        e = self.ev[i]
        n = len(e["data"]) // 2
        v = le_int(e["data"])
        typ = v & 0xF
        lo, hi = v & ((1 << 64) - 1), (v >> 64) & ((1 << 64) - 1)
        rest = v >> 128
        what = ""
        if typ == 1:     # context-cache: G(5:4) DID(31:16) SID(47:32) FM(49:48)
            f = self.r.choice(["g", "did", "sid", "fm", "rsvd"])
            if f == "g":
                lo = (lo & ~0x30) | (self.r.randrange(4) << 4)
            elif f == "did":
                lo = (lo & ~(0xFFFF << 16)) | (self.r.choice([0, 1, 2, 3, 0xFFFF, self.r.randrange(1 << 16)]) << 16)
            elif f == "sid":
                lo = (lo & ~(0xFFFF << 32)) | (self.r.choice([0x20, 0x28, 0x21, 0x0, 0x100, 0x27]) << 32)
            elif f == "fm":
                lo = (lo & ~(3 << 48)) | (self.r.randrange(4) << 48)
            else:
                b = self.r.choice([6, 7, 8, 12, 15, 50, 63, 64, 100, 127])
                if b < 64:
                    lo ^= 1 << b
                else:
                    hi ^= 1 << (b - 64)
            what = "cc " + f
        elif typ == 2:   # IOTLB: G(5:4) DW(6) DR(7) DID(31:16); hi: AM(5:0) IH(6) ADDR(63:12)
            f = self.r.choice(["g", "did", "am", "am", "ih", "drdw", "addr", "addr", "rsvd"])
            if f == "g":
                lo = (lo & ~0x30) | (self.r.randrange(4) << 4)
            elif f == "did":
                lo = (lo & ~(0xFFFF << 16)) | (self.r.choice([0, 1, 2, 3, 0xFFFF, self.r.randrange(1 << 16)]) << 16)
            elif f == "am":
                hi = (hi & ~0x3F) | self.r.choice([0, 1, 2, 8, 9, 10, 17, 18, 19, 30, 63, self.r.randrange(64)])
            elif f == "ih":
                hi ^= 1 << 6
            elif f == "drdw":
                lo ^= 1 << self.r.choice([6, 7])
            elif f == "addr":
                hi = (hi & 0xFFF) | ((hi & ~0xFFF) + self.r.choice([0x1000, -0x1000, 0x100000, 0x200000, 0x40000000])) & ~0xFFF
                if self.r.random() < 0.3:
                    hi |= self.r.choice([1 << 8, 1 << 11, 1 << 63, 1 << self.aw])
            else:
                b = self.r.choice([8, 9, 12, 15, 32, 48, 63, 64 + 7, 64 + 8, 64 + 11])
                if b < 64:
                    lo ^= 1 << b
                else:
                    hi ^= 1 << (b - 64)
            hi &= (1 << 64) - 1
            what = "iotlb " + f
        elif typ == 5:   # wait: IF(4) SW(5) FN(6); never SW and IF together
            f = self.r.choice(["if", "sw", "fn", "rsvd", "none"])
            lo &= ~0x30
            if f == "if":
                lo |= 0x10
            elif f == "sw":
                lo |= 0x20
            elif f == "fn":
                lo |= 0x20 | 0x40
            elif f == "rsvd":
                lo |= 0x20
                lo ^= 1 << self.r.choice([7, 8, 12, 31])
            what = "wait " + f
        else:
            lo = (lo & ~0xF) | self.r.choice([1, 2, 3, 4, 6, 7, 8, 0])
            what = "type"
        v = lo | (hi << 64) | (rest << 128)
        e["data"] = le_hex(v, n)
        self.done.append("desc %s: line %d" % (what, i + 2))
        return True

    def reg(self):
        c = [i for i, e in enumerate(self.ev) if e.get("op") == "mmio.write"
             and (int(e["size"]) == 4 or (int(e["size"]) == 8 and int(e["reg"], 16) in REG64))]
        if not c:
            return False
        i = self.r.choice(c)
        e = self.ev[i]
        size = int(e["size"])
        reg = int(e["reg"], 16)
        v = int(e["value"], 16)
        if reg == 0x18:    # GCMD: toggle one command bit (TE 31, SRTP 30, QIE 26, WBF 27; SIRTP/IRE/CFI harmless)
            v ^= 1 << self.r.choice([31, 30, 26, 26, 31, 27, 23, 25, 24])
        elif reg == 0x90 and self.r.random() < 0.7:   # IQA: QS 0..7, DW (bit 11), low reserved bits
            v = (v & ~0xFFF) | self.r.choice([v & 0xFFF, 1, 2, 7, 0x800, 0x801, 0x10, 0x400])
        elif reg == 0x88 and self.r.random() < 0.7:   # IQT: off by one descriptor, bit 4 (256-bit), past the queue
            v = self.r.choice([v + 0x10, max(v - 0x10, 0), v | 0x10, v + 0x20, 0x1000, 0x10000, v | 1, v | (1 << 40)])
        elif reg in (0xF8, 0xF0, 0x28) and self.r.random() < 0.7:   # IOTLB/IVA/CCMD fields
            v ^= 1 << self.r.choice(list(range(0, 7)) + list(range(32, 64)))
        else:
            v ^= 1 << self.r.randrange(8 * size)
        v &= (1 << (8 * size)) - 1   # the value must fit the access size (4-byte halves of 64-bit registers)
        e["value"] = "0x%x" % v
        self.done.append("reg 0x%x: line %d -> 0x%x" % (reg, i + 2, v))
        return True

    def order(self):
        how = self.r.choice(["drop-desc", "swap", "drop-iqt"])
        if how == "drop-desc":
            c = self._writes(lambda e: self._in_queue(int(e["gpa"], 16)) and le_int(e["data"]) & 0xF in (1, 2))
            if not c:
                return False
            i = self.r.choice(c)
            e = self.ev[i]
            n = len(e["data"]) // 2
            # replace by a wait descriptor with SW to an unused address (keeps the queue shape)
            e["data"] = le_hex(0x25 | (0x1000 << 64) | (0xdead << 32), n)
            e["note"] = "dropped invalidation (mutated into a wait)"
        elif how == "swap":
            c = [i for i in range(len(self.ev) - 1) if self.ev[i].get("op") == "mem.write"
                 and self.ev[i + 1].get("op") == "mem.write"
                 and not self._in_queue(int(self.ev[i]["gpa"], 16))]
            if not c:
                return False
            i = self.r.choice(c)
            self.ev[i], self.ev[i + 1] = self.ev[i + 1], self.ev[i]
        else:
            c = [i for i, e in enumerate(self.ev) if e.get("op") == "mmio.write"
                 and int(e["reg"], 16) in (0x88, 0xF8, 0x28)]
            if not c:
                return False
            i = self.r.choice(c)
            del self.ev[i]
        self.done.append("order %s: line %d" % (how, i + 2))
        return True


def strip(events):
    out = []
    for e in events:
        if e.get("op") == "msi.expect":
            continue
        e = dict(e)
        if e.get("op") in ("dma.read", "mmio.read"):
            e.pop("expect", None)
        elif e.get("op") == "dma.write":
            e.pop("expect", None)
            if "scratch page" in e.get("note", ""):
                e.pop("data", None)   # refilled from QEMU by the write-back
        out.append(e)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--seed", type=int, required=True)
    ap.add_argument("--count", type=int, default=0, help="mutations (default: 1-3 at random)")
    ap.add_argument("--kinds", default=",".join(KINDS))
    a = ap.parse_args()
    with open(a.input) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    header, events = lines[0], strip(lines[1:])
    r = random.Random(a.seed)
    m = Mutator(header, events, r)
    kinds = [k for k in a.kinds.split(",") if k]
    want = a.count or r.randint(1, 3)
    tries = 0
    while len(m.done) < want and tries < 50:
        tries += 1
        getattr(m, r.choice(kinds))()
    if not m.done:
        print("no applicable mutation", file=sys.stderr)
        return 1
    header = dict(header)
    header["source"] = "mutated from %s (seed %d): %s" % (a.input.split("/")[-1], a.seed, "; ".join(m.done))
    with open(a.output, "w") as f:
        f.write(json.dumps(header, separators=(",", ":")) + "\n")
        for e in m.ev:
            f.write(json.dumps(e, separators=(",", ":")) + "\n")
    print(header["source"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
