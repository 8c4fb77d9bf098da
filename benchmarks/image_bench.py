"""Image benchmark, one run (figures, not a timed test):

1. `trtis-build server` wall time (the whole CLI process) composing the image from an
   existing bundle and the cached default base: OCI layout only, then with --archive;
2. compose() alone, in process (bundle check, layer, config, manifest, base blobs linked);
3. what the bundle layer adds (compressed and uncompressed) next to the base's size;
4. with --cold: building the default base itself into an empty cache (mmdebstrap + layers).

    .venv/bin/python benchmarks/image_bench.py [--bundle DIR] [--runs N] [--cold]

The bundle defaults to build/bundle (run `trtis-build ops build` first).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
TARGET_SECONDS = 2.0


def cli(*args: str, env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "trtis_build", "server", *args], cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env={**os.environ, **(env or {})})
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bundle", default=str(REPO / "build" / "bundle"))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="also time building the default base")
    args = parser.parse_args()

    from trtis_build.image import base as imagebase
    from trtis_build.image import default_base as defaultbase
    from trtis_build.core.files import user_cache_dir
    from trtis_build.image import compose as image

    bundle = Path(args.bundle).resolve()
    figures: dict = {"bundle": str(bundle)}
    if args.cold:
        with tempfile.TemporaryDirectory(prefix="trtis-cold-cache-") as cache:
            start = time.perf_counter()
            defaultbase.default_base(env={**os.environ, "TRTIS_BUILD_CACHE_DIR": cache})
            figures["default_base_build_s"] = round(time.perf_counter() - start, 1)
    start = time.perf_counter()
    base_dir, ref = defaultbase.default_base()  # warm the cache (builds it once if needed)
    figures["default_base_ready_s"] = round(time.perf_counter() - start, 2)

    with tempfile.TemporaryDirectory(prefix="trtis-image-bench-", dir=REPO / "build") as tmp:
        tmp = Path(tmp)
        common = ["--no-build", "--bundle", str(bundle), "--tag", "bench:1"]
        layout_runs = [cli(*common, "--out", str(tmp / f"layout{i}")) for i in range(args.runs)]
        archive_runs = [cli(*common, "--out", str(tmp / f"arch{i}"), "--archive", str(tmp / f"arch{i}.tar"))
                        for i in range(args.runs)]
        base = imagebase.open_base(None, cache=user_cache_dir())
        settings = image.ComposeSettings(bundle_dir=bundle, tag="bench:1")
        compose_runs = []
        for i in range(args.runs):
            composed = image.compose(base, settings, tmp / f"inproc{i}")
            compose_runs.append(composed.seconds)
        layer = composed.layer
        base_size = sum(d.size for d in base.layers)
        archive_size = (tmp / "arch0.tar").stat().st_size

    figures.update({
        "cli_layout_s_median": round(statistics.median(layout_runs), 3),
        "cli_layout_s_runs": [round(t, 3) for t in layout_runs],
        "cli_layout_and_archive_s_median": round(statistics.median(archive_runs), 3),
        "compose_in_process_s_median": round(statistics.median(compose_runs), 4),
        "bundle_layer_bytes_gzip": layer.descriptor.size,
        "bundle_layer_bytes_tar": layer.uncompressed_size,
        "bundle_layer_entries": len(layer.files),
        "base_bytes_gzip": base_size,
        "base_layers": len(base.layers),
        "archive_bytes": archive_size,
        "target_s": TARGET_SECONDS,
        "meets_target": statistics.median(layout_runs) <= TARGET_SECONDS,
    })
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
