"""The top-level CMakeLists.txt (the IDE entry) builds the tool's plan as the tool does:
Release, the plan's C++ compiler, and libraries under its own binary dir, never build/out."""

import re
import shutil
import subprocess

import pytest

from tests.conftest import REPO, trtis

KERNEL = '#include <stdint.h>\nextern "C" int64_t trtis_twice(int64_t x) { return 2 * x; }\n'


@pytest.mark.compile
def test_ide_entry_builds_the_plan_release_with_its_compiler_into_its_own_tree(tmp_path):
    if not shutil.which("cmake") or not shutil.which("ninja"):
        pytest.fail("cmake and ninja are needed (scripts/setup.sh installs them)")
    # The IDE build is checked on the framework-free kernel object of a TensorFlow op: it
    # compiles without any framework installed.
    op = tmp_path / "ops" / "tensorflow" / "twice"
    op.mkdir(parents=True)
    (op / "op.toml").write_text('version = "1"\nops = ["Twice"]\n')
    (op / "twice_kernel.cc").write_text(KERNEL)
    (op / "twice_op.cc").write_text('#include "tensorflow/core/framework/op.h"\nREGISTER_OP("Twice");\n')
    trtis("ops", "build", "--dry-run", "--no-cuda", cwd=tmp_path)
    plan = tmp_path / "build" / "plan.cmake"
    compiler = re.search(r"set\(TRTIS_CXX_COMPILER \[=*\[(.*)\]=*\]\)", plan.read_text()).group(1)
    ide = tmp_path / "ide"
    subprocess.run(["cmake", "-S", REPO, "-B", ide, "-G", "Ninja", f"-DTRTIS_PLAN={plan}"],
                   check=True, capture_output=True, text=True, timeout=300)
    cache = (ide / "CMakeCache.txt").read_text()
    assert "CMAKE_BUILD_TYPE:STRING=Release" in cache
    assert re.search(rf"^CMAKE_CXX_COMPILER:\w+={re.escape(compiler)}$", cache, re.M), compiler
    subprocess.run(["cmake", "--build", ide, "--target", "tf_twice_cpu"], check=True, capture_output=True,
                   text=True, timeout=300)
    assert list(ide.rglob("twice_kernel.cc.o")), "the kernel object was not built in the IDE tree"
    assert (ide / "out").is_dir()                      # the plan's output dir, moved into this tree
    assert not (tmp_path / "build" / "out").exists()   # the tool's own outputs are untouched
