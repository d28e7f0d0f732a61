"""Checks a kvscope memory_viz export against what PyTorch's viewers assert.

Usage: memory_viz_check.py EXPORT.pickle [TORCH_SNAPSHOT.pickle.gz]

The invariants are those of pytorch.org/memory_viz (MemoryViz.js: its own
unpickler's opcodes, annotate_snapshot, process_alloc_data) and of
torch/cuda/_memory_viz.py (stats: the blocks tile each segment). With a
torch snapshot of the same process, every one of its segments must be a
segment of the export (address and size). Where torch is installed, its
_memory_viz.py reads the export too. Prints `ok ...` or fails."""
import gzip
import importlib.util
import os
import pickle
import pickletools
import sys

# MemoryViz.js's unpickler: any other opcode throws "UNKNOWN OPCODE".
JS_OPCODES = {
    "PROTO", "STOP", "MARK", "EMPTY_DICT", "EMPTY_LIST", "EMPTY_TUPLE", "SETITEMS",
    "SETITEM", "DICT", "APPENDS", "APPEND", "LIST", "TUPLE", "TUPLE1", "TUPLE2",
    "TUPLE3", "BININT", "BININT1", "BININT2", "LONG1", "BINFLOAT", "BINUNICODE",
    "SHORT_BINUNICODE", "NONE", "NEWTRUE", "NEWFALSE", "BINPUT", "LONG_BINPUT",
    "BINGET", "LONG_BINGET", "MEMOIZE", "FRAME",
}
ACTIONS = {
    "alloc", "free_requested", "free_completed", "segment_alloc", "segment_free",
    "segment_map", "segment_unmap", "snapshot", "oom",
}
STATES = {"active_allocated", "active_pending_free", "inactive"}


def fail(msg):
    print("FAIL: " + msg)
    sys.exit(1)


def check_frames(frames, where):
    if not isinstance(frames, list):
        fail(f"{where}: frames is not a list")
    for f in frames:
        for k, t in (("name", str), ("filename", str), ("line", int)):
            if not isinstance(f.get(k), t):
                fail(f"{where}: frame {f} lacks {k}")


def torch_memory_viz():
    """torch/cuda/_memory_viz.py: the file KVSCOPE_TORCH_MEMORY_VIZ names
    (it needs nothing of torch: .ci/run takes it out of the torch wheel), else
    an installed torch's, else None. Not the stand-in torch beside this
    script, which has none."""
    path = os.environ.get("KVSCOPE_TORCH_MEMORY_VIZ")
    if path:
        spec = importlib.util.spec_from_file_location("_memory_viz", path)
        mv = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mv)
        return mv
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    try:
        from torch.cuda import _memory_viz as mv
    except Exception:
        return None
    return mv


def main():
    raw = open(sys.argv[1], "rb").read()
    proto = raw[1] if raw[:1] == b"\x80" else 0
    if not 2 <= proto <= 4:
        fail(f"protocol {proto}: the page reads 2 to 4")
    for op, _, _ in pickletools.genops(raw):
        if op.name not in JS_OPCODES:
            fail(f"opcode {op.name} is not read by the page")
    snap = pickle.loads(raw)
    segs, traces = snap["segments"], snap["device_traces"]
    if not isinstance(traces, list) or not all(isinstance(t, list) for t in traces):
        fail("device_traces is not a list of lists")
    by_device = {}
    for s in segs:
        where = f"segment {s.get('address')}"
        for k in ("device", "address", "total_size", "stream", "blocks"):
            if k not in s:
                fail(f"{where}: no {k}")
        if not 0 <= s["device"] < len(traces):
            fail(f"{where}: device {s['device']} has no trace list")
        check_frames(s.get("frames", []), where)
        addr = s["address"]
        for b in s["blocks"]:
            if b["state"] not in STATES:
                fail(f"{where}: state {b['state']}")
            if b.get("address", addr) != addr:
                fail(f"{where}: blocks do not follow each other")
            if b["requested_size"] > b["size"]:
                fail(f"{where}: requested beyond the block")
            check_frames(b["frames"], where)
            addr += b["size"]
        if addr - s["address"] != s["total_size"]:
            fail(f"{where}: blocks do not tile the segment")
        by_device.setdefault(s["device"], []).append((s["address"], s["total_size"]))
    for d, ranges in by_device.items():
        ranges.sort()
        for (a, n), (b, _) in zip(ranges, ranges[1:]):
            if a + n > b:
                fail(f"device {d}: segments overlap at {b:#x}")
    categories = set()
    for d, t in enumerate(traces):
        live = {}
        last_time = None
        for e in t:
            for k in ("action", "addr", "size", "stream", "time_us", "frames"):
                if k not in e:
                    fail(f"device {d}: event {e} lacks {k}")
            if e["action"] not in ACTIONS:
                fail(f"device {d}: action {e['action']}")
            # torch/cuda/_memory_viz.py's trace prints it.
            if e["action"] == "oom" and not isinstance(e.get("device_free"), int):
                fail(f"device {d}: oom without device_free")
            if last_time is not None and e["time_us"] < last_time:
                fail(f"device {d}: events out of time order")
            last_time = e["time_us"]
            check_frames(e["frames"], f"device {d} event")
            if "category" in e:
                categories.add(e["category"])
            if e["action"] == "segment_alloc":
                if e["addr"] in live:
                    fail(f"device {d}: segment {e['addr']:#x} allocated twice")
                live[e["addr"]] = e["size"]
            elif e["action"] == "segment_free":
                if e["addr"] in live and live.pop(e["addr"]) != e["size"]:
                    fail(f"device {d}: segment {e['addr']:#x} freed with another size")
        # What the trace leaves allocated is among the segments.
        have = set(by_device.get(d, []))
        for a, n in live.items():
            if (a, n) not in have:
                fail(f"device {d}: {a:#x} allocated in the trace, not a segment")
    if categories and "unknown" not in categories:
        fail(f"categories {sorted(categories)} without 'unknown' break the legend")
    if len(sys.argv) > 2:
        torch_snap = pickle.load(gzip.open(sys.argv[2]))
        ours = {(s["address"], s["total_size"]) for s in segs}
        for s in torch_snap["segments"]:
            if (s["address"], s["total_size"]) not in ours:
                fail(f"torch segment {s['address']:#x} of {s['total_size']} B not exported")
    mv = torch_memory_viz()
    if mv is not None:
        mv.segsum(snap)
        mv.trace(snap)
        mv.trace_plot(snap)
        mv.segment_plot(snap)
    print(f"ok {len(segs)} segments, {sum(map(len, traces))} events, "
          f"categories {sorted(categories)}, torch {'yes' if mv else 'no'}")


main()
