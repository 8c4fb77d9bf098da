"""trtis-build: build custom TensorFlow ops and TensorRT plugins into a checked bundle and
a Triton Inference Server image.

Importing this package has no side effects; TensorFlow is imported only by `load_bundle`.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_bundle"]


def load_bundle(path=None, **kwargs):
    """Load the bundle's TensorFlow op libraries into this process
    (frameworks/tensorflow/loader.py)."""
    from .frameworks.tensorflow.loader import load_bundle as _load_bundle

    return _load_bundle(path, **kwargs)
