"""The installed package from Python (run by .ci/wheel-test with the fresh
environment's python, from a directory outside the checkout, with no
KVSCOPE_* variable set).

    python preload_check.py VERSION

Finds the bundled shim through the helper (kvscope.library_path()), starts
a Python child with it preloaded that allocates through the stand-in CUDA
shipped in the package, and checks the child's exit report: the version
everywhere, the allocations, the marker the helper set.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile

MIB = 1 << 20


def child():
    """Allocates 64 + 8 MiB through the stand-in runtime, frees the 8, marks."""
    import ctypes

    import kvscope

    stand_in = os.path.join(os.path.dirname(kvscope.__file__), "_bundled", "stand-in")
    rt = ctypes.CDLL(os.path.join(stand_in, "libcudart.so.12"))
    keep, gone = ctypes.c_void_p(), ctypes.c_void_p()
    assert rt.cudaMalloc(ctypes.byref(keep), ctypes.c_size_t(64 * MIB)) == 0
    assert rt.cudaMalloc(ctypes.byref(gone), ctypes.c_size_t(8 * MIB)) == 0
    assert rt.cudaFree(gone) == 0
    # The helper finds the preloaded copy: markers reach the report.
    assert kvscope.live_bytes(0) == 64 * MIB, kvscope.live_bytes(0)
    kvscope.mark("serve")


def main(version):
    import kvscope

    package = os.path.dirname(os.path.abspath(kvscope.__file__))
    assert package.startswith(sys.prefix), f"kvscope imported from {package}, not the environment {sys.prefix}"
    assert kvscope.__version__ == version, kvscope.__version__
    assert not any(k.startswith("KVSCOPE_") for k in os.environ), "no KVSCOPE_* variable may be set"
    lib = kvscope.library_path()
    assert lib and os.path.realpath(lib) == os.path.join(os.path.realpath(package), "_bundled", "libkvscope.so"), lib
    with tempfile.TemporaryDirectory() as out:
        env = dict(os.environ, LD_PRELOAD=lib, KVSCOPE_OUT=out)
        subprocess.run([sys.executable, __file__, "--child"], env=env, check=True, timeout=60)
        reports = glob.glob(os.path.join(out, "kvscope-*-exit.json"))
        assert len(reports) == 1, os.listdir(out)
        with open(reports[0]) as f:
            r = json.load(f)
    assert r["schema"] == "kvscope.report.v1"
    assert r["shim"]["version"] == version, r["shim"]
    assert r["modes"] == ["preload"], r["modes"]
    memory = r["devices"][0]["memory"]
    assert memory["live_bytes"] == 64 * MIB, memory
    assert memory["peak_bytes"] == 72 * MIB, memory
    assert r["calls"]["cudaMalloc"] == 2 and r["calls"]["cudaFree"] == 1, r["calls"]
    assert [m["label"] for m in r["markers"]] == ["serve"], r["markers"]
    print(f"python: the bundled shim {lib} reported 64 MiB live through the stand-in CUDA (shim {version})")


if __name__ == "__main__":
    if sys.argv[1:] == ["--child"]:
        child()
    else:
        main(sys.argv[1])
