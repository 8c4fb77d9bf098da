"""Server images without a Docker engine: the OCI writer/reader (oci.py), registries
(registry.py), base images (base.py; the default base: default_base.py, its CPU torch for
torch ops: default_torch.py, Python distributions copied by RECORD: pydist.py), composing
the image (compose.py) and running it in a sandbox (run.py)."""
