"""The wheel's tags and glibc floor (run by .ci/wheel-test).

    python check_wheel.py WHEEL VERSION [CONTROL_ELF]

Checks that the wheel is kvscope VERSION with exactly one tag,
py3-none-manylinux_X_Y_x86_64, and that no ELF file in it (the binary, the
shim, the stand-in CUDA and simulator: all of them are listed, so the check
cannot pass on an empty wheel) needs a GLIBC symbol version above X.Y. The
versions are read from each file's .gnu.version_r (the versions the dynamic
linker checks at load time), parsed here without binutils.

CONTROL_ELF, when given, is a file built for this machine's glibc (the debug
libkvscope.so of `cargo test`, built on glibc 2.34 or newer): it must read
above 2.28, which shows that the reader sees what an old system would refuse.
"""

import re
import struct
import sys
import zipfile

SHT_GNU_VERNEED = 0x6FFFFFFE
EM_X86_64 = 62
MUST_SHIP = {
    "kvscope-{v}.data/scripts/kvscope",
    "kvscope/_bundled/libkvscope.so",
    "kvscope/_bundled/stand-in/libcuda.so.1",
    "kvscope/_bundled/stand-in/libcudart.so.12",
    "kvscope/_bundled/stand-in/serve_sim",
}


def needed_versions(data):
    """(e_machine, {version names the file needs}) of a 64-bit little-endian ELF."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    e_machine = struct.unpack_from("<H", data, 18)[0]
    e_shoff = struct.unpack_from("<Q", data, 40)[0]
    e_shentsize, e_shnum = struct.unpack_from("<HH", data, 58)
    sections = []
    for i in range(e_shnum):
        off = e_shoff + i * e_shentsize
        # sh_name, sh_type, sh_flags, sh_addr, sh_offset, sh_size, sh_link, sh_info
        sections.append(struct.unpack_from("<IIQQQQII", data, off))
    names = set()
    for _, sh_type, _, _, offset, _, link, count in sections:
        if sh_type != SHT_GNU_VERNEED:
            continue
        strtab = sections[link][4]

        def string(at):
            end = data.index(b"\0", strtab + at)
            return data[strtab + at : end].decode()

        entry = offset
        for _ in range(count):
            _, vn_cnt, _, vn_aux, vn_next = struct.unpack_from("<HHIII", data, entry)
            aux = entry + vn_aux
            for _ in range(vn_cnt):
                _, _, _, vna_name, vna_next = struct.unpack_from("<IHHII", data, aux)
                names.add(string(vna_name))
                aux += vna_next
            entry += vn_next
    return e_machine, names


def glibc_floor(names):
    """The highest GLIBC_x.y[.z] among version names, as a tuple of numbers
    ((2, 2, 5) < (2, 28)); (0, 0) if none."""
    pattern = re.compile(r"GLIBC_(\d+(?:\.\d+)+)")
    found = [tuple(int(p) for p in m.group(1).split(".")) for m in map(pattern.fullmatch, names) if m]
    return max(found, default=(0, 0))


def shown(v):
    return "GLIBC_" + ".".join(map(str, v))


def main():
    wheel, version = sys.argv[1], sys.argv[2]
    z = zipfile.ZipFile(wheel)
    meta = z.read(f"kvscope-{version}.dist-info/WHEEL").decode()
    tags = [line.split(":", 1)[1].strip() for line in meta.splitlines() if line.startswith("Tag:")]
    assert len(tags) == 1, f"one tag expected: {tags}"
    m = re.fullmatch(r"py3-none-manylinux_(\d+)_(\d+)_x86_64", tags[0])
    assert m, f"not a py3-none-manylinux x86_64 tag: {tags[0]}"
    tag_floor = (int(m.group(1)), int(m.group(2)))
    assert tag_floor <= (2, 28), f"manylinux_2_28 or older expected: {tags[0]}"
    assert wheel.endswith(f"kvscope-{version}-{tags[0]}.whl"), f"the file name and the tag differ: {wheel}"

    elfs = {}
    for name in z.namelist():
        data = z.read(name)
        if data[:4] == b"\x7fELF":
            elfs[name] = needed_versions(data)
    missing = {p.format(v=version) for p in MUST_SHIP} - set(elfs)
    assert not missing, f"not in the wheel: {sorted(missing)}"
    worst = (0, 0)
    for name, (machine, names) in sorted(elfs.items()):
        floor = glibc_floor(names)
        assert machine == EM_X86_64, f"{name}: not x86-64 (e_machine {machine})"
        assert floor > (0, 0), f"{name}: no GLIBC version read"
        assert floor <= tag_floor, f"{name} needs {shown(floor)}, above the tag's {tags[0]}"
        print(f"  {name}: {shown(floor)}")
        worst = max(worst, floor)
    if len(sys.argv) > 3:
        with open(sys.argv[3], "rb") as f:
            control = glibc_floor(needed_versions(f.read())[1])
        assert control > (2, 28), f"the control {sys.argv[3]} reads {shown(control)}"
        print(f"  control (built for this machine): {shown(control)}")
    print(f"wheel: tag {tags[0]}, {len(elfs)} ELF files, glibc floor {shown(worst)}")


if __name__ == "__main__":
    main()
