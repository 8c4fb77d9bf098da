"""frameworks/probe_support/bare_import.py: the registry probes import a framework's compiled core without
its package __init__ (TensorFlow's and torch's probes use it; tests/test_tf_builtins.py and
tests/test_torch_ops.py show their checks still catch what they must)."""

import subprocess
import sys
from pathlib import Path

BARE_IMPORT = Path(__file__).resolve().parent.parent / "trtis_build" / "frameworks" / "probe_support" / "bare_import.py"


def _package(root: Path, core: str) -> None:
    package = root / "heavy"
    package.mkdir()
    (package / "__init__.py").write_text("import os\nos.environ['HEAVY_INIT'] = 'ran'\nfrom . import core as core\n")
    (package / "core.py").write_text(core)


def _run(root: Path) -> list[str]:
    code = (f"import importlib.util, os\n"
            f"spec = importlib.util.spec_from_file_location('b', {str(BARE_IMPORT)!r})\n"
            f"b = importlib.util.module_from_spec(spec); spec.loader.exec_module(b)\n"
            f"core = b.import_core('heavy', 'core')\n"
            f"print(core.VALUE, os.environ.get('HEAVY_INIT', 'skipped'))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                            env={"PYTHONPATH": str(root)}, check=True, timeout=60)
    return result.stdout.split()


def test_the_core_module_is_imported_without_the_package_init(tmp_path):
    _package(tmp_path, "VALUE = 'core'\n")
    assert _run(tmp_path) == ["core", "skipped"]


def test_a_core_that_needs_the_package_init_gets_the_whole_import(tmp_path):
    # Another layout: the core imports something only the package __init__ provides.
    _package(tmp_path, "import os\nif 'HEAVY_INIT' not in os.environ:\n    raise ImportError('needs init')\nVALUE = 'whole'\n")
    assert _run(tmp_path) == ["whole", "ran"]
