"""Create the example SavedModels (generated, never committed as binaries):

  OUT/addsub_custom    x, y -> sum, difference through the bundle's TRTISExampleAddSub op
  OUT/addsub_builtin   the same signature with TensorFlow's built-in add and subtract
                       (the benchmark's baseline)

and, with --models, a Triton model repository built from them by `trtis-build model add`:

  python examples/make_savedmodel.py build/examples --models models

Both models take two float32 vectors of any length (signature shape [None]) and return
"sum" and "difference" of the same shape.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up chatter out

CUSTOM = "addsub_custom"
BUILTIN = "addsub_builtin"
OP_NAME = "TRTISExampleAddSub"


def save_models(out_dir: Path, addsub_op) -> dict[str, Path]:
    """Write both SavedModels under out_dir. `addsub_op` is the op library's module (the one
    tf.load_op_library returned) that provides TRTISExampleAddSub."""
    import tensorflow as tf

    spec = (tf.TensorSpec([None], tf.float32, name="x"), tf.TensorSpec([None], tf.float32, name="y"))

    class CustomAddSub(tf.Module):
        @tf.function(input_signature=spec)
        def serve(self, x, y):
            total, difference = addsub_op.trtis_example_add_sub(x=x, y=y)
            return {"sum": total, "difference": difference}

    class BuiltinAddSub(tf.Module):
        @tf.function(input_signature=spec)
        def serve(self, x, y):
            return {"sum": tf.add(x, y), "difference": tf.subtract(x, y)}

    paths = {}
    for name, module in ((CUSTOM, CustomAddSub()), (BUILTIN, BuiltinAddSub())):
        path = out_dir / name
        tf.saved_model.save(module, str(path), signatures={"serving_default": module.serve})
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="directory for the two SavedModels")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="bundle with TRTISExampleAddSub (default: build/bundle)")
    parser.add_argument("--models", type=Path, default=None,
                        help="also add both to this Triton model repository (as addsub and "
                             "addsub_builtin)")
    parser.add_argument("--force", action="store_true", help="replace existing models")
    args = parser.parse_args(argv)

    import trtis_build
    from trtis_build.core.errors import TrtisBuildError

    try:
        loaded = trtis_build.load_bundle(args.bundle)
        if OP_NAME not in loaded.op_modules:
            print(f"error: the bundle does not provide {OP_NAME}; run `trtis-build ops build`",
                  file=sys.stderr)
            return 1
        paths = save_models(args.out, loaded.op_modules[OP_NAME])
        for name, path in paths.items():
            print(f"saved {name}: {path}")
        if args.models:
            from trtis_build.frameworks.tensorflow import serving as model_repo

            for model_name, source in (("addsub", paths[CUSTOM]), ("addsub_builtin", paths[BUILTIN])):
                added = model_repo.add_model(model_name, source, models_dir=args.models,
                                             bundle_dir=args.bundle, force=args.force)
                print(f"added model {model_name}: {added.path}")
    except TrtisBuildError as error:
        print(error.render(), file=sys.stderr)
        return error.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
