"""`trtis-build ops add NAME`: create ops/<framework>/NAME from the framework's templates
(frameworks/<framework>/templates/) and the shared kernel templates (ops/templates/kernel/).

Templates are plain files with {{tokens}}; file names may hold tokens too. The op is written
to a temporary directory and renamed into place, so a failure leaves nothing behind and an
existing directory is never touched."""

from __future__ import annotations

import keyword
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from .. import frameworks
from ..frameworks.base import camel_case
from ..core.errors import ScaffoldError, TrtisBuildError
from .discover import discover

# The framework-free kernel every framework's adapter calls: one copy for all of them.
KERNEL_TEMPLATES = Path(__file__).parent / "templates" / "kernel"
# Files only a CUDA op has; --no-cuda leaves them out.
CUDA_ONLY_SUFFIXES = (".cu",)


def validate_name(name: str) -> None:
    if not name:
        raise ScaffoldError("the op name is empty", hint="give a name such as `addsub`")
    if "/" in name or "\\" in name or name in (".", "..") or ".." in name:
        raise ScaffoldError(f"op name {name!r} contains a path separator or '..'",
                            hint="give a bare name such as `addsub`; the directory is chosen for you")
    if not name.isidentifier() or keyword.iskeyword(name) or not name.isascii():
        raise ScaffoldError(f"op name {name!r} is not a valid identifier",
                            hint="use lower-case ASCII letters, digits and '_', starting with a letter")
    if len(name) > 64:
        raise ScaffoldError(f"op name of {len(name)} characters is too long (at most 64)",
                            hint="it names a directory, a library and C symbols: choose a shorter one")
    if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
        raise ScaffoldError(f"op name {name!r} must be lower-case (it names a directory, a library "
                            "and C symbols)", hint=f"try {name.lower()!r}")


def tokens(framework: str, name: str, op_name: str) -> dict[str, str]:
    return {"{{name}}": name, "{{Name}}": camel_case(name), "{{NAME_UPPER}}": name.upper(),
            **frameworks.get(framework).scaffold_names(op_name)}


def render(text: str, values: dict[str, str]) -> str:
    for token, value in values.items():
        text = text.replace(token, value)
    return text


def render_template(framework: str, name: str, op_name: str, *, cuda: bool = True) -> dict[str, str]:
    """File name -> content of the op directory the template produces."""
    values = tokens(framework, name, op_name)
    files = {}
    template_files = [*frameworks.get(framework).templates.iterdir(), *KERNEL_TEMPLATES.iterdir()]
    for path in sorted(template_files, key=lambda p: p.name):
        if not path.is_file() or path.name.startswith("."):
            continue
        target = render(path.name.removesuffix(".in"), values)
        if not cuda and target.endswith(CUDA_ONLY_SUFFIXES):
            continue
        files[target] = render(path.read_text(), values)
    return files


def scaffold(root: Path, name: str, *, framework: str = frameworks.DEFAULT, cuda: bool = True,
             op_name: str | None = None, framework_info: Any = None) -> Path:
    """framework_info: the toolchain's facts of that framework, when known (its built-in names)."""
    validate_name(name)
    op_name = op_name or frameworks.get(framework).default_registered_name(name)
    tokens(framework, name, op_name)  # validates op_name by the framework's rule, before any write
    seam = frameworks.get(framework)
    if seam.is_builtin(op_name, framework_info):
        raise ScaffoldError(f"{op_name!r} is a {seam.title} built-in; an op of that name would shadow it",
                            hint=f"pass --op-name with a project prefix, e.g. 'MyTeam{op_name}'")
    destination = root / "ops" / framework / name
    if destination.exists() or destination.is_symlink():
        raise ScaffoldError(f"{destination} already exists; nothing was written",
                            where=destination, hint="choose another name or remove that directory")
    try:
        existing = discover(root)
    except TrtisBuildError:
        existing = []  # a broken neighbour must not block creating a new op
    for op in existing:
        if op_name in frameworks.get(op.framework).bare_names(op):
            raise ScaffoldError(f"{op_name!r} is already registered by {op.key}", where=op.op_toml,
                                hint="pass --op-name with another name")
    files = render_template(framework, name, op_name, cuda=cuda)
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=destination.parent))
    try:
        for file_name, content in files.items():
            (staging / file_name).write_text(content)
        staging.chmod(0o755)
        os.rename(staging, destination)  # fails, rather than merges, if it appeared meanwhile
    except OSError as exc:
        raise ScaffoldError(f"could not create {destination}: {exc}", where=destination) from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return destination
