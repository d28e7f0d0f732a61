#!/usr/bin/env python3
"""kvscope on a real NVIDIA GPU: the checks the stand-in CUDA cannot make.

    cargo build --release
    python3 examples/gpu_validate.py                 # every section, ~3-4 min on an H200
    python3 examples/gpu_validate.py --only oom,pluggable --out /tmp/gpu
    python3 examples/gpu_validate.py --dry-run       # the plan; imports no torch, needs no GPU
    python3 examples/gpu_validate.py --self-test     # the pure parts, on synthetic and H200 fixture reports

Needs torch with CUDA and transformers (no network: the model is a small
Llama with random weights). Paths: KVSCOPE_LIB (default
target/release/libkvscope.so), KVSCOPE_BIN (default target/release/kvscope).

Every scenario runs in a child process (fresh CUDA state) with the shim
preloaded (LD_PRELOAD), started through `kvscope run`, or loaded as PyTorch's
pluggable allocator; its reports and logs go under --out (default: a new
temporary directory, printed). One line per check:

    PASS  section/check: detail
    FAIL  section/check: detail

and exit status 1 when any check failed (2: could not start). Sections
(--only / --skip take their names; `--dry-run` prints each one's checks):

  preload-default     PyTorch's caching allocator: kvscope's cudaMalloc bytes ==
                      memory_reserved() exactly; every other live allocation
                      (cuBLAS workspaces, runtime internals) listed as not PyTorch's
  preload-expandable  expandable_segments:True: VMM mapped bytes == memory_reserved()
  preload-async       backend:cudaMallocAsync: cudaMallocAsync live bytes ==
                      memory_allocated(); the default pool's reserved == memory_reserved()
  pluggable           kvscope.install(): live bytes == the native run's
                      requested_bytes (same seed, same model, same points);
                      memory_allocated() - requested explained block by block;
                      KV growth per decoded token == batch x the KV model's bytes
  mempool             kvscope.mempool() under use_mem_pool: a segment-level view
  serving-healthy     generate() requests under `kvscope run` with markers:
  serving-warmup      no critical finding (healthy; 64 MiB kept once), a
  serving-leak        leak_per_request of ~64 MiB (64 MiB kept per request), each
                      verdict read on PyTorch's counters
  oom                 8 GiB tensors until OOM, then recovery: the post-mortem,
                      out_of_memory.recovered, and kvscope check's finding
  bench               torch.empty/del timings: native, cudaMallocAsync, kvscope (info)
  nvml                no shim: `kvscope devices --json` (NVML, device level) lists the child's
                      PID; its bytes grow with memory_reserved(); the context is counted;
                      kvscope itself never shows on the GPU (it makes no CUDA context)
  diagnose            kvscope diagnose against examples/openai_server.py (transformers,
                      random weights) under `kvscope run`: healthy, all four steps
                      measured and no critical finding; with 64 MiB kept per request,
                      leak_per_request (critical, exit 1)
"""

import argparse
import json
import os
import random
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections import namedtuple

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
LIB = os.environ.get("KVSCOPE_LIB", os.path.join(ROOT, "target", "release", "libkvscope.so"))
BIN = os.environ.get("KVSCOPE_BIN", os.path.join(ROOT, "target", "release", "kvscope"))
KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30

# The model of /work/shared/fixtures/h200/config.json: Llama-shaped, 4 layers,
# 2 KV heads of 64, fp16: 2,048 B of KV per token, 43.8 M parameters.
MODEL = dict(
    hidden_size=512,
    intermediate_size=1376,
    num_hidden_layers=4,
    num_attention_heads=8,
    num_key_value_heads=2,
    head_dim=64,
    vocab_size=32000,
    max_position_embeddings=4096,
    torch_dtype="float16",
)
CONFIG_JSON = dict(MODEL, model_type="llama", architectures=["LlamaForCausalLM"])

# pluggable: step-by-step decoding with a DynamicCache.
DECODE_BATCH, DECODE_PROMPT, DECODE_STEPS = 4, 64, 256
DECODE_SKIP = 16  # steps left out of the growth fit (the first ones settle workspaces)
SNAPSHOT_EVERY = 64  # steps between the native run's memory snapshots
# kvscope's live bytes vs the native run's requested_bytes: both count the
# bytes PyTorch asked of its allocator, so they should be equal. 64 KiB lets
# one small buffer a library sizes at run time differ between the two
# processes; it is 24x below the 1,574,240 B of block rounding that the old
# comparison with memory_allocated() mistook for an error, so confusing
# blocks with requests still fails.
PLUG_TOL_ABS, PLUG_TOL_REL = 64 * KiB, 1e-4
# serving: the requests of the H200 fixtures (sizes grow, then repeat).
SERVE_PROMPTS = [128, 256, 384, 512, 128, 256, 384, 512, 512, 256]
SERVE_BATCH, SERVE_NEW = 4, 64
KEEP = 64 * MiB  # what serving-warmup keeps once and serving-leak per request
LEAK_TOL = 0.10
OOM_TENSOR = 8 * GiB
# diagnose: tokens of steps 2-3 and of the long request; the planted leak.
DIAG_CONTEXT, DIAG_LONG, DIAG_LEAK = 256, 2048, 64 * MiB
ASYNC_APIS = re.compile(r"^(cudaMallocAsync|cudaMallocFromPoolAsync|cuMemAllocAsync|cuMemAllocFromPoolAsync)(_ptsz)?$")
OOM_FINDINGS = re.compile(r"oom|out_of_memory|fragmentation")
FRAMEWORK_WORDS = re.compile(r"tensor[-_ ]level|pytorch|memory_allocated|framework", re.I)

Check = namedtuple("Check", "name ok detail")


# =================================================================== pure helpers
# No torch, no GPU: everything here is exercised by --self-test.


def human(n):
    """Bytes for people: 64.0 MiB."""
    if n is None:
        return "?"
    sign, n = ("-" if n < 0 else ""), abs(n)
    for unit, size in (("GiB", GiB), ("MiB", MiB), ("KiB", KiB)):
        if n >= size:
            return f"{sign}{n / size:.2f} {unit}" if unit == "GiB" else f"{sign}{n / size:.1f} {unit}"
    return f"{sign}{n} B"


def kv_bytes_per_token(cfg):
    """The model's KV bytes per token: layers x 2 (K, V) x KV heads x head_dim x 2 (fp16)."""
    return cfg["num_hidden_layers"] * 2 * cfg["num_key_value_heads"] * cfg["head_dim"] * 2


def mixed_sizes(seed, n):
    """n tensor sizes from 1 KiB to 64 MiB, log-uniform, odd byte counts included."""
    rng = random.Random(seed)
    return [int(2 ** rng.uniform(10, 26)) + rng.randrange(512) for _ in range(n)]


def parse_result(stdout):
    """The child's last `RESULT {json}` line, or None."""
    lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[-1][len("RESULT "):]) if lines else None


# kvscope-<host>-<pid>-<start ms>-<reason>.json
REPORT_NAME = re.compile(r"^kvscope-.+-(\d+)-\d+-(exit|oom|checkpoint|signal|dump-\d+)\.json$")


def find_reports(folder, pid=None):
    """{reason: path} of the reports in `folder` (of process `pid` when given);
    reasons are exit, oom, checkpoint, signal, dump-1, dump-2, ..."""
    found = {}
    for name in sorted(os.listdir(folder)) if os.path.isdir(folder) else []:
        m = REPORT_NAME.match(name)
        if m and (pid is None or int(m.group(1)) == pid):
            found[m.group(2)] = os.path.join(folder, name)
    return found


def load_json(path):
    with open(path) as f:
        return json.load(f)


def api_bytes(report, match, device=0, space="device"):
    """Live bytes of `live.by_kind` rows whose api `match`es (a set or a regex)."""
    ok = match.match if hasattr(match, "match") else match.__contains__
    return sum(r["bytes"] for r in report["live"]["by_kind"]
               if r["device"] == device and r["space"] == space and ok(r["api"]))


def live_rows(report):
    """`live.allocations` as dicts (device, address, size, api, ...)."""
    cols = report["live"]["columns"]
    return [dict(zip(cols, row)) for row in report["live"]["allocations"]]


def others(report, pytorch_apis):
    """Live allocations not made by PyTorch's allocator path: [(api, size)], largest first."""
    rows = [(r["api"], r["size"]) for r in live_rows(report) if r["api"] not in pytorch_apis]
    return sorted(rows, key=lambda r: -r[1])


def other_total(report, pytorch_apis):
    """Bytes of every `live.by_kind` row (all spaces) outside `pytorch_apis`."""
    return sum(r["bytes"] for r in report["live"]["by_kind"] if r["api"] not in pytorch_apis)


def listing(rows, limit=12):
    """'2 x 1.0 KiB cuMemAlloc_v2, 64.0 MiB cuMemAlloc_v2' from [(api, size)]."""
    groups = {}
    for api, size in rows:
        groups[(api, size)] = groups.get((api, size), 0) + 1
    parts = [f"{n} x {human(s)} {a}" if n > 1 else f"{human(s)} {a}" for (a, s), n in groups.items()]
    more = len(parts) - limit
    return ", ".join(parts[:limit]) + (f", and {more} more" if more > 0 else "") if parts else "none"


def marker_framework(report, label, device=0):
    """The framework counters (PyTorch's) on the timeline point of marker `label`, or None."""
    for point in reversed(report.get("timeline", [])):
        if point.get("marker") == label:
            for d in point.get("devices", []):
                if d.get("device") == device:
                    return d.get("framework")
    return None


def round512(n):
    """PyTorch's caching allocator rounds every request up to 512 B (kMinBlockSize)."""
    return max(512, (n + 511) // 512 * 512)


def active_blocks(snapshot):
    """[(size, requested)] of the allocated blocks of torch.cuda.memory_snapshot(),
    or None when this PyTorch does not say what each block was requested for."""
    segments = snapshot.get("segments", []) if isinstance(snapshot, dict) else snapshot
    out = []
    for seg in segments:
        for b in seg.get("blocks", []):
            if b.get("state") == "active_allocated":
                if "requested_size" not in b:
                    return None
                out.append((b["size"], b["requested_size"]))
    return out


def block_waste(blocks):
    """Why memory_allocated() exceeds the bytes asked for: per allocated block,
    the 512-B rounding of the request, and the rest of a block the allocator
    did not split off (a large block is kept whole when the rest is <= 1 MiB)."""
    w = dict(allocated=0, requested=0, rounding=0, unsplit=0, blocks=len(blocks),
             unsplit_blocks=0, largest_unsplit=0)
    for size, req in blocks:
        w["allocated"] += size
        w["requested"] += req
        w["rounding"] += round512(req) - req
        rest = size - round512(req)
        w["unsplit"] += rest
        if rest > 0:
            w["unsplit_blocks"] += 1
            w["largest_unsplit"] = max(w["largest_unsplit"], rest)
    return w


def slope(points):
    """Least-squares slope of [(x, y)]."""
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    den = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / den if den else 0.0


def step_points(points, key):
    """[(step, value)] of the decode points labelled `step N`."""
    return [(int(p["label"].split()[1]), p[key]) for p in points if p["label"].startswith("step ")]


def per_request_bytes(finding):
    """(key, bytes) of the finding's per-request figure: `bytes_per_request`,
    or any integer number whose key says per_request; (None, None) without one."""
    nums = finding.get("numbers", {})
    keys = ["bytes_per_request"] + sorted(k for k in nums if "per_request" in k)
    for k in keys:
        if isinstance(nums.get(k), int) and not isinstance(nums.get(k), bool):
            return k, nums[k]
    return None, None


def framework_mentions(check):
    """Where a kvscope check JSON says its verdicts read PyTorch's counters:
    ['finding.field: text'] for words like tensor_level, PyTorch, memory_allocated,
    framework in findings (summaries, evidence, numbers; not advice) and notes."""
    found = []
    for f in check.get("findings", []):
        texts = [("summary", f.get("summary", ""))]
        texts += [("evidence", e) for e in f.get("evidence", [])]
        texts += [("numbers", f"{k}={v}") for k, v in sorted(f.get("numbers", {}).items())]
        found += [f"{f.get('name')}.{where}: {t}" for where, t in texts if FRAMEWORK_WORDS.search(str(t))]
    found += [f"note: {n}" for n in check.get("notes", []) if FRAMEWORK_WORDS.search(n)]
    return found


def findings_line(check):
    """'leak_per_request (critical), kv_cache (info)'."""
    fs = check.get("findings", [])
    return ", ".join(f"{f['name']} ({f['severity']})" for f in fs) if fs else "no findings"


def pytorch_free(message):
    """'17.12 MiB' from PyTorch's OOM message ('... of which 17.12 MiB is free'), or None."""
    m = re.search(r"of which ([\d.]+ [KMGT]?i?B) is free", message or "")
    return m.group(1) if m else None


def nvrm_version(text):
    """The driver version from /proc/driver/nvidia/version, or None."""
    m = re.search(r"Kernel Module(?: for \S+)?\s+([\d.]+)", text or "")
    return m.group(1) if m else None


# =================================================================== judges
# Pure: a child's RESULT and its reports in, Checks (and info strings) out.


def _marker_counters(result, report):
    fw = marker_framework(report, "measured")
    want = result["before"]
    ok = fw is not None and (fw["allocated_bytes"], fw["reserved_bytes"]) == (want["allocated"], want["reserved"])
    got = "no counters on it" if fw is None else \
        f"allocated {fw['allocated_bytes']:,} B, reserved {fw['reserved_bytes']:,} B"
    return Check("marker-counters", ok, f"the `measured` marker carries PyTorch's counters: {got} "
                 f"(PyTorch: {want['allocated']:,} B, {want['reserved']:,} B)")


def _stable(result):
    return "" if result["before"] == result["after"] else \
        f" (PyTorch's counters moved during the dump: {result['before']} -> {result['after']})"


def judge_preload_default(result, report):
    reserved = result["before"]["reserved"]
    cm = api_bytes(report, {"cudaMalloc"})
    rest = others(report, {"cudaMalloc"})
    rest_total = other_total(report, {"cudaMalloc"})
    listed = sum(s for _, s in rest)
    return [
        Check("reserved-exact", cm == reserved and result["before"] == result["after"],
              f"kvscope's cudaMalloc bytes {cm:,} B, memory_reserved() {reserved:,} B, "
              f"difference {cm - reserved:,} B" + _stable(result)),
        Check("non-pytorch-listed", listed == rest_total and not report["live"].get("truncated"),
              f"{len(rest)} live allocations ({human(rest_total)}) are not PyTorch's: {listing(rest)}"),
        _marker_counters(result, report),
        f"device memory in use beyond tracked (context, untracked): "
        f"{human(result.get('device_used', 0) - report['live']['bytes'])}" if result.get("device_used") else
        "device memory in use: not read",
    ]


def judge_preload_expandable(result, report):
    reserved = result["before"]["reserved"]
    vmm, calls = report.get("vmm", {}), report.get("calls", {})
    seen = {k: calls.get(k, 0) for k in ("cuMemAddressReserve", "cuMemCreate", "cuMemMap")}
    mapped = vmm.get("mapped_bytes", 0)
    rest = others(report, {"cuMemCreate"})
    return [
        Check("vmm-seen", all(seen.values()), "calls " + ", ".join(f"{k} {v}" for k, v in seen.items())),
        Check("mapped-exact", mapped == reserved and result["before"] == result["after"],
              f"VMM mapped {mapped:,} B, memory_reserved() {reserved:,} B, difference {mapped - reserved:,} B"
              f" (physical {vmm.get('physical_bytes', 0):,} B)" + _stable(result)),
        _marker_counters(result, report),
        f"not PyTorch's: {listing(rest)}",
    ]


def judge_preload_async(result, report):
    allocated, reserved = result["before"]["allocated"], result["before"]["reserved"]
    live = api_bytes(report, ASYNC_APIS)
    pools = [p for p in report.get("pools", []) if p.get("device") == 0 and p.get("default_pool")]
    pool = pools[0] if pools else None
    return [
        Check("live-exact", live == allocated and result["before"] == result["after"],
              f"kvscope's cudaMallocAsync live {live:,} B, memory_allocated() {allocated:,} B, "
              f"difference {live - allocated:,} B" + _stable(result)),
        Check("pool-reserved-exact", pool is not None and pool["reserved_bytes"] == reserved,
              "no default pool in the report" if pool is None else
              f"default pool reserved {pool['reserved_bytes']:,} B (used {pool['used_bytes']:,} B), "
              f"memory_reserved() {reserved:,} B, difference {pool['reserved_bytes'] - reserved:,} B"),
        _marker_counters(result, report),
        f"not PyTorch's: {listing([r for r in others(report, set()) if not ASYNC_APIS.match(r[0])])}",
    ]


def judge_pluggable(native, plug, kv_per_token, exit_report):
    """kvscope (pluggable) against the native run at the same points."""
    out = []
    nat, pl = native["points"], plug["points"]
    same = [p["label"] for p in nat] == [p["label"] for p in pl]
    if not same or any(p.get("requested") is None for p in nat):
        why = "the two runs stopped at different points" if not same else \
            "this PyTorch has no requested_bytes.all.current"
        return [Check("live-vs-requested", False, why)]
    diffs = [(p["live"] - n["requested"], n["label"], n["requested"]) for n, p in zip(nat, pl)]
    worst = max(diffs, key=lambda d: abs(d[0]))
    tol = PLUG_TOL_ABS + int(max(n["requested"] for n in nat) * PLUG_TOL_REL)
    equal = sum(1 for d in diffs if d[0] == 0)
    out.append(Check("live-vs-requested", abs(worst[0]) <= tol,
                     f"kvscope live == native requested_bytes at {equal} of {len(diffs)} points; largest "
                     f"difference {worst[0]:,} B at `{worst[1]}` ({worst[2]:,} B requested; allowed "
                     f"{tol:,} B: 64 KiB + 0.01 %)"))
    # The 1.57 MB question: memory_allocated() counts blocks, not requests.
    gap = max(((n["allocated"] - n["requested"], n["label"]) for n in nat), key=lambda g: g[0])
    out.append(f"memory_allocated() - requested bytes in the native run: up to {gap[0]:,} B (at `{gap[1]}`): "
               "the difference the old check (kvscope vs memory_allocated) saw, 1,574,240 B on the H200")
    snaps = [n for n in nat if n.get("waste")]
    if snaps:
        bad = [n for n in snaps if n["allocated"] - n["requested"] != n["waste"]["rounding"] + n["waste"]["unsplit"]
               or (n["waste"]["allocated"], n["waste"]["requested"]) != (n["allocated"], n["requested"])]
        n = max(snaps, key=lambda s: s["allocated"] - s["requested"])
        w = n["waste"]
        out.append(Check("allocated-explained", not bad,
                         f"at `{n['label']}`: memory_allocated() {n['allocated']:,} B = requested "
                         f"{n['requested']:,} B + {w['rounding']:,} B of rounding to 512 B ({w['blocks']} blocks) "
                         f"+ {w['unsplit']:,} B left unsplit in {w['unsplit_blocks']} blocks (the rest of a large "
                         f"block is kept whole when <= 1 MiB; largest {w['largest_unsplit']:,} B); "
                         f"{len(snaps) - len(bad)} of {len(snaps)} snapshots add up"
                         + (f"; not at {', '.join(b['label'] for b in bad)}" if bad else "")))
    else:
        out.append("no memory snapshot with requested sizes: the block-level explanation is skipped")
    want = DECODE_BATCH * kv_per_token
    got = slope(step_points(pl, "live")[DECODE_SKIP:])
    out.append(Check("kv-growth", abs(got - want) <= want / 100,
                     f"{got:,.0f} B per decoded token for {DECODE_BATCH} sequences; KV model {want:,} B "
                     f"({kv_per_token:,} B/token; allowed 1 %)"))
    out.append(f"native requested_bytes grows {slope(step_points(nat, 'requested')[DECODE_SKIP:]):,.0f} B per token")
    modes = exit_report.get("modes", []) if exit_report else []
    out.append(Check("report-mode", "pluggable" in modes,
                     f"the pluggable run's exit report: modes {modes}, hooks wired {plug.get('hooks')}"))
    out.append(f"torch.cuda.memory_stats() under the pluggable allocator: {plug.get('memory_stats')}")
    return out


def judge_mempool(r):
    return [
        Check("segments-cover-tensors", r["full"] >= r["tensor_bytes"],
              f"kvscope {r['full']:,} B live for {r['tensor_bytes']:,} B of tensors "
              f"({r['full'] / max(r['tensor_bytes'], 1):.2f}x): PyTorch's caching layer hands it segments"),
        Check("free-keeps-segments", r["half"] >= r["full"],
              f"after freeing {r['freed_count']} tensors ({human(r['freed_bytes'])}) kvscope still sees "
              f"{r['half']:,} B: segment-level, as documented"),
        f"outside the pool PyTorch's own allocator is not seen: kvscope {r['outside']:,} B after an 8 MiB tensor "
        f"(was {r['half']:,} B); after empty_cache {r['after_empty']:,} B; before the pool {r['before']:,} B",
    ]


def judge_serving(variant, rc, check, exit_report, truth):
    out = []
    done = [t["label"] for t in truth if t["label"].endswith(" done")]
    with_fw = [label for label in done if marker_framework(exit_report, label) is not None]
    last = marker_framework(exit_report, done[-1]) if done else None
    out.append(Check("counters-recorded", bool(done) and len(with_fw) == len(done),
                     f"PyTorch's counters on {len(with_fw)} of {len(done)} `request N done` points"
                     + (f"; at the last: allocated {last['allocated_bytes']:,} B, reserved "
                        f"{last['reserved_bytes']:,} B" if last else "")))
    alloc = [t["allocated"] for t in truth if t["label"].endswith(" done")]
    if len(alloc) > 1:
        out.append(f"PyTorch's memory_allocated() after the requests: {human(alloc[0])} ... {human(alloc[-1])}, "
                   f"{human((alloc[-1] - alloc[0]) // (len(alloc) - 1))} per request after the first")
    findings = check.get("findings", [])
    crit = [f for f in findings if f.get("severity") == "critical"]
    if variant == "leak":
        leak = [f for f in findings if f.get("name") == "leak_per_request"]
        out.append(Check("leak-found", bool(leak) and leak[0].get("severity") == "critical" and rc == 1,
                         f"kvscope check exit {rc}; {findings_line(check)}"))
        key, rate = per_request_bytes(leak[0]) if leak else (None, None)
        ok = rate is not None and abs(rate - KEEP) <= LEAK_TOL * KEEP
        out.append(Check("leak-rate", ok, "no per-request figure in the finding" if rate is None else
                         f"{key} = {rate:,} B ({human(rate)}) per request; planted {human(KEEP)} (+-10 %)"))
        if leak:
            out.append(f"finding: {leak[0].get('summary')}")
    else:
        out.append(Check("verdict", rc == 0 and not crit,
                         f"kvscope check --fail-on critical exit {rc}; {findings_line(check)}"))
        for f in crit:
            out.append(f"critical: {f.get('name')}: {f.get('summary')}")
    mentions = framework_mentions(check)
    out.append(Check("tensor-level", bool(mentions),
                     ("found " + " | ".join(mentions[:4])) if mentions else
                     "no finding or note says it read PyTorch's counters (looked for tensor-level, PyTorch, "
                     "memory_allocated, framework)"))
    return out


def judge_diagnose(variant, rc, check):
    """`kvscope diagnose --json` on the example server: every request answered;
    healthy: all four steps measured, no critical finding, exit 0; leak:
    leak_per_request critical, exit 1."""
    out = []
    diag = check.get("diagnose") or {}
    reqs = diag.get("requests", [])
    answered = [r for r in reqs if r.get("latency_ms") is not None]
    out.append(Check(f"{variant}-requests", bool(reqs) and len(answered) == len(reqs) and not diag.get("stopped"),
                     f"{len(answered)} of {len(reqs)} requests answered"
                     + (f"; stopped: {diag['stopped']}" if diag.get("stopped") else "")))
    findings = check.get("findings", [])
    if variant == "healthy":
        steps = [s for p in check.get("processes", []) for d in p.get("devices", []) for s in d.get("steps", [])]
        measured = [s for s in steps if s.get("status") != "skipped"]
        crit = [f for f in findings if f.get("severity") == "critical"]
        out.append(Check("healthy-verdict", rc == 0 and not crit and len(steps) == 4 and len(measured) == 4,
                         f"exit {rc}; {len(measured)} of {len(steps)} steps measured; {findings_line(check)}"))
        for st in steps:
            out.append(f"step {st.get('number')} {st.get('status')}: {st.get('detail')}")
    else:
        leak = [f for f in findings if f.get("name") == "leak_per_request"]
        out.append(Check("leak-found", bool(leak) and leak[0].get("severity") == "critical" and rc == 1,
                         f"exit {rc}; {findings_line(check)}"))
    return out


def judge_oom(result, oom_report, exit_report, rc, check):
    out = []
    o = (oom_report or {}).get("oom") or {}
    free = o.get("device_free_bytes")
    ok = (oom_report is not None and oom_report.get("reason") == "oom" and o.get("api") == "cudaMalloc"
          and o.get("size") == OOM_TENSOR and free is not None and free < OOM_TENSOR)
    out.append(Check("post-mortem", ok, "no -oom.json report" if oom_report is None else
                     f"{o.get('api')} of {human(o.get('size'))} failed (code {o.get('code')}) after "
                     f"{result.get('held')} tensors; free {human(free)} of {human(o.get('device_total_bytes'))}; "
                     f"tracked live {human(o.get('live_bytes'))} in {o.get('live_count')} allocations"))
    oom = (exit_report or {}).get("out_of_memory") or {}
    out.append(Check("recovered", bool(result.get("oom")) and oom.get("recovered") is True,
                     f"PyTorch raised OutOfMemoryError: {bool(result.get('oom'))}; exit report out_of_memory: "
                     f"failures {oom.get('failures')}, allocations after {oom.get('allocations_after')}, "
                     f"recovered {oom.get('recovered')}"))
    names = [f["name"] for f in check.get("findings", []) if OOM_FINDINGS.search(f.get("name", ""))]
    out.append(Check("check-finding", bool(names), f"kvscope check exit {rc}; {findings_line(check)}"))
    out.append(f"PyTorch's message: {result.get('message', '')[:200]} (free per PyTorch: "
               f"{pytorch_free(result.get('message'))})")
    return out


NVML_STEPS = (GiB, 512 * MiB)  # tensors the nvml child adds, one per read


def judge_nvml(result):
    """`kvscope devices` read twice by a child without the shim: [(reserved, read)]."""
    out = []
    pid, reads = result.get("pid"), result.get("reads") or []

    def mine(read):
        procs = [p for g in (read or {}).get("gpus", []) for p in g.get("processes", [])]
        rows = [p for p in procs if p.get("host_pid") == pid or p.get("pid") == pid]
        # In a container NVML's host PIDs cannot be matched: the only process is taken (noted below).
        if not rows and read and not read.get("pids_mapped") and len(procs) == 1:
            rows = procs
        return sum(p.get("used_bytes") or 0 for p in rows) if rows else None

    held = [(r.get("reserved"), mine(r.get("devices"))) for r in reads]
    ok = len(held) == 2 and all(b is not None for _, b in held)
    out.append(Check("pid-listed", ok, f"pid {pid}: NVML bytes {[human(b) for _, b in held]} "
                     f"at memory_reserved() {[human(r) for r, _ in held]}; "
                     f"pids mapped: {[(r.get('devices') or {}).get('pids_mapped') for r in reads]}"))
    if ok:
        grew, reserved_grew = held[1][1] - held[0][1], held[1][0] - held[0][0]
        out.append(Check("growth", abs(grew - reserved_grew) <= 4 * MiB,
                         f"NVML growth {human(grew)} between the reads; memory_reserved() grew {human(reserved_grew)}"))
        ctx = held[0][1] - held[0][0]
        out.append(Check("context-counted", ctx >= 100 * MiB,
                         f"NVML - memory_reserved() = {human(ctx)} (the CUDA context and libraries, device level)"))
    else:
        out.append(Check("growth", False, "not listed in both reads"))
        out.append(Check("context-counted", False, "not listed"))
    own = result.get("kvscope_pids") or []
    seen = [p for r in reads for g in (r.get("devices") or {}).get("gpus", []) for p in g.get("processes", [])
            if p.get("host_pid") in own or p.get("pid") in own]
    out.append(Check("no-context", bool(reads) and not seen,
                     f"kvscope devices' own PIDs {own} on no GPU" if not seen else f"kvscope on the GPU: {seen}"))
    if result.get("error"):
        out.append(f"kvscope devices said: {result['error'][:300]}")
    for note in {n for r in reads for n in (r.get("devices") or {}).get("notes", [])}:
        out.append(f"kvscope devices noted: {note}")
    return out


# =================================================================== children
# Each runs in its own process: `gpu_validate.py --child KIND ARG`.


def _emit(obj):
    print("RESULT " + json.dumps(obj), flush=True)


def _kvscope():
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import kvscope

    return kvscope


def _counters(torch):
    s = torch.cuda.memory_stats() if torch.cuda.is_initialized() else {}
    return dict(allocated=s.get("allocated_bytes.all.current", 0), reserved=s.get("reserved_bytes.all.current", 0),
                requested=s.get("requested_bytes.all.current"))


def _build_model(torch):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(**MODEL)
    return LlamaForCausalLM(cfg).to(dtype=torch.float16, device="cuda").eval()


def child_info(_):
    import ctypes
    import importlib.metadata

    import torch

    driver = None
    try:
        with open("/proc/driver/nvidia/version") as f:
            driver = nvrm_version(f.read())
    except OSError:
        pass
    v = ctypes.c_int(0)
    try:
        ctypes.CDLL("libcuda.so.1").cuDriverGetVersion(ctypes.byref(v))
    except OSError:
        pass
    try:
        transformers = importlib.metadata.version("transformers")
    except importlib.metadata.PackageNotFoundError:
        transformers = None
    ok = torch.cuda.is_available()
    props = torch.cuda.get_device_properties(0) if ok else None
    _emit(dict(cuda=ok, name=torch.cuda.get_device_name(0) if ok else None,
               total=props.total_memory if ok else None, torch=torch.__version__, cuda_runtime=torch.version.cuda,
               driver=driver, driver_cuda=f"{v.value // 1000}.{v.value % 1000 // 10}" if v.value else None,
               transformers=transformers, python=sys.version.split()[0]))


def child_alloc(variant):
    """300 tensors of mixed sizes, every other freed, cuBLAS work (and a Llama
    forward for the default allocator); then PyTorch's counters, a `measured`
    marker and a dump at one point."""
    import torch

    kv = _kvscope()
    kv.mark("load")
    held = [torch.empty(s, dtype=torch.uint8, device="cuda") for s in mixed_sizes(0, 300)]
    for i in range(0, len(held), 2):
        held[i] = None
    a = torch.randn(1024, 1024, device="cuda", dtype=torch.float16)
    work = [a @ a, torch.nn.functional.linear(a, a, torch.ones(1024, device="cuda", dtype=torch.float16))]
    model = None
    if variant == "default":
        model = _build_model(torch)
        with torch.no_grad():
            model(torch.randint(0, MODEL["vocab_size"], (4, 128), device="cuda"))
    torch.cuda.synchronize()
    before = _counters(torch)
    kv.mark("measured")
    kv.dump(f"preload-{variant}")
    after = _counters(torch)
    free, total = torch.cuda.mem_get_info()
    _emit(dict(pid=os.getpid(), variant=variant, before=before, after=after, device_used=total - free,
               kept=sum(1 for t in held if t is not None) + len(work) + (model is not None)))


def child_decode(mode):
    """Step-by-step greedy decoding with a DynamicCache; at every point the
    native run reads PyTorch's stats (and now and then a memory snapshot),
    the pluggable run reads kvscope's live bytes."""
    import torch

    kv = _kvscope()
    result = dict(pid=os.getpid(), mode=mode, points=[])
    if mode == "pluggable":
        kv.install(LIB)
        result["hooks"] = kv.hooks()

    def read(label, snapshot=False):
        if mode == "pluggable":
            p = dict(label=label, live=kv.live_bytes(torch.cuda.current_device()))
        else:
            p = dict(label=label, **_counters(torch))
            blocks = active_blocks(torch.cuda.memory_snapshot()) if snapshot else None
            p["waste"] = block_waste(blocks) if blocks is not None else None
        result["points"].append(p)

    model = _build_model(torch)
    torch.cuda.synchronize()
    read("load", True)
    ids = torch.randint(0, MODEL["vocab_size"], (DECODE_BATCH, DECODE_PROMPT), device="cuda")
    with torch.no_grad():
        out = model(ids, use_cache=True)
        cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
        del out
        torch.cuda.synchronize()
        read("prefill", True)
        for step in range(1, DECODE_STEPS + 1):
            out = model(nxt, past_key_values=cache, use_cache=True)
            cache, nxt = out.past_key_values, out.logits[:, -1:].argmax(-1)
            del out
            torch.cuda.synchronize()
            read(f"step {step}", step % SNAPSHOT_EVERY == 0)
    del cache, nxt, ids
    torch.cuda.synchronize()
    read("end", True)
    if mode == "pluggable":
        try:
            torch.cuda.memory_stats()
            result["memory_stats"] = "available"
        except Exception as e:  # what a global pluggable allocator breaks
            result["memory_stats"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    _emit(result)


def child_mempool(_):
    """Tensors inside `use_mem_pool(kvscope.mempool())`, then half of them freed."""
    import torch

    kv = _kvscope()
    torch.zeros(1, device="cuda")  # CUDA up, through PyTorch's own allocator
    pool = kv.mempool(LIB)
    r = dict(pid=os.getpid(), before=kv.live_bytes(0))
    rng = random.Random(1)
    sizes = [rng.randint(100 * KiB, 3 * MiB) for _ in range(40)]
    with torch.cuda.use_mem_pool(pool):
        held = [torch.empty(s, dtype=torch.uint8, device="cuda") for s in sizes]
    torch.cuda.synchronize()
    r.update(full=kv.live_bytes(0), tensor_bytes=sum(sizes))
    freed = list(range(0, len(held), 2))
    for i in freed:
        held[i] = None
    torch.cuda.synchronize()
    r.update(half=kv.live_bytes(0), freed_count=len(freed), freed_bytes=sum(sizes[i] for i in freed))
    outside = torch.empty(8 * MiB, dtype=torch.uint8, device="cuda")
    torch.cuda.synchronize()
    r["outside"] = kv.live_bytes(0)
    kv.dump("mempool")
    del held, outside
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    r["after_empty"] = kv.live_bytes(0)
    _emit(r)


_HELD = []  # what a child keeps alive until it exits


def child_serving(variant):
    """Ten generate() requests of batch 4 with kvscope's markers; warmup keeps
    64 MiB after the first request, leak after every request."""
    import torch

    kv = _kvscope()
    truth = []

    def mark(label):
        kv.mark(label)
        truth.append(dict(label=label, **_counters(torch)))

    mark("load")
    model = _build_model(torch)
    torch.cuda.synchronize()
    mark("serve")
    kept = []
    for i, prompt in enumerate(SERVE_PROMPTS):
        mark(f"request {i} start tokens={prompt + SERVE_NEW}")
        ids = torch.randint(0, MODEL["vocab_size"], (SERVE_BATCH, prompt), device="cuda")
        with torch.no_grad():
            out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=SERVE_NEW,
                                 min_new_tokens=SERVE_NEW, do_sample=False, pad_token_id=0)
        del out, ids
        if variant == "leak" or (variant == "warmup" and i == 0):
            kept.append(torch.empty(KEEP, dtype=torch.uint8, device="cuda"))
        torch.cuda.synchronize()
        mark(f"request {i} done")
    mark("idle")
    # The report to check, written while the server still holds its model and
    # what it kept (as `kvscope dump PID` would after a load test): at exit,
    # Python has already dropped them and PyTorch's counters fall to zero.
    kv.dump("served")
    _HELD.extend([model, kept])
    _emit(dict(pid=os.getpid(), variant=variant, truth=truth, kept=len(kept)))


def child_oom(_):
    """8 GiB tensors until PyTorch's OutOfMemoryError, then on: free them and allocate again."""
    import torch

    kv = _kvscope()
    kv.mark("load")
    torch.zeros(1, device="cuda")
    kv.mark("serve")
    held, message = [], None
    for _ in range(64):
        try:
            held.append(torch.empty(OOM_TENSOR, dtype=torch.uint8, device="cuda"))
        except torch.cuda.OutOfMemoryError as e:
            message = str(e).splitlines()[0]
            break
    n = len(held)
    time.sleep(0.5)  # the shim's background thread writes the post-mortem
    del held
    torch.cuda.empty_cache()
    small = torch.ones(MiB // 4, device="cuda")
    big = torch.empty(GiB, dtype=torch.uint8, device="cuda")
    total = float(small.sum())
    torch.cuda.synchronize()
    del big
    _emit(dict(pid=os.getpid(), held=n, oom=message is not None, message=message, after=total))


def child_bench(backend, pairs=200_000, size=MiB):
    """torch.empty(1 MiB) + del pairs, ns per pair (Python included)."""
    import torch

    if backend == "kvscope":
        _kvscope().install(LIB)
    torch.empty(size, dtype=torch.uint8, device="cuda")  # warm: context, pool
    torch.cuda.synchronize()
    t0 = time.perf_counter_ns()
    for _ in range(pairs):
        t = torch.empty(size, dtype=torch.uint8, device="cuda")
        del t
    torch.cuda.synchronize()
    _emit(dict(pid=os.getpid(), backend=backend, ns_per_pair=(time.perf_counter_ns() - t0) / pairs))


def child_selftest(_):
    """--self-test only: one allocation through the stand-in libcudart, a marker, a dump."""
    import ctypes

    kv = _kvscope()
    p = ctypes.c_void_p()
    rc = ctypes.CDLL("libcudart.so.12").cudaMalloc(ctypes.byref(p), ctypes.c_size_t(8 * MiB))
    kv.mark("serve")
    _emit(dict(pid=os.getpid(), rc=rc, dumped=kv.dump("selftest"), live=kv.live_bytes(0)))


def child_nvml(_):
    """No shim: tensors of NVML_STEPS, `kvscope devices --json --pid` after each."""
    import torch

    held, reads, own, error = [], [], [], None
    for size in NVML_STEPS:
        held.append(torch.empty(size, dtype=torch.uint8, device="cuda"))
        torch.cuda.synchronize()
        p = subprocess.Popen([BIN, "devices", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        own.append(p.pid)
        so, se = p.communicate(timeout=60)
        try:
            devices = json.loads(so)
        except ValueError:
            devices, error = None, se.strip()
        reads.append(dict(reserved=torch.cuda.memory_reserved(), devices=devices))
    _emit(dict(pid=os.getpid(), reads=reads, kvscope_pids=own, error=error))


CHILDREN = dict(nvml=child_nvml, info=child_info, alloc=child_alloc, decode=child_decode, mempool=child_mempool,
                serving=child_serving, oom=child_oom, bench=child_bench, selftest=child_selftest)


# =================================================================== parent


Child = namedtuple("Child", "result reports folder")


class Run:
    """The parent's state: output folder, log, checks so far, dry-run flag."""

    def __init__(self, out, dry_run=False, quiet=False):
        self.out, self.dry_run, self.quiet = out, dry_run, quiet
        self.failed, self.passed = [], []
        self.model_dir = os.path.join(out, "model")
        self.kv_per_token = kv_bytes_per_token(MODEL)

    def say(self, line=""):
        if not self.quiet:
            print(line, flush=True)
        if not self.dry_run:
            with open(os.path.join(self.out, "gpu_validate.log"), "a") as f:
                f.write(line + "\n")

    def check(self, section, name, ok, detail):
        self.say(f"{'PASS' if ok else 'FAIL'}  {section}/{name}: {detail}")
        (self.passed if ok else self.failed).append(f"{section}/{name}")

    def emit(self, section, items):
        """Prints a judge's output: Checks as PASS/FAIL lines, strings as notes."""
        for item in items:
            if isinstance(item, Check):
                self.check(section, item.name, item.ok, item.detail)
            else:
                self.say(f"      {item}")


def child_env(folder, mode, extra):
    """The child's environment: ours without a preload or allocator setting of
    our own, reports to `folder`, the helper on PYTHONPATH, no network."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_PRELOAD", "PYTORCH_CUDA_ALLOC_CONF")}
    pp = os.path.join(ROOT, "python")
    env.update(KVSCOPE_OUT=folder, KVSCOPE_LIB=LIB, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               PYTHONPATH=pp + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""))
    if mode == "preload":
        env["LD_PRELOAD"] = LIB
    env.update(extra or {})
    return env


def run_child(run, section, name, args, mode="plain", extra=None, timeout=120):
    """Runs `--child ARGS` in a fresh process: plain (no kvscope unless the child
    loads it), preload (LD_PRELOAD=libkvscope.so) or run (under `kvscope run`).
    Returns Child(result, {reason: report path}, folder), or None without a
    result (or, in a dry run, after printing the command). A child that exits
    non-zero or prints no result costs a FAIL `section/NAME-ran` line."""
    folder = os.path.join(run.out, section, name)
    cmd = [sys.executable, os.path.abspath(__file__), "--child"] + args
    if mode == "run":
        cmd = [BIN, "run", "--out", folder, "--"] + cmd
    if run.dry_run:
        shown = " ".join(f"{k}={v}" for k, v in sorted((extra or {}).items()))
        pre = "LD_PRELOAD=$KVSCOPE_LIB " if mode == "preload" else ""
        run.say(f"      child {name}: {pre}{shown + ' ' if shown else ''}{' '.join(cmd)}")
        return None
    os.makedirs(folder, exist_ok=True)
    log_out, log_err = os.path.join(folder, "stdout.log"), os.path.join(folder, "stderr.log")
    with open(log_out, "w") as so, open(log_err, "w") as se:
        p = subprocess.Popen(cmd, env=child_env(folder, mode, extra), stdout=so, stderr=se, cwd=folder,
                             start_new_session=True)
        try:
            rc = p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)  # the child's own session: kvscope run and python
            p.wait()
            rc = f"killed after {timeout} s"
    with open(log_out) as f:
        result = parse_result(f.read())
    if rc != 0 or result is None:
        with open(log_err) as f:
            tail = [line for line in f.read().splitlines() if line.strip()][-3:]
        run.check(section, f"{name}-ran", False, f"exit status {rc}, result {'missing' if result is None else 'there'}"
                  f"; log {log_err}: {' | '.join(tail)}")
    # A child that printed its result and then failed (at exit, say) is still judged.
    return None if result is None else Child(result, find_reports(folder, result.get("pid")), folder)


def kvscope_check(run, section, reports, name="check"):
    """`kvscope check --json --fail-on critical --model <config> REPORTS`:
    (exit status, JSON or {}); the text form is kept beside it for people."""
    cmd = [BIN, "check", "--fail-on", "critical", "--model", os.path.join(run.model_dir, "config.json")] + reports
    if run.dry_run:
        run.say(f"      then: {' '.join(cmd[:2])} --json {' '.join(cmd[2:7])} <its reports>")
        return None, {}
    p = subprocess.run(cmd + ["--json"], capture_output=True, text=True, timeout=120)
    text = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    base = os.path.join(run.out, section, name)
    for ext, s in ((".json", p.stdout), (".txt", text.stdout + text.stderr), (".stderr.log", p.stderr)):
        with open(base + ext, "w") as f:
            f.write(s)
    try:
        return p.returncode, json.loads(p.stdout)
    except ValueError:
        run.say(f"      kvscope check printed no JSON (exit {p.returncode}): {p.stderr.strip()[:300]}")
        return p.returncode, {}


def _report(child, reason):
    path = child.reports.get(reason)
    return load_json(path) if path else None


# ------------------------------------------------------------------- sections


def preload_section(variant, judge, extra):
    def section(run, name):
        c = run_child(run, name, variant, ["alloc", variant], mode="preload", extra=extra)
        if c is None:
            return
        dump = _report(c, "dump-1")
        if dump is None:
            return run.check(name, "dump-written", False, f"no dump report in {c.folder}")
        run.emit(name, judge(c.result, dump))

    return section


def section_pluggable(run, name):
    native = run_child(run, name, "native", ["decode", "native"])
    plug = run_child(run, name, "pluggable", ["decode", "pluggable"])
    if native is None or plug is None:
        return
    run.emit(name, judge_pluggable(native.result, plug.result, run.kv_per_token, _report(plug, "exit")))


def section_mempool(run, name):
    c = run_child(run, name, "mempool", ["mempool"])
    if c is not None:
        run.emit(name, judge_mempool(c.result))


def serving_section(variant):
    def section(run, name):
        c = run_child(run, name, variant, ["serving", variant], mode="run", timeout=180)
        if c is None:
            return kvscope_check(run, name, []) if run.dry_run else None
        served = _report(c, "dump-1")
        if served is None:
            return run.check(name, "report", False, f"no dump report in {c.folder}")
        rc, check = kvscope_check(run, name, [c.reports["dump-1"]])
        run.emit(name, judge_serving(variant, rc, check, served, c.result["truth"]))

    return section


def section_oom(run, name):
    c = run_child(run, name, "oom", ["oom"], mode="preload")
    if c is None:
        return kvscope_check(run, name, []) if run.dry_run else None
    reports = [c.reports[r] for r in ("exit", "oom") if r in c.reports]
    rc, check = kvscope_check(run, name, reports) if reports else (None, {})
    run.emit(name, judge_oom(c.result, _report(c, "oom"), _report(c, "exit"), rc, check))


def section_nvml(run, name):
    c = run_child(run, name, "nvml", ["nvml"])
    if c is not None:
        run.emit(name, judge_nvml(c.result))


def section_bench(run, name):
    times = {}
    for backend, extra in (("native", {}), ("cudaMallocAsync", {"PYTORCH_CUDA_ALLOC_CONF": "backend:cudaMallocAsync"}),
                           ("kvscope", {})):
        c = run_child(run, name, backend, ["bench", backend], extra=extra)
        if c is not None:
            times[backend] = c.result["ns_per_pair"]
    if len(times) == 3:
        run.say("      torch.empty(1 MiB) + del, ns per pair (Python included):")
        for b, ns in times.items():
            run.say(f"      {b:<16} {ns:8.0f} ns  (x{ns / times['native']:.2f} native, "
                    f"x{ns / times['cudaMallocAsync']:.2f} cudaMallocAsync)")


def _first_line(pipe, timeout):
    """The first line of a child's stdout, or None after `timeout` seconds."""
    import threading

    got = []
    t = threading.Thread(target=lambda: got.append(pipe.readline()), daemon=True)
    t.start()
    t.join(timeout)
    return got[0] if got else None


def section_diagnose(run, name):
    for variant in ("healthy", "leak"):
        folder = os.path.join(run.out, name, variant)
        server = [sys.executable, os.path.join(ROOT, "examples", "openai_server.py"), "--model-dir", run.model_dir]
        server += ["--leak", str(DIAG_LEAK)] if variant == "leak" else []
        cmd = [BIN, "run", "--out", folder, "--"] + server
        diag = [BIN, "diagnose", "--json", "--context", str(DIAG_CONTEXT), "--long-context", str(DIAG_LONG),
                "--quiet-ms", "2000", "--timeout", "150", "--url"]
        if run.dry_run:
            run.say(f"      server {variant}: {' '.join(cmd)}")
            run.say(f"      then: {' '.join(diag)} http://127.0.0.1:<its port>")
            continue
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, "server.log"), "w") as log:
            p = subprocess.Popen(cmd, env=child_env(folder, "plain", {}), stdout=subprocess.PIPE, stderr=log,
                                 cwd=folder, start_new_session=True, text=True)
            try:
                line = _first_line(p.stdout, 180) or ""
                if not line.startswith("port="):
                    run.check(name, f"{variant}-requests", False, f"the server did not start; see {log.name}")
                    continue
                d = subprocess.run(diag + [f"http://127.0.0.1:{line.strip()[5:]}"], capture_output=True,
                                   text=True, timeout=240)
                for ext, text in ((".json", d.stdout), (".stderr.log", d.stderr)):
                    with open(os.path.join(run.out, name, variant + ext), "w") as f:
                        f.write(text)
                try:
                    check = json.loads(d.stdout)
                except ValueError:
                    check = {}
                    run.say(f"      kvscope diagnose printed no JSON (exit {d.returncode}): {d.stderr.strip()[:300]}")
                run.emit(name, judge_diagnose(variant, d.returncode, check))
            finally:
                os.killpg(p.pid, signal.SIGTERM)  # kvscope run and the server, in their own session
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    os.killpg(p.pid, signal.SIGKILL)
                    p.wait()


Section = namedtuple("Section", "name run seconds what checks")

SECTIONS = [
    Section("preload-default", preload_section("default", judge_preload_default, {}), 15,
            "LD_PRELOAD, PyTorch's caching allocator: 300 mixed tensors (every other freed), cuBLAS, a Llama forward",
            [("reserved-exact", "live cudaMalloc bytes == memory_reserved() at the dump, to the byte"),
             ("non-pytorch-listed", "every other live allocation listed (api, size): cuBLAS workspaces, runtime"),
             ("marker-counters", "the `measured` marker's timeline point holds PyTorch's allocated/reserved")]),
    Section("preload-expandable", preload_section("expandable", judge_preload_expandable,
                                                  {"PYTORCH_CUDA_ALLOC_CONF": "expandable_segments:True"}), 10,
            "LD_PRELOAD, expandable_segments:True: the same tensors through VMM",
            [("vmm-seen", "cuMemAddressReserve, cuMemCreate and cuMemMap calls recorded"),
             ("mapped-exact", "vmm.mapped_bytes == memory_reserved(), to the byte"),
             ("marker-counters", "as above")]),
    Section("preload-async", preload_section("async", judge_preload_async,
                                             {"PYTORCH_CUDA_ALLOC_CONF": "backend:cudaMallocAsync"}), 10,
            "LD_PRELOAD, backend:cudaMallocAsync: one stream-ordered allocation per tensor",
            [("live-exact", "cudaMallocAsync live bytes == memory_allocated(), to the byte"),
             ("pool-reserved-exact", "the default pool's reserved_bytes == memory_reserved(), to the byte"),
             ("marker-counters", "as above")]),
    Section("pluggable", section_pluggable, 30,
            f"decode {DECODE_STEPS} tokens (batch {DECODE_BATCH}) natively and with kvscope.install(), same seed",
            [("live-vs-requested", "kvscope live == the native run's requested_bytes.all.current at every point, "
              "within 64 KiB + 0.01 %"),
             ("allocated-explained", "memory_allocated() - requested == 512-B rounding + unsplit block rests, "
              "from memory snapshots (the 1.57 MB question)"),
             ("kv-growth", "live growth per decoded token == batch x kvscope fit's KV bytes per token, within 1 %"),
             ("report-mode", "the exit report says modes: pluggable")]),
    Section("mempool", section_mempool, 8, "40 tensors inside use_mem_pool(kvscope.mempool()), half freed",
            [("segments-cover-tensors", "kvscope live >= the tensors' bytes (it sees segments)"),
             ("free-keeps-segments", "freeing half the tensors does not lower kvscope's live bytes")]),
    Section("serving-healthy", serving_section("healthy"), 35,
            f"kvscope run: {len(SERVE_PROMPTS)} generate() requests, prompts {SERVE_PROMPTS}, batch {SERVE_BATCH}, "
            f"{SERVE_NEW} new tokens, markers",
            [("counters-recorded", "every `request N done` point of the report (a dump after the last "
              "request, the model still held) carries PyTorch's counters"),
             ("verdict", "kvscope check --fail-on critical exits 0, no critical finding"),
             ("tensor-level", "a finding or note says it read PyTorch's counters (printed)")]),
    Section("serving-warmup", serving_section("warmup"), 35, "the same, 64 MiB kept after the first request",
            [("counters-recorded", "as above"), ("verdict", "as above"), ("tensor-level", "as above")]),
    Section("serving-leak", serving_section("leak"), 35, "the same, 64 MiB kept after every request",
            [("counters-recorded", "as above"),
             ("leak-found", "leak_per_request, critical; kvscope check exits 1"),
             ("leak-rate", "its per-request bytes (numbers) within 10 % of 64 MiB"),
             ("tensor-level", "as above")]),
    Section("oom", section_oom, 12, "LD_PRELOAD: 8 GiB tensors until OutOfMemoryError, then free and allocate again",
            [("post-mortem", "-oom.json: cudaMalloc of 8 GiB, free memory below it"),
             ("recovered", "the exit report's out_of_memory.recovered is true"),
             ("check-finding", "kvscope check reports an out-of-memory finding")]),
    Section("nvml", section_nvml, 10,
            "no shim: 1 GiB then 512 MiB of tensors, `kvscope devices --json` (NVML) after each",
            [("pid-listed", "the child's PID is listed with its bytes in both reads"),
             ("growth", "NVML's growth between the reads == memory_reserved()'s, within 4 MiB"),
             ("context-counted", "NVML's bytes exceed memory_reserved() by >= 100 MiB (the context: device level)"),
             ("no-context", "kvscope devices itself is on no GPU: it made no CUDA context")]),
    Section("bench", section_bench, 25, "torch.empty(1 MiB)/del: native, cudaMallocAsync, kvscope pluggable (info)",
            []),
    Section("diagnose", section_diagnose, 60,
            f"kvscope diagnose against examples/openai_server.py under kvscope run: healthy, then "
            f"{DIAG_LEAK // MiB} MiB kept per request; --context {DIAG_CONTEXT} --long-context {DIAG_LONG}",
            [("healthy-requests", "every request answered, the run not stopped early"),
             ("healthy-verdict", "exit 0, no critical finding, all four steps measured (none skipped)"),
             ("leak-requests", "as above, with the leak"),
             ("leak-found", "leak_per_request, critical; kvscope diagnose exits 1")]),
]
BY_NAME = {s.name: s for s in SECTIONS}


def select(only, skip):
    """The sections to run, in their order; unknown names raise ValueError."""
    names = lambda s: [n.strip() for n in (s or "").split(",") if n.strip()]  # noqa: E731
    unknown = [n for n in names(only) + names(skip) if n not in BY_NAME]
    if unknown:
        raise ValueError(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(BY_NAME)}")
    chosen = names(only) or [s.name for s in SECTIONS]
    return [s for s in SECTIONS if s.name in chosen and s.name not in names(skip)]


def setup(run, sections):
    """Names the card (in a child: the parent never holds a CUDA context), writes
    the model's config.json, asks kvscope fit for its KV bytes per token."""
    os.makedirs(run.model_dir, exist_ok=True)
    with open(os.path.join(run.model_dir, "config.json"), "w") as f:
        json.dump(CONFIG_JSON, f, indent=1)
    info = run_child(run, "setup", "info", ["info"], timeout=120)
    if info is None or not info.result.get("cuda"):
        run.check("setup", "gpu", False, "no CUDA device visible to PyTorch")
        return False
    i = info.result
    run.say(f"GPU: {i['name']} ({human(i['total'])}); driver {i['driver']} (CUDA {i['driver_cuda']}); "
            f"torch {i['torch']} (CUDA runtime {i['cuda_runtime']}); transformers {i['transformers']}; "
            f"Python {i['python']}")
    p = subprocess.run([BIN, "fit", "--model", run.model_dir, "--json"], capture_output=True, text=True)
    fit = json.loads(p.stdout).get("kv_bytes_per_token") if p.returncode == 0 else None
    run.check("setup", "kv-model", fit == run.kv_per_token,
              f"kvscope fit: {fit} B of KV per token; layers x 2 x KV heads x head_dim x 2 B = {run.kv_per_token}")
    run.kv_per_token = fit or run.kv_per_token
    if i["transformers"] is None and any(s.name in ("pluggable", "preload-default") or
                                         s.name.startswith("serving") for s in sections):
        run.say("      transformers is not installed: the sections that build the model will fail")
    return True


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated sections (default: all)")
    ap.add_argument("--skip", help="comma-separated sections to leave out")
    ap.add_argument("--out", help="folder for reports and logs (default: a new temporary one)")
    ap.add_argument("--dry-run", action="store_true", help="print the plan; import no torch, run nothing")
    ap.add_argument("--self-test", action="store_true", help="test the parts that need no GPU")
    a = ap.parse_args(argv)
    if a.self_test:
        return self_test()
    try:
        sections = select(a.only, a.skip)
    except ValueError as e:
        print(f"gpu_validate: {e}", file=sys.stderr)
        return 2
    if a.dry_run:
        return dry_run(sections, a.out)
    missing = [p for p in (LIB, BIN) if not os.path.exists(p)]
    if missing:
        print(f"gpu_validate: {', '.join(missing)} missing: cargo build --release (or set KVSCOPE_LIB/KVSCOPE_BIN)",
              file=sys.stderr)
        return 2
    out = os.path.abspath(a.out or tempfile.mkdtemp(prefix="kvscope-gpu-"))
    os.makedirs(out, exist_ok=True)
    run = Run(out)
    run.say(f"kvscope GPU validation: {', '.join(s.name for s in sections)}; reports and logs in {out}")
    t0 = time.time()
    if setup(run, sections):
        for s in sections:
            t = time.time()
            run.say(f"== {s.name}: {s.what}")
            s.run(run, s.name)
            run.say(f"      ({time.time() - t:.1f} s)")
    run.say(f"{len(run.passed)} passed, {len(run.failed)} failed in {time.time() - t0:.0f} s"
            + (f": {', '.join(run.failed)}" if run.failed else "") + f"; reports and logs in {out}")
    return 1 if run.failed else 0


def dry_run(sections, out):
    """The plan: each section, its children's command lines and its checks. No torch, no GPU."""
    run = Run(out or "<a new temporary folder>", dry_run=True)
    total = sum(s.seconds for s in sections) + 8
    print(f"plan: {len(sections)} sections, about {total} s on an H200 (+ setup); reports and logs in {run.out}")
    print(f"  kvscope {BIN} ({'present' if os.path.exists(BIN) else 'missing'}), "
          f"libkvscope.so {LIB} ({'present' if os.path.exists(LIB) else 'missing'})")
    print("== setup: name the card, write model/config.json, kvscope fit --json")
    run_child(run, "setup", "info", ["info"])
    for s in sections:
        print(f"== {s.name} (~{s.seconds} s): {s.what}")
        s.run(run, s.name)
        for name, what in s.checks:
            print(f"      check {s.name}/{name}: {what}")
    return 0


# =================================================================== self-test


def _fake_report(by_kind, rows=(), markers=None, **extra):
    """A report with the fields the judges read."""
    cols = ["device", "address", "size", "api", "stream", "t_ms", "seq", "thread", "phase"]
    timeline = [dict(t_ms=i, marker=label, devices=[dict(device=0, live_bytes=0, framework=fw)])
                for i, (label, fw) in enumerate((markers or {}).items())]
    rep = dict(reason="dump", modes=["preload"], timeline=timeline,
               live=dict(bytes=sum(r[3] for r in by_kind), columns=cols, truncated=False,
                         allocations=[[0, 4096 * i, size, api, 0, 1.0, i, 1, 0] for i, (api, size) in enumerate(rows)],
                         by_kind=[dict(device=0, space=sp, api=api, count=n, bytes=b) for api, sp, n, b in by_kind]))
    rep.update(extra)
    return rep


def _fw(allocated, reserved):
    return dict(allocated_bytes=allocated, reserved_bytes=reserved, sampled_t_ms=1.0)


def _checks(items):
    return {i.name: i for i in items if isinstance(i, Check)}


def _test_pure():
    assert human(64 * MiB) == "64.0 MiB" and human(3 * GiB // 2) == "1.50 GiB" and human(-2048) == "-2.0 KiB"
    assert kv_bytes_per_token(MODEL) == 2048
    sizes = mixed_sizes(0, 300)
    assert sizes == mixed_sizes(0, 300) and min(sizes) >= KiB and max(sizes) < 64 * MiB + 512
    assert parse_result("noise\nRESULT {\"a\": 1}\nRESULT {\"a\": 2}\n") == {"a": 2} and parse_result("x") is None
    assert round512(1) == 512 and round512(512) == 512 and round512(513) == 1024
    w = block_waste([(1024, 700), (2 * MiB, MiB + 1000), (512, 512)])
    assert (w["rounding"], w["unsplit"], w["unsplit_blocks"]) == (324 + 24, MiB - 1024, 1), w
    assert w["allocated"] - w["requested"] == w["rounding"] + w["unsplit"]
    snap = [dict(blocks=[dict(state="active_allocated", size=1024, requested_size=700),
                         dict(state="inactive", size=4096)])]
    assert active_blocks(snap) == [(1024, 700)] and active_blocks({"segments": snap}) == [(1024, 700)]
    assert active_blocks([dict(blocks=[dict(state="active_allocated", size=1)])]) is None
    assert abs(slope([(1, 10), (2, 20), (3, 30)]) - 10) < 1e-9 and slope([(1, 5)]) == 0.0
    assert step_points([dict(label="load", live=1), dict(label="step 3", live=9)], "live") == [(3, 9)]
    assert per_request_bytes(dict(numbers=dict(bytes_per_request=7, requests=3))) == ("bytes_per_request", 7)
    assert per_request_bytes(dict(numbers=dict(growth_per_request=9))) == ("growth_per_request", 9)
    assert per_request_bytes(dict(numbers=dict(requests=3))) == (None, None)
    chk = dict(findings=[dict(name="allocator_warmup", severity="info", summary="kept after request 0",
                              evidence=["x"], numbers=dict(view="tensor_level"), next="in PyTorch, free it"),
                         dict(name="kv_cache", severity="info", summary="8 tensors of 2 MiB", evidence=[],
                              numbers={}, next="")], notes=[])
    assert framework_mentions(chk) == ["allocator_warmup.numbers: view=tensor_level"]
    only_advice = dict(findings=[dict(name="leak_per_request", summary="s", next="in PyTorch, tensors kept")])
    assert framework_mentions(only_advice) == []
    assert pytorch_free("CUDA out of memory. ... of which 17.12 MiB is free. Including") == "17.12 MiB"
    assert nvrm_version("NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.159  Thu ...") == "580.159"
    assert nvrm_version("NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  580.95.05  Release") == "580.95.05"
    assert listing([("a", 1024), ("a", 1024), ("b", 4)]) == "2 x 1.0 KiB a, 4 B b" and listing([]) == "none"
    assert REPORT_NAME.match("kvscope-my-host-1-2-1795850000000-dump-3.json").groups() == ("2", "dump-3")
    assert [s.name for s in select("oom,bench", None)] == ["oom", "bench"]
    assert "bench" not in [s.name for s in select(None, "bench")]
    try:
        select("nope", None)
        raise AssertionError("unknown section accepted")
    except ValueError:
        pass


def _test_judges():
    """Every judge on synthetic inputs; the check names they print are the declared ones."""
    declared = {(s.name, c) for s in SECTIONS for c, _ in s.checks}
    seen = set()

    def judged(section, items, want):
        got = _checks(items)
        seen.update((section, n) for n in got)
        assert {n: c.ok for n, c in got.items()} == want, (section, got)

    at = dict(allocated=100, reserved=300, requested=90)
    res = dict(before=at, after=at, device_used=10**9)
    rep = _fake_report([("cudaMalloc", "device", 2, 300), ("cuMemAlloc_v2", "device", 2, 64 * MiB + 4),
                        ("cuMemHostAlloc", "host", 1, 4)],
                       rows=[("cudaMalloc", 200), ("cudaMalloc", 100), ("cuMemAlloc_v2", 64 * MiB),
                             ("cuMemAlloc_v2", 4), ("cuMemHostAlloc", 4)], markers={"measured": _fw(100, 300)})
    judged("preload-default", judge_preload_default(res, rep),
           {"reserved-exact": True, "non-pytorch-listed": True, "marker-counters": True})
    assert "64.0 MiB cuMemAlloc_v2, 4 B cuMemAlloc_v2" in _checks(judge_preload_default(res, rep))[
        "non-pytorch-listed"].detail
    moved = dict(res, after=dict(at, reserved=302))
    judged("preload-default", judge_preload_default(moved, rep),
           {"reserved-exact": False, "non-pytorch-listed": True, "marker-counters": True})
    vm = _fake_report([("cuMemCreate", "device", 1, 300)], markers={"measured": _fw(100, 300)},
                      vmm=dict(mapped_bytes=300, physical_bytes=300),
                      calls=dict(cuMemAddressReserve=1, cuMemCreate=1, cuMemMap=1))
    judged("preload-expandable", judge_preload_expandable(res, vm),
           {"vmm-seen": True, "mapped-exact": True, "marker-counters": True})
    asy = _fake_report([("cudaMallocAsync_ptsz", "device", 3, 100)], markers={"measured": _fw(100, 300)},
                       pools=[dict(device=0, default_pool=True, reserved_bytes=300, used_bytes=100)])
    judged("preload-async", judge_preload_async(res, asy),
           {"live-exact": True, "pool-reserved-exact": True, "marker-counters": True})
    judged("preload-async", judge_preload_async(res, dict(asy, pools=[])),
           {"live-exact": True, "pool-reserved-exact": False, "marker-counters": True})

    # pluggable: requested grows 8,192 B per step; memory_allocated adds rounding and an unsplit rest.
    def pts(key, f):
        labels = ["load", "prefill"] + [f"step {i}" for i in range(1, 41)] + ["end"]
        return [dict(label=lb, **{key: f(i)}) for i, lb in enumerate(labels)]
    waste = dict(allocated=0, requested=0, rounding=100, unsplit=900, blocks=3, unsplit_blocks=1, largest_unsplit=900)
    nat = pts("requested", lambda i: 10**6 + 8192 * i)
    for p in nat:
        p["allocated"] = p["requested"] + 1000
    nat[0]["waste"] = dict(waste, allocated=nat[0]["allocated"], requested=nat[0]["requested"])
    plug = dict(points=pts("live", lambda i: 10**6 + 8192 * i), hooks=["set_init_fn"], memory_stats="RuntimeError")
    ok = {"live-vs-requested": True, "allocated-explained": True, "kv-growth": True, "report-mode": True}
    judged("pluggable", judge_pluggable(dict(points=nat), plug, 2048, dict(modes=["pluggable"])), ok)
    off = dict(plug, points=[dict(p, live=p["live"] + 70 * KiB) for p in plug["points"]])
    judged("pluggable", judge_pluggable(dict(points=nat), off, 2048, dict(modes=["pluggable"])),
           dict(ok, **{"live-vs-requested": False}))
    judged("pluggable", judge_pluggable(dict(points=nat), plug, 4096, None),
           dict(ok, **{"kv-growth": False, "report-mode": False}))

    judged("mempool", judge_mempool(dict(before=0, full=75 * MiB, tensor_bytes=57 * MiB, half=75 * MiB,
                                         freed_count=20, freed_bytes=28 * MiB, outside=75 * MiB, after_empty=0)),
           {"segments-cover-tensors": True, "free-keeps-segments": True})

    truth = [dict(label="serve", allocated=10), dict(label="request 0 done", allocated=10 + KEEP),
             dict(label="request 1 done", allocated=10 + 2 * KEEP)]
    srep = _fake_report([], markers={"request 0 done": _fw(1, 2), "request 1 done": _fw(3, 4)})
    leak = dict(findings=[dict(name="leak_per_request", severity="critical", summary="64 MiB more per request",
                               evidence=["read on PyTorch's memory_allocated()"],
                               numbers=dict(bytes_per_request=KEEP + MiB))], notes=[])
    judged("serving-leak", judge_serving("leak", 1, leak, srep, truth),
           {"counters-recorded": True, "leak-found": True, "leak-rate": True, "tensor-level": True})
    leak77 = dict(findings=[dict(leak["findings"][0], numbers=dict(bytes_per_request=81385242), evidence=[])])
    judged("serving-leak", judge_serving("leak", 1, leak77, srep, truth),
           {"counters-recorded": True, "leak-found": True, "leak-rate": False, "tensor-level": False})
    healthy = dict(findings=[dict(name="allocator_warmup", severity="info", summary="s", evidence=[],
                                  numbers=dict(view="tensor_level"))], notes=[])
    judged("serving-healthy", judge_serving("healthy", 0, healthy, srep, truth[:2]),
           {"counters-recorded": True, "verdict": True, "tensor-level": True})
    judged("serving-warmup", judge_serving("warmup", 1, leak, _fake_report([]), truth),
           {"counters-recorded": False, "verdict": False, "tensor-level": True})

    oom_rep = dict(reason="oom", oom=dict(api="cudaMalloc", size=OOM_TENSOR, code=2, device_free_bytes=3 * GiB,
                                          device_total_bytes=140 * GiB, live_bytes=136 * GiB, live_count=17))
    exit_rep = dict(reason="exit", out_of_memory=dict(failures=2, first_t_ms=1.0, allocations_after=3, recovered=True))
    oomchk = dict(findings=[dict(name="out_of_memory", severity="critical")])
    judged("oom", judge_oom(dict(held=17, oom=True, message="of which 3.29 GiB is free"), oom_rep, exit_rep, 1,
                            oomchk), {"post-mortem": True, "recovered": True, "check-finding": True})
    judged("oom", judge_oom(dict(held=64, oom=False), None, dict(out_of_memory=None), 0, {}),
           {"post-mortem": False, "recovered": False, "check-finding": False})
    dev = lambda pid, used, mapped=True: dict(pids_mapped=mapped, gpus=[dict(processes=[  # noqa: E731
        dict(host_pid=pid, pid=pid if mapped else None, used_bytes=used)])])
    nv = dict(pid=7, kvscope_pids=[8, 9], reads=[dict(reserved=GiB, devices=dev(7, GiB + 500 * MiB)),
                                                 dict(reserved=3 * GiB // 2, devices=dev(7, 3 * GiB // 2 + 500 * MiB))])
    ok = {"pid-listed": True, "growth": True, "context-counted": True, "no-context": True}
    judged("nvml", judge_nvml(nv), ok)
    judged("nvml", judge_nvml(dict(nv, reads=[dict(r, devices=dev(7, r["reserved"] + 500 * MiB, False))
                                             for r in nv["reads"]])), ok)
    kv_on_gpu = dict(nv, kvscope_pids=[7])
    judged("nvml", judge_nvml(kv_on_gpu), dict(ok, **{"no-context": False}))
    judged("nvml", judge_nvml(dict(pid=7, reads=[], error="no NVML")),
           {"pid-listed": False, "growth": False, "context-counted": False, "no-context": False})
    dsteps = [dict(number=n, status="ok", detail="d") for n in (1, 2, 3, 4)]
    dcheck = dict(processes=[dict(devices=[dict(steps=dsteps)])], findings=[],
                  diagnose=dict(requests=[dict(latency_ms=5.0)] * 8, stopped=None))
    judged("diagnose", judge_diagnose("healthy", 0, dcheck), {"healthy-requests": True, "healthy-verdict": True})
    skipped = dict(dcheck, processes=[dict(devices=[dict(steps=dsteps[:3] + [dict(dsteps[3], status="skipped")])])])
    judged("diagnose", judge_diagnose("healthy", 0, skipped), {"healthy-requests": True, "healthy-verdict": False})
    dleak = dict(dcheck, findings=leak["findings"])
    judged("diagnose", judge_diagnose("leak", 1, dleak), {"leak-requests": True, "leak-found": True})
    cut = dict(dleak, diagnose=dict(requests=[dict(latency_ms=None)], stopped="request d0: refused"))
    judged("diagnose", judge_diagnose("leak", 0, cut), {"leak-requests": False, "leak-found": False})
    assert seen == declared, (declared - seen, seen - declared)


def _fixtures():
    for d in (os.environ.get("KVSCOPE_FIXTURES"), os.path.join(ROOT, "..", "shared", "fixtures", "h200"),
              "/work/shared/fixtures/h200"):
        if d and os.path.isdir(os.path.join(d, "allocators")):
            return d
    return None


def _test_fixtures(d):
    """The judges on reports written on the H200 (kvscope 0.1: no `measured` marker,
    so marker-counters is not asserted)."""
    j = lambda *p: load_json(os.path.join(d, *p))  # noqa: E731
    at = lambda a, r: dict(before=dict(allocated=a, reserved=r), after=dict(allocated=a, reserved=r))  # noqa: E731
    c = _checks(judge_preload_default(at(0, 14_166_261_760), j("allocators", "torch-default-dump.json")))
    assert c["reserved-exact"].ok and c["non-pytorch-listed"].ok, c
    markers = j("healthy", "torch-markers.json")
    last = markers[-1]
    c = _checks(judge_preload_default(at(last["allocated"], last["reserved"]), j("healthy", "kvscope-exit.json")))
    assert c["reserved-exact"].ok and c["non-pytorch-listed"].ok, c
    detail = c["non-pytorch-listed"].detail
    assert "64.0 MiB cuMemAlloc_v2" in detail and "7 live allocations" in detail, detail
    print(f"  fixture healthy: {c['reserved-exact'].detail}\n  fixture healthy: {detail}")
    c = _checks(judge_preload_expandable(at(0, 14_006_878_208), j("allocators", "torch-expandable-dump.json")))
    assert c["mapped-exact"].ok and c["vmm-seen"].ok, c
    c = _checks(judge_preload_async(at(7_071_308_756, 14_025_752_576),
                                    j("allocators", "torch-cudamallocasync-dump.json")))
    assert c["live-exact"].ok and c["pool-reserved-exact"].ok, c
    exit_rep = dict(out_of_memory=dict(recovered=True, failures=2, allocations_after=1))
    c = _checks(judge_oom(dict(held=17, oom=True), j("allocators", "torch-oom.json"), exit_rep, 1,
                          dict(findings=[dict(name="out_of_memory", severity="critical")])))
    assert c["post-mortem"].ok, c
    print(f"  fixture oom: {c['post-mortem'].detail}")
    return d


def _test_reader(d):
    """kvscope check (the reader present here) on the fixtures, through the same
    parsing the serving and oom sections use. Prints the verdicts: they depend
    on the reader's version, the parsing must not."""
    run = Run(tempfile.mkdtemp(prefix="kvscope-gpu-selftest-"), quiet=True)
    os.makedirs(os.path.join(run.out, "fixture"), exist_ok=True)
    run.model_dir = d
    for scen, variant in (("healthy", "healthy"), ("leak", "leak")):
        rc, check = kvscope_check(run, "fixture", [os.path.join(d, scen, "kvscope-exit.json")], name=scen)
        assert check.get("schema") == "kvscope.check.v1" and rc in (0, 1), (rc, check)
        truth = [dict(m, label=m["label"]) for m in load_json(os.path.join(d, scen, "torch-markers.json"))]
        items = judge_serving(variant, rc, check, load_json(os.path.join(d, scen, "kvscope-exit.json")), truth)
        for i in items:
            print(f"  reader on fixture {scen}: " + (f"{'PASS' if i.ok else 'FAIL'} {i.name}: {i.detail}"
                                                    if isinstance(i, Check) else i))
    rc, check = kvscope_check(run, "fixture", [os.path.join(d, "allocators", "torch-oom.json")], name="oom")
    assert any(OOM_FINDINGS.search(f["name"]) for f in check["findings"]), check
    print(f"  reader on fixture oom: exit {rc}; {findings_line(check)}")


def _test_plumbing():
    """run_child through the real kvscope binary and shim on the stand-in CUDA
    (kvscope-native beside the binary): environment, `kvscope run`, preload,
    RESULT parsing, reports found by pid."""
    native = os.path.join(os.path.dirname(BIN), "kvscope-native")
    run = Run(tempfile.mkdtemp(prefix="kvscope-gpu-selftest-"), quiet=True)
    extra = dict(LD_LIBRARY_PATH=native, KVSCOPE_TORCH="0")
    for mode in ("preload", "run"):
        c = run_child(run, "plumbing", mode, ["selftest"], mode=mode, extra=extra, timeout=60)
        assert c is not None, (mode, run.failed, open(os.path.join(run.out, "plumbing", mode, "stderr.log")).read())
        assert c.result["rc"] == 0 and c.result["dumped"] and c.result["live"] == 8 * MiB, c.result
        assert set(c.reports) == {"dump-1", "exit"}, c.reports
        rep = load_json(c.reports["exit"])
        assert api_bytes(rep, {"cudaMalloc"}) == 8 * MiB and [m["label"] for m in rep["markers"]] == ["serve"]
        print(f"  plumbing ({mode}): child pid {c.result['pid']}, reports {sorted(c.reports)}")
    bad = run_child(run, "plumbing", "bad", ["nope"], timeout=60)
    assert bad is None and run.failed == ["plumbing/bad-ran"], run.failed


class _NoTorch:
    """A meta-path entry that makes `import torch` fail (dry runs must not import it)."""

    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch.") or name == "transformers":
            raise ImportError(f"{name} imported during a dry run")
        return None


def self_test():
    _test_pure()
    print("ok  pure helpers")
    _test_judges()
    print("ok  judges on synthetic reports; the check names match the declared ones")
    blocker = _NoTorch()
    sys.meta_path.insert(0, blocker)
    try:
        import contextlib
        import io

        buf = io.StringIO()
        with contextlib.redirect_stdout(buf):
            assert main(["--dry-run"]) == 0 and main(["--dry-run", "--only", "oom,pluggable"]) == 0
        assert "torch" not in sys.modules
        plan = buf.getvalue()
        for s in SECTIONS:
            assert f"== {s.name} " in plan and all(f"check {s.name}/{c}:" in plan for c, _ in s.checks), s.name
        assert "LD_PRELOAD=$KVSCOPE_LIB" in plan and " run --out " in plan
    finally:
        sys.meta_path.remove(blocker)
    print("ok  --dry-run: every section and check in the plan, torch never imported")
    d = _fixtures()
    if d:
        _test_fixtures(d)
        print(f"ok  judges on the H200 fixtures ({d})")
    else:
        print("--  no H200 fixtures (set KVSCOPE_FIXTURES): fixture tests skipped")
    if d and os.path.exists(BIN):
        _test_reader(d)
        print(f"ok  kvscope check's JSON read as the sections read it ({BIN})")
    else:
        print("--  no kvscope binary (KVSCOPE_BIN): reader tests skipped")
    if os.path.exists(BIN) and os.path.exists(LIB) and os.path.isdir(os.path.join(os.path.dirname(BIN),
                                                                                  "kvscope-native")):
        _test_plumbing()
        print("ok  children under LD_PRELOAD and kvscope run on the stand-in CUDA")
    else:
        print("--  no stand-in CUDA beside the binary: plumbing test skipped")
    print("self-test passed")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        kind, arg = sys.argv[2], (sys.argv[3] if len(sys.argv) > 3 else None)
        if kind not in CHILDREN:
            sys.exit(f"gpu_validate: unknown child {kind}")
        CHILDREN[kind](arg)
    else:
        sys.exit(main())
