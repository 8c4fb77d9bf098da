"""Read what the bundle check needs from an ELF shared library without external tools:
DT_NEEDED entries (the shared libraries it needs) and SONAME."""

from __future__ import annotations

import struct
from pathlib import Path

from .errors import BundleError

DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME = 0, 1, 5, 14
PT_LOAD, PT_DYNAMIC = 1, 2


def dynamic_info(path: Path) -> dict[str, list[str] | str | None]:
    """{'needed': [...], 'soname': str | None} for a 64-bit little-endian ELF file."""
    data = Path(path).read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BundleError(f"{path} is not a 64-bit little-endian ELF shared library", where=path)
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic = [], None
    for index in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + index * phentsize)
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return {"needed": [], "soname": None}

    def file_offset(vaddr: int) -> int:
        for start, offset, size in loads:
            if start <= vaddr < start + size:
                return offset + vaddr - start
        raise BundleError(f"{path}: dynamic string table outside any segment", where=path)

    entries = []
    offset, size = dynamic
    for at in range(offset, offset + size, 16):
        tag, value = struct.unpack_from("<qQ", data, at)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    strtab = file_offset(next(v for t, v in entries if t == DT_STRTAB))

    def string(at: int) -> str:
        end = data.index(b"\0", strtab + at)
        return data[strtab + at:end].decode()

    return {"needed": [string(v) for t, v in entries if t == DT_NEEDED],
            "soname": next((string(v) for t, v in entries if t == DT_SONAME), None)}
