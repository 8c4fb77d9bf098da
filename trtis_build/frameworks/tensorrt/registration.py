"""How a plugin library hands its creators to TensorRT, decided from its adapter sources
(op.toml `registration` may state it, and is then checked against them):

- "getCreators": the library defines `extern "C" getCreators` (TensorRT's plugin-library
  interface, what IPluginRegistry::loadLibrary calls);
- "static": the library uses REGISTER_TENSORRT_PLUGIN (older code and samples). TensorRT's
  macro registers from a static initializer into a global registry that a plugin library
  cannot reach without linking libnvinfer; the build force-includes
  static_registration/trtis_static_registration.h, which makes the macro collect the creators
  for a generated getCreators, so the library is loaded and checked like any other."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Iterable, Mapping

from ..base import field_error, read_source

MODES = ("getCreators", "static")

_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.S)
_STATIC = re.compile(r"\bREGISTER_TENSORRT_PLUGIN\s*\(")
# A definition (with a body), not a declaration.
_GET_CREATORS = re.compile(r"\bgetCreators\s*\([^;{)]*\)\s*(?:noexcept\s*)?\{")


def _code(path: Path) -> str:
    return _COMMENTS.sub(" ", read_source(path))


def registration_mode(data: Mapping, op_toml: Path, adapter_sources: Iterable[Path]) -> str:
    texts = {path: _code(path) for path in adapter_sources}
    static = [path.name for path, text in texts.items() if _STATIC.search(text)]
    defines = [path.name for path, text in texts.items() if _GET_CREATORS.search(text)]
    stated = data.get("registration")
    if stated is not None and stated not in MODES:
        raise field_error(f"'registration' is {stated!r}", op_toml, "registration",
                          hint='write registration = "getCreators" or "static", or leave it out: the sources decide')
    if static and defines:
        raise field_error(f"the library registers its plugins two ways: REGISTER_TENSORRT_PLUGIN in "
                          f"{', '.join(static)} and a getCreators definition in {', '.join(defines)}",
                          op_toml, "registration",
                          hint="keep one: return every creator from getCreators, or remove getCreators and let "
                               "trtis-build collect the REGISTER_TENSORRT_PLUGIN creators")
    found = "static" if static else "getCreators"
    if stated == "getCreators" and static:
        raise field_error(f"registration = \"getCreators\", but {', '.join(static)} uses REGISTER_TENSORRT_PLUGIN, "
                          "whose static initializer needs TensorRT's global registry (libnvinfer), which a plugin "
                          "library loaded with loadLibrary does not link", op_toml, "registration",
                          hint='remove the registration line (or write "static"): trtis-build then collects those '
                               "creators into a generated getCreators")
    if stated == "static" and not static:
        raise field_error("registration = \"static\", but no adapter source uses REGISTER_TENSORRT_PLUGIN"
                          + (f" ({', '.join(defines)} defines getCreators)" if defines else ""),
                          op_toml, "registration", hint="remove the registration line: the sources decide")
    return found
