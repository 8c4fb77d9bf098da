"""Regenerate the shipped examples from the `ops add` templates, so the examples and what
users scaffold never drift apart (tests/test_scaffold.py and tests/test_torch_ops.py check
they are equal):

    python scripts/render_example.py

ops/tensorflow/addsub is the TensorFlow template whole; ops/torch/addsub takes the torch
template's adapter and test (its op.toml shares the TensorFlow example's kernels instead).
"""

from pathlib import Path

from trtis_build.ops.scaffold import render_template

OPS = Path(__file__).resolve().parent.parent / "ops"

for name, text in render_template("tensorflow", "addsub", "TRTISExampleAddSub").items():
    (OPS / "tensorflow" / "addsub" / name).write_text(text)
    print(f"wrote {OPS / 'tensorflow' / 'addsub' / name}")
torch_files = render_template("torch", "addsub", "trtis::add_sub")
for name in ("addsub_op.cc", "test_addsub.py"):
    (OPS / "torch" / "addsub" / name).write_text(torch_files[name])
    print(f"wrote {OPS / 'torch' / 'addsub' / name}")
