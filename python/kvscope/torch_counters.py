"""PyTorch's own memory counters into kvscope's timeline.

kvscope sees CUDA calls: behind PyTorch's caching allocator those are whole
segments, kept after the tensors in them are gone. PyTorch knows what its
tensors hold (`torch.cuda.memory_allocated()`) and what it keeps from CUDA
(`memory_reserved()`). This module hands both to the shim
(`kvscope_framework_counters`), so that every later point of the timeline
carries them and `kvscope check` can judge tensors, not segments.

Rules, because this runs inside servers that did not ask for it:
- it never imports torch: it looks in `sys.modules`, so a program that never
  imports torch never has it imported;
- it never initialises CUDA: nothing is read before
  `torch.cuda.is_initialized()` is true;
- it never raises: a failure (PyTorch's pluggable allocator has no counters,
  for one) turns it off for the process;
- the background thread lives in one process: after a fork the child has no
  thread (POSIX) and starts none (the shim passes through in forked children).

It uses only the standard library, so that `kvscope run` can put it beside
its site hook without the kvscope package being installed.
"""

import os
import sys
import threading

_state = {"thread": None, "broken": False, "devices": set()}
_lock = threading.Lock()


def _torch():
    """torch, when the program imported it and CUDA is initialised."""
    torch = sys.modules.get("torch")
    cuda = getattr(torch, "cuda", None) if torch is not None else None
    if cuda is None:
        return None
    try:
        return torch if cuda.is_initialized() else None
    except Exception:
        return None


def report(lib):
    """Sends the counters of every device PyTorch holds memory on; the number
    of devices reported (0 when torch is absent, CUDA not initialised yet, or
    the counters cannot be read)."""
    if _state["broken"] or lib is None:
        return 0
    torch = _torch()
    if torch is None:
        return 0
    try:
        n = 0
        for d in range(torch.cuda.device_count()):
            allocated = int(torch.cuda.memory_allocated(d))
            reserved = int(torch.cuda.memory_reserved(d))
            # Devices PyTorch never used stay out; once used, always sent
            # (a device back at 0 after empty_cache says so).
            if reserved or allocated or d in _state["devices"]:
                _state["devices"].add(d)
                lib.kvscope_framework_counters(d, allocated, reserved)
                n += 1
        return n
    except Exception:
        _state["broken"] = True
        return 0


def _period_s():
    try:
        ms = int(os.environ.get("KVSCOPE_SAMPLE_MS", "200"))
    except ValueError:
        ms = 200
    return max(ms, 10) / 1000.0


def _loop(lib, period):
    me = threading.current_thread()
    while _state["thread"] is me and not _state["broken"]:
        report(lib)
        threading.Event().wait(period)


def _forget_in_child():
    _state["thread"] = None
    _state["devices"] = set()


def run(lib, period_s=None):
    """Reports from the calling thread until the process ends (the site
    hook's thread), unless a sampler already runs."""
    with _lock:
        t = _state["thread"]
        if lib is None or (t is not None and t.is_alive()):
            return
        _state["thread"] = threading.current_thread()
    _loop(lib, period_s or _period_s())


def watch(lib, period_s=None):
    """Starts the sampler thread (once per process); True when it runs."""
    if lib is None:
        return False
    with _lock:
        t = _state["thread"]
        if t is not None and t.is_alive():
            return True
        t = threading.Thread(
            target=_loop,
            args=(lib, period_s or _period_s()),
            name="kvscope-torch-counters",
            daemon=True,
        )
        _state["thread"] = t
        t.start()
    return True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_in_child)
