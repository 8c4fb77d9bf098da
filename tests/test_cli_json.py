"""`--json`: stdout holds one JSON object in both outcomes; a failure is the error as data
(kind, stage, message, where, fix, exit code) beside the paragraph on stderr."""

import json

import pytest

from tests.conftest import trtis


def test_a_failed_command_with_json_prints_the_error_as_data(tmp_path):
    result = trtis("ops", "build", "--json", cwd=tmp_path, check=False)
    error = json.loads(result.stdout)["error"]
    assert result.returncode == error["exit_code"] == 2
    assert error["kind"] == "ConfigError" and "no ops found" in error["message"]
    assert "trtis-build ops add" in error["fix"]
    assert "error [config]: no ops found" in result.stderr  # the paragraph is still there


def test_without_json_stdout_stays_empty_on_failure(tmp_path):
    result = trtis("ops", "build", cwd=tmp_path, check=False)
    assert result.returncode == 2 and result.stdout == ""


def test_usage_errors_and_bugs_with_json_are_data_too(tmp_path, monkeypatch, capsys):
    result = trtis("ops", "build", "--json", "--cuda-arch", cwd=tmp_path, check=False)
    error = json.loads(result.stdout)["error"]
    assert result.returncode == error["exit_code"] == 2 and error["kind"] == "UsageError"
    assert "--cuda-arch" in error["message"] and "usage:" in result.stderr
    result = trtis("ops", "build", "--cuda-arch", cwd=tmp_path, check=False)  # without --json: no data
    assert result.returncode == 2 and result.stdout == ""

    from trtis_build import cli

    def broken(args):
        raise ZeroDivisionError("a bug")

    parser = cli.build_parser()
    args = parser.parse_args(["ops", "list", "--json"])
    monkeypatch.setattr(cli, "build_parser", lambda: _FixedParser(parser, args, broken))
    monkeypatch.chdir(tmp_path)
    assert cli.main(["ops", "list", "--json"]) == 1
    out, err = capsys.readouterr()
    error = json.loads(out)["error"]
    assert error["kind"] == "InternalError" and "ZeroDivisionError: a bug" in error["message"]
    assert "Traceback" in err and "please report it" in err


class _FixedParser:
    """build_parser's stand-in: the real parse, with a handler that fails like a bug."""

    def __init__(self, parser, args, handler):
        self.parser, self.args, self.handler = parser, args, handler

    def parse_args(self, argv):
        self.args.handler = self.handler
        return self.args

    def print_help(self):
        self.parser.print_help()


def test_a_result_is_not_followed_by_an_error_object(tmp_path):
    (tmp_path / "ops").mkdir()
    result = trtis("ops", "list", "--json", cwd=tmp_path, check=False)
    assert result.returncode == 0 and json.loads(result.stdout) == []


def test_ninja_progress_is_throttled_when_stderr_is_no_terminal():
    from trtis_build.builder.driver import _throttled_progress

    now, echoed, seen = [0.0], [], []
    on_line = _throttled_progress(echoed.append, seen.append, every=10, clock=lambda: now[0])
    for second, line in ((1, "[1/9 1s] Building CXX a.o"), (5, "[2/9 5s] Building CXX b.o"), (11, "warning: x"),
                         (12, "[3/9 12s] Building CXX c.o"), (15, "[4/9 15s] x"), (23, "[5/9 23s] Linking y.so")):
        now[0] = second
        on_line(line)
    assert len(seen) == 6  # every line still reaches the build's own callback
    assert echoed == ["  compile      [3/9 12s] Building CXX c.o", "  compile      [5/9 23s] Linking y.so"]


def test_ops_test_names_the_extra_that_brings_pytest(monkeypatch):
    import importlib.util

    from trtis_build.core.errors import ToolchainError
    from trtis_build.testing import op_tests

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "pytest" else real(name, *a))
    with pytest.raises(ToolchainError, match="not installed") as error:
        op_tests.require_pytest()
    assert "trtis-build[dev]" in error.value.hint and error.value.exit_code == 4
