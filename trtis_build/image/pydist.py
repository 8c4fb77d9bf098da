"""Python distributions as the default base copies them: requirement closures over an
environment's installed distributions, and each distribution's files by its installed-file
list (RECORD), placed in the base's dist-packages. The image's python3 is the same minor
version as ours (default_base.SUITES), so compiled extensions copied this way load there."""

from __future__ import annotations

import importlib.metadata as metadata
import re
from pathlib import Path
from typing import Iterable, Mapping

try:
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name
except ImportError:  # pip vendors packaging; any venv with pip has it
    from pip._vendor.packaging.requirements import Requirement  # type: ignore
    from pip._vendor.packaging.utils import canonicalize_name  # type: ignore


def canonical(name: str) -> str:
    """PEP 503 name: tensorflow_cpu, TensorFlow-CPU -> tensorflow-cpu."""
    return re.sub(r"[-_.]+", "-", name).lower()


def installed() -> dict[str, metadata.Distribution]:
    """The distributions of the environment that runs trtis-build, by canonical name."""
    return {canonicalize_name(d.metadata["Name"]): d for d in metadata.distributions()}


def closure(requirements: Iterable[str], *, strict: bool = False,
            available: Mapping[str, metadata.Distribution] | None = None,
            problems: list[str] | None = None) -> list[metadata.Distribution]:
    """The installed distributions `requirements` pull in (markers evaluated for this
    Python, no extras), sorted by name. Not installed ones are skipped; with `strict`, such
    a requirement and one whose installed version misses its specifier go into `problems`."""
    available = installed() if available is None else available
    seen: dict[str, metadata.Distribution] = {}
    todo = [Requirement(text) for text in requirements]
    while todo:
        requirement = todo.pop()
        if requirement.marker and not requirement.marker.evaluate({"extra": ""}):
            continue
        name = canonicalize_name(requirement.name)
        dist = available.get(name)
        if strict and (dist is None or not requirement.specifier.contains(dist.version, prereleases=True)):
            if problems is not None:
                found = f" (installed: {dist.version})" if dist is not None else ""
                problems.append(f"{requirement}{found}")
            continue
        if name in seen or dist is None:
            continue
        seen[name] = dist
        todo += [Requirement(line) for line in dist.requires or []]
    return [seen[name] for name in sorted(seen)]


def record_files(dists: Iterable[metadata.Distribution], prefix: str) -> dict[str, Path]:
    """prefix/<installed path> -> the file, for every file the distributions' RECORDs list
    inside their site directory (console scripts live outside it; byte code is rebuilt)."""
    files: dict[str, Path] = {}
    for dist in dists:
        for item in dist.files or []:
            relative = Path(str(item))
            if ".." in relative.parts or "__pycache__" in relative.parts:
                continue
            source = Path(dist.locate_file(item))
            if source.is_file() and not source.is_symlink():
                files[f"{prefix}/{relative.as_posix()}"] = source
    return files
