"""Unit tests of `ops add` (no compiler: the integration tests build scaffolded ops)."""

import pytest

from trtis_build.core.errors import ScaffoldError
from trtis_build.ops.scaffold import render_template, scaffold

from .conftest import EXAMPLE_TF

pytestmark = pytest.mark.usefixtures("pure")


@pytest.mark.parametrize("name", ["", "..", "../evil", "a/b", "9lives", "with-dash", "class", "Upper", "naïve"])
def test_invalid_names_write_nothing(tmp_path, name):
    with pytest.raises(ScaffoldError):
        scaffold(tmp_path, name)
    assert not (tmp_path / "ops").exists() or not any((tmp_path / "ops").rglob("*.cc"))


def test_existing_directory_is_left_untouched(tmp_path):
    existing = tmp_path / "ops" / "tensorflow" / "mine"
    existing.mkdir(parents=True)
    (existing / "keep.cc").write_text("precious")
    with pytest.raises(ScaffoldError, match="already exists"):
        scaffold(tmp_path, "mine")
    assert [p.name for p in existing.iterdir()] == ["keep.cc"]
    assert (existing / "keep.cc").read_text() == "precious"


def test_scaffold_creates_a_complete_op(tmp_path):
    created = scaffold(tmp_path, "my_scale")
    names = sorted(p.name for p in created.iterdir())
    assert names == ["my_scale_kernel.cc", "my_scale_kernel.cu", "my_scale_kernel.h", "my_scale_op.cc",
                     "op.toml", "test_my_scale.py"]
    assert 'ops = ["MyScale"]' in (created / "op.toml").read_text()
    assert "trtis_my_scale_cuda" in (created / "my_scale_kernel.cu").read_text()
    assert not list(tmp_path.glob("ops/tensorflow/.*"))  # no staging directory left


def test_no_cuda_leaves_out_the_cuda_kernel(tmp_path):
    created = scaffold(tmp_path, "cpu_only", cuda=False)
    assert not list(created.glob("*.cu"))


def test_registered_name_already_taken_is_refused(tmp_path):
    scaffold(tmp_path, "first", op_name="Shared")
    with pytest.raises(ScaffoldError, match="already registered"):
        scaffold(tmp_path, "second", op_name="Shared")
    assert not (tmp_path / "ops" / "tensorflow" / "second").exists()


def test_shipped_example_is_the_template_rendered():
    """The example op is what `ops add addsub --op-name TRTISExampleAddSub` creates
    (regenerate with scripts/render_example.py after editing the template)."""
    rendered = render_template("tensorflow", "addsub", "TRTISExampleAddSub")
    shipped = {p.name: p.read_text() for p in EXAMPLE_TF.iterdir() if p.is_file()}
    assert rendered == shipped
