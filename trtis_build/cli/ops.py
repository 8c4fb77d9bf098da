"""`trtis-build ops ...`: add, list, build, test, check."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import frameworks
from ..builder.driver import Progress
from ..bundle.publish import build
from ..ops.discover import discover
from .common import add_build_options, add_bundle_options, add_toolchain_options, info, options_from, print_json


def register(subparsers) -> None:
    ops = subparsers.add_parser("ops", help="create, list, build, test and check custom ops")
    sub = ops.add_subparsers(dest="ops_command", metavar="ACTION", required=True)

    add = sub.add_parser("add", help="create ops/<framework>/NAME from a template")
    add.add_argument("name", help="op directory name: a Python-style identifier, e.g. addsub")
    add.add_argument("--framework", choices=frameworks.names(), default=frameworks.DEFAULT,
                     help=f"which framework the op is for (default: {frameworks.DEFAULT})")
    add.add_argument("--no-cuda", action="store_true", help="CPU kernel only (no .cu file)")
    add.add_argument("--op-name", help="registered op/plugin name (default: CamelCase of NAME)")
    add.set_defaults(handler=cmd_add)

    listing = sub.add_parser("list", help="show the ops found under ops/")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    listing.set_defaults(handler=cmd_list)

    build = sub.add_parser("build", help="compile every op into the bundle")
    add_build_options(build)
    build.add_argument("--dry-run", action="store_true", help="print the plan, build nothing")
    build.add_argument("--json", action="store_true", help="print the result as JSON on stdout")
    build.add_argument("--kernels-only", action="store_true",
                       help="build only the framework-free CUDA kernel libraries (GPU harness)")
    build.set_defaults(handler=cmd_build)

    test = sub.add_parser("test", help="build if needed, then run every op's own test")
    add_build_options(test)
    test.add_argument("--gpu", action="store_true",
                      help="also run the CUDA kernels on the GPU through the kernel harness")
    test.add_argument("--json", action="store_true", help="per-op results as JSON on stdout")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="extra arguments for pytest")
    test.set_defaults(handler=cmd_test)

    check = sub.add_parser("check", help="check the bundle: files, hashes, names, CUDA code")
    add_bundle_options(check)
    add_toolchain_options(check, compiler_cache=False)
    check.add_argument("--gpu-arch", metavar="ARCH", help="fail unless every CUDA library runs on sm_ARCH")
    check.add_argument("--json", action="store_true", help="the check results as JSON on stdout")
    check.set_defaults(handler=cmd_check)


def cmd_add(args) -> int:
    from ..builder.driver import load_toolchain
    from ..ops.scaffold import scaffold

    options = options_from(args)
    # The framework's built-in names (cached with the toolchain) so a new op cannot shadow one.
    known = load_toolchain(options).framework(args.framework) if args.op_name else None
    created = scaffold(options.root, args.name, framework=args.framework, cuda=not args.no_cuda,
                       op_name=args.op_name, framework_info=known)
    info(f"created {created.relative_to(options.root)}/:")
    for path in sorted(created.iterdir()):
        info(f"  {path.name}")
    info("next: trtis-build ops build && trtis-build ops test")
    return 0


def _op_record(op, root: Path) -> dict:
    def rel(paths):
        return [str(p.relative_to(root)) if root in p.parents else str(p) for p in paths]

    return {"name": op.name, "framework": op.framework, "version": op.version,
            "directory": str(op.directory.relative_to(root)), "layout": op.layout,
            "ops": [], "plugins": [], **frameworks.get(op.framework).list_fields(op),
            "registers": list(op.registered_names),
            "sources": rel(op.sources), "kernel_sources": rel(op.kernel_sources),
            "cuda_sources": rel(op.cuda_sources), "gpu_sources": rel(op.gpu_sources),
            "tests": rel(op.tests), "description": op.description, "kernel_library": op.kernel_library}


# How `ops list` names each source list (op.toml keys; discover decides by content).
ROLES = (("sources", "adapter (framework headers):"), ("kernel_sources", "kernel (framework-free C++):"),
         ("cuda_sources", "cuda (nvcc):"), ("gpu_sources", "gpu (nvcc with framework headers):"),
         ("tests", "tests:"))


def cmd_list(args) -> int:
    options = options_from(args)
    ops = discover(options.root, default_namespace=options.tensorrt_namespace)
    records = [_op_record(op, options.root) for op in ops]
    if args.json:
        print_json(records)
        return 0
    if not records:
        info(f"no ops under {options.ops_dir}; create one with `trtis-build ops add NAME`")
        return 0
    for r in records:
        names = ", ".join(r["registers"])
        print(f"{r['framework']}/{r['name']}  v{r['version']}  {r['layout']}  registers: {names}"
              + ("" if r["kernel_library"] else "  (no kernel library)"))
        for key, role in ROLES:
            if r[key]:
                print(f"    {role:<34} {' '.join(r[key])}")
    return 0


def cmd_build(args) -> int:
    options = options_from(args)
    progress = Progress()
    info(f"trtis-build: building ops in {options.root}")
    result = build(options, progress=progress, dry_run=args.dry_run, kernels_only=args.kernels_only)
    if args.dry_run:
        plan = result
        if args.json:
            print_json(plan.to_json())
        else:
            print((options.build_dir / "plan.cmake").read_text())
        return 0
    _report_build(result, options, args.json)
    return 0


def _report_build(result, options, as_json: bool) -> None:
    manifest = result.bundle.manifest
    total = sum(seconds for _, seconds in result.steps)
    if as_json:
        print_json({"bundle": str(result.bundle.path), "version_dir": str(result.bundle.real_path),
                    "changed": result.bundle.changed, "compiled": result.compiled,
                    "steps": dict(result.steps),
                    "compiler_cache": result.cache.to_json() if result.cache else None, "manifest": manifest})
        return
    cuda = manifest["cuda"]
    info(f"bundle: {result.bundle.path} ({'updated' if result.bundle.changed else 'up to date'}, "
         f"{total:.2f} s)")
    for lib in manifest["libraries"]:
        # Plugins with their namespace and version: one name under two namespaces is no duplicate.
        names = ", ".join(lib["ops"]) or ", ".join(
            f"{p['namespace']}::{p['name']} v{p['version']}" if p.get("namespace") else f"{p['name']} v{p['version']}"
            for p in lib["plugins"])
        info(f"  {lib['path']:<32} {names}")
    for lib in manifest["kernel_libraries"]:
        info(f"  {lib['path']:<32} (kernel harness)")
    info("  CUDA: " + (f"sm_{', sm_'.join(cuda['archs'])} + PTX compute_{cuda['ptx']}" if cuda["enabled"]
                       else "off (CPU kernels only)"))
    for skipped in manifest["skipped"]:
        info(f"  skipped {skipped['op']}: {skipped['reason']}")


def cmd_test(args) -> int:
    from ..testing.op_tests import run_op_tests

    options = options_from(args)
    return run_op_tests(options, gpu=args.gpu, as_json=args.json, pytest_args=pytest_arguments(args.pytest_args))


def pytest_arguments(remainder: list[str]) -> list[str]:
    """`ops test -- -x -k NAME`: the `--` separates ours from pytest's and is not pytest's."""
    return remainder[1:] if remainder[:1] == ["--"] else list(remainder)


def cmd_check(args) -> int:
    from ..bundle.check import check_bundle

    options = options_from(args)
    if args.gpu_arch:
        from ..bundle.fatbin import parse_arch
        from ..core.errors import ConfigError

        try:
            parse_arch(args.gpu_arch.removeprefix("sm_"))
        except ValueError as exc:
            raise ConfigError(f"--gpu-arch: {exc}", hint="give the GPU's compute capability, e.g. 90 or sm_90") from None
    return check_bundle(options, gpu_arch=args.gpu_arch, as_json=args.json)
