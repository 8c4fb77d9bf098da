"""Run an op's CUDA launcher directly on a GPU, without TensorFlow or TensorRT.

The bundle's `kernels/<framework>-<op>.so` is the op's kernel code (.cc + .cu + static
cudart) with no framework in it, exporting the same `extern "C"` launchers the adapters
call. This module loads such a library with ctypes, calls the launcher on device buffers
owned by torch or cupy (whichever the machine has), and compares every output element with
a NumPy reference computed on the host.

What each check proves, beyond "the numbers match":
- every output element was written: outputs are poisoned with NaN before the launch;
- nothing was written outside the view: each buffer has guard bands around the view
  (also poisoned) that must still be NaN afterwards;
- misaligned views work: each pointer can start 0..3 floats past a 16-byte boundary,
  independently, which is what a slice of a framework tensor gives a kernel.

Launcher convention (the example op and the `ops add` template follow it):
    int <launcher>(const float* in0, ..., float* out0, ..., int64_t n, void* stream)
returning a cudaError_t code, and optionally `const char* <launcher>_error_string(int)`.
An op says what its launcher computes in op.toml's `[harness]` table; without one the
template's contract is assumed (`trtis_<op>_cuda`, inputs a, b -> a + b, a - b).

Entry points: `gpu_status()` (never raises), `run_gpu_checks(bundle_dir, ops)` for
`trtis-build ops test --gpu`, `run_checks(...)` for any array backend, `format_results()`.
"""

from __future__ import annotations

import ast
import ctypes
import json
import os
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

from ..core.errors import BundleError, GpuUnavailableError, OpSpecError

MAX_OFFSET = 3     # floats past a 16-byte boundary: 0..3 covers every float alignment
GUARD = 16         # NaN-poisoned floats after each view (before it: the offset, plus GUARD)
CHUNK = 1 << 24    # elements compared per host round trip (64 MiB of float32)
LARGE_N = (1 << 31) + 5  # above 2^31 elements: catches 32-bit index arithmetic


# --------------------------------------------------------------------------- GPU detection

@dataclass(frozen=True)
class GpuStatus:
    available: bool
    message: str                                    # one line, for humans
    devices: tuple[str, ...] = ()                   # "NVIDIA H100 80GB HBM3 (sm_90)"
    compute_capabilities: tuple[str, ...] = ()      # "90", ...
    driver_version: str | None = None               # "13.0"


_CU_ATTR_CC_MAJOR = 75  # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
_CU_ATTR_CC_MINOR = 76


def _cu_error(cuda: Any, code: int) -> str:
    name = ctypes.c_char_p()
    try:
        if cuda.cuGetErrorName(code, ctypes.byref(name)) == 0 and name.value:
            return f"{name.value.decode()} ({code})"
    except AttributeError:
        pass
    return f"CUresult {code}"


def gpu_status(*, libcuda: str = "libcuda.so.1", env: dict[str, str] | None = None) -> GpuStatus:
    """Ask the CUDA driver directly (ctypes, no framework) whether a GPU is usable.

    Never raises: the answer's `message` says what is missing and how to fix it.
    """
    environ = os.environ if env is None else env
    try:
        cuda = ctypes.CDLL(libcuda)
    except OSError as exc:
        return GpuStatus(False, f"no NVIDIA driver: {libcuda} cannot be loaded ({exc}); "
                                "GPU checks need a machine with an NVIDIA GPU and its driver")
    code = cuda.cuInit(0)
    if code != 0:
        hint = ""
        if environ.get("CUDA_VISIBLE_DEVICES") is not None:
            hint = f" (CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']!r} is set)"
        return GpuStatus(False, f"the CUDA driver is installed but found no usable GPU: "
                                f"cuInit failed with {_cu_error(cuda, code)}{hint}")
    version = ctypes.c_int()
    count = ctypes.c_int()
    cuda.cuDriverGetVersion(ctypes.byref(version))
    code = cuda.cuDeviceGetCount(ctypes.byref(count))
    driver = f"{version.value // 1000}.{version.value % 1000 // 10}"
    if code != 0 or count.value == 0:
        return GpuStatus(False, f"the CUDA driver {driver} reports no GPU", driver_version=driver)
    names, ccs = [], []
    for index in range(count.value):
        device, major, minor = ctypes.c_int(), ctypes.c_int(), ctypes.c_int()
        raw = ctypes.create_string_buffer(256)
        cuda.cuDeviceGet(ctypes.byref(device), index)
        cuda.cuDeviceGetName(raw, len(raw), device)
        cuda.cuDeviceGetAttribute(ctypes.byref(major), _CU_ATTR_CC_MAJOR, device)
        cuda.cuDeviceGetAttribute(ctypes.byref(minor), _CU_ATTR_CC_MINOR, device)
        ccs.append(f"{major.value}{minor.value}")
        names.append(f"{raw.value.decode(errors='replace')} (sm_{ccs[-1]})")
    return GpuStatus(True, f"{count.value} GPU(s), driver {driver}: {', '.join(names)}",
                     tuple(names), tuple(ccs), driver)


# --------------------------------------------------------------------------- array backends

class ArrayBackend(Protocol):
    """Device buffers of float32 for the checks; torch and cupy implement it."""

    name: str

    def random(self, count: int, seed: int) -> Any: ...
    def full(self, count: int, value: float) -> Any: ...
    def pointer(self, array: Any) -> int: ...
    def stream(self) -> int: ...
    def synchronize(self) -> None: ...
    def to_host(self, array: Any, start: int, stop: int) -> Any: ...
    def free_bytes(self) -> int: ...
    def device_name(self) -> str: ...


class TorchBackend:
    name = "torch"

    def __init__(self) -> None:
        import torch

        self.torch = torch
        self.device = torch.device("cuda", 0)
        torch.cuda.set_device(self.device)

    def random(self, count: int, seed: int) -> Any:
        gen = self.torch.Generator(device=self.device).manual_seed(seed)
        return self.torch.randn(count, generator=gen, device=self.device, dtype=self.torch.float32)

    def full(self, count: int, value: float) -> Any:
        return self.torch.full((count,), value, device=self.device, dtype=self.torch.float32)

    def pointer(self, array: Any) -> int:
        return int(array.data_ptr())

    def stream(self) -> int:
        return int(self.torch.cuda.current_stream(self.device).cuda_stream)

    def synchronize(self) -> None:
        self.torch.cuda.synchronize(self.device)

    def to_host(self, array: Any, start: int, stop: int) -> Any:
        return array[start:stop].cpu().numpy()

    def free_bytes(self) -> int:
        self.torch.cuda.empty_cache()
        return int(self.torch.cuda.mem_get_info(self.device)[0])

    def device_name(self) -> str:
        return str(self.torch.cuda.get_device_name(self.device))


class CupyBackend:
    name = "cupy"

    def __init__(self) -> None:
        import cupy

        self.cupy = cupy
        cupy.cuda.Device(0).use()

    def random(self, count: int, seed: int) -> Any:
        return self.cupy.random.default_rng(seed).standard_normal(count, dtype=self.cupy.float32)

    def full(self, count: int, value: float) -> Any:
        return self.cupy.full((count,), value, dtype=self.cupy.float32)

    def pointer(self, array: Any) -> int:
        return int(array.data.ptr)

    def stream(self) -> int:
        return int(self.cupy.cuda.get_current_stream().ptr)

    def synchronize(self) -> None:
        self.cupy.cuda.Device(0).synchronize()

    def to_host(self, array: Any, start: int, stop: int) -> Any:
        return self.cupy.asnumpy(array[start:stop])

    def free_bytes(self) -> int:
        self.cupy.get_default_memory_pool().free_all_blocks()
        return int(self.cupy.cuda.Device(0).mem_info[0])

    def device_name(self) -> str:
        props = self.cupy.cuda.runtime.getDeviceProperties(0)
        return props["name"].decode() if isinstance(props["name"], bytes) else str(props["name"])


BACKENDS: dict[str, Callable[[], ArrayBackend]] = {"torch": TorchBackend, "cupy": CupyBackend}


def select_backend(prefer: str | None = None) -> ArrayBackend:
    """The first of torch, cupy that imports (or `prefer`); GpuUnavailableError if none."""
    order = [prefer] if prefer else list(BACKENDS)
    problems = []
    for name in order:
        if name not in BACKENDS:
            raise ValueError(f"unknown array backend {name!r}; choose one of {sorted(BACKENDS)}")
        try:
            return BACKENDS[name]()
        except ImportError as exc:
            problems.append(f"{name}: not installed ({exc.name or exc})")
        except Exception as exc:  # a framework present but without CUDA support, say
            problems.append(f"{name}: {type(exc).__name__}: {exc}")
    raise GpuUnavailableError("no array library can hold device buffers: " + "; ".join(problems),
                              hint="install the gpu extra on the GPU machine (pip install 'trtis-build[gpu]': "
                                   "cupy-cuda13x), or a torch with CUDA")


# --------------------------------------------------------------------------- kernel specs

@dataclass(frozen=True)
class KernelSpec:
    """What an elementwise float32 launcher computes, and how to call it."""

    launcher: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    reference: tuple[str, ...]   # one NumPy expression per output, over the input names
    rtol: float = 0.0            # 0: bit-exact (IEEE add/sub/mul/div are exactly rounded)
    assumed: bool = False        # True: no [harness] table, the template's contract is guessed

    def __post_init__(self) -> None:
        if not self.launcher.isidentifier():
            raise ValueError(f"launcher {self.launcher!r} is not a C identifier")
        if not self.inputs or not self.outputs:
            raise ValueError("a kernel needs at least one input and one output")
        if len(self.reference) != len(self.outputs):
            raise ValueError(f"{len(self.outputs)} outputs but {len(self.reference)} reference "
                             "expressions: give one expression per output")
        names = set(self.inputs) | {"np"}
        for expr in self.reference:
            try:
                tree = ast.parse(expr, mode="eval")
            except SyntaxError as exc:
                raise ValueError(f"reference {expr!r} is not a Python expression: {exc.msg}") from None
            unknown = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} - names
            if unknown:
                raise ValueError(f"reference {expr!r} uses {sorted(unknown)}, which are not "
                                 f"inputs {list(self.inputs)} (or np)")
        if self.rtol < 0:
            raise ValueError("rtol must be >= 0")

    @property
    def error_string(self) -> str:
        return f"{self.launcher}_error_string"

    def compute_reference(self, arrays: dict[str, Any]) -> list[Any]:
        import numpy as np

        scope = {"np": np, **arrays}
        return [np.asarray(eval(compile(expr, "<reference>", "eval"), {"__builtins__": {}}, scope),
                           dtype=np.float32) for expr in self.reference]


def template_spec(op_name: str) -> KernelSpec:
    """The contract of the example op and of what `ops add` scaffolds."""
    return KernelSpec(launcher=f"trtis_{op_name}_cuda", inputs=("a", "b"), outputs=("sum", "diff"),
                      reference=("a + b", "a - b"), assumed=True)


def spec_from_table(op_name: str, table: dict[str, Any], where: str = "op.toml") -> KernelSpec:
    """Parse op.toml's [harness] table (every key optional except `reference` when outputs change)."""
    known = {"launcher", "inputs", "outputs", "reference", "rtol"}
    unknown = set(table) - known
    if unknown:
        raise OpSpecError(f"unknown [harness] keys {sorted(unknown)}", where=where,
                          hint=f"allowed: {sorted(known)}")
    for key in ("inputs", "outputs", "reference"):
        value = table.get(key, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise OpSpecError(f"[harness] {key} must be a list of strings", where=where,
                              hint=f'write it as {key} = ["...", "..."]')
    base = template_spec(op_name)
    try:
        return KernelSpec(launcher=str(table.get("launcher", base.launcher)),
                          inputs=tuple(table.get("inputs", base.inputs)),
                          outputs=tuple(table.get("outputs", base.outputs)),
                          reference=tuple(table.get("reference", base.reference)),
                          rtol=float(table.get("rtol", 0.0)))
    except (ValueError, TypeError) as exc:
        raise OpSpecError(f"bad [harness] table: {exc}", where=where,
                          hint='e.g. [harness] launcher = "trtis_x_cuda", inputs = ["a", "b"], '
                               'outputs = ["sum", "diff"], reference = ["a + b", "a - b"]') from None


def spec_for_op(op_name: str, op_dir: Path | None) -> KernelSpec:
    """op.toml's [harness] table when there is one, else the template's contract."""
    toml = op_dir / "op.toml" if op_dir else None
    if toml and toml.is_file():
        with open(toml, "rb") as fh:
            table = tomllib.load(fh).get("harness")
        if table is not None:
            return spec_from_table(op_name, table, where=f"{toml}, [harness]")
    return template_spec(op_name)


# --------------------------------------------------------------------------- the library

class KernelLibrary:
    """A framework-free kernel library and one launcher in it, typed through ctypes."""

    def __init__(self, path: str | os.PathLike, spec: KernelSpec) -> None:
        self.path = Path(path)
        self.spec = spec
        if not self.path.is_file():
            raise BundleError(f"kernel library {self.path} does not exist", where=self.path,
                              hint="run `trtis-build ops build` (with CUDA) first")
        try:
            self._lib = ctypes.CDLL(str(self.path))
        except OSError as exc:
            raise BundleError(f"cannot load kernel library: {exc}", where=self.path,
                              hint="a library built with CUDA 13 needs driver >= 580 and glibc >= 2.34") from None
        try:
            self._launch = getattr(self._lib, spec.launcher)
        except AttributeError:
            raise BundleError(f"{self.path.name} exports no launcher `{spec.launcher}`",
                              where=self.path,
                              hint="declare the launcher's name in op.toml's [harness] table, or "
                                   "export it as extern \"C\" from the op's .cu file") from None
        arity = len(spec.inputs) + len(spec.outputs)
        self._launch.argtypes = [ctypes.c_void_p] * arity + [ctypes.c_int64, ctypes.c_void_p]
        self._launch.restype = ctypes.c_int
        self._describe = getattr(self._lib, spec.error_string, None)
        if self._describe is not None:
            self._describe.argtypes = [ctypes.c_int]
            self._describe.restype = ctypes.c_char_p

    def launch(self, pointers: Sequence[int], n: int, stream: int = 0) -> int:
        """Call the launcher (asynchronous); returns its cudaError_t code."""
        expected = len(self.spec.inputs) + len(self.spec.outputs)
        if len(pointers) != expected:
            raise ValueError(f"{self.spec.launcher} takes {expected} pointers, got {len(pointers)}")
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        return int(self._launch(*[ctypes.c_void_p(p) for p in pointers], ctypes.c_int64(n),
                                ctypes.c_void_p(stream or None)))

    def error_text(self, code: int) -> str:
        if self._describe is None:
            return f"error code {code}"
        text = self._describe(code)
        return f"{text.decode(errors='replace') if text else 'unknown error'} (code {code})"


# --------------------------------------------------------------------------- cases and checks

@dataclass(frozen=True)
class Case:
    """One launch: n elements, and per pointer (inputs, then outputs) its offset in floats
    from a 16-byte boundary (0..3)."""

    n: int
    offsets: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.n < 0:
            raise ValueError(f"n must be >= 0, got {self.n}")
        bad = [o for o in self.offsets if not 0 <= o <= MAX_OFFSET]
        if bad:
            raise ValueError(f"offsets must be in 0..{MAX_OFFSET} floats, got {bad}")

    def offsets_for(self, pointers: int) -> tuple[int, ...]:
        if not self.offsets:
            return (0,) * pointers
        if len(self.offsets) != pointers:
            raise ValueError(f"case has {len(self.offsets)} offsets for {pointers} pointers")
        return self.offsets

    @property
    def label(self) -> str:
        return f"n={self.n}" + (f" offsets={','.join(map(str, self.offsets))}"
                                if any(self.offsets) else "")


def default_cases(pointers: int = 4, *, large: bool = False) -> list[Case]:
    """Edge sizes (0, 1, odd, not a multiple of 4, around the block tile), misaligned
    views with equal and with different offsets per pointer, and optionally n > 2^31."""
    sizes = [0, 1, 2, 3, 4, 5, 7, 8, 9, 31, 1023, 1025, 4096, 4099, 65537, (1 << 20) + 3]
    cases = [Case(n) for n in sizes]
    rotate = lambda start: tuple((start + i) % (MAX_OFFSET + 1) for i in range(pointers))
    patterns = [(1,) * pointers, (2,) * pointers, (3,) * pointers, rotate(1), rotate(3),
                tuple([0] * (pointers - 1) + [1])]
    for n in (1, 2, 3, 5, 6, 1001, (1 << 20) + 7):
        cases += [Case(n, p) for p in patterns]
    if large:
        # Equal offsets take the float4 path, different offsets the scalar one.
        cases += [Case(LARGE_N, (1,) * pointers), Case(LARGE_N, rotate(1))]
    return cases


@dataclass(frozen=True)
class CheckResult:
    op: str                  # "tensorflow/addsub"
    library: str
    case: str                # Case.label
    n: int
    status: str              # "passed" | "failed" | "skipped"
    detail: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def to_json(self) -> dict[str, Any]:
        return {"op": self.op, "library": self.library, "case": self.case, "n": self.n,
                "status": self.status, "detail": self.detail, "seconds": round(self.seconds, 4)}


def _compare(got: Any, ref: Any, rtol: float, name: str, start: int) -> str | None:
    import numpy as np

    if np.isnan(got).any():
        return f"{name}[{start + int(np.flatnonzero(np.isnan(got))[0])}] was never written (still NaN)"
    bad = np.flatnonzero(got != ref) if rtol == 0 else np.flatnonzero(
        ~np.isclose(got, ref, rtol=rtol, atol=0))
    if bad.size == 0:
        return None
    i = int(bad[0])
    return (f"{name}[{start + i}] = {got[i]!r}, reference {ref[i]!r} "
            f"({bad.size} mismatches in elements {start}..{start + ref.size - 1})")


def _check_outputs(backend: ArrayBackend, spec: KernelSpec, ins: list[Any], outs: list[Any],
                   offsets: tuple[int, ...], n: int, guard: int) -> list[str]:
    """Guard bands untouched, then every element against the NumPy reference, CHUNK
    elements at a time (n > 2^31 would not fit the host twice over)."""
    import numpy as np

    problems: dict[str, str] = {}
    out_offsets = offsets[len(ins):]
    for name, array, offset in zip(spec.outputs, outs, out_offsets):
        bands = np.concatenate([backend.to_host(array, 0, guard + offset),
                                backend.to_host(array, guard + offset + n, guard + offset + n + guard)])
        if (~np.isnan(bands)).any():
            problems[name] = (f"{name}: wrote outside the view "
                              f"({int((~np.isnan(bands)).sum())} guard float(s) changed)")
    for start in range(0, n, CHUNK):
        stop = min(n, start + CHUNK)
        host = {name: backend.to_host(ins[i], guard + offsets[i] + start, guard + offsets[i] + stop)
                for i, name in enumerate(spec.inputs)}
        refs = spec.compute_reference(host)
        for name, array, offset, ref in zip(spec.outputs, outs, out_offsets, refs):
            if name in problems:
                continue
            got = backend.to_host(array, guard + offset + start, guard + offset + stop)
            problem = _compare(got, ref, spec.rtol, name, start)
            if problem:
                problems[name] = problem
        if len(problems) == len(spec.outputs):
            break
    return list(problems.values())


def run_case(library: KernelLibrary, backend: ArrayBackend, case: Case, *, seed: int,
             op: str = "", guard: int = GUARD) -> CheckResult:
    """One launch on fresh random inputs and NaN-poisoned outputs, checked element by element.

    guard=0 ends each view exactly at its allocation's end, so that compute-sanitizer
    (which knows allocations, not views) sees any overrun."""
    spec = library.spec
    count = len(spec.inputs) + len(spec.outputs)
    offsets = case.offsets_for(count)
    started = time.perf_counter()
    result = lambda status, detail: CheckResult(op, str(library.path), case.label, case.n, status,
                                                detail, time.perf_counter() - started)
    # Layout of every buffer: `guard` poisoned floats, the offset, the view, `guard` more.
    total = [guard + o + case.n + guard for o in offsets]
    need = sum(total) * 4
    if need > backend.free_bytes() * 0.95:
        return result("skipped", f"needs {need / 2**30:.1f} GiB of device memory, "
                                 f"{backend.free_bytes() / 2**30:.1f} GiB free")
    ins = [backend.random(total[i], seed + i) for i in range(len(spec.inputs))]
    outs = [backend.full(total[len(ins) + j], float("nan")) for j in range(len(spec.outputs))]
    arrays = ins + outs
    pointers = [backend.pointer(a) + 4 * (guard + o) for a, o in zip(arrays, offsets)]
    code = library.launch(pointers, case.n, backend.stream())
    if code != 0:
        return result("failed", f"launcher returned {library.error_text(code)}")
    backend.synchronize()  # a fault inside the kernel surfaces here (as the backend's error)
    problems = _check_outputs(backend, spec, ins, outs, offsets, case.n, guard)
    del ins, outs, arrays
    if problems:
        return result("failed", "; ".join(problems) + f" (seed {seed})")
    return result("passed", f"seed {seed}")


def run_checks(library: KernelLibrary, backend: ArrayBackend, cases: Iterable[Case], *,
               op: str = "", seed: int | None = None, guard: int = GUARD) -> list[CheckResult]:
    """Every case on one library. After a device fault the context is unusable: the
    remaining cases are reported as skipped instead of failing confusingly."""
    base = seed if seed is not None else int.from_bytes(os.urandom(4), "little")
    results: list[CheckResult] = []
    fault: str | None = None
    for index, case in enumerate(cases):
        if fault:
            results.append(CheckResult(op, str(library.path), case.label, case.n, "skipped",
                                       f"not run: an earlier case faulted ({fault})"))
            continue
        try:
            results.append(run_case(library, backend, case, seed=base + 101 * index, op=op,
                                    guard=guard))
        except RuntimeError as exc:  # torch/cupy raise this for CUDA errors at synchronize
            fault = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            results.append(CheckResult(op, str(library.path), case.label, case.n, "failed",
                                       f"device error: {fault}"))
    return results


# --------------------------------------------------------------------------- the bundle

def kernel_libraries(bundle_dir: Path) -> list[dict[str, Any]]:
    """The manifest's kernel_libraries entries ({"op", "framework", "path", ...})."""
    manifest = Path(bundle_dir) / "manifest.json"
    if not manifest.is_file():
        raise BundleError(f"no manifest.json in {bundle_dir}", where=bundle_dir,
                          hint="run `trtis-build ops build` first")
    try:
        data = json.loads(manifest.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"manifest.json is not valid JSON: {exc}", where=manifest,
                          hint="rebuild the bundle with `trtis-build ops build`") from None
    return list(data.get("kernel_libraries", []))


def _op_filter(ops: Iterable[Any] | None) -> dict[str, Path | None] | None:
    """Op keys ("tensorflow/addsub") or OpSpec-like objects (.key, .directory) -> op dirs."""
    if ops is None:
        return None
    wanted: dict[str, Path | None] = {}
    for op in ops:
        if isinstance(op, str):
            wanted[op] = None
        else:
            wanted[op.key] = Path(op.directory)
    return wanted


def require_gpu() -> None:
    """GpuUnavailableError, with the reason, unless this machine has a usable GPU."""
    status = gpu_status()
    if not status.available:
        raise GpuUnavailableError(f"cannot run GPU checks: {status.message}",
                                  hint="run `trtis-build ops test --gpu` on a machine with an "
                                       "NVIDIA GPU; `trtis-build ops test` runs the CPU tests")


def run_gpu_checks(bundle_dir: str | os.PathLike, ops: Iterable[Any] | None = None, *,
                   large: bool = False, backend: str | None = None, seed: int | None = None,
                   project_root: Path | None = None) -> list[CheckResult]:
    """`trtis-build ops test --gpu`: every kernel library of the bundle (or of `ops`) on the GPU.

    Raises GpuUnavailableError (a message, no traceback in the CLI) when there is no GPU or
    no torch/cupy, BundleError when the bundle has no manifest; everything else is a result.
    """
    require_gpu()
    return check_bundle(bundle_dir, select_backend(backend), ops, large=large, seed=seed,
                        project_root=project_root)


def check_bundle(bundle_dir: str | os.PathLike, backend: ArrayBackend,
                 ops: Iterable[Any] | None = None, *, large: bool = False,
                 seed: int | None = None, project_root: Path | None = None) -> list[CheckResult]:
    """run_gpu_checks without the GPU detection, for any array backend.

    A library without its launcher is a failed result when op.toml declares the launcher,
    skipped when only the template's contract was assumed.
    """
    wanted = _op_filter(ops)
    results: list[CheckResult] = []
    for entry in kernel_libraries(Path(bundle_dir)):
        key = f"{entry.get('framework')}/{entry.get('op')}"
        if wanted is not None and key not in wanted:
            continue
        op_dir = (wanted or {}).get(key)
        if op_dir is None and project_root is not None:
            op_dir = Path(project_root) / "ops" / str(entry.get("framework")) / str(entry.get("op"))
        path = Path(bundle_dir) / str(entry.get("path", ""))
        try:
            spec = spec_for_op(str(entry.get("op")), op_dir)
        except OpSpecError as exc:
            results.append(CheckResult(key, str(path), "load", 0, "failed", exc.render()))
            continue
        try:
            library = KernelLibrary(path, spec)
        except BundleError as exc:
            # Only the template's contract was guessed: a different launcher is no failure.
            guessed = spec.assumed and "exports no launcher" in exc.message
            results.append(CheckResult(key, str(path), "load", 0,
                                       "skipped" if guessed else "failed",
                                       exc.message + (f" ({exc.hint})" if exc.hint else "")))
            continue
        cases = default_cases(len(spec.inputs) + len(spec.outputs), large=large)
        results += run_checks(library, backend, cases, op=key, seed=seed)
    for key in sorted(set(wanted or ()) - {r.op for r in results}):
        results.append(CheckResult(key, "", "load", 0, "skipped",
                                   "no kernel library in the bundle (built without CUDA, "
                                   "or the op has no .cu sources)"))
    return results


def format_results(results: Sequence[CheckResult], *, verbose: bool = False) -> str:
    """A summary per op, plus one line per failed (all, if verbose) case."""
    lines = []
    by_op: dict[str, list[CheckResult]] = {}
    for r in results:
        by_op.setdefault(r.op, []).append(r)
    for op, rs in by_op.items():
        counts = {s: sum(r.status == s for r in rs) for s in ("passed", "failed", "skipped")}
        lines.append(f"{op}: {counts['passed']} passed, {counts['failed']} failed, "
                     f"{counts['skipped']} skipped ({sum(r.seconds for r in rs):.2f} s)")
        for r in rs:
            if verbose or r.status != "passed":
                lines.append(f"  {r.status:7} {r.case}: {r.detail}")
    return "\n".join(lines)
