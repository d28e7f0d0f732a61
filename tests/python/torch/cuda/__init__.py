"""torch.cuda as far as kvscope touches it: the pluggable allocator
(memory.py), MemPool, and the counters PyTorch's caching allocator keeps
(memory_allocated / memory_reserved), readable only once CUDA is initialised.
init() stands for the first CUDA work: one 8 MiB segment through the stand-in
libcudart, so that the shim sees CUDA being used."""
import ctypes

from . import memory  # noqa: F401

_initialized = False
_counters = {}
_kept = []
# Reads of the counters, so that tests can check nobody read them before
# CUDA was initialised (the real ones would initialise it).
counter_reads = 0


class MemPool:
    def __init__(self, allocator=None):
        self.allocator = allocator


def is_initialized():
    return _initialized


def device_count():
    return 1


def init():
    global _initialized
    if _initialized:
        return
    rt = ctypes.CDLL("libcudart.so.12")
    p = ctypes.c_void_p()
    rc = rt.cudaMalloc(ctypes.byref(p), ctypes.c_size_t(8 << 20))
    assert rc == 0, rc
    _kept.append(p)
    _counters[0] = (5 << 20, 8 << 20)
    _initialized = True


def set_counters(device, allocated, reserved):
    _counters[device] = (allocated, reserved)


def _read(device, i):
    global counter_reads
    assert _initialized, "counters read before CUDA was initialised"
    counter_reads += 1
    return _counters.get(device or 0, (0, 0))[i]


def memory_allocated(device=None):
    return _read(device, 0)


def memory_reserved(device=None):
    return _read(device, 1)
