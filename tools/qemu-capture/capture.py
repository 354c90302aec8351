#!/usr/bin/env python3
"""Capture a trace-v1 (intel-vtd) trace from the real QEMU over the qtest protocol.

Developer tool, not part of `npm test`. Input: a trace-v1 file whose events say what
the guest does; `expect` fields (and msi.expect lines) are ignored and refilled from
what QEMU answers. Output: the same events with every expectation captured.

    python3 tools/qemu-capture/capture.py IN.jsonl OUT.jsonl [--check] [--qemu BIN]

--check compares the captured expectations with the ones IN already had and exits 1
on any difference (used to validate this tool against the shared reference traces).

How each op is driven (see README.md in this folder):
  mem.write / mem.expect  -> qtest `write` / `read` of guest-physical memory
  mmio.write / mmio.read  -> writeb/w/l/q, readb/w/l/q at 0xfed90000 + reg
  dma.read / dma.write    -> one DMA of the edu device that owns the sid (0x20 = 00:04.0,
                             0x28 = 00:05.0) between its 4 KiB buffer (bus address
                             0x40000) and the iova. A DMA "faults" when QEMU logged
                             vtd_dmar_fault or vtd_fault_disabled while it ran.
  msi.expect              -> regenerated from the vtd_irq_generate trace lines QEMU
                             writes to stderr, placed after the event that caused them.

The device buffer is the only place DMA data lives, so the trace itself stages it (as the
reference captures do): a `dma.read` of a pattern page loads the buffer, a `dma.write`
sends a slice of what the buffer holds (found by content), and a `dma.read` followed by
a write-back `dma.write` to an identity-mapped scratch page (note "...back out to the
scratch page", or "writeback": true) reveals what the read returned: the tool reads the
scratch page's RAM and fills both the read's expect and the write-back's data.
"""
import argparse
import json
import os
import re
import select
import shutil
import subprocess
import sys
import tempfile

VTD_BASE = 0xFED90000
EDU_BAR = {0x20: 0xC0000000, 0x28: 0xC0100000}   # where we place each edu's BAR0
EDU_DEV = {0x20: 4, 0x28: 5}                     # PCI device number (bus 0, fn 0)
EDU_BUF = 0x40000                                # edu DMA buffer bus address
EDU_BUF_SIZE = 0x1000
PATTERN_PAGES = {0x122000, 0x123000}             # reads from these load the buffer at offset 0
READ_OFFSET = 0x800                              # other reads land in the upper half
QEMU_VERSION_TEXT = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)"
TRACE_EVENTS = ["vtd_dmar_fault", "vtd_fault_disabled", "vtd_irq_generate", "vtd_iotlb_page_hit",
                "vtd_inv_desc_wait_sw", "vtd_inv_desc_wait_write_fail"]

IRQ_RE = re.compile(r"vtd_irq_generate addr 0x([0-9a-fA-F]+) data 0x([0-9a-fA-F]+)")
FAULT_RE = re.compile(r"vtd_(dmar_fault|fault_disabled)\b")
HIT_RE = re.compile(r"vtd_iotlb_page_hit .*slpte 0x([0-9a-fA-F]+)")


def dma_failed(lines, write):
    """A DMA failed when QEMU logged a fault (recorded or FPD-suppressed), or when an IOTLB
    hit returned a leaf lacking the access's permission: QEMU 7.2 then drops the access in
    the memory core without any fault (findings: "IOTLB hits skip the fault path")."""
    for l in lines:
        if FAULT_RE.search(l):
            return True
        m = HIT_RE.search(l)
        if m and not (int(m.group(1), 16) >> (1 if write else 0)) & 1:
            return True
    return False


def make_firmware(path):
    """64 KiB BIOS image: at the reset vector (last 16 bytes) `cli; hlt; jmp hlt`."""
    img = bytearray(b"\xf4" * 0x10000)
    img[0xFFF0:0xFFF4] = bytes([0xFA, 0xF4, 0xEB, 0xFD])
    with open(path, "wb") as f:
        f.write(img)


def qemu_args(config):
    dev = "intel-iommu,aw-bits=%d,caching-mode=%s,intremap=%s,device-iotlb=%s" % (
        config.get("awBits", 39), "on" if config.get("cachingMode", False) else "off",
        "on" if config.get("interruptRemapping", False) else "off",
        "on" if config.get("deviceIotlb", False) else "off")
    if config.get("scalableMode"):
        dev += ",x-scalable-mode=on"
    args = ["-machine", "q35", "-accel", "tcg", "-icount", "shift=0,sleep=off", "-bios", "halt64k.bin",
            "-nodefaults", "-display", "none", "-m", "128M", "-qtest", "stdio", "-qtest-log", "/dev/null",
            "-device", dev, "-device", "edu,addr=4.0,dma_mask=0xffffffffffffffff",
            "-device", "edu,addr=5.0,dma_mask=0xffffffffffffffff"]
    for t in TRACE_EVENTS:
        args += ["-trace", t]
    return args


class CaptureError(Exception):
    pass


class Qemu:
    def __init__(self, binary, config):
        self.dir = tempfile.mkdtemp(prefix="vtd-capture-")
        make_firmware(os.path.join(self.dir, "halt64k.bin"))
        self.cmdline = "qemu-system-x86_64 " + " ".join(qemu_args(config))
        self.p = subprocess.Popen([binary] + qemu_args(config), cwd=self.dir, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        os.set_blocking(self.p.stderr.fileno(), False)
        self.err_buf = b""
        self.err_lines = []

    def cmd(self, line):
        if self.p.poll() is not None:
            raise CaptureError("QEMU exited (%s) before %r; stderr tail: %s" % (
                self.p.returncode, line, b"".join(self._drain_raw()).decode(errors="replace")[-800:]))
        self.p.stdin.write((line + "\n").encode())
        self.p.stdin.flush()
        while True:
            r = self.p.stdout.readline()
            if not r:
                raise CaptureError("QEMU closed stdout on %r (crashed?); stderr: %s" % (
                    line, b"".join(self._drain_raw()).decode(errors="replace")[-800:]))
            r = r.decode().strip()
            if r.startswith("OK"):
                return r[2:].strip()
            if r.startswith("FAIL"):
                raise CaptureError("qtest refused %r: %s" % (line, r))
            # asynchronous lines (IRQ ...) are not used

    def _drain_raw(self):
        out = []
        while True:
            ready, _, _ = select.select([self.p.stderr], [], [], 0)
            if not ready:
                return out
            chunk = os.read(self.p.stderr.fileno(), 65536)
            if not chunk:
                return out
            out.append(chunk)

    def drain(self):
        """stderr lines QEMU wrote so far. Trace lines are written synchronously before the
        qtest reply, so everything an access caused is in the pipe once its OK arrived."""
        self.err_buf += b"".join(self._drain_raw())
        *lines, self.err_buf = self.err_buf.split(b"\n")
        return [l.decode(errors="replace") for l in lines]

    def close(self):
        if self.p.poll() is None:
            self.p.kill()
        self.p.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def hx(v):
    return "0x%x" % v


class Capturer:
    def __init__(self, q):
        self.q = q
        self.buf = {sid: [0] * EDU_BUF_SIZE for sid in EDU_BAR}  # shadow of each edu buffer (None = unknown)
        self.pending_read = {}   # sid -> (out event, buffer offset, len)
        for sid, bar in EDU_BAR.items():
            self.cfg_write(EDU_DEV[sid], 0x10, bar)
            self.cfg_write(EDU_DEV[sid], 0x04, 0x6)   # memory space + bus master

    def cfg_write(self, dev, reg, val):
        self.q.cmd("outl 0xcf8 0x%x" % (0x80000000 | (dev << 11) | reg))
        self.q.cmd("outl 0xcfc 0x%x" % val)

    def edu_dma(self, sid, src, dst, cnt, to_ram):
        if sid not in EDU_BAR:
            raise CaptureError("no edu device for sid %s (only 0x20 and 0x28)" % hx(sid))
        bar = EDU_BAR[sid]
        self.q.drain()
        self.q.cmd("writeq 0x%x 0x%x" % (bar + 0x80, src))
        self.q.cmd("writeq 0x%x 0x%x" % (bar + 0x88, dst))
        self.q.cmd("writeq 0x%x 0x%x" % (bar + 0x90, cnt))
        self.q.cmd("writeq 0x%x 0x%x" % (bar + 0x98, 3 if to_ram else 1))
        for _ in range(100000):
            if int(self.q.cmd("readq 0x%x" % (bar + 0x98)), 16) & 1 == 0:
                break
        else:
            raise CaptureError("edu DMA never completed")
        return self.q.drain()

    def find_in_buf(self, sid, data):
        b = self.buf[sid]
        n = len(data)
        # prefer the read landing zone (most recent data), then anywhere
        starts = list(range(READ_OFFSET, EDU_BUF_SIZE - 1 - n + 1)) + list(range(0, min(READ_OFFSET, EDU_BUF_SIZE - 1 - n + 1)))
        for s in starts:
            if b[s] == data[0] and all(b[s + i] == data[i] for i in range(n)):
                return s
        return None

    def run(self, ev, out, lineno):
        op = ev["op"]
        e = {k: v for k, v in ev.items() if k not in ("expect",)}
        wb = e.pop("writeback", False)
        irqs_and_faults = []
        if op == "mem.write":
            data = e["data"]
            self.q.cmd("write 0x%x %d 0x%s" % (int(e["gpa"], 16), len(data) // 2, data))
            irqs_and_faults = self.q.drain()
        elif op == "mem.expect":
            n = len(e["data"]) // 2
            r = self.q.cmd("read 0x%x %d" % (int(e["gpa"], 16), n))
            e["data"] = r[2:] if r.startswith("0x") else r
            irqs_and_faults = self.q.drain()
        elif op == "mmio.write":
            size = int(e["size"])
            w = {1: "writeb", 2: "writew", 4: "writel", 8: "writeq"}[size]
            self.q.cmd("%s 0x%x 0x%x" % (w, VTD_BASE + int(e["reg"], 16), int(e["value"], 16)))
            irqs_and_faults = self.q.drain()
        elif op == "mmio.read":
            size = int(e["size"])
            r = {1: "readb", 2: "readw", 4: "readl", 8: "readq"}[size]
            v = self.q.cmd("%s 0x%x" % (r, VTD_BASE + int(e["reg"], 16)))
            e = self._with_expect(e, hx(int(v, 16)))
            irqs_and_faults = self.q.drain()
        elif op == "dma.read":
            sid, iova, n = int(e["sid"], 16), int(e["iova"], 16), int(e["len"])
            if "pasid" in e:
                raise CaptureError("line %d: edu cannot issue PASID-tagged DMA" % lineno)
            off = 0 if (iova in PATTERN_PAGES or n > EDU_BUF_SIZE - 1 - READ_OFFSET) else READ_OFFSET
            if off + n > EDU_BUF_SIZE - 1:
                raise CaptureError("line %d: dma.read longer than the edu buffer allows" % lineno)
            lines = self.edu_dma(sid, iova, EDU_BUF + off, n, to_ram=False)
            faulted = dma_failed(lines, write=False)
            irqs_and_faults = lines
            for i in range(n):
                self.buf[sid][off + i] = None
            e = self._with_expect(e, "fault" if faulted else None)
            self.pending_read[sid] = (e, off, n)
        elif op == "dma.write":
            sid, iova = int(e["sid"], 16), int(e["iova"], 16)
            if "pasid" in e:
                raise CaptureError("line %d: edu cannot issue PASID-tagged DMA" % lineno)
            is_wb = wb or "back out to the scratch page" in e.get("note", "")
            if is_wb:
                if sid not in self.pending_read:
                    if wb == "if-ok":
                        return
                    raise CaptureError("line %d: write-back without a preceding dma.read" % lineno)
                rd, off, n = self.pending_read.pop(sid)
                if wb == "if-ok" and rd.get("expect") == "fault":
                    return   # conditional write-back: the read faulted, nothing to reveal
            else:
                data = bytes.fromhex(e["data"])
                n = len(data)
                off = self.find_in_buf(sid, data)
                if off is None:
                    raise CaptureError("line %d: dma.write data is not in the device buffer of sid %s "
                                       "(stage it with a dma.read of a pattern page)" % (lineno, hx(sid)))
            lines = self.edu_dma(sid, EDU_BUF + off, iova, n, to_ram=True)
            faulted = dma_failed(lines, write=True)
            irqs_and_faults = lines
            if is_wb:
                if faulted:
                    raise CaptureError("line %d: the write-back to the scratch page faulted" % lineno)
                got = self.q.cmd("read 0x%x %d" % (iova, n))
                got = got[2:] if got.startswith("0x") else got
                irqs_and_faults += self.q.drain()
                if "data" in e and e["data"] != got:
                    print("line %d: write-back data differs from the input trace" % lineno, file=sys.stderr)
                e["data"] = got
                gb = bytes.fromhex(got)
                for i in range(n):
                    self.buf[sid][off + i] = gb[i]
                if rd.get("expect") is None:
                    rd["expect"] = got
            e = self._with_expect(e, "fault" if faulted else "ok")
            # keep key order like the reference traces: expect before note
        elif op == "msi.expect":
            return
        else:
            raise CaptureError("line %d: op %s cannot be captured from QEMU" % (lineno, op))
        out.append(e)
        for l in irqs_and_faults:
            m = IRQ_RE.search(l)
            if m:
                out.append({"op": "msi.expect", "addr": hx(int(m.group(1), 16)), "data": hx(int(m.group(2), 16))})

    @staticmethod
    def _with_expect(e, val):
        """Insert expect before note (the order the reference traces use)."""
        note = e.pop("note", None)
        e["expect"] = val
        if note is not None:
            e["note"] = note
        return e


def capture(events_in, header, binary):
    q = Qemu(binary, header.get("config", {}))
    out = []
    try:
        c = Capturer(q)
        for lineno, ev in events_in:
            c.run(ev, out, lineno)
        for e in out:
            if e.get("op") == "dma.read" and e.get("expect") is None:
                raise CaptureError("a dma.read that did not fault has no write-back, so its data is unknown: %s" % e)
    finally:
        cmdline = q.cmdline
        q.close()
    return out, cmdline


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("input")
    ap.add_argument("output")
    ap.add_argument("--check", action="store_true", help="compare with the input's expectations")
    ap.add_argument("--qemu", default="qemu-system-x86_64")
    ap.add_argument("--source", default=None, help="free text for the header's source (scenario, seed)")
    a = ap.parse_args()
    with open(a.input) as f:
        lines = [json.loads(l) for l in f if l.strip()]
    header = lines[0]
    events = [(i + 2, ev) for i, ev in enumerate(lines[1:])]
    try:
        out, cmdline = capture(events, header, a.qemu)
    except CaptureError as err:
        print("capture failed: %s" % err, file=sys.stderr)
        return 2
    header = dict(header)
    header["source"] = ("%s, captured by tools/qemu-capture/capture.py%s over the qtest protocol; guest CPU "
                        "halted (tiny cli;hlt firmware), DMA by two edu PCI devices (sid 0x0020, 0x0028); "
                        "expectations are QEMU's observed results. Command line: %s" % (
                            QEMU_VERSION_TEXT, " (" + a.source + ")" if a.source else "", cmdline))
    with open(a.output, "w") as f:
        f.write(json.dumps(header, separators=(",", ":")) + "\n")
        for e in out:
            f.write(json.dumps(e, separators=(",", ":")) + "\n")
    if a.check:
        orig = [ev for _, ev in events]
        diffs = 0
        if len(orig) != len(out):
            print("event count differs: %d in, %d captured" % (len(orig), len(out)))
        for i, (o, c) in enumerate(zip(orig, out)):
            if o != c:
                diffs += 1
                if diffs <= 10:
                    print("line %d differs:\n  ref: %s\n  cap: %s" % (i + 2, json.dumps(o)[:300], json.dumps(c)[:300]))
        print("%s: %d events, %d differ" % (a.input, len(out), diffs + abs(len(orig) - len(out))))
        return 1 if diffs or len(orig) != len(out) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
