"""trtis-launch: the entrypoint of server images that `trtis-build server` composes.

It checks the op bundle under /opt/tritonserver/ops before Triton starts, then runs
tritonserver with the bundle linked in. Standard library only (Python 3.8+): it runs with the
image's own python3 and trtis-build is not installed in the image. The rules it applies
(manifest, sha256, ELF, autoload shims, per-framework runtimes) are trtis_server's, the
same that trtis-build itself uses.

Start-up check (fails fast with one message per problem; Triton itself only logs a plugin
library it cannot load and serves on without it):
  - every library in manifest.json exists and matches its sha256;
  - every shared library it needs (DT_NEEDED, read from the ELF file) resolves inside the
    image: its RPATH/RUNPATH, LD_LIBRARY_PATH, /etc/ld.so.conf, the system directories, the
    bundle itself, and the framework's own directory (TensorFlow's package directory for TF
    op libraries, which TensorFlow has loaded when it loads them; Triton's backends for
    TensorRT plugins).

Then:
  - TensorRT plugins go to Triton as --backend-config=tensorrt,plugins="a.so;b.so" (default),
    or into LD_PRELOAD with --trtis-plugin-mode=preload (the older way); either way the path
    given is each plugin library's autoload shim (tensorrt/autoload/), which registers the
    library when merely opened (under LD_PRELOAD it loads libnvinfer itself first);
  - torch op libraries go on LD_PRELOAD for Triton's PyTorch backend (its documented way)
    when a model of the repositories on the command line has a PyTorch-backend config
    (TRTIS_TORCH_PRELOAD=auto, the default), in preload mode, or always / never as that
    variable says; LD_LIBRARY_PATH then starts with the libtorch they need (the pytorch
    backend's). TRTIS_TORCH_OP_LIBRARIES lists them either way; Python-backend models load
    their own copies;
  - TensorFlow op libraries are never preloaded (TensorFlow's bundled BoringSSL clashes with
    the server's libcrypto and crashes every Python stub); models load them: TRTIS_BUNDLE is
    this bundle (trtis_build.load_bundle's default), TRTIS_TF_OP_LIBRARIES lists their paths,
    and TensorFlow-backend models name them in model_operations { op_library_filename }.

Usage (the image's entrypoint; CMD supplies the default arguments):
  trtis-launch [--trtis-check] [--trtis-dry-run] [--trtis-plugin-mode=backend-config|preload]
               [tritonserver] [TRITONSERVER ARGS...]
  trtis-launch [options] COMMAND [ARGS...]     check, set the environment, then run COMMAND
"""

import json
import os
import sys

from . import elf, frameworks, manifest as manifest_rules

EXIT_CHECK = 3
EXIT_EXEC = 127
DIGEST_VARIABLE = "TRTIS_BUNDLE_MANIFEST_SHA256"
PLUGIN_MODES = ("backend-config", "preload")


class CheckError(Exception):
    pass


def default_bundle():
    """TRTIS_LAUNCH_BUNDLE, else the directory that holds the `trtis-launch` script."""
    return os.environ.get("TRTIS_LAUNCH_BUNDLE") or os.path.dirname(os.path.abspath(sys.argv[0]))


def read_manifest(bundle):
    try:
        return manifest_rules.read(bundle)
    except manifest_rules.ManifestError as exc:
        raise CheckError("cannot read the bundle manifest in %s: %s" % (bundle, exc))


def bundle_dirs(bundle, manifest):
    """Directories of the bundle's own libraries (one may need another)."""
    files = manifest_rules.all_files(manifest, bundle)
    return sorted({os.path.dirname(os.path.join(bundle, entry["path"])) for entry in files})


def check(manifest, bundle):
    """All problems found, as messages that say what and how to fix."""
    problems = []
    for entry in manifest_rules.all_files(manifest, bundle):
        problem = manifest_rules.integrity_problem(bundle, entry)
        if problem:
            problems.append(problem + "; recompose the image with `trtis-build server`")
            continue
        path = os.path.join(bundle, entry["path"])
        runtime = frameworks.runtime(entry.get("framework", ""))
        try:
            missing, dirs = manifest_rules.unresolved_needed(
                path, runtime.library_dirs() + bundle_dirs(bundle, manifest))
        except (OSError, elf.ElfError) as exc:
            problems.append("%s cannot be read as a shared library: %s" % (path, exc))
            continue
        for name in missing:
            problems.append("%s needs %s, which is not in the image (searched: %s); use a base image "
                            "with %s, or rebuild the op without that dependency"
                            % (path, name, ", ".join(dirs), runtime.provides))
    return problems


def manifest_digest_problem(bundle, env):
    """The image config records the sha256 of the manifest it was composed with
    (TRTIS_BUNDLE_MANIFEST_SHA256): a library changed together with its manifest entry is
    caught here. None when it matches or when the image records none."""
    expected = env.get(DIGEST_VARIABLE)
    if not expected:
        return None
    path = os.path.join(bundle, manifest_rules.MANIFEST)
    try:
        found = manifest_rules.sha256_file(path)
    except OSError as exc:
        return "cannot read %s: %s" % (path, exc)
    if found != expected:
        return ("%s was changed after the image was composed (sha256 %s, the image records %s); "
                "recompose the image with `trtis-build server`" % (path, found[:12], expected[:12]))
    return None


def op_library_paths(manifest, bundle):
    """framework -> the paths its runtime gets: a TensorRT plugin library's autoload shim
    when it has one (Triton only dlopens), else the library itself."""
    paths = {}
    for library in manifest.get("libraries", []):
        chosen = manifest_rules.autoload_entry(library, bundle) or library
        paths.setdefault(library.get("framework", ""), []).append(os.path.join(bundle, chosen["path"]))
    return paths


def split_args(argv, config):
    options = {"check": False, "dry_run": False, "plugin_mode": os.environ.get(
        "TRTIS_PLUGIN_MODE", config.get("plugin_mode", "backend-config"))}
    rest = []
    for arg in argv:
        if arg == "--trtis-check":
            options["check"] = True
        elif arg == "--trtis-dry-run":
            options["dry_run"] = True
        elif arg.startswith("--trtis-plugin-mode="):
            options["plugin_mode"] = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    if options["plugin_mode"] not in PLUGIN_MODES:
        raise CheckError("unknown plugin mode %r: use backend-config or preload" % options["plugin_mode"])
    return options, rest


def _merge(command, extra):
    """Add each (option prefix, value); where the user gave that option already, the value
    joins theirs with ';' (the user's own plugins come first)."""
    for prefix, value in extra:
        for index, given in enumerate(command):
            if given.startswith(prefix):
                command[index] = given + ";" + value
                break
        else:
            command.append(prefix + value)
    return command


def server_command(rest, config, paths, mode):
    """The command to exec: tritonserver with our op libraries, or the user's own command."""
    server = config.get("tritonserver", "tritonserver")
    if not rest or rest[0].startswith("-"):
        command = [server] + rest
    elif os.path.basename(rest[0]) == "tritonserver":
        command = list(rest)
    else:
        return list(rest)  # e.g. `docker run IMAGE bash`: checked environment, the user's command
    extra = [option for name, items in sorted(paths.items())
             for option in frameworks.runtime(name).server_args(items, mode)]
    return _merge(command, extra)


def environment(paths, mode, bundle, command=()):
    env = dict(os.environ)
    env["TRTIS_BUNDLE"] = bundle
    preloaded = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p]
    added = []
    for name, runtime in sorted(frameworks.RUNTIMES.items()):
        items = paths.get(name, [])
        refusal = getattr(runtime, "refuse_preload", lambda *_: None)(preloaded, items)
        if refusal:
            raise CheckError(refusal)
        chosen = runtime.preload(items, mode, command)
        env.update(runtime.environment(items, chosen, env))
        added += chosen
    if added:
        env["LD_PRELOAD"] = " ".join(added + preloaded)
    return env


def _read_config(bundle):
    try:
        with open(os.path.join(bundle, "launch.json")) as handle:
            return json.load(handle)
    except (OSError, ValueError):
        return {}


def main(argv, bundle=None):
    bundle = bundle or default_bundle()
    config = _read_config(bundle)
    try:
        options, rest = split_args(argv, config)
        manifest = read_manifest(bundle)
        problems = [p for p in (manifest_digest_problem(bundle, os.environ),) if p] + check(manifest, bundle)
        if problems:
            raise CheckError("the op bundle cannot work in this image:\n  - " + "\n  - ".join(problems))
        paths = op_library_paths(manifest, bundle)
        command = server_command(rest, config, paths, options["plugin_mode"])
        env = environment(paths, options["plugin_mode"], bundle, command)
    except CheckError as error:
        sys.stderr.write("trtis-launch: error: %s\n" % error)
        return EXIT_CHECK
    count = len(manifest_rules.all_files(manifest, bundle))
    if options["check"]:
        sys.stdout.write("trtis-launch: %d libraries checked in %s: ok\n" % (count, bundle))
        return 0
    if options["dry_run"]:
        keys = ("TRTIS_BUNDLE", "TRTIS_TF_OP_LIBRARIES", "TRTIS_TORCH_OP_LIBRARIES", "LD_PRELOAD",
                "LD_LIBRARY_PATH")
        json.dump({"command": command, "env": {k: env[k] for k in keys if k in env}}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    for library in manifest.get("libraries", []):
        if library.get("framework") == "tensorrt" and manifest_rules.autoload_entry(library, bundle) is None:
            sys.stderr.write("trtis-launch: warning: %s has no autoload shim; Triton only dlopens plugin "
                             "libraries, so its plugins register only if it registers them itself\n"
                             % library["path"])
    sys.stderr.write("trtis-launch: bundle ok (%d libraries); starting %s\n" % (count, command[0]))
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        sys.stderr.write("trtis-launch: error: cannot run %s: %s\n" % (command[0], exc))
        return EXIT_EXEC
