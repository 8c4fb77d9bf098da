"""Server images without a Docker engine: the OCI writer/reader (oci.py), registries
(registry.py), base images (base.py, default_base.py), composing the image (compose.py) and
running it in a sandbox (run.py)."""
