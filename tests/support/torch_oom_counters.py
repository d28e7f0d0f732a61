"""PyTorch's memory_allocated / memory_reserved at its first out-of-memory
failure, replayed from a memory snapshot (torch.cuda.memory._dump_snapshot,
gzip'd pickle of plain dicts: no torch needed). Prints one JSON object:
{"allocated": bytes, "reserved": bytes, "device": n}.

The trace must start with the process (history recorded from the start):
allocated is the sum of `alloc` minus `free_completed`, reserved the sum of
`segment_alloc` / `segment_map` minus `segment_free` / `segment_unmap`, up to
the `oom` event.
"""

import gzip
import json
import pickle
import sys


def main(path):
    with gzip.open(path, "rb") as f:
        snap = pickle.load(f)
    for device, trace in enumerate(snap["device_traces"]):
        allocated = reserved = 0
        for e in trace:
            a = e["action"]
            if a == "alloc":
                allocated += e["size"]
            elif a == "free_completed":
                allocated -= e["size"]
            elif a in ("segment_alloc", "segment_map"):
                reserved += e["size"]
            elif a in ("segment_free", "segment_unmap"):
                reserved -= e["size"]
            elif a == "oom":
                json.dump({"allocated": allocated, "reserved": reserved, "device": device}, sys.stdout)
                return 0
    print("no oom event in the trace", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
