"""The launcher in front of every compile of the generated build (g++ through CMake's
CXX_COMPILER_LAUNCHER, nvcc through the custom commands):

    python -S compile_launcher.py ROOT [CACHE ...] -- COMPILER ARGS...

It rewrites absolute paths under the project root into paths relative to the compile's working
directory (the CMake binary dir, where the driver links `src` to the root), the way ccache's
base_dir does, then runs the compiler, through the compiler cache when one is given. Why:
  - objects carry no checkout path (__FILE__, debug names), so a library is byte-identical
    whichever directory it was built in;
  - depfiles name the clone's own files, so a cache hit from another clone never makes Ninja
    track that clone's headers;
  - the compile command is the same text in every clone, so a shared cache (sccache) hits.

A CUDA source is compiled from a copy at a path that is the same in every checkout
(CUDA_SOURCE_DIR/<sha256 of its text>/<name>): nvcc hands cudafe++ and cicc the source's
resolved absolute path, which sccache 0.16 puts in their keys, so without it the device code
of one .cu never hits in another checkout. The copy's quoted includes are searched in the
source's own directory first (the host compiler's -iquote), as they were, and the depfile names the source again.

Run as a script with -S on every compile: standard library only, and nothing imported that
the rewrite does not need.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import sys

SOURCE_LINK = "src"  # <cmake binary dir>/src -> the project root (made by the driver)
CUDA_SOURCE_DIR = "/tmp/trtis-build-cuda-sources"  # one path on every runner: that is the point
# Options whose path is glued to them (-I/root/x); '=' forms and whole arguments are found anyway.
GLUED = ("-isystem", "-iquote", "-idirafter", "-include", "-imacros", "-I", "-L")


def relative_args(args: list[str], root: str, cwd: str, *, linked: bool = True) -> list[str]:
    """Each path under `cwd` or `root` made relative to `cwd` (root paths through SOURCE_LINK,
    when `linked`: cwd/SOURCE_LINK is the link to the root)."""
    # Each base as given and as resolved: an argument may spell either.
    mapping = {}
    for base, replacement in (((root, SOURCE_LINK),) if linked else ()) + ((cwd, "."),):
        for spelling in {base.rstrip("/"), os.path.realpath(base).rstrip("/")}:
            mapping[spelling] = replacement
    bases = sorted(mapping.items(), key=lambda item: -len(item[0]))

    def rewrite_path(path: str) -> str:
        for base, replacement in bases:  # the longest (most specific) base first
            if path == base or path.startswith(base + "/"):
                rest = path[len(base):].lstrip("/")
                if replacement == ".":
                    return rest or "."
                return f"{replacement}/{rest}" if rest else replacement
        return path

    def rewrite(arg: str) -> str:
        if arg.startswith("/"):
            return rewrite_path(arg)
        for option in GLUED:
            if arg.startswith(option + "/"):
                return option + rewrite_path(arg[len(option):])
        if "=" in arg:  # --flag=/path, -Xcompiler=-I/path,-isystem/path
            head, _, value = arg.partition("=")
            return f"{head}={','.join(rewrite(part) for part in value.split(','))}"
        return arg

    return [rewrite(arg) for arg in args]


def _private_dir(path: str) -> bool:
    """`path` is (or is now) a real directory of ours that no one else may write to."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return False
    info = os.lstat(path)
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and not info.st_mode & 0o022


def stable_cuda_source(source: str) -> str | None:
    """The fixed-path copy of `source` (made or checked now), or None where no safe one can be
    made (another user's directory, a read-only /tmp): the compile then uses the source."""
    try:
        with open(source, "rb") as handle:
            text = handle.read()
        directory = os.path.join(CUDA_SOURCE_DIR, hashlib.sha256(text).hexdigest()[:32])
        if not (_private_dir(CUDA_SOURCE_DIR) and _private_dir(directory)):
            return None
        copy = os.path.join(directory, os.path.basename(source))
        try:
            with open(copy, "rb") as handle:
                same = not os.path.islink(copy) and handle.read() == text
        except OSError:
            same = False
        if not same:
            staging = f"{copy}.{os.getpid()}"
            with open(staging, "wb") as handle:
                handle.write(text)
            os.replace(staging, copy)
        return copy
    except OSError:
        return None


def _value_at(args: list[str], option: str) -> int | None:
    """Where the value of `option VALUE` is in args, if it is there."""
    at = args.index(option) + 1 if option in args else None
    return at if at is not None and at < len(args) else None


def _nvcc_from_stable_copy(args: list[str]) -> tuple[list[str], str, str] | None:
    """nvcc's arguments compiling the fixed-path copy of its `-c X.cu` source, with the copy and
    the source, or None where this is not such a compile or no copy can be made."""
    at = _value_at(args, "-c")
    if at is None:
        return None
    source = args[at]
    if not source.endswith(".cu") or not os.path.isfile(source):
        return None
    copy = stable_cuda_source(source)
    if copy is None:
        return None
    # nvcc preprocesses with the host compiler, for the device passes too: its -iquote is exact.
    quote = f"-Xcompiler=-iquote,{os.path.dirname(source) or '.'}"
    return [*args[:at - 1], quote, "-c", copy, *args[at + 1:]], copy, source


def _restore_depfile(args: list[str], copy: str, source: str) -> None:
    at = _value_at(args, "-MF")
    if at is not None:
        depfile = args[at]
        try:
            with open(depfile, encoding="utf-8", errors="surrogateescape") as handle:
                text = handle.read()
            if copy in text:
                with open(depfile, "w", encoding="utf-8", errors="surrogateescape") as handle:
                    handle.write(text.replace(copy, source))
        except OSError:
            pass


def main(argv: list[str]) -> int:
    if len(argv) < 3 or "--" not in argv:
        print("usage: compile_launcher.py ROOT [CACHE ...] -- COMPILER ARGS...", file=sys.stderr)
        return 2
    split = argv.index("--")
    root, cache = argv[0], argv[1:split]
    compiler, *args = argv[split + 1:]
    cwd = os.getcwd()
    # A build other than the driver's (the IDE entry) has no link: its root paths stay absolute.
    link = os.path.join(cwd, SOURCE_LINK)
    linked = os.path.islink(link) and os.path.realpath(link) == os.path.realpath(root)
    args = relative_args(args, root, cwd, linked=linked)
    stable = _nvcc_from_stable_copy(args) if os.path.basename(compiler).startswith("nvcc") else None
    if stable is not None:
        nvcc_args, copy, source = stable
        try:
            code = subprocess.call([*cache, compiler, *nvcc_args])
        except OSError as exc:
            print(f"trtis-build: cannot run {(cache or [compiler])[0]}: {exc}", file=sys.stderr)
            return 127
        _restore_depfile(nvcc_args, copy, source)
        return code
    command = [*cache, compiler, *args]
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"trtis-build: cannot run {command[0]}: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
