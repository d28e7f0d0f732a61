#!/usr/bin/env python3
"""kvscope on a real NVIDIA GPU: the checks that the stand-in CUDA cannot make.

    cargo build --release
    python3 examples/gpu_validate.py            # needs torch (CUDA) and transformers

A small Llama-shaped model with random weights (transformers, no download)
generates tokens with a KV cache, in child processes:
  preload    LD_PRELOAD=libkvscope.so, PyTorch's own caching allocator
  pluggable  kvscope as PyTorch's allocator (python/kvscope install())
  native     no kvscope: torch.cuda.memory_allocated() at the same points
Checks (exit status 1 when one fails):
  (a) pluggable: kvscope's live bytes equal memory_allocated() of the native
      run at the same points, within 512 bytes per live storage (PyTorch
      rounds sizes up to 512 bytes; kvscope sees them as asked) + 0.1 %; preload: kvscope's live bytes (PyTorch's
      segments) equal memory_reserved() within max(16 MiB, 1 %) (libraries
      that call cudaMalloc themselves, e.g. cuBLAS workspaces on some builds)
  (b) pluggable: live-byte growth per generated token, fitted over the
      decode steps, equals batch x the KV model's bytes per token
      (kvscope fit --json) within 1 %
  (c) a leak planted per request is reported by kvscope check as leak_per_request
and times torch.empty/del pairs through kvscope against PyTorch's native and
cudaMallocAsync backends. Paths: KVSCOPE_LIB, KVSCOPE_BIN (default target/release).
"""

import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
LIB = os.environ.get("KVSCOPE_LIB", os.path.join(ROOT, "target", "release", "libkvscope.so"))
BIN = os.environ.get("KVSCOPE_BIN", os.path.join(ROOT, "target", "release", "kvscope"))
MiB = 1 << 20

CONFIG = dict(
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
BATCH, PROMPT, NEW_TOKENS = 4, 64, 256


# ---------------------------------------------------------------- children


def build_model():
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(**CONFIG)
    model = LlamaForCausalLM(cfg).to(dtype=torch.float16, device="cuda").eval()
    return cfg, model


def decode(model, live):
    """Greedy decoding step by step with a DynamicCache; `live()` after each step."""
    import torch

    ids = torch.randint(0, CONFIG["vocab_size"], (BATCH, PROMPT), device="cuda")
    points = []
    with torch.no_grad():
        out = model(ids, use_cache=True)
        cache = out.past_key_values
        nxt = out.logits[:, -1:].argmax(-1)
        del out
        for step in range(NEW_TOKENS):
            out = model(nxt, past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            nxt = out.logits[:, -1:].argmax(-1)
            del out
            torch.cuda.synchronize()
            points.append((PROMPT + step + 1, live()))
    # Live CUDA allocations held by Python (distinct storages): the bound on
    # how far PyTorch's 512-byte rounding can move memory_allocated().
    import gc

    storages = {t.untyped_storage().data_ptr() for t in gc.get_objects() if torch.is_tensor(t) and t.is_cuda}
    del cache, nxt, ids
    torch.cuda.synchronize()
    return points, len(storages)


def child(mode):
    import torch

    sys.path.insert(0, os.path.join(ROOT, "python"))
    import kvscope

    result = {"mode": mode}
    if mode == "pluggable":
        kvscope.install(LIB)
        result["hooks"] = kvscope.hooks()
    kvscope.mark("load")
    cfg, model = build_model()
    kvscope.mark("serve")
    if mode == "native":
        live = lambda: torch.cuda.memory_allocated()  # noqa: E731
    else:
        live = lambda: kvscope.live_bytes(torch.cuda.current_device())  # noqa: E731
    result["points"], result["storages"] = decode(model, live)
    if mode == "preload":
        result["reserved"] = torch.cuda.memory_reserved()
        result["kvscope_live"] = kvscope.live_bytes(0)
    if mode == "pluggable":
        try:
            torch.cuda.memory_allocated()
            result["memory_stats"] = "available"
        except Exception as e:  # what a global pluggable allocator breaks
            result["memory_stats"] = f"{type(e).__name__}: {str(e).splitlines()[0]}"
        # (c): requests with a planted leak, marked as kvscope check reads them.
        leaked = []
        for r in range(6):
            kvscope.mark(f"request {r} start tokens={PROMPT + 32}")
            with torch.no_grad():
                ids = torch.randint(0, CONFIG["vocab_size"], (1, PROMPT), device="cuda")
                model.generate(ids, max_new_tokens=32, do_sample=False, pad_token_id=0)
            leaked.append(torch.empty(16 * MiB, dtype=torch.uint8, device="cuda"))
            torch.cuda.synchronize()
            kvscope.mark(f"request {r} done")
        kvscope.mark("idle")
        kvscope.dump("leak")
    print("RESULT " + json.dumps(result), flush=True)


def bench(backend, pairs=200_000, size=MiB):
    import torch

    if backend == "kvscope":
        sys.path.insert(0, os.path.join(ROOT, "python"))
        import kvscope

        kvscope.install(LIB)
    torch.empty(size, dtype=torch.uint8, device="cuda")  # warm: context, pool
    torch.cuda.synchronize()
    t0 = time.perf_counter_ns()
    for _ in range(pairs):
        t = torch.empty(size, dtype=torch.uint8, device="cuda")
        del t
    torch.cuda.synchronize()
    ns = (time.perf_counter_ns() - t0) / pairs
    print("RESULT " + json.dumps({"backend": backend, "ns_per_pair": ns}), flush=True)


# ---------------------------------------------------------------- parent


def run_child(args, env_extra, out_dir):
    env = dict(os.environ, KVSCOPE_OUT=out_dir, **env_extra)
    env.pop("LD_PRELOAD", None)
    env.update(env_extra)
    p = subprocess.run([sys.executable, __file__] + args, env=env, capture_output=True, text=True)
    lines = [l for l in p.stdout.splitlines() if l.startswith("RESULT ")]
    if p.returncode != 0 or not lines:
        sys.exit(f"child {args} failed ({p.returncode}):\n{p.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def slope(points):
    n = len(points)
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    return sum((x - mx) * (y - my) for x, y in points) / sum((x - mx) ** 2 for x, _ in points)


def main():
    import torch

    if not torch.cuda.is_available():
        sys.exit("no CUDA device visible to PyTorch")
    for path in (LIB, BIN):
        if not os.path.exists(path):
            sys.exit(f"{path} missing: cargo build --release")
    print(f"GPU: {torch.cuda.get_device_name(0)}; torch {torch.__version__}; CUDA {torch.version.cuda}")
    work = tempfile.mkdtemp(prefix="kvscope-gpu-")
    failed = []

    def check(name, ok, detail):
        print(f"  {'PASS' if ok else 'FAIL'}  {name}: {detail}")
        if not ok:
            failed.append(name)

    native = run_child(["--child", "native"], {}, os.path.join(work, "native"))
    plug = run_child(["--child", "pluggable"], {}, os.path.join(work, "pluggable"))
    pre = run_child(["--child", "preload"], {"LD_PRELOAD": LIB}, os.path.join(work, "preload"))
    print(f"pluggable hooks wired: {plug['hooks']}; memory_stats under it: {plug['memory_stats']}")

    # (a) tensors: kvscope vs memory_allocated at the same decode steps.
    worst = max(abs(p[1] - n[1]) for p, n in zip(plug["points"], native["points"]))
    allowed = 512 * native["storages"] + native["points"][-1][1] // 1000
    check("(a) pluggable live bytes vs memory_allocated()", worst <= allowed,
          f"largest difference {worst} B over {len(native['points'])} steps (allowed {allowed} B)")
    diff = abs(pre["kvscope_live"] - pre["reserved"])
    allowed = max(16 * MiB, pre["reserved"] // 100)
    check("(a) preload segments vs memory_reserved()", diff <= allowed,
          f"kvscope {pre['kvscope_live']} B, reserved {pre['reserved']} B, difference {diff} B (allowed {allowed} B)")

    # (b) growth per token against the KV model.
    cfg_dir = os.path.join(work, "model")
    os.makedirs(cfg_dir, exist_ok=True)
    with open(os.path.join(cfg_dir, "config.json"), "w") as f:
        json.dump(dict(CONFIG, model_type="llama", architectures=["LlamaForCausalLM"]), f)
    fit = json.loads(subprocess.run([BIN, "fit", "--model", cfg_dir, "--json"],
                                    capture_output=True, text=True, check=True).stdout)
    want = BATCH * fit["kv_bytes_per_token"]
    got = slope(plug["points"][16:])
    check("(b) KV growth per generated token", abs(got - want) <= want / 100,
          f"{got:.0f} B per step for {BATCH} sequences; KV model {want} B ({fit['kv_bytes_per_token']} B/token)")
    seg = slope(pre["points"][16:])
    print(f"       preload view of the same growth: {seg:.0f} B per step (segments: steps, not tokens)")

    # (c) the planted leak.
    reports = sorted(os.path.join(work, "pluggable", f) for f in os.listdir(os.path.join(work, "pluggable"))
                     if f.endswith("-dump-1.json"))
    c = subprocess.run([BIN, "check", reports[-1], "--model", cfg_dir, "--gpu-mem",
                        str(torch.cuda.get_device_properties(0).total_memory), "--json"],
                       capture_output=True, text=True)
    names = [f["name"] for f in json.loads(c.stdout).get("findings", [])] if c.stdout else []
    check("(c) planted leak found by kvscope check", "leak_per_request" in names, f"findings {names}")

    # Timing.
    print("torch.empty(1 MiB) + del, ns per pair (Python included):")
    times = {}
    for backend, env in (("native", {}), ("cudaMallocAsync", {"PYTORCH_CUDA_ALLOC_CONF": "backend:cudaMallocAsync"}),
                         ("kvscope", {})):
        times[backend] = run_child(["--bench", backend], env, os.path.join(work, "bench"))["ns_per_pair"]
    for b, ns in times.items():
        print(f"  {b:<16} {ns:8.0f} ns  (x{ns / times['native']:.2f} native, x{ns / times['cudaMallocAsync']:.2f} cudaMallocAsync)")
    print(f"reports in {work}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        child(sys.argv[2])
    elif len(sys.argv) > 2 and sys.argv[1] == "--bench":
        bench(sys.argv[2])
    else:
        main()
