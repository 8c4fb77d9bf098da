"""The autoload shims' check before publishing: open each shim the way Triton's plugins= does
(plain dlopen, TensorRT already loaded) and check that it registers exactly its op's
plugins. A shim refuses a TensorRT of another major by design; with such a runtime the check
proves only that it loads and refuses cleanly, and says how to check more. Cached by (shim,
plugin library): a proof that it registers stays valid; a weaker result is redone once a
runtime of the right major is configured (read from package metadata only when it matters)."""

from __future__ import annotations

from trtis_server import elf
from trtis_server.manifest import sha256_file

from ...core.errors import BundleError
from . import registry


def verify_autoload(framework, targets, built_dir, results, context) -> dict[str, dict]:
    info = context.toolchain.framework(framework.name)
    python_path = getattr(context.options, "tensorrt_python_path", None)
    env = registry.runtime_env(python_path)

    def can_register() -> bool:
        version = registry.runtime_version(python_path)
        return bool(version) and version.split(".")[0] == info.major

    checked: dict[str, dict] = {}
    todo = []
    for target in targets:
        relative = target.extras["autoload"]
        shim = built_dir / relative
        sha = sha256_file(shim)
        cache_key = f"autoload:{sha}:{results[target.key]['host_sha256']}"
        cached = context.cache.get(cache_key)
        if cached is not None and (cached.get("registered") or not can_register()):
            checked[target.key] = {"autoload": {"path": relative, "sha256": sha, **cached}}
        else:
            todo.append((target, shim, relative, sha, cache_key))
    if not todo:
        return checked
    declared = [plugin for target, *_ in todo for plugin in context.ops[target.key].declared]
    probe = registry.probe_registry([shim for _, shim, *_ in todo], lookups=declared, dlopen=True, extra_env=env)
    if probe.crash:
        raise BundleError(f"opening the TensorRT autoload shims crashed: {probe.crash}",
                          hint="the previous bundle was kept; report a bug with the output above")
    same_major = probe.version.split(".")[0] == info.major
    for (target, shim, relative, sha, cache_key), load in zip(todo, probe.libraries):
        op = context.ops[target.key]
        said = "; ".join(load.messages) or "it printed nothing"
        if not load.loaded:
            raise BundleError(f"{relative} cannot be opened: {said}", where=op.directory)
        if same_major:
            registered, expected = sorted(map(str, load.registered)), sorted(map(str, op.declared))
            if registered != expected:
                raise BundleError(f"{relative}, opened with dlopen in {probe.module} {probe.version}, "
                                  f"registered {registered or 'nothing'} instead of {expected} ({said})",
                                  where=op.directory, hint="the previous bundle was kept")
            how = f"registered its plugins when opened in {probe.module} {probe.version}"
        else:
            if f"built against TensorRT {info.major} headers" not in said:
                raise BundleError(f"{relative} did not load as expected into {probe.module} "
                                  f"{probe.version}: {said}", where=op.directory)
            how = (f"opened only: the TensorRT runtime here is {probe.version} and the headers "
                   f"{info.version}; set tensorrt-python-path to a TensorRT {info.major} "
                   "Python runtime to check that it registers")
        needed = elf.dynamic_info(shim)["needed"]
        context.check_needed(relative, needed, framework=None)
        entry = {"checked": how, "registered": same_major, "needed": needed}
        context.cache.put(cache_key, entry)
        checked[target.key] = {"autoload": {"path": relative, "sha256": sha, **entry}}
    return checked
