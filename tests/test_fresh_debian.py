"""scripts/fresh_debian_check.sh (issue 16), checked cheaply: it parses, its root is a minimal
variant that gets nothing setup.sh should install, it runs the README's quick start verbatim,
and its sandbox binds nothing of the host writable but the root. The check itself (minutes,
gigabytes) is not run here: benchmarks/results/fresh-debian-*.log records a real run."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest

from .conftest import REPO

SCRIPT = REPO / "scripts" / "fresh_debian_check.sh"
SETUP = REPO / "scripts" / "setup.sh"


def bash_array(path, name: str) -> list[str]:
    """The words of a one-line or multi-line `NAME=(...)` assignment in a bash script."""
    match = re.search(rf"^{name}=\((.*?)\)", path.read_text(), re.MULTILINE | re.DOTALL)
    assert match, f"{name}=(...) not found in {path.name}"
    body = "\n".join(line.split("#")[0] for line in match.group(1).splitlines())
    return shlex.split(body)


def dry_run(*args: str) -> list[str]:
    result = subprocess.run(["bash", str(SCRIPT), "--dry-run", "--dir", "/tmp/fresh-debian-test", *args],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return shlex.split(result.stdout)


def test_the_script_parses():
    result = subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr


def test_the_root_is_minimal_and_gets_nothing_setup_installs():
    text = SCRIPT.read_text()
    variant = re.search(r"^VARIANT=(\S+)", text, re.MULTILINE).group(1)
    assert variant in ("minbase", "apt"), variant
    setup_packages = set(bash_array(SETUP, "DEBIAN_PACKAGES"))
    assert {"python3", "python3-venv", "g++"} <= setup_packages
    # Anything the check root is given up front would hide a package setup.sh forgot.
    assert bash_array(SCRIPT, "ROOT_INCLUDE") == []


def test_it_runs_the_readme_quick_start_verbatim():
    commands = bash_array(SCRIPT, "README_COMMANDS")
    assert " && ".join(commands) in (REPO / "README.md").read_text()
    argv = dry_run()
    assert argv[-3:] == ["/bin/bash", "-c", f"cd /src && {commands[0]}"]


def test_bwrap_binds_only_the_root_writable():
    argv = dry_run("--mode", "bwrap")
    assert argv[0] == "bwrap"
    writable = [argv[i + 1:i + 3] for i, word in enumerate(argv) if word in ("--bind", "--dev-bind")]
    assert writable == [["/tmp/fresh-debian-test/root", "/"]]
    assert "--clearenv" in argv and "--die-with-parent" in argv
    # The pip configuration and its directories come in read-only; no host path is a mount point
    # under /etc/ssl (a package setup.sh installs, ca-certificates, writes there).
    read_only = [argv[i + 2] for i, word in enumerate(argv) if word == "--ro-bind"]
    assert not [path for path in read_only if path.startswith("/etc/ssl")]


@pytest.mark.parametrize("mode", ["bwrap", "chroot"])
def test_both_modes_run_the_same_command(mode):
    argv = dry_run("--mode", mode)
    assert argv[0] == ("bwrap" if mode == "bwrap" else "unshare")
    if mode == "chroot":  # its mounts and processes live in namespaces that go with it
        assert {"--mount", "--pid", "--fork"} <= set(argv[:argv.index("--")])
    assert argv[-1] == "cd /src && bash scripts/setup.sh"
