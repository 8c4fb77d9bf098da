"""The checks before publishing: each library loaded where its framework really registers
(the framework's probe, a fresh process), the registered names against op.toml's, the shared
libraries it needs, the CUDA code it carries, and the framework's further checks
(verify_extras, e.g. TensorRT's autoload shims). The slow results are cached by library
content, so a no-op rebuild loads nothing."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trtis_server import elf

from .. import frameworks
from ..builder.plan import BuildPlan, Target
from ..builder.toolchain import Toolchain
from ..core.errors import BundleError
from ..core.files import sha256_file, write_text_atomic
from ..ops import names
from . import fatbin

# Needed libraries any op library may have: the C/C++ runtime. A framework adds its own
# (allowed_needed, e.g. libtensorflow_framework.so.2).
SYSTEM_LIBS = {"libc.so.6", "libm.so.6", "libstdc++.so.6", "libgcc_s.so.1", "ld-linux-x86-64.so.2",
               "libdl.so.2", "libpthread.so.0", "librt.so.1"}
REGISTRY_KEY = "registry2:{}"  # by loaded content; "2": entries of an older layout are never read


class VerifyCache:
    """Results of the slow checks, by library content, so an unchanged library is never
    loaded into its framework again (a no-op rebuild must not import it)."""

    LIMIT = 256  # entries kept, most recently used last (a few KB each at most)

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data = json.loads(path.read_text()) if path.is_file() else {}
        except ValueError:
            self.data = {}
        if not isinstance(self.data, dict):
            self.data = {}

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
        write_text_atomic(self.path, json.dumps(self.data, indent=1))  # insertion order is recency


@dataclass
class Context:
    """What a framework's verify_extras may use."""

    toolchain: Toolchain
    options: Any
    cache: VerifyCache
    ops: dict            # op key -> OpSpec

    def check_needed(self, library: str, needed: list[str], framework: str | None = None) -> None:
        check_needed(library, needed, self.toolchain, framework=framework)


def check_needed(library: str, needed: list[str], tc: Toolchain, *, framework: str | None = None) -> None:
    """Needed libraries may be the C/C++ runtime and what the library's framework provides."""
    allowed = set(SYSTEM_LIBS)
    if framework is not None:
        allowed |= frameworks.get(framework).allowed_needed(tc.framework(framework))
    extra = [lib for lib in needed if lib not in allowed]
    if extra:
        raise BundleError(f"{library} needs shared libraries the server may not have: {', '.join(extra)}",
                          hint="link them statically (CUDA runtime: static cudart is the default) "
                               "or remove the dependency")


def read_elf(read, path: Path):
    """One of trtis_server.elf's readers, its error made the driver's (file, what, how to fix)."""
    try:
        return read(path)
    except elf.ElfError as exc:
        raise BundleError(f"the build produced a library that cannot be read: {exc}", where=path,
                          hint="check the op's link flags (it must build a shared library); "
                               "the previous bundle was kept") from None


def verify(plan: BuildPlan, tc: Toolchain, options: Any, built_dir: Path, cache: VerifyCache,
           early_probes: dict[str, Any] | None = None) -> dict[str, dict]:
    """Per target key: the manifest fields of its library (see manifest._library_entry)."""
    by_key = {op.key: op for op in plan.ops}
    results: dict[str, dict] = {}
    host: dict[str, str] = {}
    todo: dict[str, list[Target]] = {}
    for target in plan.targets:
        host[target.key] = read_elf(elf.loaded_content_sha256, built_dir / target.library)
        cached = cache.get(REGISTRY_KEY.format(host[target.key]))
        if cached is not None:
            results[target.key] = dict(cached)
        else:
            todo.setdefault(target.framework, []).append(target)

    def probe(name: str) -> dict:
        return frameworks.get(name).probe(tc.framework(name), [built_dir / t.library for t in todo[name]], options,
                                          early=(early_probes or {}).get(name))

    # Each framework's probe is its own process: they run side by side (a build's last step).
    with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
        futures = {name: pool.submit(probe, name) for name in todo}
    for name, targets in todo.items():
        seam = frameworks.get(name)
        probed = futures[name].result()  # in plan order, so the first framework's error is the one raised
        for target in targets:
            found = probed[str(built_dir / target.library)]
            if "error" in found:
                raise BundleError(f"{seam.title} cannot load {target.library}: {found['error']}",
                                  where=by_key[target.key].directory, hint=seam.load_error_hint(found["error"]))
            results[target.key] = {**found["entry"], "registered": found["registered"]}
            cache.put(REGISTRY_KEY.format(host[target.key]), dict(results[target.key]))
    for target in plan.targets:
        info = results[target.key]
        path = built_dir / target.library
        # Cheap, so never cached: they read the file itself.
        info["sha256"] = sha256_file(path)
        info["host_sha256"] = host[target.key]
        info["needed"] = read_elf(elf.dynamic_info, path)["needed"]
        info["cuda_archs"] = fatbin.cuda_archs(path) if target.cuda else None
        names.compare_registered(by_key[target.key], info.pop("registered"), target.library)
        frameworks.get(target.framework).check_registered(by_key[target.key], info, target.library)
        check_needed(target.library, info["needed"], tc, framework=target.framework)
    context = Context(toolchain=tc, options=options, cache=cache, ops=by_key)
    for name in sorted({t.framework for t in plan.targets}):
        with_extras = [t for t in plan.targets if t.framework == name and t.extras]
        if with_extras:
            for key, fields in frameworks.get(name).verify_extras(with_extras, built_dir, results, context).items():
                results[key].update(fields)
    return results
