"""Plugin test cases declared in op.toml, under the plugin they test:

    [[plugins]]
    name = "ScalePlugin"
    [[plugins.tests]]
    inputs = ["float32[2,3]"]          # types and shapes, one per input
    fields = { scale = 2.0 }           # PluginFields given to createPlugin (typed by the creator)
    outputs = ["float32[2,3]"]         # optional: the output types and shapes getOutputShapes must give

Read and validated here; the plugin check program (plugin_check --cases FILE) runs them: on
any machine creation, output types and shapes, formats, clone and serialization; with a GPU
also enqueue. Field values stay untyped until the creator's getFieldNames() says their type."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ..base import field_error, reject_unknown
from .names import PluginId

CASE_KEYS = {"inputs", "fields", "outputs"}
TENSOR_TYPES = ("float32", "float16", "bfloat16", "int8", "uint8", "int32", "int64", "bool")
TENSOR = re.compile(rf"({'|'.join(TENSOR_TYPES)})\[(\d+(?:,\d+){{0,7}})?\]")
FIELD_NAME = re.compile(r"[A-Za-z0-9_.\-]{1,255}")
# The check program reads cases as tab-separated lines (plugin_check_cases.h).
FORBIDDEN = "\t\n\r\0"


def _plain(text: str) -> bool:
    return not any(c in text for c in FORBIDDEN)


@dataclass(frozen=True)
class PluginTestCase:
    inputs: tuple[str, ...]
    fields: tuple[tuple[str, tuple[str, ...]], ...]
    outputs: tuple[str, ...]

    def as_dict(self) -> dict:
        return {"inputs": list(self.inputs), "fields": {k: list(v) for k, v in self.fields},
                "outputs": list(self.outputs)}

    @classmethod
    def from_dict(cls, data: Mapping) -> "PluginTestCase":
        """From a bundle manifest (hostile until validated: the same rules as op.toml's)."""
        where = Path("manifest.json")
        fields = data.get("fields", {})
        if not isinstance(fields, dict) or not all(
                isinstance(k, str) and FIELD_NAME.fullmatch(k) and isinstance(v, list) and v
                and all(isinstance(x, str) and _plain(x) for x in v)
                for k, v in fields.items()):
            raise field_error("a plugin test case's fields are not named lists of strings", where, "plugin_tests",
                              hint="rebuild the bundle with `trtis-build ops build`")
        return cls(inputs=_tensors(data.get("inputs"), where, "plugin_tests.inputs", required=True),
                   fields=tuple((name, tuple(values)) for name, values in fields.items()),
                   outputs=_tensors(data.get("outputs") or None, where, "plugin_tests.outputs", required=False))


def _tensors(value: Any, op_toml: Path, where: str, *, required: bool) -> tuple[str, ...]:
    if value is None and not required:
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise field_error(f"'{where}' must be a non-empty list of tensors like \"float32[2,3]\"", op_toml, where,
                          hint='write it as ["float32[2,3]", "int32[4]"]')
    specs = []
    for item in value:
        spec = item.replace(" ", "")
        if not TENSOR.fullmatch(spec):
            raise field_error(f"'{where}' has {item!r}, which is not TYPE[D0,D1,...]", op_toml, where,
                              hint=f"TYPE is one of {', '.join(TENSOR_TYPES)}; at most 8 extents, e.g. float32[2,3]")
        specs.append(spec)
    return tuple(specs)


def _field_text(name: str, value: Any, op_toml: Path, where: str) -> tuple[str, ...]:
    def one(item: Any) -> str:
        if isinstance(item, bool):
            raise field_error(f"field {name!r} is a boolean, which TensorRT fields cannot carry", op_toml, where,
                              hint="give 0 or 1 (an int32 field)")
        if isinstance(item, int):
            return str(item)
        if isinstance(item, float):
            return repr(item) if math.isfinite(item) else str(item)
        raise field_error(f"field {name!r} has a {type(item).__name__} among its numbers", op_toml, where,
                          hint="a field is a number, a list of numbers or a string")

    if isinstance(value, str):
        if not _plain(value):
            raise field_error(f"field {name!r} holds a tab, newline or NUL", op_toml, where)
        return (value,)
    if isinstance(value, list):
        if not value:
            raise field_error(f"field {name!r} is an empty list", op_toml, where, hint="leave the field out instead")
        return tuple(one(item) for item in value)
    return (one(value),)


def read_cases(entry: Mapping, op_toml: Path, where: str) -> tuple[PluginTestCase, ...]:
    """The [[plugins.tests]] of one [[plugins]] entry (`where` is its place, e.g. plugins[0])."""
    tests = entry.get("tests", [])
    if not isinstance(tests, list) or not all(isinstance(t, dict) for t in tests):
        raise field_error(f"'{where}.tests' must be [[plugins.tests]] tables", op_toml, f"{where}.tests",
                          hint="write each case as a [[plugins.tests]] table below its [[plugins]] entry")
    cases = []
    for index, test in enumerate(tests):
        at = f"{where}.tests[{index}]"
        reject_unknown(test, CASE_KEYS, op_toml, prefix=f"{at}.")
        fields = test.get("fields", {})
        if not isinstance(fields, dict):
            raise field_error(f"'{at}.fields' must be a table", op_toml, f"{at}.fields",
                              hint="write it as fields = { scale = 2.0, mode = 1 }")
        for name in fields:
            if not FIELD_NAME.fullmatch(name):
                raise field_error(f"field name {name!r} is not valid", op_toml, f"{at}.fields",
                                  hint="letters, digits, '_', '.' or '-'")
        cases.append(PluginTestCase(
            inputs=_tensors(test.get("inputs"), op_toml, f"{at}.inputs", required=True),
            fields=tuple((name, _field_text(name, value, op_toml, f"{at}.fields.{name}"))
                         for name, value in fields.items()),
            outputs=_tensors(test.get("outputs"), op_toml, f"{at}.outputs", required=False)))
    return tuple(cases)


def cases_file_text(cases: Iterable[tuple[PluginId, Sequence[PluginTestCase]]]) -> str:
    """plugin_check's --cases format (plugin_check/plugin_check_cases.h)."""
    lines = []
    for plugin, plugin_cases in cases:
        for case in plugin_cases:
            lines.append(f"case\t{plugin.name}\t{plugin.version}\t{plugin.namespace}")
            lines.append("inputs\t" + ";".join(case.inputs))
            lines += ["\t".join(("field", name, *values)) for name, values in case.fields]
            if case.outputs:
                lines.append("outputs\t" + ";".join(case.outputs))
            lines.append("end")
    return "".join(line + "\n" for line in lines)
