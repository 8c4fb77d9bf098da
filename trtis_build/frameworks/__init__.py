"""Every framework behind one interface (base.Framework). The stages iterate over `all()`;
adding a framework is its folder here and one line below."""

from __future__ import annotations

from .base import Framework
from .tensorflow import TensorFlow
from .tensorrt import TensorRT
from .torch import Torch

# What `ops add` creates when no --framework is given.
DEFAULT = "tensorflow"

FRAMEWORKS: dict[str, Framework] = {framework.name: framework for framework in (
    TensorFlow(),
    TensorRT(),
    Torch(),
)}


def all() -> tuple[Framework, ...]:  # noqa: A001 - frameworks.all() reads as intended
    return tuple(FRAMEWORKS.values())


def get(name: str) -> Framework:
    return FRAMEWORKS[name]


def names() -> tuple[str, ...]:
    return tuple(FRAMEWORKS)
