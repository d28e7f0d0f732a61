"""kvscope from Python: install libkvscope.so as PyTorch's CUDA allocator,
set phase markers, write reports on demand.

    import kvscope
    kvscope.install()            # before the first CUDA tensor
    ...load the model...
    kvscope.mark("serve")         # PyTorch's own counters ride along
    ...serve...
    kvscope.dump("after load test")

With PyTorch in the process, mark() also hands the shim PyTorch's own
counters (memory_allocated, memory_reserved) for the marker's point, and
watch_torch() does so every sample period (automatic for Python processes
under `kvscope run`; KVSCOPE_TORCH=0 turns that off). Neither imports torch
nor initialises CUDA: they wait until the program has.

Markers and dumps also work when the library is only preloaded
(LD_PRELOAD=libkvscope.so python ...), without install(). mark, dump and
live_bytes never load the library themselves: without kvscope in the
process they do nothing and return False/0, so the calls can stay in
production code.

The library is found, in order: the KVSCOPE_LIB environment variable; a
libkvscope.so this process already loaded (LD_PRELOAD); the copy bundled in
this package (`pip install kvscope`); target/release of the kvscope checkout
this file sits in.

`python -m kvscope ARGS` is the `kvscope` command installed with this package.
"""

import ctypes
import os

# The crate's version (Cargo.toml), the wheel's and the shim's (`shim.version`
# in a report): tests/version.rs keeps them one.
__version__ = "0.1.0"

try:
    # Under `kvscope run` the site hook's sampler is this module: share it.
    import kvscope_torch_counters as torch_counters
except ImportError:
    from . import torch_counters

__all__ = [
    "library_path",
    "install",
    "mempool",
    "mark",
    "dump",
    "live_bytes",
    "hooks",
    "watch_torch",
]

# PyTorch's optional allocator callbacks and kvscope's functions for them.
# Which ones a PyTorch build lets Python set differs between versions.
_OPTIONAL = {
    "set_init_fn": "kvscope_init",
    "set_reset_fn": "kvscope_reset",
    "set_memory_fraction_fn": "kvscope_memory_fraction",
    "set_record_stream_fn": "kvscope_record_stream",
}

_lib = None
_allocator = None
_hooks = []


def _loaded_copy():
    try:
        with open("/proc/self/maps") as maps:
            for line in maps:
                path = line.split()[-1] if len(line.split()) >= 6 else ""
                if os.path.basename(path) == "libkvscope.so":
                    return path
    except OSError:
        pass
    return None


def library_path():
    """Path of libkvscope.so: $KVSCOPE_LIB when set (as given, so that a
    wrong path fails where it is used, naming it), else the copy loaded in
    this process, the wheel's or a checkout's build; None when none is
    found."""
    env = os.environ.get("KVSCOPE_LIB")
    if env:
        return env
    loaded = _loaded_copy()
    if loaded:
        return loaded
    here = os.path.dirname(os.path.abspath(__file__))
    # In the wheel: _bundled/ holds the shim and, in stand-in/, the demo's
    # stand-in CUDA (a private folder, never on a library path).
    bundled = os.path.join(here, "_bundled", "libkvscope.so")
    if os.path.exists(bundled):
        return bundled
    built = os.path.join(here, "..", "..", "target", "release", "libkvscope.so")
    return os.path.normpath(built) if os.path.exists(built) else None


def _library():
    """The copy of libkvscope.so in this process, never loading one: a
    marker in a process kvscope does not watch stays a no-op."""
    global _lib
    if _lib is None:
        path = _loaded_copy()
        if path is None:
            return None
        # The same path as PyTorch loads gives the same (one) copy.
        _lib = ctypes.CDLL(path)
        _lib.kvscope_mark.argtypes = [ctypes.c_char_p]
        _lib.kvscope_mark.restype = None
        _lib.kvscope_dump.argtypes = [ctypes.c_char_p]
        _lib.kvscope_dump.restype = ctypes.c_int
        _lib.kvscope_live_bytes.argtypes = [ctypes.c_int]
        _lib.kvscope_live_bytes.restype = ctypes.c_uint64
        _lib.kvscope_framework_counters.argtypes = [ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64]
        _lib.kvscope_framework_counters.restype = None
    return _lib


def _one_copy(path):
    """The library to hand PyTorch: the preloaded copy when there is one, so
    that the process never holds two shims (two tables, two reports)."""
    if path is None:
        raise FileNotFoundError(
            "libkvscope.so not found: set KVSCOPE_LIB, reinstall kvscope (pip install kvscope) or build it with cargo build --release"
        )
    loaded = _loaded_copy()
    if loaded and os.path.realpath(loaded) != os.path.realpath(path):
        import warnings

        warnings.warn(f"kvscope: using the preloaded {loaded}, not {path}")
        return loaded
    return path


def _address(lib, name):
    return ctypes.cast(getattr(lib, name), ctypes.c_void_p).value


def install(path=None):
    """Make kvscope PyTorch's CUDA allocator for this process and return the
    torch allocator object. Call it before the first CUDA tensor: PyTorch
    refuses to change allocators once its own has allocated.

    The optional callbacks this PyTorch build exposes are wired too (see
    hooks()); without set_record_stream_fn, Tensor.record_stream cannot
    delay reuse of a block freed while another stream still uses it."""
    global _allocator, _lib
    import torch

    if _allocator is not None:
        return _allocator
    path = _one_copy(path or library_path())
    os.environ.setdefault("KVSCOPE_LIB", path)
    allocator = torch.cuda.memory.CUDAPluggableAllocator(path, "kvscope_malloc", "kvscope_free")
    _lib = None
    lib = _library()
    if lib is None:
        raise RuntimeError(f"PyTorch did not load {path}")
    native = allocator.allocator()
    for setter, fn in _OPTIONAL.items():
        set_fn = getattr(native, setter, None)
        if callable(set_fn):
            set_fn(_address(lib, fn))
            _hooks.append(setter)
    torch.cuda.memory.change_current_allocator(allocator)
    _allocator = allocator
    return allocator


def mempool(path=None):
    """A torch.cuda.MemPool served by kvscope, for kvscope inside
    `with torch.cuda.use_mem_pool(pool):` only, leaving PyTorch's own
    allocator (and torch.cuda.memory_stats) in place everywhere else."""
    import torch

    path = _one_copy(path or library_path())
    allocator = torch.cuda.memory.CUDAPluggableAllocator(path, "kvscope_malloc", "kvscope_free")
    return torch.cuda.MemPool(allocator.allocator())


def hooks():
    """The optional PyTorch callbacks install() could wire in this build."""
    return list(_hooks)


def _text(x):
    """A label or reason as text: bytes (as ctypes' kvscope_mark takes them)
    decoded, not written as "b'serve'", which no marker rule knows."""
    if isinstance(x, (bytes, bytearray)):
        return bytes(x).decode("utf-8", "replace")
    return str(x)


def mark(label):
    """A phase boundary on kvscope's timeline: "load", "serve", "request 7
    start tokens=512", "request 7 done", ... (see the README for the labels
    kvscope check understands). PyTorch's counters, when it has them, go
    with it."""
    lib = _library()
    if lib is None:
        return False
    torch_counters.report(lib)
    # A C string ends at a NUL: keep the rest of the label visible.
    lib.kvscope_mark(_text(label).replace("\x00", " ").encode())
    return True


def watch_torch(period_s=None):
    """Hands PyTorch's counters to kvscope every `period_s` seconds
    (default: KVSCOPE_SAMPLE_MS) from a background thread, once CUDA is
    initialised; True when the thread runs. `kvscope run` does this for
    every Python process it starts."""
    return torch_counters.watch(_library(), period_s)


def dump(reason=None):
    """Write a report now; True when it was written."""
    lib = _library()
    if lib is None:
        return False
    return lib.kvscope_dump(None if reason is None else _text(reason).replace("\x00", " ").encode()) == 0


def live_bytes(device=0):
    """Device bytes kvscope tracks as live on `device`, all entry points together."""
    lib = _library()
    return 0 if lib is None else int(lib.kvscope_live_bytes(int(device)))
