"""For the registry probes (run as scripts under a framework's own interpreter, so standard
library only; each probe puts this directory, which holds nothing else, on sys.path): a
framework's compiled core imported without its package's __init__.

The registries a custom-op library adds to belong to the framework's runtime (TensorFlow's
C API, torch's dispatcher); the package __init__ builds the Python API around them (tf.*,
Keras, torch's Python registrations) and is most of a 2-3 s import. The package is entered
as a bare namespace over its own directory, so its submodules import as they are; where
that fails (another layout), the whole package is imported instead.
"""

import importlib
import importlib.util
import sys
import types


def import_core(package: str, module: str):
    """`package.module`, imported with `package` entered bare (or, failing that, whole)."""
    if package not in sys.modules:
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            bare = types.ModuleType(package)
            bare.__path__ = list(spec.submodule_search_locations)
            sys.modules[package] = bare
            try:
                return importlib.import_module(f"{package}.{module}")
            except ImportError:
                for name in [n for n in sys.modules if n == package or n.startswith(package + ".")]:
                    del sys.modules[name]
        importlib.import_module(package)
    return importlib.import_module(f"{package}.{module}")
