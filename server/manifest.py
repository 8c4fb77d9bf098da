"""The bundle manifest as the image reads it, and the rules both sides share: the sha256 of
a file, which files a bundle holds (libraries, kernel libraries, TensorRT autoload shims),
and whether every library is intact and finds the shared libraries it needs.

trtis_build writes manifest.json (its bundle stage) and reads it with these same functions;
the launcher reads it inside the image. Standard library only."""

import glob
import hashlib
import json
import os

from . import elf

SCHEMA = 1
MANIFEST = "manifest.json"
SYSTEM_DIRS = ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/usr/lib64",
               "/lib", "/usr/lib", "/usr/local/lib")


class ManifestError(ValueError):
    """manifest.json is missing, unreadable, of another schema, or lacks required fields."""


def sha256_file(path):
    """The bare hex sha256 of a file (the manifest's `sha256` values)."""
    digest = hashlib.sha256()
    with open(str(path), "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read(bundle_dir):
    """The parsed manifest of a bundle directory; ManifestError says what is wrong."""
    path = os.path.join(str(bundle_dir), MANIFEST)
    if not os.path.isfile(path):
        raise ManifestError("no bundle at %s (manifest.json missing)" % bundle_dir)
    try:
        with open(path, encoding="utf-8") as handle:
            manifest = json.load(handle)
    except (OSError, ValueError) as exc:
        raise ManifestError("manifest.json is not valid JSON: %s" % exc) from None
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        found = manifest.get("schema") if isinstance(manifest, dict) else None
        raise ManifestError("unsupported bundle schema %r (expected %d)" % (found, SCHEMA))
    for key in ("libraries", "kernel_libraries"):
        entries = manifest.get(key, [])
        if not isinstance(entries, list):
            raise ManifestError("manifest.json: '%s' must be a list" % key)
        for index, entry in enumerate(entries):
            problem = _entry_problem(entry, key == "libraries")
            if problem:
                raise ManifestError("manifest.json: %s[%d] %s" % (key, index, problem))
    return manifest


def _entry_problem(entry, is_library):
    """What is wrong with one listed file's entry (hostile or hand-edited manifests), or None."""
    if not isinstance(entry, dict):
        return "is not an object"
    for field in ("path",) + (("framework",) if is_library else ()):
        if not isinstance(entry.get(field), str) or not entry[field]:
            return "has no '%s' string" % field
    if not safe_relative(entry["path"]):
        return "path %r is not inside the bundle" % entry["path"]
    if "sha256" in entry and not isinstance(entry["sha256"], str):
        return "has a 'sha256' that is not a string"
    for field in ("ops", "plugins", "needed"):
        if field in entry and not isinstance(entry[field], list):
            return "has an '%s' that is not a list" % field
    autoload = entry.get("autoload")
    if autoload is not None and not isinstance(autoload, str) and not (
            isinstance(autoload, dict) and isinstance(autoload.get("path"), str) and safe_relative(autoload["path"])):
        return "has an 'autoload' that is neither a path nor {\"path\": ...} inside the bundle"
    return None


def autoload_entry(library, bundle_dir):
    """The autoload shim of a TensorRT plugin library: what Triton's plugins= and LD_PRELOAD
    must open, because they only dlopen and never call getCreators. Declared in the manifest
    ("autoload": a path or {"path", "sha256", ...}) or present beside the library as
    tensorrt/autoload/<name>; None otherwise."""
    if library.get("framework") != "tensorrt":
        return None
    declared = library.get("autoload")
    if isinstance(declared, str):
        declared = {"path": declared}
    if isinstance(declared, dict) and declared.get("path"):
        return dict(declared, framework="tensorrt")
    path = library["path"]
    relative = "/".join(filter(None, (os.path.dirname(path), "autoload", os.path.basename(path))))
    if os.path.isfile(os.path.join(str(bundle_dir), relative)):
        return {"path": relative, "framework": "tensorrt"}
    return None


def all_files(manifest, bundle_dir):
    """Every library entry the bundle holds: op libraries, kernel libraries, autoload shims."""
    libraries = list(manifest.get("libraries", []))
    shims = [a for a in (autoload_entry(lib, bundle_dir) for lib in libraries) if a]
    return libraries + list(manifest.get("kernel_libraries", [])) + shims


def safe_relative(path):
    """Whether a manifest path stays inside the bundle (relative, no '..')."""
    return bool(path) and not os.path.isabs(path) and ".." not in path.replace("\\", "/").split("/")


def integrity_problem(bundle_dir, entry):
    """Why one listed file cannot be trusted (missing, outside the bundle, no hash, changed),
    or None. A missing sha256 is a problem: it would skip the check."""
    relative = entry.get("path", "")
    if not safe_relative(relative):
        return "%r is not a path inside the bundle" % relative
    path = os.path.join(str(bundle_dir), relative)
    if not os.path.isfile(path):
        return "%s is missing" % path
    expected = entry.get("sha256")
    if not isinstance(expected, str) or not expected:
        return "%s has no sha256 in manifest.json" % path
    if sha256_file(path) != expected.split(":")[-1]:
        return "%s does not match its sha256 in manifest.json (changed after the bundle was built)" % path
    return None


def ld_so_conf_dirs(path="/etc/ld.so.conf", seen=None):
    """The directories /etc/ld.so.conf (and what it includes) adds to the loader's search."""
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


def search_dirs(library_path, dynamic, extra_dirs=()):
    """Where the loader looks for what `library_path` needs, in its order: RPATH (when there
    is no RUNPATH), LD_LIBRARY_PATH, RUNPATH, ld.so.conf, the system, then `extra_dirs`."""
    origin = os.path.dirname(library_path)

    def expand(p):
        return p.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)

    dirs = [] if dynamic["runpath"] else [expand(p) for p in dynamic["rpath"]]
    dirs += [p for p in os.environ.get("LD_LIBRARY_PATH", "").split(":") if p]
    dirs += [expand(p) for p in dynamic["runpath"]]
    dirs += ld_so_conf_dirs() + list(SYSTEM_DIRS) + list(extra_dirs)
    return list(dict.fromkeys(dirs))


def unresolved_needed(library_path, extra_dirs=()):
    """(needed libraries that resolve nowhere, the directories searched). Raises ElfError."""
    dynamic = elf.dynamic_info(library_path)
    dirs = search_dirs(library_path, dynamic, extra_dirs)
    missing = [name for name in dynamic["needed"]
               if not any(os.path.exists(os.path.join(d, name)) for d in dirs)]
    return missing, dirs
