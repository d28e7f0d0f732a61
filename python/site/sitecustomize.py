"""kvscope's site hook. `kvscope run` puts this folder first on PYTHONPATH,
so every Python process it starts (and the workers they start, which inherit
the environment) runs this at start-up.

It does one thing: when libkvscope.so is preloaded, it starts a thread that
hands PyTorch's own counters to the shim (kvscope_torch_counters, beside
this file) once the program has imported torch and initialised CUDA; it
never imports torch nor initialises CUDA itself. Without the shim, or with
KVSCOPE_TORCH=0, it does nothing. Then it runs the sitecustomize this one
shadows, if there is one.

`python -I` and `python -S` skip site hooks: such processes get no counters.
"""


def _kvscope_sampler():
    """The background thread: waits (without importing anything) until the
    program has imported torch, then samples its counters when the shim is
    in the process. Started with the low-level _thread so that a program
    that never imports torch pays for nothing but this wait."""
    import sys
    import time

    period = max(_kvscope_period_ms(), 10) / 1000.0
    while "torch" not in sys.modules:
        time.sleep(period)
    import ctypes

    try:
        lib = ctypes.CDLL(None)
        fn = lib.kvscope_framework_counters
    except (OSError, AttributeError):
        return  # the shim is not loaded: stay inert
    fn.argtypes = [ctypes.c_int, ctypes.c_uint64, ctypes.c_uint64]
    fn.restype = None
    import kvscope_torch_counters

    kvscope_torch_counters.run(lib, period)


def _kvscope_period_ms():
    import os

    try:
        return int(os.environ.get("KVSCOPE_SAMPLE_MS", "200"))
    except ValueError:
        return 200


def _kvscope_start():
    import os

    if os.environ.get("KVSCOPE_TORCH", "1").strip().lower() in ("0", "false", "no", "off"):
        return
    if "libkvscope" not in os.environ.get("LD_PRELOAD", ""):
        return  # the shim is not preloaded: nothing to report to
    import _thread

    _thread.start_new_thread(_kvscope_sampler, ())


def _kvscope_chain():
    """Runs the next sitecustomize on sys.path, the one this file shadows."""
    import importlib.machinery
    import os
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    me = sys.modules.get("sitecustomize")
    try:
        sys.modules.pop("sitecustomize", None)
        other = type(sys)("sitecustomize")
        other.__file__ = spec.origin
        other.__spec__ = spec
        other.__loader__ = spec.loader
        sys.modules["sitecustomize"] = other
        spec.loader.exec_module(other)
    finally:
        if me is not None:
            sys.modules["sitecustomize"] = me


try:
    _kvscope_start()
except Exception:
    pass
_kvscope_chain()
