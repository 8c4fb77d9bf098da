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

Run as a script with -S on every compile: standard library only, and nothing imported that
the rewrite does not need.
"""

from __future__ import annotations

import os
import sys

SOURCE_LINK = "src"  # <cmake binary dir>/src -> the project root (made by the driver)
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
    command = [*cache, compiler, *relative_args(args, root, cwd, linked=linked)]
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        print(f"trtis-build: cannot run {command[0]}: {exc}", file=sys.stderr)
        return 127


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
