"""Run as `python program_probe.py VERSION_DIR REQUEST.json`; prints JSON after a mark.

A fresh torch process that runs a staged model the way the server will: the model's own
runner (VERSION_DIR/model.py) loads the copied op libraries through its guard, then the
program, and computes the outputs for the reference inputs (written back into the .npz).
When asked, it then traces the program into TorchScript for Triton's PyTorch backend
(outputs as a tuple, inputs by position), saves it, loads the saved file back and checks it
against the program on the reference inputs and on inputs of other sizes (tracing records
one run: a size it baked in shows there).

REQUEST: {"reference", "outputs", "positional", "inputs", "device", "torchscript" (a path or
null), "other" (an .npz of other-sized inputs, or null)}.
"""

import importlib.util
import json
import os
import sys
import traceback
import warnings
from pathlib import Path

import numpy as np

MARK = "@@TRTIS-JSON@@"
RTOL, ATOL = 1e-5, 1e-6


def _runner_module(version_dir):
    spec = importlib.util.spec_from_file_location("trtis_torch_program_runner", os.path.join(version_dir, "model.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _differs(got, want):
    for name, expected in want.items():
        have = got[name]
        if have.shape != expected.shape:
            return "output %r has shape %s, the program's %s" % (name, list(have.shape), list(expected.shape))
        if not np.allclose(have, expected, rtol=RTOL, atol=ATOL, equal_nan=True):
            worst = float(np.max(np.abs(have.astype(np.float64) - expected.astype(np.float64))))
            return "output %r differs from the program's (max abs error %.3g)" % (name, worst)
    return None


def _torchscript(torch, module, runner, request, inputs):
    """Trace, save, reload, compare; returns "ok" or why the form was not made."""
    names, outputs, positional = request["inputs"], request["outputs"], request["positional"]
    count = len(positional)
    keywords = names[count:]
    named_outputs = module.named_outputs

    class Traced(torch.nn.Module):
        def __init__(self, program):
            super().__init__()
            self.program = program

        def forward(self, *args):
            result = self.program(*args[:count], **dict(zip(keywords, args[count:])))
            return tuple(named_outputs(result, outputs)[name] for name in outputs)

    example = tuple(torch.from_numpy(np.array(inputs[name])) for name in names)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecation and tracer warnings; checked below instead
            traced = torch.jit.trace(Traced(runner._module), example, strict=False, check_trace=False)
            traced.save(request["torchscript"])
            loaded = torch.jit.load(request["torchscript"], map_location=request["device"])
    except Exception as exc:  # tracing fails on data-dependent control flow and more
        return "torch.jit.trace failed: %s" % (str(exc).strip().splitlines() or [repr(exc)])[0]
    sets = [("the reference inputs", inputs)]
    if request.get("other"):
        with np.load(request["other"], allow_pickle=False) as data:
            sets.append(("inputs of other sizes", {name: data[name] for name in data.files}))
    for label, arrays in sets:
        try:
            want = runner(dict(arrays))
        except Exception:
            continue  # the program itself refuses these sizes: nothing to compare
        with torch.inference_mode():
            got = loaded(*[torch.from_numpy(np.array(arrays[name])).to(request["device"]) for name in names])
        got = {name: tensor.cpu().numpy() for name, tensor in zip(outputs, got)}
        problem = _differs(got, want)
        if problem:
            return "the traced TorchScript does not match the program on %s: %s" % (label, problem)
    return "ok"


def main(version_dir, request_path):
    with open(request_path) as handle:
        request = json.load(handle)
    result = {}
    try:
        module = _runner_module(version_dir)
        import torch

        runner = module.TorchProgramRunner(Path(version_dir), request["outputs"], "model.pt2", request["device"],
                                           request["positional"])
        with np.load(request["reference"], allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
        inputs = {key[len("input:"):]: value for key, value in arrays.items() if key.startswith("input:")}
        outputs = runner(dict(inputs))
        arrays.update({"output:%s" % name: value for name, value in outputs.items()})
        np.savez(request["reference"], **arrays)
        result["outputs"] = sorted(outputs)
        if request.get("torchscript"):
            result["torchscript"] = _torchscript(torch, module, runner, request, inputs)
    except Exception as exc:
        kind = type(exc).__name__
        result["error"] = "%s: %s" % (kind, str(exc).strip() or repr(exc))
        result["op_library"] = kind == "OpLibraryError"
        result["trace"] = traceback.format_exc(limit=4)
    sys.stdout.write("\n%s%s\n" % (MARK, json.dumps(result)))
    sys.stdout.flush()
    os._exit(0)  # skip torch's teardown


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
