"""`trtis-build cache stats|clean`: the caches this tool keeps, their sizes, and the compiler
cache's statistics. `clean` deletes only what trtis-build wrote into its own caches: never a
bundle, never sccache's storage (sccache owns it: `sccache --help`, or delete $SCCACHE_DIR)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from ..core.errors import ConfigError, ToolchainError
from ..core.files import user_cache_dir
from .common import info, options_from, print_json



@dataclass(frozen=True)
class Cache:
    name: str
    what: str
    paths: Callable[[Path, Path], list[Path]]   # (user cache dir, build dir) -> its files


def _glob(base: Path, pattern: str) -> list[Path]:
    return sorted(base.glob(pattern)) if base.is_dir() else []


CACHES = (
    Cache("toolchain", "found compilers, CMake, Ninja, nvcc and frameworks (per fingerprint)",
          lambda user, build: _glob(user, "toolchain-*.json")),
    Cache("verification", "registry checks of built libraries and hashes of verified image blobs",
          lambda user, build: [p for p in (build / "verify-cache.json", user / "verified-blobs.json") if p.is_file()]),
    Cache("bases", "base images: the assembled default base, pulled and loaded bases, torch wheels for them",
          # Not the locks nor another process's work in progress (.partial): only finished entries.
          lambda user, build: [p for p in _glob(user / "bases", "*") if not p.name.endswith((".lock", ".partial"))]
          + [p for p in (user / "torch",) if p.exists()]),
)


def register(subparsers) -> None:
    cache = subparsers.add_parser("cache", help="show and clean the caches trtis-build keeps")
    sub = cache.add_subparsers(dest="cache_command", metavar="ACTION", required=True)
    stats = sub.add_parser("stats", help="each cache with its size, and the compiler cache's statistics")
    stats.add_argument("--build-dir", metavar="DIR", help="build directory (default: build)")
    stats.add_argument("--json", action="store_true", help="machine-readable output")
    stats.set_defaults(handler=cmd_stats)
    clean = sub.add_parser("clean", help="delete trtis-build's own caches (never the bundle)")
    clean.add_argument("names", nargs="*", metavar="CACHE",
                       help=f"which: {', '.join(c.name for c in CACHES)} (default: all of them)")
    clean.add_argument("--build-dir", metavar="DIR", help="build directory (default: build)")
    clean.add_argument("--json", action="store_true", help="machine-readable output")
    clean.set_defaults(handler=cmd_clean)


def _size(path: Path) -> int:
    if path.is_symlink() or path.is_file():
        return path.lstat().st_size
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(dirpath, name)).st_size
            except OSError:
                pass
    return total


def human(size: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size} B"


def _entries(options) -> list[dict]:
    user = user_cache_dir()
    result = []
    for cache in CACHES:
        paths = cache.paths(user, options.build_dir)
        result.append({"name": cache.name, "what": cache.what, "entries": len(paths),
                       "bytes": sum(_size(p) for p in paths), "paths": [str(p) for p in paths]})
    return result


def _compiler_cache(options) -> dict:
    """sccache's own numbers: where it stores and how much (a server of our own for the
    question), and the last build's hits and misses."""
    from ..builder import compiler_cache

    last_path = options.build_dir / compiler_cache.REPORT_FILE
    try:
        last = json.loads(last_path.read_text()) if last_path.is_file() else None
    except ValueError:
        last = None
    try:
        sccache = compiler_cache.find()
    except ToolchainError as error:
        return {"tool": None, "problem": error.message, "last_build": last}
    with tempfile.TemporaryDirectory(prefix="trtis-cache-stats-") as work:
        try:
            with compiler_cache.CacheServer(sccache, log_path=Path(work) / "sccache.log", base_dirs=[]) as server:
                stats = server.stats()
        except ToolchainError as error:
            return {"tool": f"sccache {sccache.version}", "problem": error.message, "last_build": last}
    return {"tool": f"sccache {sccache.version}", "path": sccache.path, "backend": compiler_cache.backend(stats),
            "bytes": stats.get("cache_size"), "max_bytes": stats.get("max_cache_size"), "last_build": last}


def cmd_stats(args) -> int:
    options = options_from(args)
    report = {"caches": _entries(options), "compiler_cache": _compiler_cache(options)}
    if args.json:
        print_json(report)
        return 0
    print(f"trtis-build caches ({user_cache_dir()}, build dir {options.build_dir})")
    for entry in report["caches"]:
        print(f"  {entry['name']:<13} {human(entry['bytes']):>10}  {entry['entries']:>3} entries  {entry['what']}")
    cc = report["compiler_cache"]
    if not cc.get("tool"):
        print(f"  compiler      not installed ({cc.get('problem')})")
    elif cc.get("problem"):
        print(f"  compiler      {cc['tool']}: {cc['problem']}")
    else:
        size = f"{human(cc['bytes'])} of {human(cc['max_bytes'])}" if isinstance(cc.get("bytes"), int) and \
            isinstance(cc.get("max_bytes"), int) else "size not reported by this storage"
        print(f"  compiler      {cc['tool']}, storage: {cc['backend']}, {size}")
    last = cc.get("last_build")
    if last:
        print(f"                last build: {last['hits']} hits, {last['misses']} misses, "
              f"{last['not_cacheable']} not cacheable, {last.get('distributed', 0)} on build servers "
              f"({len(last.get('steps', []))} compile steps)")
    return 0


def cmd_clean(args) -> int:
    options = options_from(args)
    known = {cache.name: cache for cache in CACHES}
    unknown = [name for name in args.names if name not in known]
    if unknown:
        hint = f"known caches: {', '.join(known)}"
        if "compiler" in unknown or "sccache" in unknown:
            hint += "; sccache's storage is sccache's own (for its local disk cache: delete $SCCACHE_DIR)"
        raise ConfigError(f"no cache named {', '.join(map(repr, unknown))}", where="trtis-build cache clean",
                          hint=hint)
    chosen = [known[name] for name in args.names] if args.names else list(CACHES)
    user = user_cache_dir()
    removed = []
    for cache in chosen:
        freed = 0
        paths = cache.paths(user, options.build_dir)
        for path in paths:
            freed += _size(path)
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            else:
                path.unlink()
        removed.append({"name": cache.name, "entries": len(paths), "bytes": freed})
        info(f"cleaned {cache.name}: {len(paths)} entries, {human(freed)}")
    if args.json:
        print_json({"cleaned": removed})
    return 0
