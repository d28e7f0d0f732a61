"""`python -m kvscope ARGS`: the `kvscope` command of this package, run in
place of this process (same pid, same exit status, signals reach it as they
would reach `kvscope` itself).

The binary is the one pip installed with this package (its `bin/kvscope`,
listed in the package's RECORD), else the scheme's scripts folder, else
target/release of the checkout this file sits in, else `kvscope` on the PATH.
"""

import os
import shutil
import sys
import sysconfig


def _from_record():
    try:
        from importlib import metadata
    except ImportError:  # Python < 3.8 has no importlib.metadata
        return None
    try:
        files = metadata.files("kvscope") or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        parts = f.parts
        if len(parts) >= 2 and parts[-2:] == ("bin", "kvscope"):
            return str(f.locate())
    return None


def find_binary():
    """Path of the kvscope binary, or None."""
    candidates = [_from_record()]
    for scheme in (None, "posix_user"):
        try:
            scripts = sysconfig.get_path("scripts", scheme) if scheme else sysconfig.get_path("scripts")
        except KeyError:
            continue
        candidates.append(os.path.join(scripts, "kvscope"))
    here = os.path.dirname(os.path.abspath(__file__))
    candidates.append(os.path.join(here, "..", "..", "target", "release", "kvscope"))
    candidates.append(shutil.which("kvscope"))
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.normpath(c)
    return None


def main():
    binary = find_binary()
    if binary is None:
        sys.stderr.write("kvscope: error: cannot find the kvscope binary; reinstall (pip install kvscope)\n")
        return 2
    os.execv(binary, [binary] + sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
