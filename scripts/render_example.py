"""Regenerate ops/tensorflow/addsub from the `ops add` template, so the shipped example and
what users scaffold never drift apart (tests/test_scaffold.py checks they are equal).

    python scripts/render_example.py
"""

from pathlib import Path

from trtis_build.ops.scaffold import render_template

EXAMPLE = Path(__file__).resolve().parent.parent / "ops" / "tensorflow" / "addsub"

for name, text in render_template("tensorflow", "addsub", "TRTISExampleAddSub").items():
    (EXAMPLE / name).write_text(text)
    print(f"wrote {EXAMPLE / name}")
