"""Serving benchmark: the example model through the custom op (TensorFlow's TRTISExampleAddSub,
or with --framework torch the torch.export program calling trtis::add_sub) vs the same model
written with the framework's built-in add and subtract, both served by one real Triton server
(Python-backend runner) in one run.

For HTTP and gRPC (tritonclient), sequential and with 4 concurrent clients, it reports
requests/s and p50/p99 latency per model, and the latency ratio custom/built-in (target:
the custom op costs no more than 5%). The two models are measured in alternating blocks so
that drift on a shared machine hits both alike. Request counts and time are bounded.

    python benchmarks/serve_bench.py [--framework tensorflow|torch] [--bundle build/bundle]
                                     [--requests 4000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from trtis_build.core import process  # noqa: E402
from trtis_build.serving.server import ServerSettings, TritonServer  # noqa: E402

MODELS = {"custom": "addsub", "builtin": "addsub_builtin"}
TARGET = 1.05


# The two torch programs: x, y -> {"sum", "difference"} through trtis::add_sub or aten.
EXPORT_TORCH = r'''
import sys, torch
sys.path.insert(0, sys.argv[3])
import trtis_build
op = trtis_build.load_bundle(sys.argv[1], framework="torch").op("trtis::add_sub")

# The example's C++ meta kernel specializes a dynamic size (stable-ABI size compares); a
# Python fake keeps it symbolic for export. Serving never runs it.
@torch.library.register_fake("trtis::add_sub")
def _(x, y):
    return torch.empty_like(x), torch.empty_like(x)

class Custom(torch.nn.Module):
    def forward(self, x, y):
        total, difference = op(x, y)
        return {"sum": total, "difference": difference}

class Builtin(torch.nn.Module):
    def forward(self, x, y):
        return {"sum": x + y, "difference": x - y}

n = torch.export.Dim("n")
example = (torch.randn(8), torch.randn(8))
for name, module in (("addsub", Custom()), ("addsub_builtin", Builtin())):
    program = torch.export.export(module, example, dynamic_shapes={"x": {0: n}, "y": {0: n}})
    torch.export.save(program, f"{sys.argv[2]}/{name}.pt2")
'''


def build_repository(work: Path, bundle: Path, framework: str = "tensorflow") -> Path:
    models = work / "models"
    if framework == "tensorflow":
        process.run([sys.executable, ROOT / "examples" / "make_savedmodel.py", work / "saved",
                     "--bundle", bundle, "--models", models], stage="benchmark",
                    extra_env={"TF_CPP_MIN_LOG_LEVEL": "2"}, timeout=600)
        return models
    from trtis_build.frameworks.torch.serving import add_model

    programs = work / "programs"
    programs.mkdir()
    process.run([sys.executable, "-c", EXPORT_TORCH, bundle, programs, ROOT], stage="benchmark", timeout=600)
    for model in MODELS.values():
        add_model(model, programs / f"{model}.pt2", models_dir=models, bundle_dir=bundle)
    return models


def _client(protocol: str, url: str):
    if protocol == "http":
        import tritonclient.http as module

        return module, module.InferenceServerClient(url=url, connection_timeout=10, network_timeout=60)
    import tritonclient.grpc as module

    return module, module.InferenceServerClient(url=url)


def _worker(protocol: str, url: str, model: str, count: int, deadline: float, elements: int,
            latencies: list[float], errors: list[str]) -> None:
    module, client = _client(protocol, url)
    rng = np.random.default_rng(0)
    inputs = []
    for name in ("x", "y"):
        item = module.InferInput(name, [elements], "FP32")
        item.set_data_from_numpy(rng.standard_normal(elements).astype(np.float32))
        inputs.append(item)
    try:
        for _ in range(count):
            if time.monotonic() > deadline:
                break
            started = time.perf_counter()
            client.infer(model, inputs)
            latencies.append(time.perf_counter() - started)
    except Exception as exc:  # reported, and the figures of this cell are void
        errors.append(f"{type(exc).__name__}: {exc}")
    finally:
        client.close()


def run_block(protocol: str, url: str, model: str, clients: int, requests: int,
              max_seconds: float, elements: int) -> tuple[list[float], float, list[str]]:
    """`requests` requests split over `clients` threads; returns latencies, wall time, errors."""
    latencies: list[float] = []
    errors: list[str] = []
    deadline = time.monotonic() + max_seconds
    per_client = max(1, requests // clients)
    threads = [threading.Thread(target=_worker, args=(protocol, url, model, per_client, deadline,
                                                      elements, latencies, errors))
               for _ in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, time.perf_counter() - started, errors


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def measure(server: TritonServer, args) -> list[dict]:
    """Per cell (protocol, clients): `blocks` pairs of back-to-back blocks, one per model, in
    alternating order. Pooled figures per model, plus the median over pairs of the per-pair
    p50 ratio: a pair runs within a second or two, so load from other work on a shared machine
    hits both of its halves alike, and a disturbed pair cannot move the median much."""
    rows = []
    for protocol in ("http", "grpc"):
        url = server.endpoints[protocol]
        for clients in (1, 4):
            for model in MODELS.values():  # warm-up: connections, TF function tracing, torch's first calls
                run_block(protocol, url, model, clients, 50 * clients, 30, args.elements)
            cell = {kind: {"latencies": [], "wall": 0.0, "errors": [], "p50s": []} for kind in MODELS}
            block = max(clients, args.requests // args.blocks)
            for index in range(args.blocks):
                order = list(MODELS.items()) if index % 2 == 0 else list(MODELS.items())[::-1]
                for kind, model in order:
                    lat, wall, errors = run_block(protocol, url, model, clients, block,
                                                  args.max_seconds / args.blocks, args.elements)
                    cell[kind]["latencies"] += lat
                    cell[kind]["wall"] += wall
                    cell[kind]["errors"] += errors
                    cell[kind]["p50s"].append(percentile(lat, 50))
            pair_ratios = [c / b for c, b in zip(cell["custom"]["p50s"], cell["builtin"]["p50s"])]
            for kind, data in cell.items():
                lat = data["latencies"]
                rows.append({
                    "protocol": protocol, "clients": clients, "model": kind, "requests": len(lat),
                    "rps": len(lat) / data["wall"] if data["wall"] else 0.0,
                    "p50_ms": percentile(lat, 50) * 1e3, "p99_ms": percentile(lat, 99) * 1e3,
                    "mean_ms": statistics.fmean(lat) * 1e3 if lat else float("nan"),
                    "paired_p50_ratio": statistics.median(pair_ratios) if kind == "custom" else None,
                    "errors": data["errors"][:3],
                })
    return rows


def report(rows: list[dict], args, meta: dict) -> str:
    lines = [f"serve_bench: {meta['date']} {meta['machine']}; tritonserver 2.51 (nvidia-pytriton), "
             f"{args.framework} Python-backend runner, {args.elements} float32 per input, {args.blocks} alternating "
             f"block pairs, {args.requests} requests per model and cell",
             f"{'protocol':8} {'clients':>7} {'model':8} {'requests':>8} {'req/s':>8} "
             f"{'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8}"]
    for row in rows:
        lines.append(f"{row['protocol']:8} {row['clients']:>7} {row['model']:8} {row['requests']:>8} "
                     f"{row['rps']:>8.0f} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f} {row['mean_ms']:>8.3f}"
                     + (f"  ERRORS: {row['errors']}" if row["errors"] else ""))
    lines.append("custom/builtin ratios (latency: lower is better; paired = median over block pairs):")
    worst = 0.0
    for protocol in ("http", "grpc"):
        for clients in (1, 4):
            pair = {r["model"]: r for r in rows if r["protocol"] == protocol and r["clients"] == clients}
            custom, builtin = pair["custom"], pair["builtin"]
            paired = custom["paired_p50_ratio"]
            worst = max(worst, paired)
            lines.append(f"  {protocol:5} {clients} client(s): p50 paired {paired:.3f} pooled "
                         f"{custom['p50_ms'] / builtin['p50_ms']:.3f}  p99 {custom['p99_ms'] / builtin['p99_ms']:.3f}"
                         f"  mean {custom['mean_ms'] / builtin['mean_ms']:.3f}  throughput "
                         f"{custom['rps'] / builtin['rps']:.3f}")
    verdict = "met" if worst <= TARGET else "NOT met"
    lines.append(f"target (custom op p50 latency <= {TARGET:.2f} x built-in, paired): {verdict} "
                 f"(worst cell {worst:.3f})")
    return "\n".join(lines)


def _runner(models: Path, kind: str, model: str, framework: str):
    """The model's own runner (its 1/model.py), loaded the way the Python backend loads it."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"runner_{kind}", models / model / "1" / "model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if framework == "tensorflow":
        return module.SavedModelRunner(models / model / "1")
    return module.TorchProgramRunner(models / model / "1", ["sum", "difference"], positional=["x", "y"])


def measure_direct(models: Path, calls: int, elements: int, framework: str = "tensorflow",
                   blocks: int = 20) -> dict[str, float]:
    """The models called in this process without a server (loaded the way the runner loads
    them): what the op itself costs, apart from serving. Median per-call µs."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    runners = {kind: _runner(models, kind, model, framework) for kind, model in MODELS.items()}
    rng = np.random.default_rng(0)
    inputs = {name: rng.standard_normal(elements).astype(np.float32) for name in ("x", "y")}
    per_call: dict[str, list[float]] = {kind: [] for kind in MODELS}
    for runner in runners.values():
        for _ in range(200):
            runner(inputs)
    for index in range(blocks):
        for kind in (list(MODELS) if index % 2 == 0 else list(MODELS)[::-1]):
            started = time.perf_counter()
            for _ in range(calls // blocks):
                runners[kind](inputs)
            per_call[kind].append((time.perf_counter() - started) / (calls // blocks) * 1e6)
    return {kind: statistics.median(values) for kind, values in per_call.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--framework", choices=("tensorflow", "torch"), default="tensorflow",
                        help="SavedModels through TRTISExampleAddSub, or torch.export programs through "
                             "trtis::add_sub (each against the framework's built-in add/subtract)")
    parser.add_argument("--bundle", type=Path, default=ROOT / "build" / "bundle")
    parser.add_argument("--models", type=Path, help="an existing repository with addsub and "
                                                    "addsub_builtin (default: build one in a temp dir)")
    parser.add_argument("--requests", type=int, default=4000, help="per model and cell")
    parser.add_argument("--blocks", type=int, default=20, help="alternating block pairs per cell")
    parser.add_argument("--max-seconds", type=float, default=60.0, help="per model and cell")
    parser.add_argument("--elements", type=int, default=16, help="floats per input tensor")
    parser.add_argument("--direct-calls", type=int, default=10000,
                        help="signature calls without a server (0: skip)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args(argv)

    meta = {"date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()} {os.cpu_count()} cores",
            "framework": args.framework}
    with tempfile.TemporaryDirectory(prefix="serve-bench-") as tmp:
        models = args.models or build_repository(Path(tmp), args.bundle.resolve(), args.framework)
        settings = ServerSettings(models_dir=models, log_file=Path(tmp) / "server.log")
        with TritonServer(settings) as server:
            statuses = server.load_models(MODELS.values())
            failed = [s for s in statuses.values() if not s.ready]
            if failed:
                print("models failed to load: " + "; ".join(f"{s.name}: {s.reason}" for s in failed),
                      file=sys.stderr)
                return 1
            rows = measure(server, args)
        direct = measure_direct(models, args.direct_calls, args.elements, args.framework) if args.direct_calls else {}
    text = report(rows, args, meta)
    if direct:
        text += (f"\nin-process model call through its runner, no server (median of 20 blocks, "
                 f"{args.direct_calls} calls): custom {direct['custom']:.1f} us, builtin "
                 f"{direct['builtin']:.1f} us, ratio {direct['custom'] / direct['builtin']:.3f}")
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"meta": meta, "rows": rows, "direct_us": direct}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
