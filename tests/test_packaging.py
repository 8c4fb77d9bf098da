"""The package's metadata says what the tool supports: requires-python admits exactly the
Python versions the default base image can carry (a Debian release's own python3)."""

from __future__ import annotations

import tomllib

from packaging.specifiers import SpecifierSet

from tests.conftest import REPO
from trtis_build.image.default_base import SUITES


def test_requires_python_is_the_default_bases_pythons():
    spec = SpecifierSet(tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["requires-python"])
    candidates = [f"3.{minor}" for minor in range(8, 16)]
    assert [v for v in candidates if spec.contains(f"{v}.0")] == sorted(SUITES, key=lambda v: int(v.split(".")[1]))
