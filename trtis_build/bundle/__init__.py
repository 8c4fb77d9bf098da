"""Stage 5: the checked bundle: what the build made is verified (verify.py: registered names,
needed libraries, CUDA code via fatbin.py), described (manifest.py) and published atomically
(publish.py, whose `build` runs the whole pipeline); `ops check` re-checks it (check.py)."""
