"""The README's command table and settings list are checked against the real parser and the
options module: every command it names exists, every option it shows is accepted by that
command, every command of the parser is in the table, and the settings keys are exactly
core/options.py's."""

from __future__ import annotations

import argparse
import re

from tests.conftest import REPO
from trtis_build.cli import build_parser
from trtis_build.core.options import _KEYS

README = (REPO / "README.md").read_text()
TABLE = README.split("## The command line", 1)[1].split("Every command exits", 1)[0]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _commands() -> dict[str, argparse.ArgumentParser]:
    """'ops build' -> its parser, for every leaf command."""
    found = {}
    for name, sub in _subparsers(build_parser()).items():
        leaves = _subparsers(sub)
        found.update({f"{name} {leaf}": p for leaf, p in leaves.items()} if leaves else {name: sub})
    return found


def _options(parser: argparse.ArgumentParser) -> set[str]:
    return {option for action in parser._actions for option in action.option_strings}


def _table_entries() -> list[tuple[str, list[str]]]:
    """(command, options shown) for each `trtis-build ...` / `cache ...` code span of the table."""
    entries = []
    commands = _commands()
    for span in re.findall(r"`([^`]+)`", TABLE):
        words = span.replace("\\|", "|").removeprefix("trtis-build ").split()
        if not words:
            continue
        for length in (2, 1):
            command = " ".join(words[:length])
            if command in commands:
                entries.append((command, [w.split("=")[0] for w in re.findall(r"(?<![\w-])--?[a-z][\w-]*", span)
                                          if w not in ("--",)]))
                break
    return entries


def test_every_option_in_the_table_is_accepted_by_its_command():
    commands = _commands()
    entries = _table_entries()
    assert len(entries) >= 10, entries
    for command, options in entries:
        unknown = [o for o in options if o not in _options(commands[command])]
        assert not unknown, f"README shows {unknown} for `trtis-build {command}`, which does not accept them"


def test_every_command_is_in_the_table():
    named = {command for command, _ in _table_entries()}
    missing = sorted(set(_commands()) - named)
    assert not missing, f"commands the README's table does not name: {missing}"


def test_the_settings_list_is_the_options_modules():
    keys_line = re.search(r"Keys: (.*?)\. Unknown keys", README, re.S).group(1)
    listed = set(re.findall(r"`([a-z-]+)`", keys_line))
    assert listed == set(_KEYS), (listed ^ set(_KEYS))


def test_every_argument_of_every_command_has_help():
    missing = [f"{name}: {' '.join(action.option_strings) or action.dest}"
               for name, parser in sorted(_commands().items()) for action in parser._actions
               if not action.help and not isinstance(action, argparse._HelpAction)]
    assert not missing, missing


def test_commands_show_only_the_options_they_use():
    commands = _commands()
    compile_only = {"-j", "--jobs", "--cuda-arch", "--no-cuda"}
    assert not _options(commands["doctor"]) & (compile_only | {"--bundle", "--build-dir"})
    assert not _options(commands["ops check"]) & (compile_only | {"--compiler-cache"})
    assert compile_only | {"--compiler-cache", "--bundle"} <= _options(commands["ops build"])
    assert compile_only <= _options(commands["ops test"])  # it builds when needed
