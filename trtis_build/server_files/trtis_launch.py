#!/usr/bin/env python3
"""trtis-launch: the entrypoint of server images that `trtis-build server` composes.

It checks the op bundle under /opt/tritonserver/ops before Triton starts, then runs
tritonserver with the bundle linked in. Standard library only (Python 3.8+): it runs with the
image's own python3 and trtis-build is not installed in the image.

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
  - TensorFlow op libraries are never preloaded (TensorFlow's bundled BoringSSL clashes with
    the server's libcrypto and crashes every Python stub); models load them: TRTIS_BUNDLE is
    this bundle (trtis_build.load_bundle's default), TRTIS_TF_OP_LIBRARIES lists their paths,
    and TensorFlow-backend models name them in model_operations { op_library_filename }.

Usage (the image's entrypoint; CMD supplies the default arguments):
  trtis-launch [--trtis-check] [--trtis-dry-run] [--trtis-plugin-mode=backend-config|preload]
               [tritonserver] [TRITONSERVER ARGS...]
  trtis-launch [options] COMMAND [ARGS...]     check, set the environment, then run COMMAND
"""

import hashlib
import json
import os
import struct
import sys

BUNDLE = os.environ.get("TRTIS_LAUNCH_BUNDLE") or os.path.dirname(os.path.abspath(__file__))
EXIT_CHECK = 3
SYSTEM_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
               "/lib", "/usr/lib", "/usr/local/lib")
PT_LOAD, PT_DYNAMIC = 1, 2
DT_NULL, DT_NEEDED, DT_STRTAB, DT_RPATH, DT_RUNPATH = 0, 1, 5, 15, 29


class CheckError(Exception):
    pass


def elf_dynamic(path):
    """(needed, rpath, runpath) of a 64-bit little-endian ELF shared library."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise CheckError("%s is not a 64-bit little-endian ELF library" % path)
    phoff, = struct.unpack_from("<Q", data, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", data, 0x36)
    loads, dynamic = [], None
    for index in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz, _, _ = struct.unpack_from(
            "<IIQQQQQQ", data, phoff + index * phentsize)
        if p_type == PT_LOAD:
            loads.append((p_vaddr, p_offset, p_filesz))
        elif p_type == PT_DYNAMIC:
            dynamic = (p_offset, p_filesz)
    if dynamic is None:
        return [], [], []
    entries = []
    for at in range(dynamic[0], dynamic[0] + dynamic[1], 16):
        tag, value = struct.unpack_from("<qQ", data, at)
        if tag == DT_NULL:
            break
        entries.append((tag, value))
    strtab_vaddr = next(v for t, v in entries if t == DT_STRTAB)
    strtab = next(o + strtab_vaddr - s for s, o, n in loads if s <= strtab_vaddr < s + n)

    def string(offset):
        end = data.index(b"\0", strtab + offset)
        return data[strtab + offset:end].decode()

    def paths(tag):
        return [p for t, v in entries if t == tag for p in string(v).split(":") if p]

    return [string(v) for t, v in entries if t == DT_NEEDED], paths(DT_RPATH), paths(DT_RUNPATH)


def ld_so_conf_dirs(path="/etc/ld.so.conf", seen=None):
    import glob

    seen = set() if seen is None else seen
    if path in seen or not os.path.isfile(path):
        return []
    seen.add(path)
    dirs = []
    with open(path) as handle:
        for line in handle:
            line = line.split("#", 1)[0].strip()
            if line.startswith("include "):
                pattern = line.split(None, 1)[1]
                if not pattern.startswith("/"):
                    pattern = os.path.join(os.path.dirname(path), pattern)
                for item in sorted(glob.glob(pattern)):
                    dirs += ld_so_conf_dirs(item, seen)
            elif line:
                dirs.append(line)
    return dirs


def framework_dirs(framework):
    """Where a framework keeps the libraries it has loaded before it loads ours."""
    dirs = []
    if framework == "tensorflow":
        for entry in sys.path:
            candidate = os.path.join(entry or ".", "tensorflow")
            if os.path.isfile(os.path.join(candidate, "libtensorflow_framework.so.2")):
                dirs.append(candidate)
    elif framework == "tensorrt":
        backends = os.environ.get("TRTIS_BACKEND_DIR", "/opt/tritonserver/backends")
        dirs.append(os.path.join(backends, "tensorrt"))
        for entry in sys.path:
            dirs.append(os.path.join(entry or ".", "tensorrt_libs"))
    return dirs


def search_dirs(library_path, framework, rpath, runpath, manifest):
    origin = os.path.dirname(library_path)
    expand = lambda p: p.replace("$ORIGIN", origin).replace("${ORIGIN}", origin)  # noqa: E731
    dirs = [] if runpath else [expand(p) for p in rpath]
    dirs += [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    dirs += [expand(p) for p in runpath]
    dirs += ld_so_conf_dirs() + list(SYSTEM_DIRS)
    dirs += framework_dirs(framework)
    dirs += sorted({os.path.dirname(os.path.join(BUNDLE, lib["path"])) for lib in all_libraries(manifest)})
    return list(dict.fromkeys(dirs))


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def autoload_entry(library):
    """The autoload shim of a TensorRT plugin library (tensorrt/autoload/<name>): what Triton's
    plugins= and LD_PRELOAD must open, because they only dlopen and never call getCreators.
    From the manifest ("autoload": path or {"path", "sha256"}) or found beside the library."""
    if library.get("framework") != "tensorrt":
        return None
    declared = library.get("autoload")
    if isinstance(declared, str):
        declared = {"path": declared}
    if isinstance(declared, dict) and declared.get("path"):
        return dict(declared, framework="tensorrt")
    relative = os.path.join(os.path.dirname(library["path"]), "autoload", os.path.basename(library["path"]))
    if os.path.isfile(os.path.join(BUNDLE, relative)):
        return {"path": relative, "framework": "tensorrt"}
    return None


def all_libraries(manifest):
    libraries = list(manifest.get("libraries", [])) + list(manifest.get("kernel_libraries", []))
    return libraries + [a for a in map(autoload_entry, manifest.get("libraries", [])) if a]


def read_manifest():
    path = os.path.join(BUNDLE, "manifest.json")
    try:
        with open(path) as handle:
            return json.load(handle)
    except (OSError, ValueError) as exc:
        raise CheckError("cannot read the bundle manifest %s: %s" % (path, exc))


def check(manifest):
    """All problems found, as messages that say what and how to fix."""
    problems = []
    for library in all_libraries(manifest):
        path = os.path.join(BUNDLE, library["path"])
        if not os.path.isfile(path):
            problems.append("%s is missing from the image; recompose it with `trtis-build server`" % path)
            continue
        expected = library.get("sha256", "")
        if expected and sha256(path) != expected.split(":")[-1]:
            problems.append("%s does not match its sha256 in manifest.json (changed after the image "
                            "was built); recompose the image" % path)
            continue
        try:
            needed, rpath, runpath = elf_dynamic(path)
        except (OSError, CheckError, struct.error, StopIteration, ValueError) as exc:
            problems.append("%s cannot be read as a shared library: %s" % (path, exc))
            continue
        dirs = search_dirs(path, library.get("framework", ""), rpath, runpath, manifest)
        for name in needed:
            if not any(os.path.exists(os.path.join(d, name)) for d in dirs):
                what = {"tensorflow": "TensorFlow (python3 -c 'import tensorflow' must work in the image)",
                        "tensorrt": "TensorRT (the tensorrt backend or libnvinfer)"}.get(
                    library.get("framework"), "the library that provides it")
                problems.append("%s needs %s, which is not in the image (searched: %s); use a base "
                                "image with %s, or rebuild the op without that dependency"
                                % (path, name, ", ".join(dirs), what))
    return problems


def plugin_paths(manifest):
    """What Triton opens: each plugin library's autoload shim when it has one."""
    paths = []
    for library in manifest.get("libraries", []):
        if library.get("framework") == "tensorrt":
            chosen = autoload_entry(library) or library
            paths.append(os.path.join(BUNDLE, chosen["path"]))
    return paths


def tf_paths(manifest):
    return [os.path.join(BUNDLE, lib["path"]) for lib in manifest.get("libraries", [])
            if lib.get("framework") == "tensorflow"]


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
    if options["plugin_mode"] not in ("backend-config", "preload"):
        raise CheckError("unknown plugin mode %r: use backend-config or preload" % options["plugin_mode"])
    return options, rest


def server_command(rest, config, manifest, mode):
    """The command to exec: tritonserver with our plugins, or the user's own command."""
    server = config.get("tritonserver", "tritonserver")
    if not rest or rest[0].startswith("-"):
        command = [server] + rest
    elif os.path.basename(rest[0]) == "tritonserver":
        command = list(rest)
    else:
        return list(rest)  # e.g. `docker run IMAGE bash`: checked environment, the user's command
    plugins = plugin_paths(manifest)
    if plugins and mode == "backend-config":
        prefix = "--backend-config=tensorrt,plugins="
        for index, arg in enumerate(command):
            if arg.startswith(prefix):  # the user's own plugins come first
                command[index] = arg + ";" + ";".join(plugins)
                break
        else:
            command.append(prefix + ";".join(plugins))
    return command


def environment(manifest, mode):
    env = dict(os.environ)
    env["TRTIS_BUNDLE"] = BUNDLE
    env["TRTIS_TF_OP_LIBRARIES"] = ":".join(tf_paths(manifest))
    preload = [p for p in env.get("LD_PRELOAD", "").replace(":", " ").split() if p]
    clash = sorted(set(preload) & set(tf_paths(manifest)))
    if clash:
        raise CheckError("LD_PRELOAD names TensorFlow op libraries (%s): preloading them crashes the "
                         "Python stubs; remove them, models load them" % ", ".join(clash))
    if mode == "preload" and plugin_paths(manifest):
        env["LD_PRELOAD"] = " ".join(plugin_paths(manifest) + preload)
    return env


def main(argv):
    try:
        with open(os.path.join(BUNDLE, "launch.json")) as handle:
            config = json.load(handle)
    except (OSError, ValueError):
        config = {}
    try:
        options, rest = split_args(argv, config)
        manifest = read_manifest()
        problems = check(manifest)
        if problems:
            raise CheckError("the op bundle cannot work in this image:\n  - " + "\n  - ".join(problems))
        command = server_command(rest, config, manifest, options["plugin_mode"])
        env = environment(manifest, options["plugin_mode"])
    except CheckError as error:
        sys.stderr.write("trtis-launch: error: %s\n" % error)
        return EXIT_CHECK
    libraries = len(all_libraries(manifest))
    if options["check"]:
        sys.stdout.write("trtis-launch: %d libraries checked in %s: ok\n" % (libraries, BUNDLE))
        return 0
    if options["dry_run"]:
        keys = ("TRTIS_BUNDLE", "TRTIS_TF_OP_LIBRARIES", "LD_PRELOAD")
        json.dump({"command": command, "env": {k: env[k] for k in keys if k in env}}, sys.stdout)
        sys.stdout.write("\n")
        return 0
    for library in manifest.get("libraries", []):
        if library.get("framework") == "tensorrt" and autoload_entry(library) is None:
            sys.stderr.write("trtis-launch: warning: %s has no autoload shim; Triton only dlopens plugin "
                             "libraries, so its plugins register only if it registers them itself\n"
                             % library["path"])
    sys.stderr.write("trtis-launch: bundle ok (%d libraries); starting %s\n" % (libraries, command[0]))
    sys.stderr.flush()
    try:
        os.execvpe(command[0], command, env)
    except OSError as exc:
        sys.stderr.write("trtis-launch: error: cannot run %s: %s\n" % (command[0], exc))
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
