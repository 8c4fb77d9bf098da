"""Strict mode (TRTIS_TEST_STRICT=1, what .ci/run sets): a skipped test fails the run, except a
`gpu` test; without it a skip stays a skip. Checked on a throwaway test file with this suite's
conftest loaded as a plugin."""

import os
import subprocess
import sys

from tests.conftest import REPO

SAMPLE = '''
import pytest

def test_tool_missing():
    pytest.skip("no such tool")

@pytest.mark.gpu
def test_needs_a_gpu():
    pytest.skip("no GPU")
'''


def run_sample(tmp_path, strict: bool, sample: str = SAMPLE):
    (tmp_path / "test_sample.py").write_text(sample)
    env = {**os.environ, "TRTIS_TEST_STRICT": "1" if strict else "0", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "tests.conftest", "-p", "no:cacheprovider",
                           "-o", "markers=gpu: gpu", "--rootdir", str(tmp_path), str(tmp_path / "test_sample.py")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_strict_mode_fails_skips_but_gpu_ones(tmp_path):
    result = run_sample(tmp_path, strict=True)
    assert result.returncode == 1, result.stdout
    assert "1 failed, 1 skipped" in result.stdout
    assert "strict mode (TRTIS_TEST_STRICT=1): skipped" in result.stdout and "no such tool" in result.stdout


def test_without_strict_mode_skips_stay_skips(tmp_path):
    result = run_sample(tmp_path, strict=False)
    assert result.returncode == 0, result.stdout
    assert "2 skipped" in result.stdout


def test_ci_runs_strict():
    assert "export TRTIS_TEST_STRICT=1" in (REPO / ".ci" / "run").read_text()


def test_a_module_skipped_at_import_fails_too(tmp_path):
    result = run_sample(tmp_path, strict=True, sample='import pytest\npytest.importorskip("no_such_module_here")\n')
    assert result.returncode != 0 and "module skipped" in result.stdout, result.stdout
