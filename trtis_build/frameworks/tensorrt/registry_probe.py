"""Load TensorRT plugin libraries into a real plugin registry and report what happened.

Run by trtis_build.tensorrt.probe_registry in its own interpreter: TensorRT segfaults on
some misuse, and a crash here must not take the caller with it. Standard library plus the
TensorRT Python runtime only (no trtis_build import, so any interpreter with TensorRT works).

Writes JSON lines to --output, one per step, flushed as they happen, so a crash still tells
which library was being loaded:
  {"event": "start", "module": "tensorrt_lean", "version": "11.4.0.106"}
  {"event": "loading", "path": ...}
  {"event": "load", "path": ..., "loaded": true, "registered": [[name, version, ns]], "errors": [...],
   "messages": [...]}   (--dlopen: what the library printed on stderr while it was opened)
  {"event": "lookup", "plugin": [name, version, ns], "found": true}
  {"event": "done"}
Never creates a Runtime or Builder: on a machine without a GPU those log CUDA errors or crash.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import json
import os
import sys
import tempfile

# The full runtime first (what users deploy), then the lean and dispatch runtimes from PyPI.
MODULES = ("tensorrt", "tensorrt_lean", "tensorrt_dispatch")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", required=True, help="JSON-lines file to write")
    parser.add_argument("--module", help=f"TensorRT Python module (default: first of {', '.join(MODULES)})")
    parser.add_argument("--lookup", action="append", default=[], metavar="NAME:VERSION:NAMESPACE",
                        help="look this plugin up with get_creator after loading")
    parser.add_argument("--dlopen", action="store_true",
                        help="open the libraries with dlopen only, as Triton's plugins= and LD_PRELOAD do, "
                             "instead of IPluginRegistry::loadLibrary")
    parser.add_argument("libraries", nargs="*")
    return parser.parse_args(argv)


def import_tensorrt(name):
    errors = []
    for candidate in [name] if name else MODULES:
        try:
            return importlib.import_module(candidate), candidate
        except ImportError as exc:
            errors.append(f"{candidate}: {exc}")
    raise ImportError("; ".join(errors))


def make_recorder(trt):
    """An IErrorRecorder: loadLibrary's reason for a refusal is only visible through one."""

    class Recorder(trt.IErrorRecorder):
        def __init__(self):
            trt.IErrorRecorder.__init__(self)
            self.errors = []

        def num_errors(self):
            return len(self.errors)

        def get_error_code(self, index):
            return self.errors[index][0]

        def get_error_desc(self, index):
            return self.errors[index][1]

        def has_overflowed(self):
            return False

        def clear(self):
            self.errors.clear()

        def report_error(self, code, desc):
            self.errors.append((code, desc))
            return True

    return Recorder()


def dlopen_capturing_stderr(path):
    """dlopen like Triton (RTLD_NOW | RTLD_LOCAL); returns (opened, lines written to fd 2)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            ctypes.CDLL(path, mode=os.RTLD_NOW | os.RTLD_LOCAL)
            opened = True
        except OSError as exc:
            opened = False
            os.write(2, f"dlopen failed: {exc}\n".encode())
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        return opened, capture.read().decode(errors="replace").splitlines()


def triples(registry):
    found = set()
    for creator in registry.all_creators:
        found.add((creator.name, creator.plugin_version, creator.plugin_namespace))
    return found


def main(argv=None):
    args = parse_args(argv)
    out = open(args.output, "w", encoding="utf-8")

    def emit(**record):
        out.write(json.dumps(record) + "\n")
        out.flush()

    try:
        trt, module = import_tensorrt(args.module)
    except ImportError as exc:
        emit(event="error", message=f"no TensorRT Python runtime ({exc})")
        return 3
    emit(event="start", module=module, version=getattr(trt, "__version__", "?"))
    registry = trt.get_plugin_registry()
    recorder = make_recorder(trt)
    registry.error_recorder = recorder
    for path in args.libraries:
        emit(event="loading", path=path)
        before = triples(registry)
        recorder.clear()
        messages = []
        if args.dlopen:
            loaded, messages = dlopen_capturing_stderr(path)
        else:
            loaded = registry.load_library(path) is not None
        added = sorted(triples(registry) - before)
        emit(event="load", path=path, loaded=loaded, registered=[list(t) for t in added],
             errors=[desc for _, desc in recorder.errors], messages=messages)
    for item in args.lookup:
        name, version, namespace = item.split(":", 2)
        creator = registry.get_creator(name, version, namespace)
        emit(event="lookup", plugin=[name, version, namespace], found=creator is not None)
    emit(event="done")
    out.close()
    # Skip interpreter teardown: the results are written, and TensorRT's static destructors
    # running after Python's can crash and would turn a good probe into a failed one.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
