"""The CI examples (examples/ci/) call only commands that exist, with options the parser
accepts, in the container user's context (root in a bare Debian image: no sudo), and the
GitLab pipeline keeps the venv and passes the build on instead of rebuilding it per job."""

from __future__ import annotations

import re
import shlex

import pytest

from tests.conftest import REPO
from trtis_build.cli import build_parser

yaml = pytest.importorskip("yaml")  # the dev extra installs PyYAML

GITHUB = REPO / "examples" / "ci" / "github-actions.yml"
GITLAB = REPO / "examples" / "ci" / "gitlab-ci.yml"


def github_lines() -> list[str]:
    workflow = yaml.safe_load(GITHUB.read_text())
    return [step["run"] for job in workflow["jobs"].values() for step in job["steps"] if "run" in step]


def gitlab_lines() -> list[str]:
    pipeline = yaml.safe_load(GITLAB.read_text())
    scripts = list(pipeline["default"]["before_script"])
    for job in pipeline.values():
        if isinstance(job, dict) and "script" in job:
            scripts += job["script"]
    return scripts


def commands(script: str) -> list[str]:
    """One command per line, continuation lines joined, CI variables given example values."""
    script = re.sub(r"\\\n\s*", " ", script)
    script = re.sub(r"\$\{\{[^}]*\}\}", "1", script)                    # ${{ github.sha }}
    script = re.sub(r"\$\{BASE_IMAGE:\+[^}]*\}", "", script)            # optional --base
    script = re.sub(r"\$\{?[A-Z_]+\}?", "registry.example.com/team/x", script)
    return [line.strip() for line in script.splitlines() if line.strip() and not line.strip().startswith("#")]


ALL = [(path.name, command) for path, lines in ((GITHUB, github_lines()), (GITLAB, gitlab_lines()))
       for script in lines for command in commands(script)]


@pytest.mark.parametrize("where, command", ALL)
def test_every_command_exists_and_runs_as_the_container_user(where, command):
    assert not re.search(r"(^|[;&|]\s*)sudo\b", command), f"{where}: sudo in a root container: {command}"
    words = shlex.split(command.split(">")[0].split("|")[0])
    if words[0] == ".venv/bin/trtis-build":
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as exc:
            pytest.fail(f"{where}: `{command}` is not a valid trtis-build command line ({exc})")
    for word in words:
        if word.startswith(("scripts/", "examples/")):
            assert (REPO / word).is_file(), f"{where}: {word} does not exist"


def test_the_examples_call_trtis_build_at_all():
    called = [c for _, c in ALL if c.startswith(".venv/bin/trtis-build ")]
    assert {c.split()[1] for c in called} >= {"ops", "smoke", "server"}


def test_gitlab_keeps_the_venv_and_passes_the_build_on():
    pipeline = yaml.safe_load(GITLAB.read_text())
    assert ".venv" in pipeline["default"]["cache"]["paths"]
    assert "PIP_CACHE_DIR" in pipeline["variables"]
    assert "build/" in pipeline["ops-build"]["artifacts"]["paths"]


@pytest.mark.parametrize("path", [GITHUB, GITLAB], ids=lambda p: p.name)
def test_the_examples_share_a_compiler_cache_in_a_redis_service(path):
    from trtis_build.core.options import resolve_options

    data = yaml.safe_load(path.read_text())
    variables = data.get("env") or data.get("variables")
    # The settings the tool reads (a misspelt value would fail every build of the pipeline).
    assert resolve_options(root=REPO, env={k: str(v) for k, v in variables.items() if k.startswith("TRTIS_BUILD_")
                                           and k != "TRTIS_BUILD_CACHE_DIR"}, cli={}).compiler_cache == "sccache"
    host = variables["SCCACHE_REDIS_ENDPOINT"].split("//")[1].split(":")[0]
    services = data["services"] if "services" in data else data["jobs"]["triton-ops"]["services"]
    names = [s.get("alias") for s in services] if isinstance(services, list) else list(services)
    assert host in names, f"{path.name}: {host} is not a service of the pipeline"
