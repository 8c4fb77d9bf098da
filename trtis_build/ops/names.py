"""Name rules: every name an op declares (a TensorFlow op name, a TensorRT (name, version,
namespace)...) is registered by exactly one op in the tree and never shadows one of the
framework's own.

Checked twice: on the declarations before the compiler runs (`check_declared`), and on what
the built libraries really register (`compare_registered`, used by the bundle stage)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Iterable, Mapping

from .. import frameworks
from ..core.errors import NameConflictError
from .discover import OpSpec


def check_declared(ops: Iterable[OpSpec], infos: Mapping[str, Any] | None = None) -> None:
    """infos: framework name -> its detected info (the source of its built-in names)."""
    ops = list(ops)
    owners: dict[tuple[str, str, str], list[OpSpec]] = defaultdict(list)
    for op in ops:
        for kind, name in frameworks.get(op.framework).owned_names(op):
            owners[(op.framework, kind, name)].append(op)
    for (framework, kind, name), declared_by in sorted(owners.items()):
        if len(declared_by) > 1:
            seam = frameworks.get(framework)
            files = " and ".join(str(op.op_toml) for op in declared_by)
            raise NameConflictError(f"{kind} {name!r} is declared by {len(declared_by)} ops",
                                    where=files, hint=seam.conflict_hint())
    for op in ops:
        seam = frameworks.get(op.framework)
        shadowing = seam.builtin_conflicts(op, (infos or {}).get(op.framework))
        if shadowing:
            raise NameConflictError(
                f"{seam.name_kind} name(s) {', '.join(shadowing)} are {seam.title} built-ins",
                where=str(op.op_toml),
                hint=seam.builtin_hint(shadowing[0]))


def compare_registered(op: OpSpec, registered: Iterable[str], library: str) -> None:
    """Raise unless the library registers exactly the declared names."""
    declared = set(op.registered_names)
    actual = set(registered)
    if declared == actual:
        return
    parts = []
    if declared - actual:
        parts.append(f"declared but not registered: {', '.join(sorted(declared - actual))}")
    if actual - declared:
        parts.append(f"registered but not declared: {', '.join(sorted(actual - declared))}")
    raise NameConflictError(
        f"{library} does not register the names its op.toml declares ({'; '.join(parts)})",
        where=str(op.op_toml),
        hint="make op.toml's names match the REGISTER_OP / plugin creator names; "
             "the previous bundle was kept")
