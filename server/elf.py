"""The one ELF reader: what the build's bundle check and the image's launcher need from a
64-bit little-endian shared library, read without external tools: its sections, the
shared libraries it needs (DT_NEEDED), SONAME, RPATH/RUNPATH, and a hash of the content
the loader maps."""

import hashlib
import struct

DT_NULL, DT_NEEDED, DT_STRTAB, DT_SONAME, DT_RPATH, DT_RUNPATH = 0, 1, 5, 14, 15, 29
PT_LOAD, PT_DYNAMIC = 1, 2
SHT_NOBITS, SHF_ALLOC = 8, 0x2


class ElfError(ValueError):
    """The file is not a 64-bit little-endian ELF library, or its tables are damaged."""


def _read(path):
    with open(str(path), "rb") as handle:
        data = handle.read()
    if data[:4] != b"\x7fELF" or len(data) < 64 or data[4] != 2 or data[5] != 1:
        raise ElfError("%s is not a 64-bit little-endian ELF file" % path)
    return data


def _sections(data, path):
    shoff, = struct.unpack_from("<Q", data, 0x28)
    entsize, count, names_index = struct.unpack_from("<HHH", data, 0x3A)
    headers = [struct.unpack_from("<IIQQQQ", data, shoff + i * entsize) for i in range(count)]
    names_offset = headers[names_index][4] if headers else 0
    found = []
    for name, kind, flags, _addr, offset, size in headers:
        end = data.index(b"\0", names_offset + name)
        found.append((data[names_offset + name:end].decode(errors="replace"), kind, flags, offset, size))
    return found


def sections(path):
    """(name, type, flags, file offset, size) of every section, and the file's bytes."""
    data = _read(path)
    try:
        return _sections(data, path), data
    except (struct.error, ValueError, IndexError) as exc:
        raise ElfError("%s: damaged section table (%s)" % (path, exc)) from None


def section_bytes(path, wanted):
    """The content of one section, or None when the file has no such section."""
    found, data = sections(path)
    for name, _kind, _flags, offset, size in found:
        if name == wanted:
            return data[offset:offset + size]
    return None


def loaded_content_sha256(path, skip=(".nv_fatbin", ".note.gnu.build-id")):
    """sha256 of what the loader maps (allocated sections with file content), minus `skip`.

    Keys the bundle's registry checks: what a library registers is decided by its host code.
    It ignores the symbol table (nvcc names local symbols after its temp files, so every
    compile differs there), and by default the build-id note (a hash that follows the symbol
    table) and the CUDA fatbinary (device code registers nothing)."""
    found, data = sections(path)
    digest = hashlib.sha256()
    for name, kind, flags, offset, size in found:
        if flags & SHF_ALLOC and kind != SHT_NOBITS and name not in skip:
            digest.update(name.encode() + b"\0" + size.to_bytes(8, "little"))
            digest.update(data[offset:offset + size])
    return digest.hexdigest()


def dynamic_info(path):
    """{'needed': [...], 'soname': str or None, 'rpath': [...], 'runpath': [...]}."""
    data = _read(path)
    try:
        return _dynamic(data, path)
    except (struct.error, ValueError, IndexError, StopIteration) as exc:
        raise ElfError("%s: damaged dynamic section (%s)" % (path, exc or type(exc).__name__)) from None


def _dynamic(data, path):
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
        return {"needed": [], "soname": None, "rpath": [], "runpath": []}
    entries = []
    for at in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, at)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    strtab_vaddr = next(v for t, v in entries if t == DT_STRTAB)
    strtab = next((o + strtab_vaddr - s for s, o, n in loads if s <= strtab_vaddr < s + n), None)
    if strtab is None:
        raise ElfError("%s: dynamic string table outside any segment" % path)

    def string(offset):
        end = data.index(b"\0", strtab + offset)
        return data[strtab + offset:end].decode()

    def paths(tag):
        return [p for t, v in entries if t == tag for p in string(v).split(":") if p]

    return {"needed": [string(v) for t, v in entries if t == DT_NEEDED],
            "soname": next((string(v) for t, v in entries if t == DT_SONAME), None),
            "rpath": paths(DT_RPATH), "runpath": paths(DT_RUNPATH)}
