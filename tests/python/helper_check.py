"""Drives python/kvscope with the stand-in torch package: install() wires the
allocator and every optional callback to the right functions of the right
library; tensors allocated through it, a marker and a dump land in the report."""
import ctypes
import sys

import kvscope
import torch

MiB = 1 << 20

alloc = kvscope.install()
assert torch.cuda.memory.current is alloc, "allocator not installed"
assert kvscope.install() is alloc, "a second install() made a second allocator"
lib = ctypes.CDLL(kvscope.library_path())
for setter, fn in {
    "set_init_fn": "kvscope_init",
    "set_reset_fn": "kvscope_reset",
    "set_memory_fraction_fn": "kvscope_memory_fraction",
    "set_record_stream_fn": "kvscope_record_stream",
}.items():
    want = ctypes.cast(getattr(lib, fn), ctypes.c_void_p).value
    assert alloc.allocator().set[setter] == want, f"{setter} wired wrong"
assert sorted(kvscope.hooks()) == sorted(alloc.allocator().set), kvscope.hooks()

kept = [alloc.alloc(n * MiB, 0, None) for n in (1, 2, 4)]
assert all(kept), kept
alloc.free(kept.pop(), 4 * MiB, 0, None)
kvscope.mark("serving")
assert kvscope.live_bytes(0) == 3 * MiB, kvscope.live_bytes(0)
assert kvscope.dump("from python"), "dump failed"
print(f"live_bytes={kvscope.live_bytes(0)}")
sys.exit(0)
