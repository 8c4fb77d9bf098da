"""Read what the bundle check needs from an ELF shared library without external tools:
DT_NEEDED entries (the shared libraries it needs), SONAME, sections, and a hash of the
content the loader maps."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

from .errors import BundleError

DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME = 0, 1, 5, 14
PT_LOAD, PT_DYNAMIC = 1, 2
SHT_NOBITS, SHF_ALLOC = 8, 0x2


def _check_header(data: bytes, path: Path) -> None:
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise BundleError(f"{path} is not a 64-bit little-endian ELF file", where=path)


def sections(data: bytes, path: Path) -> list[tuple[str, int, int, int, int]]:
    """(name, type, flags, file offset, size) of every section of a 64-bit little-endian ELF."""
    _check_header(data, path)
    shoff, = struct.unpack_from("<Q", data, 0x28)
    entsize, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * entsize) for i in range(count)]
    names_offset = headers[names_index][4] if headers else 0
    found = []
    for name, kind, flags, _addr, offset, size in headers:
        end = data.index(b"\0", names_offset + name)
        found.append((data[names_offset + name:end].decode(errors="replace"), kind, flags, offset, size))
    return found


def loaded_content_sha256(path: Path, *, skip: tuple[str, ...] = (".nv_fatbin", ".note.gnu.build-id")) -> str:
    """sha256 of what the loader maps (allocated sections with file content), minus `skip`.

    Keys the bundle's registry checks: what a library registers is decided by its host code.
    It ignores the symbol table (nvcc names local symbols after its temp files, so every
    compile differs there), and by default the build-id note (a hash that follows the symbol
    table) and the CUDA fatbinary (device code registers nothing), so a rebuilt .cu does not
    send the library through TensorFlow or TensorRT again."""
    data = Path(path).read_bytes()
    digest = hashlib.sha256()
    for name, kind, flags, offset, size in sections(data, Path(path)):
        if flags & SHF_ALLOC and kind != SHT_NOBITS and name not in skip:
            digest.update(name.encode() + b"\0" + size.to_bytes(8, "little"))
            digest.update(data[offset:offset + size])
    return digest.hexdigest()


def dynamic_info(path: Path) -> dict[str, list[str] | str | None]:
    """{'needed': [...], 'soname': str | None} for a 64-bit little-endian ELF file."""
    data = Path(path).read_bytes()
    _check_header(data, path)
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
