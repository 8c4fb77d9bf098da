"""TensorRT header discovery, version parsing and the generated plugin config header.

Pure tests (no process) on tiny header trees written to tmp_path, plus the real kernel-lens
headers when that package is installed."""

from __future__ import annotations

import importlib.util
import os
import sys
import time
from pathlib import Path

import pytest

from trtis_build.frameworks.tensorrt import config_header, headers, plugin_check, registry
from trtis_build.frameworks.tensorrt.names import PluginId
from trtis_build.core.errors import OpSpecError, ToolchainError

# TensorRT >= 10.x style: the public macros point at per-edition ones.
INDIRECT = """
#define TRT_MAJOR_ENTERPRISE 10
#define TRT_MINOR_ENTERPRISE 14
#define TRT_PATCH_ENTERPRISE 1 /* patch */
#define TRT_BUILD_ENTERPRISE 48
#define NV_TENSORRT_MAJOR TRT_MAJOR_ENTERPRISE //!< TensorRT major version.
#define NV_TENSORRT_MINOR TRT_MINOR_ENTERPRISE //!< TensorRT minor version.
#define NV_TENSORRT_PATCH TRT_PATCH_ENTERPRISE
#define NV_TENSORRT_BUILD TRT_BUILD_ENTERPRISE
"""
# TensorRT 8.x and early 10.x style: numbers directly.
LITERAL = """
#define NV_TENSORRT_MAJOR 10 //!< TensorRT major version.
#define NV_TENSORRT_MINOR 3
#define NV_TENSORRT_PATCH 0U
#define NV_TENSORRT_BUILD 26
"""


def version_header(major: int, minor: int = 0, patch: int = 0) -> str:
    return (f"#define NV_TENSORRT_MAJOR {major}\n#define NV_TENSORRT_MINOR {minor}\n"
            f"#define NV_TENSORRT_PATCH {patch}\n")


def header_tree(include: Path, version_text: str) -> Path:
    include.mkdir(parents=True, exist_ok=True)
    (include / "NvInferVersion.h").write_text(version_text)
    for name in ("NvInferRuntime.h", "NvInferPluginBase.h", "NvInfer.h"):
        (include / name).write_text("// stand-in\n")
    return include


@pytest.mark.parametrize("text, expected", [(INDIRECT, (10, 14, 1, 48)), (LITERAL, (10, 3, 0, 26)),
                                            (version_header(8, 6, 1), (8, 6, 1, 0))])
def test_parse_version_handles_both_macro_styles(text, expected):
    assert headers.parse_version(text) == expected


@pytest.mark.parametrize("text", ["", "#define NV_TENSORRT_MAJOR SOMETHING_UNDEFINED\n",
                                  "#define NV_TENSORRT_MAJOR 10\n#define NV_TENSORRT_MINOR 2\n",
                                  "#define NV_TENSORRT_MAJOR NV_TENSORRT_MAJOR\n"])
def test_parse_version_refuses_what_it_cannot_resolve(text):
    with pytest.raises(ValueError):
        headers.parse_version(text)


def test_tensorrt_root_from_the_environment(tmp_path, pure):
    header_tree(tmp_path / "trt" / "include", INDIRECT)
    found = headers.find_tensorrt(env={"TENSORRT_ROOT": str(tmp_path / "trt")}, locations=[],
                                   use_kernel_lens=False)
    assert found == headers.TensorRTHeaders(include_dir=(tmp_path / "trt" / "include").resolve(),
                                             version="10.14.1", source="TENSORRT_ROOT", build=48)
    assert found.major == 10


def test_explicit_root_wins_over_the_environment(tmp_path, pure):
    header_tree(tmp_path / "a" / "include", LITERAL)
    header_tree(tmp_path / "b" / "include", INDIRECT)
    found = headers.find_tensorrt(tmp_path / "a", env={"TENSORRT_ROOT": str(tmp_path / "b")})
    assert (found.version, found.source) == ("10.3.0", "--tensorrt-root")


@pytest.mark.parametrize("layout", ["include", "include/x86_64-linux-gnu", "."])
def test_root_may_be_a_tar_package_the_debian_prefix_or_the_include_dir(tmp_path, layout, monkeypatch, pure):
    monkeypatch.setattr(headers, "_multiarch", lambda: "x86_64-linux-gnu")
    header_tree(tmp_path / "root" / layout, LITERAL)
    assert headers.find_tensorrt(tmp_path / "root").include_dir == (tmp_path / "root" / layout).resolve()


def test_named_root_without_headers_is_an_error_not_a_fallback(tmp_path, pure):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ToolchainError) as error:
        headers.find_tensorrt(env={"TENSORRT_ROOT": str(tmp_path / "empty")})
    message = error.value.render()
    assert "TENSORRT_ROOT" in message and str(tmp_path / "empty") in message
    assert "kernel-lens" in message  # the fix names the CI header source


def test_named_root_with_an_old_tensorrt_says_ipluginv3_needs_10(tmp_path, pure):
    header_tree(tmp_path / "old" / "include", version_header(8, 6, 1))
    with pytest.raises(ToolchainError, match=r"8\.6\.1 .* too old: IPluginV3 plugins need TensorRT 10\.0"):
        headers.find_tensorrt(tmp_path / "old")


def test_standard_locations_skip_an_old_tensorrt(tmp_path, pure):
    old = header_tree(tmp_path / "usr" / "include", version_header(8, 6, 1))
    new = header_tree(tmp_path / "opt" / "tensorrt" / "include", INDIRECT)
    found = headers.find_tensorrt(env={}, locations=[old, new], use_kernel_lens=False)
    assert found.include_dir == new.resolve() and found.source == f"system ({new})"


def test_nothing_found_is_none(tmp_path, pure):
    assert headers.find_tensorrt(env={}, locations=[tmp_path], use_kernel_lens=False) is None


def test_standard_locations_cover_the_debian_and_tar_layouts():
    locations = [str(p) for p in headers.standard_locations()]
    assert "/usr/include/x86_64-linux-gnu" in locations or "/usr/include/aarch64-linux-gnu" in locations
    assert "/usr/local/tensorrt/include" in locations and "/opt/tensorrt/include" in locations


@pytest.mark.tensorrt
@pytest.mark.skipif(importlib.util.find_spec("kernel_lens") is None,
                    reason="kernel-lens not installed (scripts/setup.sh installs it --no-deps)")
def test_kernel_lens_headers_are_found_without_importing_it(pure):
    before = set(sys.modules)
    found = headers.find_tensorrt(env={}, locations=[])
    assert found.version == "10.14.1" and found.build == 48
    assert found.source == "kernel-lens 2.0.1"
    assert (found.include_dir / "NvInferRuntime.h").is_file()
    # kernel_lens's __init__ imports torch: discovery must not run it.
    assert "kernel_lens" not in set(sys.modules) - before and "torch" not in set(sys.modules) - before


# --- trtis_plugin_config.h ---------------------------------------------------------------------

ADDSUB = PluginId("TRTISExampleAddSub", "1", "trtis")


def test_config_header_for_one_plugin_has_the_short_names():
    text = config_header.plugin_config_header("addsub", [ADDSUB])
    assert '#define TRTIS_PLUGIN_NAME "TRTISExampleAddSub"' in text
    assert '#define TRTIS_PLUGIN_VERSION "1"' in text
    assert '#define TRTIS_PLUGIN_NAMESPACE "trtis"' in text
    assert '#define TRTIS_PLUGIN_TRTISEXAMPLEADDSUB_NAMESPACE "trtis"' in text
    assert text.count("#ifndef TRTIS_PLUGIN_CONFIG_H_") == 1


def test_config_header_for_several_plugins_has_only_keyed_names():
    plugins = [PluginId("My-Op", "1", ""), PluginId("Other", "2", "ns"), PluginId("Other", "3", "ns")]
    text = config_header.plugin_config_header("multi", plugins)
    assert "TRTIS_PLUGIN_NAME " not in text  # ambiguous with several plugins: a compile error instead
    assert '#define TRTIS_PLUGIN_MY_OP_NAME "My-Op"' in text
    assert '#define TRTIS_PLUGIN_MY_OP_NAMESPACE ""' in text
    assert '#define TRTIS_PLUGIN_OTHER_V2_VERSION "2"' in text
    assert '#define TRTIS_PLUGIN_OTHER_V3_VERSION "3"' in text


def test_config_header_refuses_names_that_collide_as_macros():
    with pytest.raises(OpSpecError, match="TRTIS_PLUGIN_A_B_"):
        config_header.plugin_config_header("clash", [PluginId("a-b", "1", "x"), PluginId("a.b", "1", "x")])


def test_config_header_is_rewritten_only_when_it_changes(tmp_path):
    path = config_header.write_plugin_config(tmp_path, "addsub", [ADDSUB])
    old = time.time() - 100
    os.utime(path, (old, old))
    config_header.write_plugin_config(tmp_path, "addsub", [ADDSUB])
    assert path.stat().st_mtime == pytest.approx(old)  # unchanged text: no recompilation
    config_header.write_plugin_config(tmp_path, "addsub", [PluginId("TRTISExampleAddSub", "1", "other")])
    assert path.stat().st_mtime > old and '"other"' in path.read_text()


def test_runtime_version_is_read_from_package_metadata(tmp_path, pure):
    for name, version in (("tensorrt_lean_cu12_libs", "10.16.1.11"), ("tensorrt_lean_cu12_bindings", "10.16.1.11"),
                          ("numpy", "1.26.4")):
        info = tmp_path / f"{name}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    assert registry.runtime_version(tmp_path) == "10.16.1.11"
    assert registry.runtime_version(tmp_path / "empty") is None
