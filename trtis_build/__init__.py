"""trtis-build: build custom TensorFlow ops, TensorRT plugins and PyTorch operators into a
checked bundle and a Triton Inference Server image.

Importing this package has no side effects; a framework is imported only by `load_bundle`.
"""

__version__ = "0.1.0"

__all__ = ["__version__", "load_bundle"]


def load_bundle(path=None, *, framework="tensorflow"):
    """Load the bundle's op libraries of one framework ("tensorflow" or "torch") into this
    process, refusing names already registered there (frameworks/<name>/loader.py). Returns
    an object whose .op(name) is the op to call."""
    from . import frameworks

    if framework not in frameworks.names():
        raise ValueError(f"load_bundle: framework must be one of {', '.join(frameworks.names())}, not {framework!r}")
    return frameworks.get(framework).load_bundle(path)
