"""Shared compiler cache benchmark, one run (figures and ratios, not a timed test).

The repository's example ops (TensorFlow, TensorRT and torch adapters, the shared CPU and CUDA
kernels for the default architectures) built as CI runners build them: each checkout a fresh
copy at its own path with no build/ directory, the per-user toolchain cache warm.

  uncached   cold `ops build` with compiler-cache none                       (the reference)
  populate   cold build, compiler-cache sccache, an empty Redis               (fills the cache)
  clone      another checkout at another path, same Redis: a second runner   target <= 0.35x, >= 95% hits
  rerun      the same checkout after `rm -r build`                            target >= 95% hits

Every build's libraries and manifest are compared by sha256 with the uncached build's.
A real redis-server on 127.0.0.1 (a free port, no persistence) and the venv's sccache.

    .venv/bin/python benchmarks/cache_bench.py [--repeats 2] [--cuda-arch LIST]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.conftest import free_port  # noqa: E402  (one helper for the tests' and benchmarks' servers)
TRTIS = [sys.executable, "-m", "trtis_build"]
TARGET_CLONE_RATIO = 0.35
TARGET_HITS = 0.95



def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", str(workdir)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return proc, f"redis://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("redis-server did not start")


def checkout(path: Path) -> Path:
    """A fresh copy of the project's tracked op sources and settings, as a CI clone has them."""
    path.mkdir(parents=True)
    shutil.copytree(REPO / "ops", path / "ops", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", path / "pyproject.toml")
    return path


def build(project: Path, env: dict, arch: list[str]) -> tuple[float, dict]:
    started = time.monotonic()
    result = subprocess.run([*TRTIS, "ops", "build", "--json", *arch], cwd=project, env=env,
                            capture_output=True, text=True)
    took = time.monotonic() - started
    if result.returncode != 0:
        raise SystemExit(f"build in {project} failed:\n{result.stderr[-3000:]}")
    return took, json.loads(result.stdout)


def digests(bundle: Path) -> dict[str, str]:
    return {str(p.relative_to(bundle)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(bundle.rglob("*")) if p.is_file() and (p.suffix == ".so" or p.name == "manifest.json")}


def hit_rate(report: dict) -> tuple[int, int]:
    return report["hits"], len(report["steps"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cuda-arch", help="CUDA architectures (default: the tool's default list)")
    args = parser.parse_args()
    arch = ["--cuda-arch", args.cuda_arch] if args.cuda_arch else []
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("SCCACHE_")}
    rows = {"uncached": [], "populate": [], "clone": [], "rerun": []}
    hits = {"populate": [], "clone": [], "rerun": []}
    identical = True
    with tempfile.TemporaryDirectory(prefix="trtis-cache-bench-") as tmp:
        tmp = Path(tmp)
        # Warm the per-user toolchain cache once (a runner image keeps it; it is not what we time).
        build(checkout(tmp / "warmup"), {**base_env, "TRTIS_BUILD_COMPILER_CACHE": "none"}, arch)
        for run in range(args.repeats):
            redis, url = start_redis(tmp)
            try:
                cached = {**base_env, "TRTIS_BUILD_COMPILER_CACHE": "sccache", "SCCACHE_REDIS_ENDPOINT": url}
                took, reference = build(checkout(tmp / f"r{run}" / "uncached"), {**base_env, "TRTIS_BUILD_COMPILER_CACHE": "none"}, arch)
                rows["uncached"].append(took)
                expected = digests(Path(reference["bundle"]))
                for name, path in (("populate", tmp / f"r{run}" / "runner-a" / "work" / "proj"),
                                   ("clone", tmp / f"r{run}" / "runner-b" / "other" / "path" / "proj")):
                    took, result = build(checkout(path), cached, arch)
                    rows[name].append(took)
                    hits[name].append(hit_rate(result["compiler_cache"]))
                    identical &= digests(Path(result["bundle"])) == expected
                shutil.rmtree(path / "build")
                took, result = build(path, cached, arch)
                rows["rerun"].append(took)
                hits["rerun"].append(hit_rate(result["compiler_cache"]))
                identical &= digests(Path(result["bundle"])) == expected
            finally:
                redis.terminate()
                redis.wait(timeout=10)
    print(f"cache_bench: {args.repeats} runs, example ops, arch {args.cuda_arch or 'default list'}, "
          f"{os.cpu_count()} cores, sccache + redis-server on 127.0.0.1")
    for name, times in rows.items():
        line = f"  {name:<9} min {min(times):6.2f} s  median {statistics.median(times):6.2f} s  max {max(times):6.2f} s"
        if name in hits:
            got = [f"{h}/{t}" for h, t in hits[name]]
            line += f"   hits {', '.join(got)}"
        print(line)
    ratios = [c / u for c, u in zip(rows["clone"], rows["uncached"])]
    clone_hits = min(h / t for h, t in hits["clone"]) if hits["clone"] else 0
    rerun_hits = min(h / t for h, t in hits["rerun"]) if hits["rerun"] else 0
    # The median pair: one noisy neighbour on a shared 2-core machine moves single pairs by 20-40%.
    within = sum(r <= TARGET_CLONE_RATIO for r in ratios)
    print(f"  clone / uncached: {', '.join(f'{r:.2f}x' for r in ratios)} (median {statistics.median(ratios):.2f}x; "
          f"target <= {TARGET_CLONE_RATIO}x) {'OK' if statistics.median(ratios) <= TARGET_CLONE_RATIO else 'MISSED'} "
          f"(median; {within} of {len(ratios)} runs within)")
    print(f"  clone hits {clone_hits:.0%}, rerun hits {rerun_hits:.0%} (target >= {TARGET_HITS:.0%}) "
          f"{'OK' if min(clone_hits, rerun_hits) >= TARGET_HITS else 'MISSED'}")
    print(f"  every cached build's bundle byte-identical to the uncached one: {'yes' if identical else 'NO'}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
