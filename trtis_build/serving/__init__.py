"""Serving: a real Triton server started on the model repository (server.py) and the smoke
test that infers every model over HTTP and gRPC (smoke.py). A framework's model forms live in
frameworks/<name>/serving.py."""
