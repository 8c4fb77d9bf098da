"""Exit codes per command, as the README's table gives them: each command run with a real
mistake (a usage error, a missing directory, a bad value) exits with the code of its kind,
read from the README, and says what went wrong on stderr."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO, trtis

TABLE = re.search(r"Exit codes: (.*?)\.\n\nOptions", (REPO / "README.md").read_text(), re.S).group(1)
CODES = {kind.strip(): int(code) for code, kind in re.findall(r"(\d+) ([^,]+?)(?:,|$| \()", " ".join(TABLE.split()))}

CASES = [  # (what the README calls it, arguments, something the message must say)
    ("configuration", ["ops", "build", "--no-such-option"], "unrecognized arguments"),
    ("configuration", ["trtis-build-no-such-command"], "invalid choice"),
    ("configuration", ["ops", "build"], "no ops found"),
    ("configuration", ["ops", "build", "-j", "0"], "positive integer"),
    ("configuration", ["ops", "build", "--compiler-cache", "ccache"], "compiler-cache must be one of"),
    ("configuration", ["cache", "clean", "everything"], "no cache named"),
    ("bundle check", ["ops", "check", "--bundle", "/nonexistent-bundle"], "no bundle"),
    ("server", ["smoke", "--models", "/nonexistent-models"], "does not exist"),
    ("server", ["serve", "--models", "/nonexistent-models"], "does not exist"),
    ("image", ["server", "--bundle", "/nonexistent-bundle"], "no bundle"),
    ("model add", ["model", "add", "m", "--savedmodel", "/nonexistent-savedmodel"], "nonexistent-savedmodel"),
]


def test_the_readme_lists_the_codes_the_cases_use():
    assert {kind for kind, _, _ in CASES} <= set(CODES), CODES


@pytest.mark.parametrize("kind, args, said", CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_each_mistake_exits_with_its_kinds_code(tmp_path, kind, args, said):
    (tmp_path / "ops").mkdir()
    result = trtis(*args, cwd=tmp_path, check=False)
    assert result.returncode == CODES[kind], (kind, result.returncode, result.stderr)
    assert said in result.stderr, result.stderr
    assert "Traceback" not in result.stderr
