"""manifest.json: what the bundle stage writes (`make_manifest`) and reads back
(`read_manifest`). The reading rules are trtis_server.manifest's, the same ones the image's
launcher uses; this module turns their errors into the driver's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trtis_server import manifest as server_manifest

from .. import __version__, frameworks
from ..builder.plan import BuildPlan, Target
from ..builder.toolchain import Toolchain
from ..core.errors import BundleError
from ..core.files import sha256_file

SCHEMA = server_manifest.SCHEMA
MANIFEST = server_manifest.MANIFEST


def read_manifest(path: Path | str) -> dict[str, Any]:
    """The manifest of a bundle directory, validated enough for consumers to rely on."""
    try:
        return server_manifest.read(path)
    except server_manifest.ManifestError as exc:
        hint = ("build one with `trtis-build ops build` or pass the bundle directory"
                if "missing" in str(exc) else "rebuild the bundle with this trtis-build")
        raise BundleError(str(exc), where=Path(path) / MANIFEST, hint=hint) from None


def _library_entry(target: Target, op, info: dict, cuda_archs: tuple[str, ...]) -> dict[str, Any]:
    return {
        "op": op.name, "framework": op.framework, "version": op.version, "path": target.library,
        "sha256": info["sha256"], "ops": info["ops"], "devices": info["devices"],
        "outputs": info.get("outputs", {}),
        "plugins": info["plugins"], "layout": op.layout,
        "cuda_archs": list(cuda_archs) if target.cuda else [],
        "cuda_code": info.get("cuda_archs"), "needed": info["needed"],
        **{kind: info[kind] for kind in target.extras if info.get(kind)},
        **frameworks.get(op.framework).library_fields(op, info),
    }


def make_manifest(plan: BuildPlan, tc: Toolchain, results: dict[str, dict],
                  harnesses: dict[str, Path]) -> dict[str, Any]:
    by_key = {op.key: op for op in plan.ops}
    return {
        "schema": SCHEMA,
        "trtis_build_version": __version__,
        "toolchain": tc.to_manifest(),
        "cuda": {"enabled": plan.cuda_enabled, "archs": list(plan.cuda_archs), "ptx": plan.ptx_arch},
        "libraries": [_library_entry(t, by_key[t.key], results[t.key], plan.cuda_archs)
                      for t in plan.targets if t.key in results],
        "kernel_libraries": [{"op": t.name, "framework": t.framework, "path": t.harness,
                              "sha256": sha256_file(harnesses[t.key])}
                             for t in plan.targets if t.key in harnesses],
        "skipped": [{"op": key, "reason": reason} for key, reason in plan.skipped],
    }
