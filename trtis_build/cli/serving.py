"""`trtis-build model add`, `trtis-build serve` and `trtis-build smoke`."""

from __future__ import annotations

import argparse
import math
import json
import os
import signal
import sys
import threading
from pathlib import Path

from ..core.errors import ModelError, ServerError


def _root(args) -> Path:
    from ..core.options import find_project_root

    return find_project_root(Path(args.root) if args.root else Path.cwd())


def _options(args):
    from ..core.options import resolve_options

    return resolve_options(root=_root(args), env=os.environ, cli={})


def _models_dir(args) -> Path:
    return Path(args.models).resolve() if args.models else _root(args) / "models"


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value <= 0:  # nan and inf would make every deadline moot
        raise argparse.ArgumentTypeError(f"{text!r} must be a positive, finite number of seconds")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError("must be 1-65535")
    return value


def _add_server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--models", metavar="DIR", help="model repository (default: models/)")
    parser.add_argument("--model", action="append", dest="only", metavar="NAME",
                        help="serve only this model (repeatable; default: every model)")
    parser.add_argument("--http-port", type=_port, metavar="P", help="default: a free port")
    parser.add_argument("--grpc-port", type=_port, metavar="P", help="default: a free port")
    parser.add_argument("--metrics-port", type=_port, metavar="P", help="default: a free port")
    parser.add_argument("--tritonserver", metavar="PATH",
                        help="tritonserver binary (default: the one nvidia-pytriton installed)")
    parser.add_argument("--image", metavar="DIR[:NAME]",
                        help="run the tritonserver of an image that `trtis-build server` composed (OCI "
                             "layout, e.g. build/image): unpacked with umoci, started under bubblewrap "
                             "(no container engine; needs root)")
    parser.add_argument("--model-config-name", metavar="NAME",
                        help="use <model>/configs/NAME.pbtxt where present (e.g. python)")
    parser.add_argument("--log-file", metavar="PATH", help="server log (default: build/serve/<command>.log)")
    parser.add_argument("--startup-timeout", type=_positive, default=60.0, metavar="S",
                        help="seconds for the server to come up (default 60)")
    parser.add_argument("--load-timeout", type=_positive, default=240.0, metavar="S",
                        help="seconds for each model to load (default 240)")


def register(subparsers) -> None:
    model = subparsers.add_parser("model", help="build a Triton model repository from SavedModels and torch programs")
    model_sub = model.add_subparsers(dest="model_command", metavar="SUBCOMMAND", required=True)
    add = model_sub.add_parser(
        "add", help="turn a TensorFlow SavedModel or a torch.export program that uses bundle ops into a Triton model",
        description="Copy a SavedModel (--savedmodel) or a torch.export program (--torch-program, a .pt2 "
                    "saved by torch.export.save) and the bundle op libraries it calls into <models>/NAME, "
                    "with a Python-backend runner config and the framework backend's config (configs/"
                    "python.pbtxt, configs/tensorflow.pbtxt or configs/pytorch.pbtxt; config.pbtxt is the "
                    "one --backend picks), and store reference outputs for `trtis-build smoke`.")
    add.add_argument("name", metavar="NAME", help="model name in the repository (a directory name)")
    source = add.add_mutually_exclusive_group(required=True)
    source.add_argument("--savedmodel", metavar="DIR", help="a TensorFlow SavedModel directory")
    source.add_argument("--torch-program", metavar="FILE",
                        help="a torch.export program (torch.export.save, .pt2); its TorchScript form for "
                             "Triton's PyTorch backend is traced and checked here")
    add.add_argument("--models", metavar="DIR", help="model repository (default: models/)")
    add.add_argument("--bundle", metavar="DIR", help="bundle (default: build/bundle)")
    add.add_argument("--max-batch-size", type=int, default=0, metavar="N",
                     help="Triton batching: the inputs' first dimension is the batch (default 0: off)")
    add.add_argument("--backend", choices=("python", "tensorflow", "pytorch"), default="python",
                     help="which config becomes config.pbtxt: python (the Python-backend runner; every "
                          "server with a Python backend; default), tensorflow (SavedModels, servers <= 25.03) "
                          "or pytorch (torch programs: pytorch_libtorch, op libraries through LD_PRELOAD)")
    add.add_argument("--signature", metavar="KEY", help="SavedModel signature (default serving_default)")
    add.add_argument("--server-models-dir", metavar="PATH",
                     help="where the TensorFlow-backend server sees this repository (e.g. /models); "
                          "op_library_filename paths are absolute (default: its path here)")
    add.add_argument("--force", action="store_true", help="replace an existing model")
    add.add_argument("--no-reference", action="store_true",
                     help="do not run the model to store reference outputs")
    add.set_defaults(handler=_model_add)

    serve = subparsers.add_parser(
        "serve", help="run Triton on 127.0.0.1 with the model repository until Ctrl-C",
        description="Start tritonserver (explicit model control, CPU defaults, loopback only), "
                    "load every model and report each; a model that fails to load is reported "
                    "and the others are served. Ctrl-C or SIGTERM stops the whole process group.")
    _add_server_options(serve)
    serve.add_argument("--quiet", action="store_true", help="server log to the file only")
    serve.set_defaults(handler=_serve)

    smoke = subparsers.add_parser(
        "smoke", help="start Triton, infer every model over HTTP and gRPC, compare, tear down",
        description="Exit 0 only if every model is READY, answers over HTTP and gRPC with its "
                    "reference outputs, and the metrics endpoint counts the requests.")
    _add_server_options(smoke)
    smoke.add_argument("--json", action="store_true", help="machine-readable result on stdout")
    smoke.add_argument("--verbose", action="store_true", help="server log to the terminal too")
    smoke.set_defaults(handler=_smoke)


BACKENDS = {"savedmodel": ("python", "tensorflow"), "torch_program": ("python", "pytorch")}


def _check_model_args(args) -> str:
    """Which kind of model, after refusing options that do not fit it."""
    kind = "savedmodel" if args.savedmodel else "torch_program"
    flag = "--savedmodel" if args.savedmodel else "--torch-program"
    if args.backend not in BACKENDS[kind]:
        raise ModelError(f"--backend {args.backend} does not serve a model given with {flag}",
                         hint=f"use --backend {' or '.join(BACKENDS[kind])} (tensorflow serves SavedModels, "
                              "pytorch serves torch programs)")
    if kind == "torch_program":
        for option, value in (("--signature", args.signature), ("--server-models-dir", args.server_models_dir)):
            if value is not None:
                raise ModelError(f"{option} applies to SavedModels only, not to --torch-program",
                                 hint=f"drop {option}")
    if args.max_batch_size < 0:
        raise ServerError("--max-batch-size must be 0 or more")
    return kind


def _model_add(args) -> int:
    kind = _check_model_args(args)
    options = _options(args)
    bundle = Path(args.bundle).resolve() if args.bundle else options.bundle_dir
    common = dict(models_dir=_models_dir(args), bundle_dir=bundle, max_batch_size=args.max_batch_size,
                  backend=args.backend, python=options.python, force=args.force, reference=not args.no_reference)
    if kind == "savedmodel":
        from ..frameworks.tensorflow.serving import add_model

        if not os.environ.get("TRTIS_BUILD_VERBOSE"):  # TensorFlow's start-up chatter only when asked for
            os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow is imported
        added = add_model(args.name, Path(args.savedmodel), signature_key=args.signature or "serving_default",
                          server_models_dir=args.server_models_dir, **common)
        forms = "configs/python.pbtxt, configs/tensorflow.pbtxt"
    else:
        from ..frameworks.torch.serving import add_model

        added = add_model(args.name, Path(args.torch_program), **common)
        forms = ", ".join(f"configs/{form}.pbtxt" if verdict == "ok" else f"no {form} form ({verdict})"
                          for form, verdict in added.forms.items())
    custom = ", ".join(f"{op} ({path})" for op, path in sorted(added.ops.custom.items())) or "none"
    print(f"added model {added.name}: {added.path}")
    print(f"  inputs:  {', '.join(f'{s.name} {s.data_type} {list(s.shape)}' for s in added.signature.inputs)}")
    print(f"  outputs: {', '.join(f'{s.name} {s.data_type} {list(s.shape)}' for s in added.signature.outputs)}")
    print(f"  custom ops: {custom}")
    print(f"  config.pbtxt: {added.backend} backend ({forms})")
    return 0


def _settings(args, command: str, echo):
    from ..serving.server import ServerSettings

    options = _options(args)
    log_file = Path(args.log_file).resolve() if args.log_file else options.build_dir / "serve" / f"{command}.log"
    tritonserver = Path(args.tritonserver) if args.tritonserver else None
    if args.image:
        from ..image import run as imagerun

        if args.tritonserver:
            raise ServerError("--image and --tritonserver both name the server to run; give one")
        tritonserver = imagerun.prepare(args.image, options.build_dir / "image-run",
                                        echo=lambda text: print(text, file=sys.stderr, flush=True))
    return ServerSettings(
        models_dir=_models_dir(args), http_port=args.http_port, grpc_port=args.grpc_port,
        metrics_port=args.metrics_port, tritonserver=tritonserver,
        log_file=log_file, model_config_name=args.model_config_name,
        startup_timeout=args.startup_timeout, load_timeout=args.load_timeout, echo=echo)


def _stderr_echo(line: str) -> None:
    print(f"[tritonserver] {line}", file=sys.stderr, flush=True)


class _Stopper:
    """SIGINT/SIGTERM: before serving, interrupt start-up (KeyboardInterrupt unwinds through
    TritonServer.__exit__); while serving, end the wait loop."""

    def __init__(self):
        self.event = threading.Event()
        self.serving = False
        self.signal_name = ""
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc_info):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame):
        self.signal_name = signal.Signals(signum).name
        self.event.set()
        if not self.serving:
            raise KeyboardInterrupt


def _serve(args) -> int:
    from ..serving.server import TritonServer, discover_models, format_statuses

    settings = _settings(args, "serve", None if args.quiet else _stderr_echo)
    names = args.only or discover_models(settings.models_dir)
    with _Stopper() as stopper, TritonServer(settings) as server:
        print(f"tritonserver pid {server.pid}: HTTP {server.endpoints['http']}, gRPC "
              f"{server.endpoints['grpc']}, metrics {server.endpoints['metrics']}", flush=True)
        print(f"log: {server.log_path}", flush=True)
        statuses = server.load_models(names)
        print("models:\n" + format_statuses(statuses), flush=True)
        failed = [name for name, status in statuses.items() if not status.ready]
        if len(failed) == len(statuses):
            raise ServerError("no model could be loaded (reasons above)", where=server.log_path,
                              hint="fix the models, or check them with `trtis-build smoke`")
        stopper.serving = True
        print(f"serving {len(statuses) - len(failed)} model(s); Ctrl-C or SIGTERM stops", flush=True)
        while not stopper.event.wait(0.5):
            if not server.alive():
                raise ServerError(f"tritonserver exited by itself (code {server.wait(0)})",
                                  where=server.log_path, hint="see the server log")
        print(f"{stopper.signal_name}: stopping tritonserver", flush=True)
    if failed:
        raise ServerError(f"{len(failed)} model(s) failed to load: {', '.join(failed)} "
                          "(reasons printed at start-up)", where=settings.log_file,
                          hint="fix them and run `trtis-build smoke`")
    return 0


def _smoke(args) -> int:
    from ..serving.smoke import format_report, run_smoke

    settings = _settings(args, "smoke", _stderr_echo if args.verbose else None)
    with _Stopper():
        report = run_smoke(settings, args.only)
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    else:
        print(format_report(report))
    return 0 if report.passed else 1
