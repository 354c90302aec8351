#!/usr/bin/env python3
"""Generate intel-vtd trace-v1 *inputs* (events without expectations) for capture.py.

    python3 tools/qemu-capture/gen.py OUTDIR [--seed N] [--only NAME,...]

Each scenario is a variant of a family in fixtures/qemu-vtd/MANIFEST.md with its own seed
and parameters. The layout follows the reference captures: root table 0x100000, context
table 0x101000, invalidation queue 0x110000, scratch pages 0x120000 (sid 0x20) /
0x121000 (sid 0x28) and pattern pages 0x122000 / 0x123000, identity-mapped for each sid,
page tables from 0x200000. Inputs that crash QEMU 7.2 (wait descriptor with SW and IF
together; 8-byte writes to 32-bit registers) are never generated.
"""
import argparse
import json
import os
import random

SIDS = (0x20, 0x28)
SCRATCH = {0x20: 0x120000, 0x28: 0x121000}
PATTERN = {0x20: 0x122000, 0x28: 0x123000}
PAT_LEN = 2047
RAM = 0x8000000


def le(v, n=8):
    return v.to_bytes(n, "little").hex()


class Scn:
    def __init__(self, name, seed, aw=39, cm=True, sm=False, qi=True, dw=False, qs=0):
        self.name, self.seed, self.aw, self.cm, self.sm, self.qi, self.dw, self.qs = name, seed, aw, cm, sm, qi, dw, qs
        self.r = random.Random(seed)
        self.ev = []
        self.next_table = 0x200000
        self.tables = {}      # sid -> top table gpa
        self.pattern = {}     # sid -> bytes loaded into the edu buffer (offset 0)
        self.levels = 3 if aw == 39 else 4
        self.iq_base = 0x110000
        self.tail = 0
        self.desc_size = 32 if dw else 16
        self.did = {0x20: 1, 0x28: 2}
        self.ctx_extra = {0x20: 0, 0x28: 0}

    # ---- primitive events
    def e(self, **kw):
        self.ev.append(kw)

    def mw(self, gpa, hexdata, note=None):
        d = {"op": "mem.write", "gpa": "0x%x" % gpa, "data": hexdata}
        if note:
            d["note"] = note
        self.ev.append(d)

    def rd(self, reg, size=4, note=None):
        d = {"op": "mmio.read", "reg": "0x%x" % reg, "size": size}
        if note:
            d["note"] = note
        self.ev.append(d)

    def wr(self, reg, val, size=4, note=None):
        d = {"op": "mmio.write", "reg": "0x%x" % reg, "size": size, "value": "0x%x" % val}
        if note:
            d["note"] = note
        self.ev.append(d)

    def dmar(self, sid, iova, n, note=None, wb=True):
        d = {"op": "dma.read", "sid": "0x%x" % sid, "iova": "0x%x" % iova, "len": n}
        if note:
            d["note"] = note
        self.ev.append(d)
        if wb:
            # captured only when the read did not fault (capture.py drops it otherwise)
            self.ev.append({"op": "dma.write", "sid": "0x%x" % sid, "iova": "0x%x" % SCRATCH[sid], "writeback": "if-ok",
                            "note": "device writes its buffer back out to the scratch page"})

    def dmaw(self, sid, iova, n, note=None):
        p = self.pattern[sid]
        off = self.r.randrange(0, len(p) - n + 1)
        d = {"op": "dma.write", "sid": "0x%x" % sid, "iova": "0x%x" % iova, "data": p[off:off + n].hex()}
        if note:
            d["note"] = note
        self.ev.append(d)

    def fault_check(self, note="fault record"):
        self.rd(0x34, note="FSTS")
        self.rd(0x228, 8, note=note + " (high)")
        self.rd(0x220, 8, note=note + " (low)")

    def clear_faults(self):
        self.wr(0x22c, 0x80000000, note="clear F")
        self.wr(0x34, 0x11, note="clear PFO/IQE (RW1C)")

    # ---- tables
    def alloc(self):
        a = self.next_table
        self.next_table += 0x1000
        return a

    def root_table(self, sid):
        if sid not in self.tables:
            self.tables[sid] = self.alloc()
        return self.tables[sid]

    def entry_addr(self, sid, iova, level, create=True):
        """gpa of the entry for iova at `level` (1 = 4K leaf), creating the tables above."""
        t = self.root_table(sid)
        for lv in range(self.levels, level, -1):
            idx = (iova >> (12 + 9 * (lv - 1))) & 0x1FF
            key = (sid, lv, iova >> (12 + 9 * lv))
            ea = t + idx * 8
            nxt = self.tables.get(("next", ea))
            if nxt is None:
                nxt = self.alloc()
                self.tables[("next", ea)] = nxt
                self.mw(ea, le(nxt | 3), "level-%d table entry" % lv)
            t = nxt
            del key
        return t + ((iova >> (12 + 9 * (level - 1))) & 0x1FF) * 8

    def map(self, sid, iova, gpa, level=1, perm=3, extra=0, note=None):
        ea = self.entry_addr(sid, iova, level)
        v = gpa | perm | extra | (0x80 if level > 1 else 0)
        self.mw(ea, le(v), note or "map 0x%x -> 0x%x (level %d, perm %d)" % (iova, gpa, level, perm))
        return ea

    def rand_iova(self, level=1, below=None):
        top = below or (1 << self.aw)
        gran = 1 << (12 + 9 * (level - 1))
        while True:
            v = self.r.randrange(0x1000000000 if self.aw == 48 else 0x40000000, top) & ~(gran - 1)
            if v < top:
                return v

    def rand_gpa(self, size=0x1000):
        return self.r.randrange(0x400000, RAM - size) & ~(size - 1)

    # ---- setup
    def header(self):
        return {"trace": "viommu", "version": 1, "model": "intel-vtd",
                "config": {"awBits": self.aw, "cachingMode": self.cm, "scalableMode": self.sm,
                           "deviceIotlb": False, "interruptRemapping": False},
                "ram": [{"base": "0x0", "size": "0x%x" % RAM}],
                "source": "input generated by tools/qemu-capture/gen.py (scenario %s, seed %d)" % (self.name, self.seed)}

    def context(self, sid, tt=0, fpd=False, aw_field=None, extra_lo=0, extra_hi=0, present=True):
        aw_field = (1 if self.aw == 39 else 2) if aw_field is None else aw_field
        devfn = sid
        if not self.sm:
            lo = self.root_table(sid) | (tt << 2) | (2 if fpd else 0) | (1 if present else 0) | extra_lo
            hi = (self.did[sid] << 8) | aw_field | extra_hi
            self.mw(0x101000 + devfn * 16, le(lo) + le(hi), "context entry for sid 0x%x" % sid)
        else:
            self.pasid_entry(sid, aw_field=aw_field)
            pdir = 0x103000 + (devfn - 0x20) * 0x40
            lo = pdir | (2 if fpd else 0) | (1 if present else 0) | extra_lo
            self.mw(0x101000 + devfn * 32, le(lo) + le(extra_hi) + le(0) + le(0), "scalable-mode context entry for sid 0x%x" % sid)

    def pasid_entry(self, sid, pgtt=2, aw_field=None, fpd=False, present=True, dir_present=True, extra0=0, extra1=0):
        aw_field = (1 if self.aw == 39 else 2) if aw_field is None else aw_field
        pdir = 0x103000 + (sid - 0x20) * 0x40
        ptab = 0x104000 + (sid - 0x20) * 0x200
        q0 = self.root_table(sid) | (pgtt << 6) | (aw_field << 2) | (2 if fpd else 0) | (1 if present else 0) | extra0
        q1 = self.did[sid] | extra1
        self.mw(ptab, le(q0) + le(q1) + "00" * 48, "PASID entry 0 (pgtt %d, aw %d, fpd %d, p %d)" % (pgtt, aw_field, fpd, present))
        self.mw(pdir, le(ptab | (1 if dir_present else 0)), "PASID directory entry 0")

    def setup(self, sids=SIDS, te=True, load=True):
        self.rd(0x0, note="version")
        self.rd(0x8, 8, note="capabilities")
        self.rd(0x10, 8, note="extended capabilities")
        self.rd(0x1c)
        self.rd(0x34)
        self.rd(0x38)
        for sid in sids:
            self.map(sid, SCRATCH[sid], SCRATCH[sid], note="identity map (scratch)")
            self.map(sid, PATTERN[sid], PATTERN[sid], note="identity map (pattern)")
            self.context(sid)
        self.mw(0x100000, le(0x101001) + le(0), "root entry for bus 0")
        self.wr(0x20, 0x100000 | (0x400 if self.sm else 0), 8)
        self.wr(0x18, 0x40000000, note="SRTP")
        self.rd(0x1c)
        if self.qi:
            self.wr(0x90, self.iq_base | (0x800 if self.dw else 0) | self.qs, 8, note="IQA")
            self.wr(0x88, 0, 8)
            self.wr(0x18, 0x4000000, note="enable QI")
            self.rd(0x1c)
            self.rd(0x90, 8)
        if load:
            for sid in sids:
                pat = bytes(self.r.randrange(256) for _ in range(PAT_LEN))
                self.pattern[sid] = pat
                self.mw(PATTERN[sid], pat.hex(), "source bytes (translation disabled: identity)")
                self.dmar(sid, PATTERN[sid], PAT_LEN)
        if te:
            self.te(True)

    def te(self, on):
        self.wr(0x18, (0x80000000 if on else 0) | (0x4000000 if self.qi else 0), note="TE %s" % ("on" if on else "off"))
        self.rd(0x1c)

    # ---- invalidation queue
    def submit(self, descs, note=None, check=True):
        """descs: list of (lo, hi) 128-bit or 4-qword tuples; writes them at the tail and bumps IQT."""
        nent = 256 << self.qs if not self.dw else 128 << self.qs
        start, chunk = self.tail, ""
        for d in descs:
            words = list(d) + [0] * (self.desc_size // 8 - len(d))
            chunk += "".join(le(w) for w in words)
            self.tail = (self.tail + 1) % nent
            if self.tail == 0:   # wrap: flush what fits before the end of the queue
                self.mw(self.iq_base + start * self.desc_size, chunk, note)
                start, chunk, note = 0, "", None
        if chunk:
            self.mw(self.iq_base + start * self.desc_size, chunk, note)
        self.wr(0x88, self.tail * self.desc_size, 8, note="IQT")
        if check:
            self.rd(0x80, 8, note="IQH")
            self.rd(0x34)

    def wait(self, status=None, intr=False):
        if intr:
            return (0x15,)    # IF only
        addr = 0x118000 + self.r.randrange(0, 0x100) * 8
        st = status if status is not None else self.r.randrange(1 << 32)
        return ((st << 32) | 0x25, addr)

    def cc_global(self):
        return (0x11,)

    def iotlb_global(self):
        return (0x12 | 0xC0,)

    def iotlb_dsi(self, did):
        return (0x22 | 0xC0 | (did << 16),)

    def iotlb_psi(self, did, addr, am, ih=False):
        return (0x32 | 0xC0 | (did << 16), addr | (0x40 if ih else 0) | am)

    def cc_dsi(self, did):
        return (0x21 | (did << 16),)

    def cc_dev(self, did, sid, fm=0):
        return (0x31 | (did << 16) | (sid << 32) | (fm << 48),)

    def flush_all(self):
        if self.qi:
            self.submit([self.cc_global(), self.iotlb_global(), self.wait()], "global invalidation")
        else:
            self.wr(0x28, 0xA000000000000000, 8, note="CCMD global")
            self.wr(0xF8, 0x9000000000000000, 8, note="IOTLB global")

    def dump(self, outdir):
        path = os.path.join(outdir, self.name + ".jsonl")
        with open(path, "w") as f:
            f.write(json.dumps(self.header(), separators=(",", ":")) + "\n")
            for e in self.ev:
                f.write(json.dumps(e, separators=(",", ":")) + "\n")
        return path


# ------------------------------------------------------------------ scenarios
def sc_psi_am(seed, aw, cm, ih):
    s = Scn("qi-psi-am-aw%d-%s%s-s%d" % (aw, "cm" if cm else "nocm", "-ih" if ih else "", seed), seed, aw=aw, cm=cm)
    s.setup()
    sid = s.r.choice(SIDS)
    did = s.did[sid]
    base = s.rand_iova(level=2)
    n = 12
    old = {}
    for i in range(n):
        g = s.rand_gpa()
        s.mw(g, bytes(s.r.randrange(256) for _ in range(16)).hex(), "old target bytes")
        old[i] = g
        s.map(sid, base + i * 0x1000, g)
    s.flush_all()
    for i in range(0, n, 3):
        s.dmar(sid, base + i * 0x1000, 16, "fill IOTLB")
    for am in s.r.sample(range(0, 10), 3) + [s.r.choice([19, 20, 63])]:
        for i in range(n):
            g = s.rand_gpa()
            s.mw(g, bytes(s.r.randrange(256) for _ in range(16)).hex(), "new target bytes")
            s.map(sid, base + i * 0x1000, g, note="remap without invalidation")
        for i in range(0, n, 3):
            s.dmar(sid, base + i * 0x1000, 16, "stale or fresh?")
        addr = base + s.r.randrange(0, n) * 0x1000
        s.submit([s.iotlb_psi(did, addr & ~((1 << (12 + min(am, 20))) - 1) if am <= 18 else addr, am, ih), s.wait()],
                 "page-selective IOTLB invalidation AM=%d IH=%d" % (am, ih))
        if am > 18:
            s.fault_check("IQE expected")
            # recover like Linux: overwrite with a wait descriptor, clear IQE, resubmit
            s.tail = (s.tail - 2) % (256 << s.qs)
            s.mw(s.iq_base + s.tail * 16, le(0x25 | (7 << 32)) + le(0x118000))
            s.wr(0x34, 0x10, note="clear IQE")
            s.tail = (s.tail + 1) % (256 << s.qs)
            s.wr(0x88, s.tail * 16, 8)
            s.rd(0x80, 8)
            s.rd(0x34)
        for i in range(0, n, 3):
            s.dmar(sid, base + i * 0x1000, 16, "after PSI")
        other = SIDS[1] if sid == SIDS[0] else SIDS[0]
        s.dmar(other, PATTERN[other], 8, "other sid still translates")
        s.flush_all()
    return s


def sc_dsi_cc(seed, cm):
    s = Scn("qi-dsi-context-s%d%s" % (seed, "" if cm else "-nocm"), seed, cm=cm)
    s.did = {0x20: s.r.randrange(1, 0x100), 0x28: s.r.randrange(1, 0x100)}
    s.setup()
    maps = {}
    for sid in SIDS:
        maps[sid] = []
        for _ in range(4):
            iova, g = s.rand_iova(), s.rand_gpa()
            s.mw(g, bytes(s.r.randrange(256) for _ in range(8)).hex())
            s.map(sid, iova, g)
            maps[sid].append(iova)
    s.flush_all()
    for step in range(6):
        for sid in SIDS:
            for iova in maps[sid]:
                g = s.rand_gpa()
                s.mw(g, bytes(s.r.randrange(256) for _ in range(8)).hex())
                s.map(sid, iova, g, note="remap")
        kind = s.r.choice(["dsi20", "dsi28", "dsi-other", "cc-global", "cc-dsi", "cc-dev", "iotlb-global"])
        if kind == "dsi20":
            d = [s.iotlb_dsi(s.did[0x20])]
        elif kind == "dsi28":
            d = [s.iotlb_dsi(s.did[0x28])]
        elif kind == "dsi-other":
            d = [s.iotlb_dsi(0x3ff)]
        elif kind == "cc-global":
            d = [s.cc_global()]
        elif kind == "cc-dsi":
            d = [s.cc_dsi(s.did[0x28])]
        elif kind == "cc-dev":
            d = [s.cc_dev(s.did[0x20], 0x20, s.r.randrange(4))]
        else:
            d = [s.iotlb_global()]
        s.submit(d + [s.wait()], "invalidation: " + kind)
        for sid in SIDS:
            for iova in maps[sid]:
                s.dmar(sid, iova, 8)
        if step == 3:
            # change a context entry's domain and translation, then context-invalidate
            s.did[0x28] = s.r.randrange(1, 0x100)
            s.context(0x28)
            s.submit([s.cc_dev(s.did[0x28], 0x28)] + [s.wait()], "device context invalidation")
            for iova in maps[0x28]:
                s.dmar(0x28, iova, 8)
    return s


def sc_reg_inv(seed, aw):
    s = Scn("reg-invalidation-aw%d-s%d" % (aw, seed), seed, aw=aw, cm=False, qi=False)
    s.did = {0x20: s.r.randrange(1, 0x10000), 0x28: s.r.randrange(1, 0x10000)}
    s.setup()
    maps = {sid: [] for sid in SIDS}
    for sid in SIDS:
        for _ in range(4):
            iova, g = s.rand_iova(), s.rand_gpa()
            s.mw(g, bytes(s.r.randrange(256) for _ in range(8)).hex())
            s.map(sid, iova, g)
            maps[sid].append(iova)
    s.flush_all()
    for step in range(10):
        for sid in SIDS:
            for iova in maps[sid]:
                g = s.rand_gpa()
                s.mw(g, bytes(s.r.randrange(256) for _ in range(8)).hex())
                s.map(sid, iova, g, note="remap")
        g = s.r.randrange(0, 4)
        sid = s.r.choice(SIDS)
        dr, dw = s.r.randrange(2), s.r.randrange(2)
        if s.r.random() < 0.5:
            cirg = s.r.randrange(0, 4)
            val = (1 << 63) | (cirg << 61) | (s.r.randrange(4) << 32) | (sid << 16) | s.did[sid]
            s.wr(0x28, val, 8, note="CCMD CIRG=%d" % cirg)
            s.rd(0x28, 8)
            s.rd(0x2c, 4, note="CCMD high half")
        am = s.r.choice([0, 1, 2, 5, 9, 18, 19, 30])
        iova = s.r.choice(maps[sid])
        s.wr(0xF0, iova | (s.r.randrange(2) << 6) | am, 8, note="IVA AM=%d" % am)
        val = (1 << 63) | (g << 60) | (dr << 49) | (dw << 48) | (s.did[sid] << 32)
        s.wr(0xF8, val, 8, note="IOTLB IIRG=%d" % g)
        s.rd(0xF8, 8)
        s.rd(0xFC, 4, note="IOTLB high half")
        s.rd(0xF0, 8, note="IVA read back")
        for sid2 in SIDS:
            for iova in maps[sid2]:
                s.dmar(sid2, iova, 8)
    return s


def sc_faults(seed, aw, cm):
    s = Scn("fault-overflow-both-sids-aw%d-s%d" % (aw, seed), seed, aw=aw, cm=cm)
    s.setup()
    s.wr(0x3c, 0x4000 | s.r.randrange(0x100), note="FEDATA")
    s.wr(0x40, 0xFEE00000 | (s.r.randrange(0x100) << 12), note="FEADDR")
    s.wr(0x44, 0, note="FEUADDR")
    for step in range(12):
        act = s.r.choice(["fault", "fault", "fault", "clearF", "clearF64", "clearPFO", "mask", "unmask", "readregs"])
        if act == "fault":
            sid = s.r.choice(SIDS)
            iova = s.rand_iova()
            if s.r.random() < 0.5:
                s.dmar(sid, iova + s.r.randrange(0, 0x800), s.r.randrange(1, 64), "unmapped read")
            else:
                s.dmaw(sid, iova + s.r.randrange(0, 0x800), s.r.randrange(1, 64), "unmapped write")
            s.fault_check()
        elif act == "clearF":
            s.wr(0x22c, 0x80000000, note="clear F (32-bit)")
            s.rd(0x34)
        elif act == "clearF64":
            s.wr(0x228, 1 << 63, 8, note="clear F (64-bit)")
            s.rd(0x34)
        elif act == "clearPFO":
            s.wr(0x34, 0x1, note="clear PFO")
            s.rd(0x34)
        elif act == "mask":
            s.wr(0x38, 0x80000000, note="mask fault event")
            s.rd(0x38)
        elif act == "unmask":
            s.wr(0x38, 0, note="unmask fault event")
            s.rd(0x38)
        else:
            s.rd(0x34)
            s.rd(0x38)
            s.rd(0x3c)
            s.rd(0x40)
            s.rd(0x224, note="FRCD low upper half")
            s.rd(0x22c, note="FRCD high upper half")
    return s


RSVD_BITS = list(range(3, 12)) + list(range(39, 64))


def sc_reserved(seed, aw, cm):
    s = Scn("fault-reserved-every-level-aw%d-s%d" % (aw, seed), seed, aw=aw, cm=cm)
    s.setup()
    bits = s.r.sample([b for b in RSVD_BITS if b >= 48 or b < 12 or b >= aw], 10)
    for bit in bits:
        level = s.r.randrange(1, s.levels + 1)
        leaf_level = s.r.choice([l for l in (1, 2, 3) if l <= s.levels and l >= 1])
        sid = s.r.choice(SIDS)
        iova = s.rand_iova(level=leaf_level)
        size = 1 << (12 + 9 * (leaf_level - 1))
        g = s.rand_gpa(size) if size <= 0x200000 else 0
        ea = s.map(sid, iova, g, level=leaf_level)
        # set the bit in the entry at `level` (>= leaf_level) on the path
        lv = max(level, leaf_level)
        if lv == leaf_level:
            target = ea
            val = g | 3 | (0x80 if leaf_level > 1 else 0)
        else:
            target = s.entry_addr(sid, iova, lv)
            val = s.tables[("next", target)] | 3
        s.mw(target, le(val | (1 << bit)), "reserved bit %d in level-%d entry (leaf level %d)" % (bit, lv, leaf_level))
        s.flush_all()
        off = s.r.randrange(0, 0x800)
        if s.r.random() < 0.5:
            s.dmar(sid, iova + off, 16)
        else:
            s.dmaw(sid, iova + off, 16)
        s.fault_check()
        s.clear_faults()
        s.mw(target, le(val), "restore")
        s.flush_all()
    return s


def sc_large(seed, aw, cm):
    s = Scn("sl-large-pages-aw%d-s%d" % (aw, seed), seed, aw=aw, cm=cm)
    s.setup()
    for _ in range(8):
        lvl = s.r.choice([2, 3])
        sid = s.r.choice(SIDS)
        size = 1 << (12 + 9 * (lvl - 1))
        iova = s.rand_iova(level=lvl)
        g = s.r.randrange(2, RAM // size) * size if size <= RAM else 0
        perm = s.r.choice([1, 2, 3, 3])
        s.map(sid, iova, g, level=lvl, perm=perm)
        s.flush_all()
        for _ in range(2):
            off = s.r.randrange(0x400000 if g == 0 else 0, min(size, RAM - g) - 0x1000)
            if s.r.random() < 0.5:
                s.dmaw(sid, iova + off, s.r.randrange(1, 300))
            else:
                s.dmar(sid, iova + off, s.r.randrange(1, 300))
        s.fault_check()
        s.clear_faults()
    return s


def sc_te_srtp(seed, cm):
    s = Scn("te-srtp-toggle-s%d" % seed, seed, cm=cm)
    s.setup()
    iova, g = s.rand_iova(), s.rand_gpa()
    s.mw(g, bytes(s.r.randrange(256) for _ in range(16)).hex())
    s.map(0x20, iova, g)
    s.flush_all()
    for step in range(8):
        act = s.r.choice(["te-off", "te-on", "srtp", "srtp-bad", "remap", "dma"])
        if act == "te-off":
            s.te(False)
        elif act == "te-on":
            s.te(True)
        elif act == "srtp":
            s.wr(0x20, 0x100000, 8)
            s.wr(0x18, 0x40000000 | 0x4000000 | (s.r.choice([0, 0x80000000])), note="SRTP while running")
            s.rd(0x1c)
        elif act == "srtp-bad":
            s.wr(0x20, 0x140000, 8, note="root table with nothing present")
            s.wr(0x18, 0x40000000 | 0x4000000, note="SRTP")
            s.rd(0x1c)
            s.rd(0x20, 8)
        elif act == "remap":
            g = s.rand_gpa()
            s.mw(g, bytes(s.r.randrange(256) for _ in range(16)).hex())
            s.map(0x20, iova, g, note="remap without invalidation")
        s.dmar(0x20, iova, 16)
        s.fault_check()
        s.clear_faults()
    return s


def sc_regs(seed, aw, sm):
    s = Scn("reg-odd-accesses-aw%d%s-s%d" % (aw, "-sm" if sm else "", seed), seed, aw=aw, sm=sm)
    s.setup(te=False, load=False)
    regs32 = [0x0, 0x4, 0xc, 0x14, 0x18, 0x1c, 0x24, 0x2c, 0x34, 0x38, 0x3c, 0x40, 0x44, 0x48, 0x4c, 0x58, 0x5c,
              0x60, 0x64, 0x68, 0x6c, 0x70, 0x74, 0x78, 0x7c, 0x84, 0x8c, 0x94, 0x98, 0x9c, 0xa0, 0xa4, 0xa8, 0xac,
              0xb0, 0xb4, 0xb8, 0xbc, 0xc0, 0xc4, 0xc8, 0xcc, 0xd0, 0xd4, 0xd8, 0xdc, 0xe0, 0xe4, 0xf4, 0xfc,
              0x100, 0x104, 0x200, 0x218, 0x21c, 0x224, 0x22c, 0x230, 0x234, 0x238, 0x240, 0x300, 0xff0, 0xffc]
    for reg in s.r.sample(regs32, 30):
        s.rd(reg)
    for reg in [0x0, 0x8, 0x10, 0x20, 0x28, 0x30, 0x80, 0x88, 0x90, 0xa0, 0xb8, 0xf0, 0xf8, 0x200, 0x220, 0x228, 0x100]:
        s.rd(reg, 8)
    # writes to read-only registers and halves
    s.wr(0x0, 0xffffffff, note="VER is read-only")
    s.wr(0x8, 0xffffffffffffffff, 8, note="CAP is read-only")
    s.wr(0x10, 0xffffffffffffffff, 8, note="ECAP is read-only")
    s.wr(0x1c, 0xffffffff, note="GSTS is read-only")
    s.wr(0x80, 0x1230, 8, note="IQH is read-only")
    for reg in [0x0, 0x8, 0x10, 0x1c, 0x80]:
        s.rd(reg, 8 if reg in (0x8, 0x10, 0x80) else 4)
    v = 0x5000000 | s.r.randrange(0, 0x100) << 12
    s.wr(0x20, v, note="RTADDR low half (32-bit write)")
    s.wr(0x24, s.r.randrange(0, 2), note="RTADDR high half (32-bit write)")
    s.rd(0x20, 8)
    s.rd(0x24)
    s.wr(0x90, 0x110000 | 0x7ff, note="IQA low half with reserved bits")
    s.wr(0x94, 0, note="IQA high half")
    s.rd(0x90, 8)
    s.wr(0x88, 0x12345, note="IQT low half")
    s.rd(0x88, 8)
    s.wr(0x8c, 0x1, note="IQT high half")
    s.rd(0x88, 8)
    s.wr(0x3c, 0xffffffff, note="FEDATA all ones")
    s.wr(0x40, 0xffffffff, note="FEADDR all ones")
    s.wr(0x44, 0xffffffff, note="FEUADDR all ones")
    s.wr(0xa4, 0xffffffff, note="IEDATA all ones")
    s.wr(0xa8, 0xffffffff, note="IEADDR all ones")
    s.wr(0xac, 0xffffffff, note="IEUADDR all ones")
    s.wr(0x38, 0xffffffff, note="FECTL all ones")
    s.wr(0xa0, 0xffffffff, note="IECTL all ones")
    s.wr(0x9c, 0xffffffff, note="ICS all ones (RW1C)")
    s.wr(0x34, 0xffffffff, note="FSTS all ones (RW1C)")
    s.wr(0x220, 0xffffffff, note="FRCD low")
    s.wr(0x224, 0xffffffff, note="FRCD low high half")
    s.wr(0x228, 0x7fffffff, note="FRCD high low half")
    s.wr(0xf0, 0xffffffff, note="IVA low")
    s.wr(0xf4, 0xffffffff, note="IVA high")
    for reg in [0x34, 0x38, 0x3c, 0x40, 0x44, 0x9c, 0xa0, 0xa4, 0xa8, 0xac, 0x220, 0x224, 0x228, 0x22c, 0xf0, 0xf4]:
        s.rd(reg)
    s.rd(0xf0, 8)
    s.rd(0x220, 8)
    s.wr(0x200, 0xffffffff, note="unimplemented offset")
    s.rd(0x200)
    s.wr(0x28, 0xffffffff, note="CCMD low half")
    s.rd(0x28, 8)
    s.wr(0xf8, 0xffffffff, note="IOTLB low half")
    s.rd(0xf8, 8)
    return s


def sc_qwrap(seed, qs, dw, sm):
    s = Scn("qi-wrap-qs%d%s-s%d" % (qs, "-dw" if dw else "", seed), seed, sm=sm, dw=dw, qs=qs)
    s.setup()
    nent = (128 if dw else 256) << qs
    s.wr(0xa4, 0x4000 | s.r.randrange(0x100), note="IEDATA")
    s.wr(0xa8, 0xFEE00000, note="IEADDR")
    s.wr(0x3c, 0x4100, note="FEDATA")
    s.wr(0x40, 0xFEE00000, note="FEADDR")
    total = 0
    while total < nent + 40:
        k = s.r.randrange(20, min(120, nent - 1))
        descs = []
        for _ in range(k - 1):
            descs.append(s.r.choice([s.cc_global(), s.iotlb_global(), s.iotlb_dsi(1), s.iotlb_psi(2, 0x40000000, 0), s.wait()]))
        if s.r.random() < 0.3:
            descs.append(s.wait(intr=True))
        else:
            descs.append(s.wait())
        s.submit(descs, "batch of %d descriptors" % k)
        s.rd(0x9c, note="ICS")
        s.rd(0xa0, note="IECTL")
        if s.r.random() < 0.5:
            s.wr(0x9c, 1, note="clear IWC")
        if s.r.random() < 0.3:
            s.wr(0x9c - 0x0, 1)
            s.wr(0xa0, s.r.choice([0, 0x80000000]), note="IECTL mask toggle")
            s.rd(0xa0)
        total += k
    if dw:
        s.wr(0x88, s.tail * 32 + 0x10, 8, note="IQT with bit 4 set (256-bit mode)")
        s.rd(0x34)
        s.rd(0x80, 8)
    return s


def sc_sm(seed, aw, cm):
    s = Scn("sm-pasid-entries-aw%d-s%d" % (aw, seed), seed, aw=aw, cm=cm, sm=True, dw=True)
    s.setup()
    iova, g = s.rand_iova(), s.rand_gpa()
    s.mw(g, bytes(s.r.randrange(256) for _ in range(32)).hex())
    s.map(0x28, iova, g)
    cases = [dict(pgtt=p) for p in (0, 1, 2, 3, 4, 5, 7)] + [dict(aw_field=a) for a in (0, 1, 2, 3, 4)] + \
        [dict(fpd=True, present=False), dict(dir_present=False), dict(dir_present=False, fpd=True),
         dict(present=False), dict(extra0=1 << s.r.choice([9, 10, 11, 12 + 0] if False else [9, 10, 11])),
         dict(extra1=1 << s.r.randrange(16, 64)), dict(extra0=1 << 63)]
    s.r.shuffle(cases)
    for c in cases[:12]:
        s.pasid_entry(0x28, **c)
        s.submit([(0x37,), s.cc_global(), s.iotlb_global(), s.wait()], "PASID cache + context + IOTLB invalidation (256-bit)")
        s.dmar(0x28, iova + s.r.randrange(0, 0x800), 16, "pasid entry %s" % json.dumps(c))
        s.fault_check()
        s.clear_faults()
    s.pasid_entry(0x28)
    s.submit([(0x37,), s.cc_global(), s.iotlb_global(), s.wait()], "restore")
    s.dmar(0x28, iova, 32)
    return s


def sc_irange_cross(seed, aw, cm):
    s = Scn("fault-irange-crosspage-aw%d-s%d" % (aw, seed), seed, aw=aw, cm=cm)
    s.setup()
    for _ in range(6):
        sid = s.r.choice(SIDS)
        base = s.rand_iova()
        kind = s.r.choice(["irange", "hole", "ro", "wo"])
        g1, g3 = s.rand_gpa(), s.rand_gpa()
        s.mw(g1, bytes(s.r.randrange(256) for _ in range(0x1000)).hex() if False else bytes(s.r.randrange(256) for _ in range(64)).hex())
        s.map(sid, base, g1)
        if kind == "irange":
            s.map(sid, base + 0x1000, 0xFEE00000 + s.r.randrange(0, 0x100) * 0x1000)
        elif kind == "ro":
            s.map(sid, base + 0x1000, s.rand_gpa(), perm=1)
        elif kind == "wo":
            s.map(sid, base + 0x1000, s.rand_gpa(), perm=2)
        s.map(sid, base + 0x2000, g3)
        s.flush_all()
        start = base + 0x1000 - s.r.randrange(1, 0x100)
        n = s.r.randrange(0x1000 + 0x100, 0x1700)
        if s.r.random() < 0.5:
            s.dmaw(sid, start, min(n, PAT_LEN), "crosses %s page and beyond" % kind)
        else:
            s.dmar(sid, start, min(n, 0x7ff), "crosses %s page" % kind)
        s.fault_check()
        s.clear_faults()
        s.mw(g3, "", None) if False else None
    return s


def sc_context_variants(seed, aw, cm):
    s = Scn("fault-context-variants-aw%d-s%d" % (aw, seed), seed, aw=aw, cm=cm)
    s.setup()
    iova, g = s.rand_iova(), s.rand_gpa()
    s.mw(g, bytes(s.r.randrange(256) for _ in range(16)).hex())
    s.map(0x20, iova, g)
    cases = [dict(tt=t) for t in (0, 1, 2, 3)] + [dict(aw_field=a) for a in range(8)] + \
        [dict(fpd=True, tt=3), dict(fpd=True, aw_field=5), dict(present=False), dict(present=False, fpd=True)] + \
        [dict(extra_lo=1 << b) for b in (4, 5, 6, 7, 8, 11)] + [dict(extra_hi=1 << b) for b in (3, 4, 6, 7, 24, 40, 63)]
    s.r.shuffle(cases)
    for c in cases[:14]:
        s.context(0x20, **c)
        s.flush_all()
        if s.r.random() < 0.5:
            s.dmaw(0x20, iova + s.r.randrange(0, 0x800), 16, "context %s" % json.dumps(c))
        else:
            s.dmar(0x20, iova + s.r.randrange(0, 0x800), 16, "context %s" % json.dumps(c))
        s.fault_check()
        s.clear_faults()
    s.context(0x20)
    s.flush_all()
    return s


SCENARIOS = {
    "psi": lambda seed: [sc_psi_am(seed, 39, True, False), sc_psi_am(seed + 1, 48, False, True)],
    "dsi": lambda seed: [sc_dsi_cc(seed, True), sc_dsi_cc(seed + 1, False)],
    "reginv": lambda seed: [sc_reg_inv(seed, 39), sc_reg_inv(seed + 1, 48)],
    "faults": lambda seed: [sc_faults(seed, 39, True), sc_faults(seed + 1, 48, False)],
    "rsvd": lambda seed: [sc_reserved(seed, 39, True), sc_reserved(seed + 1, 48, False)],
    "large": lambda seed: [sc_large(seed, 39, False), sc_large(seed + 1, 48, True)],
    "te": lambda seed: [sc_te_srtp(seed, True)],
    "regs": lambda seed: [sc_regs(seed, 39, False), sc_regs(seed + 1, 48, True)],
    "qwrap": lambda seed: [sc_qwrap(seed, 0, False, False), sc_qwrap(seed + 1, 0, True, True), sc_qwrap(seed + 2, 1, False, False)],
    "sm": lambda seed: [sc_sm(seed, 39, True), sc_sm(seed + 1, 48, False)],
    "irange": lambda seed: [sc_irange_cross(seed, 39, True), sc_irange_cross(seed + 1, 48, False)],
    "ctx": lambda seed: [sc_context_variants(seed, 39, False), sc_context_variants(seed + 1, 48, True)],
}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--only", default=None)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    names = a.only.split(",") if a.only else list(SCENARIOS)
    for n in names:
        for s in SCENARIOS[n](a.seed):
            print(s.dump(a.outdir), len(s.ev))


if __name__ == "__main__":
    main()
