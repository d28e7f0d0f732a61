#!/usr/bin/env python3
"""A tiny OpenAI-compatible server on transformers, for `kvscope diagnose` on
a real GPU (examples/gpu_validate.py --only diagnose). The model is a small
Llama with random weights (no download): its config.json is --model-dir, and
its id in /v1/models is that directory, so kvscope finds the KV model there.

    kvscope run --out /tmp/r -- python3 examples/openai_server.py --model-dir DIR --port 8000
    kvscope diagnose --url http://127.0.0.1:8000

Routes: GET /v1/models (id, max_model_len), POST /v1/completions (prompt as
text or token ids; max_tokens, min_tokens; usage in the answer). Requests are
served one at a time under a lock (one GPU stream; generate() per request, a
DynamicCache regrown per token, as Hugging Face serving does without a
batcher). --leak BYTES keeps a tensor of that size after every request (the
planted fault). Prints `port=N` once listening on 127.0.0.1.
"""

import argparse
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model-dir", required=True, help="a directory holding the model's config.json")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--leak", type=int, default=0, help="bytes kept after every request (a planted leak)")
    a = ap.parse_args()

    import torch
    import transformers

    with open(os.path.join(a.model_dir, "config.json")) as f:
        cfg = json.load(f)
    fields = {k: v for k, v in cfg.items() if k not in ("model_type", "architectures", "torch_dtype")}
    dtype = getattr(torch, cfg.get("torch_dtype", "float16"))
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**fields)).to("cuda", dtype).eval()
    vocab = cfg["vocab_size"]
    max_len = cfg.get("max_position_embeddings", 4096)
    lock = threading.Lock()
    kept = []

    def complete(req):
        prompt = req.get("prompt", "")
        if isinstance(prompt, str):
            # No tokenizer here: a word is a token.
            ids = [10 + hash(w) % (vocab - 10) for w in prompt.split()] or [1]
        elif isinstance(prompt, list) and all(isinstance(t, int) and 0 <= t < vocab for t in prompt):
            ids = prompt or [1]
        else:
            return 400, {"error": {"message": "prompt: a string or a list of token ids below the vocabulary"}}
        new = int(req.get("max_tokens", 16))
        least = int(req.get("min_tokens", 0))
        if len(ids) + new > max_len:
            return 400, {"error": {"message": f"{len(ids)} + {new} tokens exceed max_model_len {max_len}"}}
        with lock:
            try:
                x = torch.tensor([ids], device="cuda")
                with torch.no_grad():
                    out = model.generate(x, attention_mask=torch.ones_like(x), max_new_tokens=new,
                                         min_new_tokens=min(least, new), do_sample=False, pad_token_id=0)
                got = out.shape[1] - x.shape[1]
                del out, x
                if a.leak:
                    kept.append(torch.empty(a.leak, dtype=torch.uint8, device="cuda"))
                torch.cuda.synchronize()
            except torch.cuda.OutOfMemoryError as e:
                return 500, {"error": {"message": str(e).splitlines()[0]}}
        return 200, {"object": "text_completion", "model": a.model_dir,
                     "choices": [{"index": 0, "text": "", "finish_reason": "length"}],
                     "usage": {"prompt_tokens": len(ids), "completion_tokens": got,
                               "total_tokens": len(ids) + got}}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_):
            pass

        def reply(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/v1/models":
                return self.reply(200, {"object": "list", "data": [
                    {"id": a.model_dir, "object": "model", "max_model_len": max_len}]})
            self.reply(404, {"error": {"message": "not found"}})

        def do_POST(self):
            n = int(self.headers.get("Content-Length", 0))
            try:
                req = json.loads(self.rfile.read(n) or b"{}")
            except ValueError:
                return self.reply(400, {"error": {"message": "not JSON"}})
            if self.path != "/v1/completions":
                return self.reply(404, {"error": {"message": "not found"}})
            self.reply(*complete(req))

    srv = ThreadingHTTPServer(("127.0.0.1", a.port), Handler)
    srv.daemon_threads = True
    print(f"port={srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
