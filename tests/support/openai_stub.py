"""A stand-in OpenAI-compatible server for `kvscope diagnose`'s tests.

Python's standard library only: http.server for the API, ctypes for the
stand-in CUDA (libcudart.so.12 of native/, which the shim interposes when
preloaded) and for the caching-allocator model (libcaching.so: PyTorch's
rules) where the engine allocates through PyTorch's cache. Three KV patterns:

  paged  vLLM: weights, then one tensor per layer of whole pages, sized once;
         /metrics offers vllm:kv_cache_usage_perc
  pool   SGLang: K and V token pools per layer, sized once;
         /metrics offers sglang:token_usage
  hf     Hugging Face generate: per-request K and V tensors per layer, regrown
         every --chunk tokens, through the caching allocator, with PyTorch's
         counters handed to the shim (kvscope_framework_counters)

Planted faults: --leak BYTES (kept after every request), --unbounded BYTES
(kept per decoded token), --double-weights, --fragment (a stream-ordered
pool left holding its freed memory), and a long request that runs the device
out of memory (a small SIMCUDA_DEVICE_MEM: the answer is a 500). Failures of
the server itself: --fail errors (every completion a 500), --fail hang (no
completion answered), --fail die:N (the process ends during request N+1).

It prints `port=N` once it listens on 127.0.0.1 (port 0: any free one).
"""

import argparse
import ctypes
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

p = argparse.ArgumentParser()
p.add_argument("--native", required=True)
p.add_argument("--config", required=True, help="a model directory holding config.json")
p.add_argument("--pattern", choices=["paged", "pool", "hf"], default="paged")
p.add_argument("--weights", type=int, required=True, help="bytes of weights")
p.add_argument("--kv-bytes", type=int, default=64 << 20, help="paged/pool: the cache's size")
p.add_argument("--block", type=int, default=16)
p.add_argument("--chunk", type=int, default=64, help="hf: tokens per regrowth")
p.add_argument("--step-ms", type=float, default=1.0, help="time per decoded token")
p.add_argument("--max-model-len", type=int, default=0)
p.add_argument("--leak", type=int, default=0)
p.add_argument("--unbounded", type=int, default=0)
p.add_argument("--double-weights", action="store_true")
p.add_argument("--fragment", action="store_true")
p.add_argument("--no-token-ids", action="store_true", help="refuse token-id prompts (400)")
p.add_argument("--fail", default="")
p.add_argument("--port", type=int, default=0)
o = p.parse_args()

cfg = json.load(open(os.path.join(o.config, "config.json")))
LAYERS = cfg["num_hidden_layers"]
KV_HEADS = cfg.get("num_key_value_heads", cfg["num_attention_heads"])
HEAD_DIM = cfg.get("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
DTYPE = 2
PER_TOKEN_LAYER = KV_HEADS * HEAD_DIM * DTYPE  # K or V, one layer, one token
MAX_LEN = o.max_model_len or cfg.get("max_position_embeddings", 4096)

rt = ctypes.CDLL(os.path.join(o.native, "libcudart.so.12"))
rt.cudaMalloc.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_size_t]
rt.cudaFree.argtypes = [ctypes.c_void_p]
lock = threading.Lock()  # the caching model and the bookkeeping are not thread-safe


class OOM(Exception):
    pass


def dalloc(size):
    ptr = ctypes.c_void_p()
    if rt.cudaMalloc(ctypes.byref(ptr), ctypes.c_size_t(size)) != 0:
        raise OOM("CUDA out of memory. Tried to allocate %d bytes" % size)
    return ptr.value


def dfree(ptr):
    rt.cudaFree(ctypes.c_void_p(ptr))


cc = None
counters = None
if o.pattern == "hf":
    cc_lib = ctypes.CDLL(os.path.join(o.native, "libcaching.so"))
    cc_lib.cc_create.restype = ctypes.c_void_p
    cc_lib.cc_create.argtypes = [ctypes.c_int, ctypes.c_int]
    cc_lib.cc_malloc.restype = ctypes.c_void_p
    cc_lib.cc_malloc.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    cc_lib.cc_free.argtypes = [ctypes.c_void_p, ctypes.c_void_p]

    class Stats(ctypes.Structure):
        _fields_ = [(n, ctypes.c_uint64) for n in (
            "allocated", "reserved", "requested", "peak_allocated", "peak_reserved",
            "segments", "cuda_mallocs", "cuda_frees", "cuda_failures", "alloc_retries",
            "ooms", "released_segments", "released_bytes")]

    cc_lib.cc_get_stats.restype = Stats
    cc_lib.cc_get_stats.argtypes = [ctypes.c_void_p]
    cc = cc_lib.cc_create(0, 0)
    try:
        counters = ctypes.CDLL(None).kvscope_framework_counters
        counters.argtypes = [ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64]
    except AttributeError:
        counters = None


def report_counters():
    if counters is not None:
        st = cc_lib.cc_get_stats(cc)
        counters(0, st.allocated, st.reserved)


def talloc(size):
    """A tensor: through the caching allocator where the engine has one."""
    if cc is None:
        return dalloc(size)
    with lock:
        ptr = cc_lib.cc_malloc(cc, size, None)
        report_counters()
    if not ptr:
        raise OOM("CUDA out of memory. Tried to allocate %d bytes" % size)
    return ptr


def tfree(ptr):
    if cc is None:
        return dfree(ptr)
    with lock:
        cc_lib.cc_free(cc, ctypes.c_void_p(ptr))
        report_counters()


# ---- loading ----
# Tensors of unequal sizes (equal ones would look like a preallocated cache).
for copy in range(2 if o.double_weights else 1):
    parts = [o.weights * k // 10 for k in (1, 2, 3)]
    for size in parts + [o.weights - sum(parts)]:
        # Hugging Face's weights are tensors too (through the cache there).
        talloc(size) if cc is not None else dalloc(size)
if cc is not None:
    report_counters()  # the shim runs now: PyTorch's counters from the start
capacity = 0
if o.pattern == "paged":
    per_layer_page = o.block * 2 * PER_TOKEN_LAYER
    blocks = o.kv_bytes // (per_layer_page * LAYERS)
    capacity = blocks * o.block
    for _ in range(LAYERS):
        dalloc(blocks * per_layer_page)
elif o.pattern == "pool":
    capacity = o.kv_bytes // (2 * LAYERS * PER_TOKEN_LAYER) - 1
    for _ in range(2 * LAYERS):
        dalloc((capacity + 1) * PER_TOKEN_LAYER)

state = {"running": 0, "tokens": 0, "served": 0}


def fragment():
    """Holes in a stream-ordered pool that keeps everything it frees."""
    pool = ctypes.c_void_p()
    rt.cudaDeviceGetDefaultMemPool(ctypes.byref(pool), 0)
    keep = ctypes.c_uint64(2**64 - 1)
    rt.cudaMemPoolSetAttribute(pool, 4, ctypes.byref(keep))  # cudaMemPoolAttrReleaseThreshold
    big, small = [], []
    for _ in range(40):
        for size, kept in ((96 << 20, big), (1 << 20, small)):
            ptr = ctypes.c_void_p()
            rt.cudaMallocAsync(ctypes.byref(ptr), ctypes.c_size_t(size), None)
            kept.append(ptr.value)
    for ptr in big + small:
        rt.cudaFreeAsync(ctypes.c_void_p(ptr), None)
    rt.cudaDeviceSynchronize()


def generate(prompt, output):
    """One request: KV for prompt + output tokens, a step per output token."""
    total = prompt + output
    kv = []  # hf: (k, v) per layer
    cap = 0
    try:
        with lock:
            state["running"] += 1
        for t in range(prompt, total + 1):
            if o.pattern == "hf" and t > cap:
                # torch.cat per layer: the new K and V, then the old ones freed.
                cap = ((t + o.chunk - 1) // o.chunk) * o.chunk
                for layer in range(LAYERS):
                    k, v = talloc(cap * PER_TOKEN_LAYER), talloc(cap * PER_TOKEN_LAYER)
                    if layer < len(kv):
                        tfree(kv[layer][0])
                        tfree(kv[layer][1])
                        kv[layer] = (k, v)
                    else:
                        kv.append((k, v))
            with lock:
                state["tokens"] += 1 if t > prompt else prompt
            if t > prompt and o.unbounded:
                talloc(o.unbounded)  # a per-token cache without a bound
            time.sleep(o.step_ms / 1000.0)
        if o.fragment:
            fragment()
        if o.leak:
            talloc(o.leak)
    finally:
        for k, v in kv:
            tfree(k)
            tfree(v)
        with lock:
            state["running"] -= 1
            state["tokens"] -= total if state["tokens"] >= total else state["tokens"]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def reply(self, code, obj, ctype="application/json"):
        body = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/v1/models":
            return self.reply(200, {"object": "list", "data": [
                {"id": o.config, "object": "model", "max_model_len": MAX_LEN}]})
        if self.path == "/metrics" and o.pattern != "hf":
            with lock:
                use = state["tokens"] / capacity if capacity else 0.0
                run = state["running"]
            if o.pattern == "paged":
                text = ("# TYPE vllm:kv_cache_usage_perc gauge\n"
                        'vllm:kv_cache_usage_perc{engine="0",model_name="stub"} %f\n'
                        'vllm:num_requests_running{engine="0",model_name="stub"} %d\n' % (use, run))
            else:
                text = "sglang:token_usage %f\nsglang:num_running_reqs %d\n" % (use, run)
            return self.reply(200, text.encode(), "text/plain")
        self.reply(404, {"error": "not found"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        req = json.loads(self.rfile.read(n) or b"{}")
        if self.path != "/v1/completions":
            return self.reply(404, {"error": "not found"})
        if o.fail == "errors":
            return self.reply(500, {"error": {"message": "internal error (stub)"}})
        if o.fail == "hang":
            time.sleep(3600)
        if o.fail.startswith("die:") and state["served"] >= int(o.fail[4:]):
            os._exit(3)
        prompt = req.get("prompt", "")
        if isinstance(prompt, list):
            if o.no_token_ids:
                return self.reply(400, {"error": {"message": "prompt must be a string"}})
            ptoks = len(prompt)
        else:
            ptoks = len(prompt.split())
        out = int(req.get("max_tokens", 16))
        if ptoks + out > MAX_LEN:
            return self.reply(400, {"error": {"message": "longer than max_model_len"}})
        try:
            generate(ptoks, out)
        except OOM as e:
            return self.reply(500, {"error": {"message": str(e)}})
        state["served"] += 1
        self.reply(200, {"id": "cmpl-%d" % state["served"], "object": "text_completion",
                         "choices": [{"index": 0, "text": " x" * out, "finish_reason": "length"}],
                         "usage": {"prompt_tokens": ptoks, "completion_tokens": out,
                                   "total_tokens": ptoks + out}})


srv = ThreadingHTTPServer(("127.0.0.1", o.port), Handler)
srv.daemon_threads = True
print("port=%d" % srv.server_address[1], flush=True)
srv.serve_forever()
