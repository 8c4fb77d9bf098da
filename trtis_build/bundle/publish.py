"""Stage 5: check what was built, write manifest.json and publish the bundle atomically.

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

from . import __version__, names, process
from .errors import BundleError, NameConflictError
from .plan import BuildPlan, Target
from .toolchain import JSON_MARK, PROBES, Toolchain

SCHEMA = 1
KEEP_VERSIONS = 3
# Needed libraries a TF op library may have besides the framework: the C/C++ runtime.
SYSTEM_LIBS = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2",
               "libdl.so.2", "libpthread.so.0", "librt.so.1"}


@dataclass(frozen=True)
class Bundle:
    path: Path            # what users name (the symlink)
    real_path: Path       # the immutable version directory
    manifest: dict[str, Any]
    changed: bool         # False when the bundle was already this version


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_manifest(path: Path | str) -> dict[str, Any]:
    """The manifest of a bundle directory, validated enough for consumers to rely on."""
    manifest_path = Path(path) / "manifest.json"
    if not manifest_path.is_file():
        raise BundleError(f"no bundle at {path} (manifest.json missing)", where=manifest_path,
                          hint="build one with `trtis-build ops build` or pass the bundle directory")
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError as exc:
        raise BundleError(f"manifest.json is not valid JSON: {exc}", where=manifest_path) from None
    if manifest.get("schema") != SCHEMA:
        raise BundleError(f"unsupported bundle schema {manifest.get('schema')!r} (expected {SCHEMA})",
                          where=manifest_path, hint="rebuild the bundle with this trtis-build")
    return manifest


def write_generated_headers(plan: BuildPlan, generated_dir: Path) -> None:
    """Per-op headers the build includes (TensorRT plugin names/versions/namespaces)."""
    try:
        from . import tensorrt as trt_support
    except ImportError:
        return
    by_key = {op.key: op for op in plan.ops}
    for target in plan.targets:
        if target.framework == "tensorrt":
            op = by_key[target.key]
            trt_support.write_plugin_config(generated_dir / "tensorrt" / target.name, op.name, op.plugins,
                                            where=str(op.op_toml))


# --- checks ----------------------------------------------------------------------------------

class _VerifyCache:
    """Results of the slow checks, by library content, so an unchanged library is never
    loaded into TensorFlow again (a no-op rebuild must not import it)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            self.data = {}

    LIMIT = 256  # entries kept, most recently used last (a few KB each at most)

    def get(self, key: str) -> dict | None:
        value = self.data.pop(key, None)
        if value is not None:
            self.data[key] = value  # most recently used: kept longest
        return value

    def put(self, key: str, value: dict) -> None:
        self.data.pop(key, None)
        self.data[key] = value

    def save(self) -> None:
        for key in list(self.data)[:-self.LIMIT]:
            del self.data[key]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))  # insertion order is the recency order
        os.replace(tmp, self.path)


def probe_tensorflow_libraries(tc: Toolchain, paths: list[Path]) -> dict[str, dict]:
    """What each library registers, loaded in a fresh TensorFlow process."""
    assert tc.tensorflow is not None
    out = process.capture([tc.tensorflow.python, str(PROBES / "tf_probe.py"), "registered",
                           *map(str, paths)], stage="bundle", extra_env={"TF_CPP_MIN_LOG_LEVEL": "3"},
                          failure_message="loading the built libraries into TensorFlow crashed")
    return json.loads(out.rsplit(JSON_MARK, 1)[1])


def start_tensorflow_probe(tc: Toolchain) -> process.Pending:
    """The same probe, started before the libraries exist: the build starts it when the
    compiler starts, so TensorFlow's ~2 s import runs on a core the compiler leaves idle
    (one TensorFlow-heavy adapter is a cold build's critical path)."""
    assert tc.tensorflow is not None
    return process.Pending([tc.tensorflow.python, str(PROBES / "tf_probe.py"), "serve"], stage="bundle",
                           extra_env={"TF_CPP_MIN_LOG_LEVEL": "3"})


def _registered_in_tensorflow(tc: Toolchain, paths: list[Path], early: process.Pending | None) -> dict[str, dict]:
    if early is None:
        return probe_tensorflow_libraries(tc, paths)
    out = early.finish("".join(f"{path}\n" for path in paths),
                       failure_message="loading the built libraries into TensorFlow crashed")
    return json.loads(out.rsplit(JSON_MARK, 1)[1])


def _probe_plugins(paths: list[Path], runtime_env: dict[str, str] | None) -> dict[str, dict]:
    """What each plugin library registers, loaded one by one into a real TensorRT plugin
    registry (the lean runtime is enough) in a subprocess."""
    from . import tensorrt as trt_support

    results = {}
    for path in paths:
        probe = trt_support.probe_registry([path], extra_env=runtime_env)
        if probe.crash:
            results[str(path)] = {"error": probe.crash}
            continue
        [load] = probe.libraries
        if not load.loaded:
            results[str(path)] = {"error": load.refusal}
            continue
        results[str(path)] = {"plugins": [{"name": p.name, "version": p.version, "namespace": p.namespace}
                                          for p in load.registered]}
    return results


def _cuda_archs(path: Path) -> dict[str, list[str]] | None:
    try:
        from . import fatbin
    except ImportError:
        return None
    return fatbin.cuda_archs(path)


def _verify(plan: BuildPlan, tc: Toolchain, built: dict[str, Path], cache: _VerifyCache,
            runtime_env: dict[str, str] | None = None,
            early_tf_probe: process.Pending | None = None) -> dict[str, dict]:
    """Registered names vs declared (slow: a TensorFlow or TensorRT process, so cached by the
    library's host code, see elf.loaded_content_sha256), devices, needed libraries, CUDA archs."""
    from .elf import dynamic_info, loaded_content_sha256

    by_key = {op.key: op for op in plan.ops}
    results: dict[str, dict] = {}
    host: dict[str, str] = {}
    todo: dict[str, list[Target]] = {"tensorflow": [], "tensorrt": []}
    for target in plan.targets:
        host[target.key] = loaded_content_sha256(built[target.key])
        cached = cache.get(f"registry:{host[target.key]}")
        if cached is not None:
            results[target.key] = dict(cached)
        else:
            todo[target.framework].append(target)
    if todo["tensorflow"]:
        probed = _registered_in_tensorflow(tc, [built[t.key] for t in todo["tensorflow"]], early_tf_probe)
        for target in todo["tensorflow"]:
            info = probed[str(built[target.key])]
            if "error" in info:
                raise BundleError(f"TensorFlow cannot load {target.library}: {info['error']}",
                                  where=by_key[target.key].directory,
                                  hint="fix the undefined symbol or ABI mismatch; the previous bundle was kept")
            results[target.key] = {"ops": info["ops"], "devices": info["devices"],
                                   "outputs": info["outputs"], "plugins": []}
    if todo["tensorrt"]:
        probed = _probe_plugins([built[t.key] for t in todo["tensorrt"]], runtime_env)
        for target in todo["tensorrt"]:
            info = probed[str(built[target.key])]
            if "error" in info:
                raise BundleError(f"TensorRT cannot load {target.library}: {info['error']}",
                                  where=by_key[target.key].directory)
            results[target.key] = {"ops": [], "devices": {}, "outputs": {}, "plugins": info["plugins"]}
    for target in todo["tensorflow"] + todo["tensorrt"]:
        cache.put(f"registry:{host[target.key]}", dict(results[target.key]))
    for target in plan.targets:
        op = by_key[target.key]
        info = results[target.key]
        path = built[target.key]
        # Cheap, so never cached: they read the file itself.
        info["sha256"] = sha256_file(path)
        info["host_sha256"] = host[target.key]
        info["needed"] = dynamic_info(path)["needed"]
        info["cuda_archs"] = _cuda_archs(path) if target.cuda else None
        registered = info["ops"] if op.framework == "tensorflow" else [
            str(_plugin_id(p)) for p in info["plugins"]]
        names.compare_registered(op, registered, target.library)
        _check_needed(target.library, info["needed"], tc, framework=target.framework)
    return results


def _verify_autoload(plan: BuildPlan, tc: Toolchain, shims: dict[str, Path], results: dict[str, dict],
                     cache: _VerifyCache, runtime_env: dict[str, str] | None,
                     python_path: Path | None) -> dict[str, dict]:
    """Open each autoload shim the way Triton's plugins= does (plain dlopen, TensorRT already
    loaded) and check that it registers exactly its op's plugins. A shim refuses a TensorRT of
    another major by design; with such a runtime the check proves only that it loads and
    refuses cleanly, and says how to check more. Cached by (shim, plugin library): a proof that
    it registers stays valid; a weaker result is redone once a runtime of the right major is
    configured (`python_path`'s runtime, read from package metadata only when it matters)."""
    from . import tensorrt as trt_support
    from .elf import dynamic_info

    assert tc.tensorrt is not None
    by_key = {op.key: op for op in plan.ops}
    header_major = tc.tensorrt.version.split(".")[0]

    def can_register() -> bool:
        version = trt_support.runtime_version(python_path)
        return bool(version) and version.split(".")[0] == header_major

    checked: dict[str, dict] = {}
    todo: list[tuple[Target, str, str]] = []
    for target in plan.targets:
        if target.key not in shims:
            continue
        sha = sha256_file(shims[target.key])
        cache_key = f"autoload:{sha}:{results[target.key]['host_sha256']}"
        cached = cache.get(cache_key)
        if cached is not None and (cached.get("registered") or not can_register()):
            checked[target.key] = {"path": target.autoload, "sha256": sha, **cached}
        else:
            todo.append((target, sha, cache_key))
    if not todo:
        return checked
    declared = [plugin for target, _, _ in todo for plugin in by_key[target.key].plugins]
    probe = trt_support.probe_registry([shims[t.key] for t, _, _ in todo], lookups=declared, dlopen=True,
                                       extra_env=runtime_env)
    if probe.crash:
        raise BundleError(f"opening the TensorRT autoload shims crashed: {probe.crash}",
                          hint="the previous bundle was kept; report a bug with the output above")
    same_major = probe.version.split(".")[0] == header_major
    for (target, sha, cache_key), load in zip(todo, probe.libraries):
        op = by_key[target.key]
        said = "; ".join(load.messages) or "it printed nothing"
        if not load.loaded:
            raise BundleError(f"{target.autoload} cannot be opened: {said}", where=op.directory)
        if same_major:
            registered, expected = sorted(map(str, load.registered)), sorted(map(str, op.plugins))
            if registered != expected:
                raise BundleError(f"{target.autoload}, opened with dlopen in {probe.module} {probe.version}, "
                                  f"registered {registered or 'nothing'} instead of {expected} ({said})",
                                  where=op.directory, hint="the previous bundle was kept")
            how = f"registered its plugins when opened in {probe.module} {probe.version}"
        else:
            if f"built against TensorRT {header_major} headers" not in said:
                raise BundleError(f"{target.autoload} did not load as expected into {probe.module} "
                                  f"{probe.version}: {said}", where=op.directory)
            how = (f"opened only: the TensorRT runtime here is {probe.version} and the headers "
                   f"{tc.tensorrt.version}; set tensorrt-python-path to a TensorRT {header_major} "
                   "Python runtime to check that it registers")
        needed = dynamic_info(shims[target.key])["needed"]
        _check_needed(target.autoload, needed, tc)
        info = {"checked": how, "registered": same_major, "needed": needed}
        cache.put(cache_key, info)
        checked[target.key] = {"path": target.autoload, "sha256": sha, **info}
    return checked


def _plugin_id(entry: dict):
    from .discover import PluginId

    return PluginId(entry["name"], entry["version"], entry.get("namespace", ""))


def _check_needed(library: str, needed: list[str], tc: Toolchain, *, framework: str | None = None) -> None:
    """Needed libraries may be the C/C++ runtime and, for a TF op library, TensorFlow's own."""
    allowed = set(SYSTEM_LIBS)
    if framework == "tensorflow" and tc.tensorflow:
        allowed.add(tc.tensorflow.framework_lib)
    extra = [lib for lib in needed if lib not in allowed]
    if extra:
        raise BundleError(f"{library} needs shared libraries the server may not have: {', '.join(extra)}",
                          hint="link them statically (CUDA runtime: static cudart is the default) "
                               "or remove the dependency")


# --- manifest and publishing -----------------------------------------------------------------

def _library_entry(target: Target, op, info: dict, cuda_archs: tuple[str, ...]) -> dict[str, Any]:
    return {
        "op": op.name, "framework": op.framework, "version": op.version, "path": target.library,
        "sha256": info["sha256"], "ops": info["ops"], "devices": info["devices"],
        "outputs": info.get("outputs", {}),
        "plugins": info["plugins"], "layout": op.layout,
        "cuda_archs": list(cuda_archs) if target.cuda else [],
        "cuda_code": info.get("cuda_archs"), "needed": info["needed"],
        **({"autoload": info["autoload"]} if info.get("autoload") else {}),
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


def _tensorrt_runtime_env(options) -> dict[str, str] | None:
    from . import tensorrt as trt_support

    return trt_support.runtime_env(options.tensorrt_python_path)


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
            kernels_only: bool = False, early_tf_probe: process.Pending | None = None) -> Bundle:
    """Check what was built, write the manifest and swap the bundle link. `early_tf_probe`:
    a TensorFlow probe started while compiling (start_tensorflow_probe); the caller cancels
    it afterwards if it was not needed."""
    out = options.bundle_dir
    out.parent.mkdir(parents=True, exist_ok=True)
    built, harnesses, shims, files = {}, {}, {}, {}
    for target in plan.targets:
        if target.harness:
            harnesses[target.key] = built_dir / target.harness
            files[target.harness] = harnesses[target.key]
        if not kernels_only:
            built[target.key] = built_dir / target.library
            files[target.library] = built[target.key]
            if target.autoload:
                shims[target.key] = built_dir / target.autoload
                files[target.autoload] = shims[target.key]
    missing = [str(p) for p in files.values() if not p.is_file()]
    if missing:
        raise BundleError(f"the build produced no {', '.join(missing)}",
                          hint="run `trtis-build ops build` again; report a bug if it persists")
    results = {}
    if not kernels_only:
        cache = _VerifyCache(options.build_dir / "verify-cache.json")
        runtime_env = (_tensorrt_runtime_env(options)
                       if any(t.framework == "tensorrt" for t in plan.targets) else None)
        results = _verify(plan, tc, built, cache, runtime_env, early_tf_probe)
        if shims:
            autoloads = _verify_autoload(plan, tc, shims, results, cache, runtime_env, options.tensorrt_python_path)
            for key, autoload in autoloads.items():
                results[key]["autoload"] = autoload
        cache.save()
    manifest = make_manifest(plan, tc, results, harnesses)
    final = _install_version(manifest, files, out)
    changed = _point_link(out, final)
    os.utime(final)  # most recently used version survives garbage collection
    _collect_garbage(out, final)
    return Bundle(path=out, real_path=final, manifest=manifest, changed=changed)


__all__ = ["Bundle", "publish", "read_manifest", "sha256_file", "NameConflictError"]
