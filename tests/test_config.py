"""Unit tests of option resolution: defaults < pyproject < environment < command line."""

import pytest

from trtis_build.core.options import find_project_root, parse_arch_list, resolve_options
from trtis_build.core.errors import ConfigError

pytestmark = pytest.mark.usefixtures("pure")


def test_layers_override_in_documented_order(tmp_path):
    (tmp_path / "pyproject.toml").write_text(
        '[tool.trtis-build]\ncuda-arch = "75"\njobs = 3\ntensorrt-namespace = "team"\n')
    options = resolve_options(root=tmp_path, env={"TRTIS_BUILD_CUDA_ARCH": "80,86"},
                              cli={"jobs": 7, "no_cuda": None})
    assert options.cuda_arch == ("80", "86")          # env beats pyproject
    assert options.jobs == 7                          # CLI beats pyproject
    assert options.tensorrt_namespace == "team"       # pyproject beats default
    assert options.bundle_dir == tmp_path / "build" / "bundle"
    assert options.sources["cuda_arch"] == "TRTIS_BUILD_CUDA_ARCH"


def test_unknown_pyproject_key_suggests_the_closest(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.trtis-build]\ncuda-archs = "75"\n')
    with pytest.raises(ConfigError, match="unknown setting 'cuda-archs'") as info:
        resolve_options(root=tmp_path, env={}, cli={})
    assert "did you mean 'cuda-arch'" in info.value.render()


def test_unknown_environment_variable_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="unknown setting 'jbos'"):
        resolve_options(root=tmp_path, env={"TRTIS_BUILD_JBOS": "2"}, cli={})


def test_variables_read_elsewhere_are_not_unknown_settings(tmp_path):
    env = {"TRTIS_BUILD_CACHE_DIR": "/tmp/c", "TRTIS_BUILD_VERBOSE": "1", "TRTIS_BUILD_DEBIAN_MIRROR": "http://m"}
    assert resolve_options(root=tmp_path, env=env, cli={}).jobs is None


def test_tensorrt_python_path_is_a_path_relative_to_the_project(tmp_path):
    (tmp_path / "pyproject.toml").write_text('[tool.trtis-build]\ntensorrt-python-path = ".venv/trt10"\n')
    options = resolve_options(root=tmp_path, env={}, cli={})
    assert options.tensorrt_python_path == tmp_path / ".venv" / "trt10"


@pytest.mark.parametrize("value, expected", [("90", ("90",)), ("75;sm_80, 90", ("75", "80", "90")),
                                             (["sm_90", "90"], ("90",))])
def test_arch_lists(value, expected):
    assert parse_arch_list(value, "test") == expected


@pytest.mark.parametrize("value", ["native", "", "sm_9x"])
def test_bad_arch_lists(value):
    with pytest.raises(ConfigError):
        parse_arch_list(value, "test")


def test_project_root_is_found_upwards(tmp_path):
    (tmp_path / "ops").mkdir()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert find_project_root(deep) == tmp_path.resolve()


def test_ops_test_passes_what_follows_the_separator_to_pytest():
    from trtis_build.cli import build_parser
    from trtis_build.cli.ops import pytest_arguments

    args = build_parser().parse_args(["ops", "test", "--", "-x", "-k", "addsub"])
    assert pytest_arguments(args.pytest_args) == ["-x", "-k", "addsub"]
    assert pytest_arguments(["-x"]) == ["-x"]


def test_the_command_alone_prints_the_full_help(capsys):
    from trtis_build.cli import main

    assert main([]) == 0
    out = capsys.readouterr().out
    assert "ops" in out and "doctor" in out and "server" in out
