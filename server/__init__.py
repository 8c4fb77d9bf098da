"""trtis_server: what runs inside a server image that `trtis-build server` composes.

The image entrypoint (launch.py, installed as `trtis-launch`), the Python-backend model
runners (runners/), the rules for reading a bundle's manifest (manifest.py: sha256, needed
libraries, the TensorRT autoload-shim lookup) with the one ELF reader (elf.py), and the
autoload shim's C++ source (autoload/). README.md beside this file is the runtime contract.

Standard library only, Python 3.8+: the image's own python3 runs it and trtis-build is not
installed there. It never imports trtis_build; trtis_build imports these rules instead of
restating them.
"""
