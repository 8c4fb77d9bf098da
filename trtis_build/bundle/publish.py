"""Stage 5: check what was built (verify.py), write manifest.json (manifest.py) and publish
the bundle atomically.

Layout: <out> is a symlink to <out-parent>/.<out-name>.versions/<id>/, where <id> is a hash
of the manifest. A new version is assembled in a staging directory, renamed into place, and
the symlink is swapped with one rename(2): readers see the old bundle or the new one, never
a half-written one, and a failed or killed build leaves the old link untouched.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..builder import driver
from ..builder.plan import BuildPlan
from ..builder.toolchain import Toolchain
from ..core.errors import BundleError
from .manifest import make_manifest, read_manifest
from .verify import VerifyCache, verify

KEEP_VERSIONS = 3


@dataclass(frozen=True)
class Bundle:
    path: Path            # what users name (the symlink)
    real_path: Path       # the immutable version directory
    manifest: dict[str, Any]
    changed: bool         # False when the bundle was already this version


def _versions_dir(out: Path) -> Path:
    return out.parent / f".{out.name}.versions"


def _install_version(manifest: dict, files: dict[str, Path], out: Path) -> Path:
    text = json.dumps(manifest, indent=2, sort_keys=True) + "\n"
    bundle_id = hashlib.sha256(text.encode()).hexdigest()[:16]
    versions = _versions_dir(out)
    final = versions / bundle_id
    if final.is_dir() and (final / "manifest.json").is_file():
        return final
    staging = versions / f".staging-{bundle_id}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        for relative, source in files.items():
            destination = staging / relative
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination)
        (staging / "manifest.json").write_text(text)
        os.replace(staging, final) if not final.exists() else shutil.rmtree(staging)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return final


def _refuse_to_drop_libraries(out: Path) -> None:
    """A kernels-only bundle holds no op libraries: it must not replace one that does."""
    try:
        libraries = read_manifest(out).get("libraries") if (out / "manifest.json").is_file() else None
    except BundleError:
        return  # not a readable bundle: _point_link decides
    if libraries:
        raise BundleError(f"--kernels-only would replace the bundle at {out}, which holds "
                          f"{len(libraries)} op libraries, with one that holds none", where=out,
                          hint="give the kernel build its own --out (e.g. --out build/kernels), "
                               "or build everything without --kernels-only")


def _point_link(out: Path, target: Path) -> bool:
    """Make `out` a symlink to `target` with one atomic rename; True if it changed."""
    relative = os.path.relpath(target, out.parent)
    if out.is_symlink():
        if os.readlink(out) == relative:
            return False
    elif out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        else:
            raise BundleError(f"{out} exists and is not a trtis-build bundle link", where=out,
                              hint="choose another --out, or remove that directory")
    tmp = out.parent / f".{out.name}.link-{os.getpid()}"
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(relative)
    os.replace(tmp, out)
    return True


def _collect_garbage(out: Path, keep: Path) -> None:
    versions = _versions_dir(out)
    candidates = sorted((p for p in versions.iterdir() if p.is_dir() and p != keep),
                        key=lambda p: p.stat().st_mtime, reverse=True)
    for old in candidates[KEEP_VERSIONS - 1:]:
        shutil.rmtree(old, ignore_errors=True)


def publish(plan: BuildPlan, tc: Toolchain, options, *, built_dir: Path,
            kernels_only: bool = False, early_probes: dict[str, Any] | None = None) -> Bundle:
    """Check what was built, write the manifest and swap the bundle link. `early_probes`:
    the frameworks' probes started while compiling (start_early_probe); the caller cancels
    those not used."""
    out = options.bundle_dir
    if not out.name or out == out.parent or out.name in (".", ".."):
        raise BundleError(f"--out {out} cannot hold a bundle (it needs a name of its own beside which "
                          "versions are kept)", where=out, hint="give a directory path such as build/bundle")
    if kernels_only:
        _refuse_to_drop_libraries(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    harnesses, files = {}, {}
    for target in plan.targets:
        if target.harness:
            harnesses[target.key] = built_dir / target.harness
            files[target.harness] = harnesses[target.key]
        if not kernels_only:
            for relative in (target.library, *target.extras.values()):
                files[relative] = built_dir / relative
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise BundleError(f"the build produced no {', '.join(missing)}",
                          hint="run `trtis-build ops build` again; report a bug if it persists")
    results = {}
    if not kernels_only:
        cache = VerifyCache(options.build_dir / "verify-cache.json")
        results = verify(plan, tc, options, built_dir, cache, early_probes)
        cache.save()
    manifest = make_manifest(plan, tc, results, harnesses)
    final = _install_version(manifest, files, out)
    changed = _point_link(out, final)
    os.utime(final)  # most recently used version survives garbage collection
    _collect_garbage(out, final)
    return Bundle(path=out, real_path=final, manifest=manifest, changed=changed)


def build(options, **kwargs) -> "driver.BuildResult | BuildPlan":
    """The whole pipeline: discover, names, toolchain, plan, compile (builder.driver), then
    this stage's check and publish."""
    if kwargs.get("kernels_only"):
        _refuse_to_drop_libraries(options.bundle_dir)  # before minutes of compiling, not after
    return driver.build(options, publish=publish, **kwargs)
