"""`trtis-build smoke`: start the server, load every model, check each is READY, send one
inference per model through tritonclient HTTP and gRPC with the model's reference inputs,
compare with the reference outputs `model add` stored, read the metrics endpoint, tear down.

A model without reference.npz (added by hand) is sent zeros shaped from its config and only
has to answer; the report says so.
"""

from __future__ import annotations

import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Mapping

from ..core.errors import ServerError, ToolchainError
from .models import REFERENCE, TensorSpec, model_dims, model_gpu_only_check, read_metadata
from .server import ModelStatus, ServerSettings, TritonServer, discover_models

PROTOCOLS = ("http", "grpc")
RTOL, ATOL = 1e-5, 1e-6
INFER_TIMEOUT = 60.0


@dataclass
class ModelResult:
    name: str
    state: str
    reason: str = ""
    checks: dict[str, str] = field(default_factory=dict)  # protocol/metrics -> "ok" or why not
    reference: str = "stored"                              # stored | none (answer only)
    requests_counted: int | None = None

    @property
    def passed(self) -> bool:
        return self.state == "READY" and bool(self.checks) and all(v == "ok" for v in self.checks.values())


@dataclass
class SmokeReport:
    models: list[ModelResult]
    endpoints: dict[str, str]
    log: str

    @property
    def passed(self) -> bool:
        return bool(self.models) and all(model.passed for model in self.models)

    def as_dict(self) -> dict:
        return {"passed": self.passed, "endpoints": self.endpoints, "log": self.log,
                "models": [dict(asdict(m), passed=m.passed) for m in self.models]}


def _clients():
    try:
        import tritonclient.grpc as grpcclient
        import tritonclient.http as httpclient
    except ImportError:
        raise ToolchainError("tritonclient is not installed",
                             hint="pip install 'trtis-build[server]'") from None
    return httpclient, grpcclient


def load_reference(model_dir: Path):
    """(inputs, outputs) as dicts of arrays, or None when the model has no reference file."""
    import numpy as np

    path = model_dir / REFERENCE
    if not path.is_file():
        return None
    with np.load(path, allow_pickle=False) as data:
        inputs = {k.removeprefix("input:"): data[k] for k in data.files if k.startswith("input:")}
        outputs = {k.removeprefix("output:"): data[k] for k in data.files if k.startswith("output:")}
    return inputs, outputs


def zero_inputs(config: Mapping) -> dict:
    """Inputs from a model's served config (dims -1 -> 1; batch of 1 when batching)."""
    import numpy as np
    from tritonclient.utils import triton_to_np_dtype

    arrays = {}
    batching = int(config.get("max_batch_size", 0)) > 0
    for item in config.get("input", []):
        dims = [1 if int(d) < 0 else int(d) for d in item.get("dims", [])]
        dtype = triton_to_np_dtype(item["data_type"].removeprefix("TYPE_").replace("STRING", "BYTES"))
        arrays[item["name"]] = np.zeros(([1] if batching else []) + dims, dtype=dtype)
    return arrays


def to_client_shapes(arrays: Mapping, metadata: Mapping) -> dict:
    """Reference arrays are stored as the model sees them; a scalar item is served as [1]
    (see models.config_dims), so add that dimension for the client."""
    signature = metadata.get("signature", {})
    specs = {item["name"]: TensorSpec(**{**item, "shape": tuple(item["shape"])})
             for item in (*signature.get("inputs", []), *signature.get("outputs", []))}
    max_batch_size = int(metadata.get("max_batch_size", 0))
    shaped = {}
    for name, array in arrays.items():
        spec = specs.get(name)
        if spec is not None and not model_dims(spec, max_batch_size):
            array = array.reshape(array.shape + (1,))
        shaped[name] = array
    return shaped


def infer(module, url: str, model: str, inputs: Mapping, outputs: list[str]) -> dict:
    """One request through tritonclient's HTTP or gRPC module; returns output arrays."""
    from tritonclient.utils import np_to_triton_dtype

    is_grpc = module.__name__.endswith("grpc")
    client = module.InferenceServerClient(url=url) if is_grpc else \
        module.InferenceServerClient(url=url, connection_timeout=10, network_timeout=INFER_TIMEOUT)
    try:
        request = []
        for name, array in inputs.items():
            item = module.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            item.set_data_from_numpy(array)
            request.append(item)
        wanted = [module.InferRequestedOutput(name) for name in outputs]
        kwargs = {"client_timeout": INFER_TIMEOUT} if is_grpc else {}
        result = client.infer(model, request, outputs=wanted, **kwargs)
        return {name: result.as_numpy(name) for name in outputs}
    finally:
        client.close()


def compare(got: Mapping, expected: Mapping) -> str:
    """'ok' or a one-line reason naming the first output that differs."""
    import numpy as np

    for name, want in expected.items():
        have = got.get(name)
        if have is None:
            return f"output {name!r} missing"
        if have.shape != want.shape:
            return f"output {name!r} has shape {list(have.shape)}, expected {list(want.shape)}"
        if want.dtype.kind in "fc":
            if not np.allclose(have, want, rtol=RTOL, atol=ATOL):
                worst = float(np.max(np.abs(have.astype(np.float64) - want.astype(np.float64))))
                return f"output {name!r} differs from the reference (max abs error {worst:.3g})"
        elif not np.array_equal(have, want):
            return f"output {name!r} differs from the reference"
    return "ok"


def _check_model(server: TritonServer, status: ModelStatus, clients) -> ModelResult:
    result = ModelResult(status.name, status.state, status.reason)
    if not status.ready:
        return result
    model_dir = server.models_dir / status.name
    reference = load_reference(model_dir)
    if reference is None:
        result.reference = "none"
        config = server_model_config(server, status.name)
        inputs, expected = zero_inputs(config), {}
        outputs = [item["name"] for item in config.get("output", [])]
    else:
        metadata = read_metadata(model_dir) or {}
        inputs, expected = (to_client_shapes(arrays, metadata) for arrays in reference)
        outputs = [o["name"] for o in metadata.get("signature", {}).get("outputs", [])] or list(expected)
    for protocol, module in zip(PROTOCOLS, clients):
        url = server.endpoints[protocol]
        try:
            got = infer(module, url, status.name, inputs, outputs)
        except Exception as exc:  # tritonclient raises its own exception types per protocol
            result.checks[protocol] = f"inference failed: {exc}"
            continue
        result.checks[protocol] = compare(got, expected) if expected else "ok"
    return result


def server_model_config(server: TritonServer, name: str) -> dict:
    import json

    from .server import _http

    status, body = _http("GET", f"{server.http_url}/v2/models/{name}/config", timeout=10)
    return json.loads(body) if status == 200 else {}


_SUCCESS = re.compile(r'^nv_inference_request_success\{model="([^"]+)",version="[^"]*"\}\s+([0-9.e+]+)',
                      re.MULTILINE)


def count_successes(metrics_text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for model, value in _SUCCESS.findall(metrics_text):
        counts[model] = counts.get(model, 0) + int(float(value))
    return counts


def _check_metrics(server: TritonServer, results: list[ModelResult], deadline_s: float = 10.0) -> None:
    """Every successful request must show in nv_inference_request_success. Triton records
    a request's statistics after sending its response, so poll briefly instead of once."""
    sent = {r.name: sum(1 for p in PROTOCOLS if r.checks.get(p) == "ok") for r in results}
    deadline = time.monotonic() + deadline_s
    counts: dict[str, int] = {}
    while True:
        try:
            counts = count_successes(server.metrics())
        except Exception as exc:  # the metrics endpoint is part of what a smoke test checks
            for result in results:
                result.checks["metrics"] = f"metrics endpoint failed: {exc}"
            return
        if all(counts.get(name, 0) >= n for name, n in sent.items()) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    for result in results:
        result.requests_counted = counts.get(result.name, 0)
        expected = sent[result.name]
        result.checks["metrics"] = "ok" if result.requests_counted >= expected else \
            f"metrics count {result.requests_counted} successful requests, expected {expected}"


def run_smoke(settings: ServerSettings, models: list[str] | None = None) -> SmokeReport:
    clients = _clients()
    names = models or discover_models(Path(settings.models_dir))
    for name in names:  # before a server starts: a model that cannot run here fails in seconds, named
        model_gpu_only_check(Path(settings.models_dir) / name, error=ServerError,
                             what=f"Triton cannot run model {name} here",
                             hint="smoke-test it on a machine with a GPU, or give the op a CPU kernel")
    with TritonServer(settings) as server:
        statuses = server.load_models(names)
        results = [_check_model(server, statuses[name], clients) for name in names]
        _check_metrics(server, [r for r in results if r.state == "READY"])
        endpoints = server.endpoints
        log = str(server.log_path)
    return SmokeReport(results, endpoints, log)


def format_report(report: SmokeReport) -> str:
    lines = []
    for model in report.models:
        mark = "PASS" if model.passed else "FAIL"
        if model.state != "READY":
            lines.append(f"{mark}  {model.name}: {model.state}: {model.reason}")
            continue
        checks = ", ".join(f"{k} {v}" for k, v in model.checks.items())
        note = "" if model.reference == "stored" else " (no reference.npz: answer only)"
        lines.append(f"{mark}  {model.name}: {checks}{note}")
    passed = sum(m.passed for m in report.models)
    lines.append(f"smoke: {passed}/{len(report.models)} models passed (server log: {report.log})")
    return "\n".join(lines)
