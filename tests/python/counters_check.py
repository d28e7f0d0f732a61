"""Run under `kvscope run` (its site hook on PYTHONPATH) or with the shim
preloaded and `mark` as argument (kvscope.mark attaches the counters): the
stand-in torch's counters must reach the shim's timeline; nothing may import
torch or read its counters before the program does and initialises CUDA; a
forked child has no sampler thread. Prints the counters it set, as
`expect.` lines."""
import os
import sys
import time

MiB = 1 << 20
mode = sys.argv[1] if len(sys.argv) > 1 else "run"

time.sleep(0.3)
assert "torch" not in sys.modules, "torch was imported behind the program's back"
import torch  # noqa: E402

time.sleep(0.3)
assert torch.cuda.counter_reads == 0, "counters read before CUDA was initialised"
torch.cuda.init()
if mode == "mark":
    import kvscope

    kvscope.mark("serve")
    torch.cuda.set_counters(0, 6 * MiB, 8 * MiB)
    kvscope.mark("request 0 done")
else:
    time.sleep(1.0)
    torch.cuda.set_counters(0, 6 * MiB, 8 * MiB)
    time.sleep(1.0)
    # The parent has the sampler thread; a forked child has only itself, and
    # starts no sampler later (the OS tasks of the process are counted).
    assert len(os.listdir("/proc/self/task")) > 1, "no sampler thread in the parent"
    pid = os.fork()
    if pid == 0:
        time.sleep(0.5)
        os._exit(3 if len(os.listdir("/proc/self/task")) != 1 else 0)
    _, status = os.waitpid(pid, 0)
    assert status == 0, "the forked child runs a sampler thread"
print(f"expect.first_allocated={5 * MiB}")
print(f"expect.later_allocated={6 * MiB}")
print(f"expect.reserved={8 * MiB}")
print(f"reads={torch.cuda.counter_reads}")
print(f"chained={os.environ.get('CHAINED_SITECUSTOMIZE')}")
