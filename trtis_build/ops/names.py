"""Name rules: a TensorFlow op name or a TensorRT (name, version, namespace) is registered
by exactly one op in the tree and never shadows a framework built-in.

Checked twice: on the declarations before the compiler runs (`check_declared`), and on what
the built libraries really register (`compare_registered`, used by the bundle stage)."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

from .discover import OpSpec
from .errors import NameConflictError


def check_declared(ops: Iterable[OpSpec], tf_builtins: frozenset[str] = frozenset()) -> None:
    ops = list(ops)
    owners: dict[tuple[str, str], list[OpSpec]] = defaultdict(list)
    for op in ops:
        for name in op.tf_ops:
            owners[("tensorflow", name)].append(op)
        for plugin in op.plugins:
            owners[("tensorrt", str(plugin))].append(op)
    for (framework, name), declared_by in sorted(owners.items()):
        if len(declared_by) > 1:
            files = " and ".join(str(op.op_toml) for op in declared_by)
            what = "TensorFlow op" if framework == "tensorflow" else "TensorRT plugin"
            raise NameConflictError(
                f"{what} {name!r} is declared by {len(declared_by)} ops", where=files,
                hint="each name must belong to one op: rename one of them"
                     + ("" if framework == "tensorflow" else " or give it another namespace"))
    for op in ops:
        shadowing = sorted(set(op.tf_ops) & tf_builtins)
        if shadowing:
            raise NameConflictError(
                f"TensorFlow op name(s) {', '.join(shadowing)} are TensorFlow built-ins",
                where=f"{op.op_toml}, field 'ops'",
                hint="choose a name with a project prefix, e.g. 'MyTeam" + shadowing[0] + "'")


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
