"""Run the example op through TensorFlow from the built bundle and print the result.

    .venv/bin/trtis-build ops build && .venv/bin/python examples/addsub_demo.py
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import trtis_build  # noqa: E402

bundle = trtis_build.load_bundle()  # $TRTIS_BUNDLE or build/bundle
add_sub = bundle.op("TRTISExampleAddSub")
x = np.array([1.0, 2.0, 3.0, 4.0], np.float32)
y = np.array([0.5, 0.25, 2.0, 8.0], np.float32)
total, difference = add_sub(x, y)
print(f"bundle:     {bundle.path.resolve()}")
print(f"x:          {x}")
print(f"y:          {y}")
print(f"sum:        {total.numpy()}")
print(f"difference: {difference.numpy()}")
assert np.array_equal(total.numpy(), x + y) and np.array_equal(difference.numpy(), x - y)
print("TRTISExampleAddSub matches NumPy")
