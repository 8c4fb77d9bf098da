"""Which GPU architectures a shared library carries code for, and whether it runs on a GPU.

A CUDA library holds a fatbinary (ELF section `.nv_fatbin`) with machine code (SASS,
"cubin") for some architectures and PTX for others. `cuda_archs()` lists both, with
NVIDIA's `cuobjdump` (the `nvidia-cuda-cuobjdump` PyPI package, the `cuda-tools` extra,
or a CUDA toolkit) or, when that is missing, by reading the fatbinary headers itself.
`runs_on()` applies the driver's rules:
- SASS for sm_XY runs on compute capability X.Z for Z >= Y (same major only): sm_80 code
  runs on an sm_86 GPU, not on sm_90;
- arch-specific SASS/PTX (sm_90a) runs only on exactly that capability;
- PTX compute_XY is compiled by the driver at load time for any GPU >= XY (slower first
  start, and only as new as the PTX ISA lets it be).
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
import struct
from pathlib import Path
from typing import Mapping

from trtis_server import elf

from ..core import process
from ..core.errors import BundleError

_ARCH = re.compile(r"^(?:sm_|compute_)?(\d+)([af]?)$")
_LISTED = re.compile(r"^(ELF|PTX) file\s+\d+:\s+\S*?\.(?:sm|compute)_(\d+[af]?)\.(?:cubin|ptx)\s*$")
_NO_DEVICE_CODE = "does not contain device code"

FATBIN_MAGIC = 0xBA55ED50
_KIND_PTX, _KIND_ELF = 1, 2
# Entry flag bits seen in nvcc 13 fatbinaries for arch-specific (sm_90a) and family
# (sm_100f) code; cuobjdump reports family code under the plain name, and so do we.
_FLAG_ARCH_SPECIFIC = 0x0010_0000


def parse_arch(arch: str | int) -> tuple[int, int, str]:
    """'90', 'sm_90', 'compute_90a', 86 -> (major, minor, suffix)."""
    match = _ARCH.match(str(arch).strip().lower())
    if not match:
        raise ValueError(f"not a CUDA architecture: {arch!r} (expected e.g. 90, sm_86, compute_90a)")
    digits, suffix = match.groups()
    if len(digits) < 2:
        raise ValueError(f"not a CUDA architecture: {arch!r} (two or more digits: major, minor)")
    return int(digits[:-1]), int(digits[-1]), suffix


def _sort(archs: set[str]) -> list[str]:
    return sorted(archs, key=lambda a: (parse_arch(a)[:2], parse_arch(a)[2]))


def find_cuobjdump(env: Mapping[str, str] | None = None) -> str | None:
    """cuobjdump from PATH, the nvidia-cuda-cuobjdump package, or CUDA_HOME / /usr/local/cuda."""
    environ = os.environ if env is None else env
    found = shutil.which("cuobjdump", path=environ.get("PATH"))
    if found:
        return found
    try:
        for file in importlib.metadata.files("nvidia-cuda-cuobjdump") or ():
            if file.name == "cuobjdump":
                path = Path(file.locate())
                if path.is_file() and os.access(path, os.X_OK):
                    return str(path)
    except importlib.metadata.PackageNotFoundError:
        pass
    for root in (environ.get("CUDA_HOME"), environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and Path(root, "bin", "cuobjdump").is_file():
            return str(Path(root, "bin", "cuobjdump"))
    return None


def cuda_archs(path: str | os.PathLike, *, reader: str = "auto") -> dict[str, list[str]]:
    """{"sass": ["75", "90"], "ptx": ["90"]} for a library, object file or executable.

    reader: "cuobjdump", "python" (read the fatbinary headers here) or "auto" (cuobjdump
    when found, else python). A file without device code gives empty lists.
    """
    path = Path(path)
    if not path.is_file():
        raise BundleError(f"{path} does not exist", where=path)
    if reader not in ("auto", "cuobjdump", "python"):
        raise ValueError(f"reader must be auto, cuobjdump or python, not {reader!r}")
    tool = find_cuobjdump() if reader != "python" else None
    if reader == "cuobjdump" and tool is None:
        raise BundleError("cuobjdump not found", where=path,
                          hint="pip install nvidia-cuda-cuobjdump (the `cuda-tools` extra) or "
                               "put a CUDA toolkit's bin/ on PATH")
    return _with_cuobjdump(tool, path) if tool else read_fatbin(path)


def _with_cuobjdump(tool: str, path: Path) -> dict[str, list[str]]:
    done = process.run([tool, "--list-elf", "--list-ptx", path], stage="cuobjdump", check=False)
    if done.returncode != 0:
        if _NO_DEVICE_CODE in done.output:
            return {"sass": [], "ptx": []}
        raise BundleError(f"cuobjdump cannot read {path.name}: {done.output.strip()}", where=path,
                          hint="is it a CUDA object, library or executable?")
    found: dict[str, set[str]] = {"ELF": set(), "PTX": set()}
    for line in done.output.splitlines():
        match = _LISTED.match(line.strip())
        if match:
            found[match.group(1)].add(match.group(2).rstrip("f"))
    return {"sass": _sort(found["ELF"]), "ptx": _sort(found["PTX"])}


def read_fatbin(path: str | os.PathLike) -> dict[str, list[str]]:
    """The same listing as cuda_archs(), read from the `.nv_fatbin` section's headers.

    Layout (nvcc 11-13): a sequence of fatbinaries, each a 16-byte header (magic, version,
    header size, payload size) followed by entries; each entry header has its kind (1 PTX,
    2 ELF) at 0, its header size at 4, its payload size at 8, the architecture at 28 and
    flags at 40.
    """
    path = Path(path)
    try:
        section = elf.section_bytes(path, ".nv_fatbin")
    except elf.ElfError as exc:
        raise BundleError(str(exc), where=path, hint="pass a shared library the build made") from None
    found: dict[int, set[str]] = {_KIND_PTX: set(), _KIND_ELF: set()}
    pos = 0
    while section and pos + 16 <= len(section):
        magic, _version, header, size = struct.unpack_from("<IHHQ", section, pos)
        if magic != FATBIN_MAGIC:
            break  # padding at the end of the section
        entry, end = pos + header, pos + header + size
        while entry + 48 <= end:
            kind, _ver, entry_header, payload = struct.unpack_from("<HHIQ", section, entry)
            arch = struct.unpack_from("<I", section, entry + 28)[0]
            flags = struct.unpack_from("<Q", section, entry + 40)[0]
            if kind in found and arch:
                suffix = "a" if flags & _FLAG_ARCH_SPECIFIC else ""
                found[kind].add(f"{arch}{suffix}")
            entry += entry_header + payload
        pos = end
    return {"sass": _sort(found[_KIND_ELF]), "ptx": _sort(found[_KIND_PTX])}


def matching_code(archs: Mapping[str, list[str]], arch: str | int) -> str | None:
    """What a GPU of compute capability `arch` would load: 'sass sm_90', 'ptx compute_80'
    (JIT-compiled at load), or None when nothing runs there. SASS wins over PTX."""
    major, minor, suffix = parse_arch(arch)
    if suffix:
        raise ValueError(f"a GPU's capability has no suffix: use {major}{minor}, not {arch!r}")
    sass_matches = []
    for sass in archs.get("sass", []):
        s_major, s_minor, s_suffix = parse_arch(sass)
        if (s_major, s_minor) == (major, minor) or (not s_suffix and s_major == major
                                                    and s_minor <= minor):
            sass_matches.append(sass)
    if sass_matches:  # sorted: the newest compatible code is what the driver picks
        return f"sass sm_{sass_matches[-1]}"
    for ptx in reversed(archs.get("ptx", [])):
        p_major, p_minor, p_suffix = parse_arch(ptx)
        if (p_major, p_minor) == (major, minor) or (not p_suffix and (p_major, p_minor) < (major, minor)):
            return f"ptx compute_{ptx}"
    return None


def runs_on(archs: Mapping[str, list[str]], arch: str | int) -> bool:
    """True when a GPU of compute capability `arch` (e.g. "90") can run the library."""
    return matching_code(archs, arch) is not None


def describe(archs: Mapping[str, list[str]]) -> str:
    """'SASS sm_75 sm_90; PTX compute_90' (for `ops check`)."""
    sass = " ".join(f"sm_{a}" for a in archs.get("sass", [])) or "none"
    ptx = " ".join(f"compute_{a}" for a in archs.get("ptx", [])) or "none"
    return f"SASS {sass}; PTX {ptx}"
