"""Run a composed image without a container engine: unpack it with umoci and start its
entrypoint inside its own root filesystem with bubblewrap. Everything the server loads
(tritonserver, backends, Python, TensorFlow, the bundle) comes from the image, so a library
the image lacks fails here as it would in production; the host's Python once hid a missing
libgomp that way (NOTES.md).

`server_shim` makes the image look like a tritonserver install to serve.TritonServer: a
`bin/tritonserver` that re-executes its arguments as the image's entrypoint in a sandbox
(host network, so the server's 127.0.0.1 ports are the host's; the model repository and
backend directory bound at their host paths), and a `backends/python` that points into the
image. `trtis-build smoke` logic then runs unchanged against the image.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path
from typing import Mapping

from ..core import process
from ..core.errors import ImageError, ToolchainError

# Arguments whose values are host paths the sandbox must see at the same place.
PATH_ARGS = ("--model-repository=", "--backend-directory=", "--repoagent-directory=", "--cache-directory=")
PASS_ENV = ("TF_CPP_MIN_LOG_LEVEL",)


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise ToolchainError(f"{tool} is needed to run an image without a container engine",
                             hint=f"apt-get install {package} (scripts/setup.sh does)")
    return path


def unpack(layout_dir: Path, ref: str, dest: Path) -> Path:
    """umoci unpack (as root: owners and modes as in the image); returns the rootfs."""
    umoci = require("umoci", "umoci")
    if dest.exists():
        shutil.rmtree(dest)
    process.run([umoci, "unpack", "--image", f"{layout_dir}:{ref}", str(dest)], stage="image",
                failure_message=f"umoci could not unpack {layout_dir}:{ref}",
                hint="check the image with `skopeo inspect oci:DIR:NAME`; unpacking needs root")
    return dest / "rootfs"


def image_config(layout_dir: Path, ref: str) -> dict:
    from .oci import Layout

    layout = Layout.open(layout_dir)
    _, manifest = layout.find_manifest(ref)
    return layout.read_json(manifest["config"]["digest"]).get("config", {})


def sandbox_command(rootfs: Path, config: Mapping, args: list[str], *, binds: list[str] = (),
                    env: Mapping[str, str] | None = None) -> list[str]:
    """bwrap argv that runs the image's entrypoint with `args` in `rootfs`."""
    bwrap = require("bwrap", "bubblewrap")
    command = [bwrap, "--bind", str(rootfs), "/", "--dev", "/dev", "--proc", "/proc",
               "--tmpfs", "/tmp", "--bind", "/dev/shm", "/dev/shm",
               "--unshare-pid", "--unshare-ipc", "--die-with-parent", "--clearenv",
               "--chdir", config.get("WorkingDir") or "/"]
    for item in config.get("Env") or []:
        key, _, value = item.partition("=")
        command += ["--setenv", key, value]
    command += ["--setenv", "HOME", "/root"]
    for key, value in (env or {}).items():
        command += ["--setenv", key, value]
    for path in dict.fromkeys(binds):
        command += ["--bind", path, path]
    entrypoint = list(config.get("Entrypoint") or [])
    return command + ["--"] + entrypoint + list(args)


_SHIM = '''#!{python}
# Written by trtis_build.imagerun: runs tritonserver's arguments as the entrypoint of the
# image unpacked at {rootfs}, inside bubblewrap. Not for production use.
import json, os, sys
SETTINGS = json.loads({settings!r})
args = sys.argv[1:]
binds = [a.split("=", 1)[1] for a in args if a.startswith(tuple(SETTINGS["path_args"]))]
command = SETTINGS["prefix"]
for key in SETTINGS["pass_env"]:
    if key in os.environ:
        command += ["--setenv", key, os.environ[key]]
for path in binds:
    if os.path.exists(path):
        command += ["--bind", path, path]
command += ["--"] + SETTINGS["entrypoint"] + args
os.execv(command[0], command)
'''


def server_shim(rootfs: Path, config: Mapping, shim_dir: Path) -> Path:
    """A tritonserver stand-in for serve.TritonServer(tritonserver=...): see the module doc."""
    full = sandbox_command(rootfs, config, [])
    split = full.index("--")
    settings = {"prefix": full[:split], "entrypoint": full[split + 1:], "path_args": list(PATH_ARGS),
                "pass_env": list(PASS_ENV)}
    python_backend = rootfs / "opt" / "tritonserver" / "backends" / "python"
    if not (python_backend / "libtriton_python.so").is_file():
        raise ImageError("the image has no Triton Python backend under /opt/tritonserver/backends/python",
                         where=rootfs, hint="use a base image with the Python backend to run smoke in it")
    (shim_dir / "bin").mkdir(parents=True, exist_ok=True)
    # Copies, not a symlink into the rootfs: the server sees this directory at its host path
    # inside the sandbox, where the rootfs path does not exist.
    backend_copy = shim_dir / "backends" / "python"
    shutil.rmtree(backend_copy, ignore_errors=True)
    shutil.copytree(python_backend, backend_copy, symlinks=True,
                    ignore=shutil.ignore_patterns("__pycache__"))
    shim = shim_dir / "bin" / "tritonserver"
    shim.write_text(_SHIM.format(python=sys.executable, rootfs=rootfs, settings=json.dumps(settings)))
    shim.chmod(0o755)
    return shim


def split_image_argument(text: str) -> tuple[Path, str | None]:
    """`DIR[:NAME]` (as `oci:DIR:NAME` without the scheme) -> (layout dir, image name or None)."""
    text = text.removeprefix("oci:")
    directory, _, name = text.rpartition(":") if ":" in Path(text).name else (text, "", "")
    return Path(directory or text).resolve(), name or None


def prepare(image: str, work_dir: Path, *, echo=None) -> Path:
    """Unpack the composed image `DIR[:NAME]` under work_dir (once per image digest: a 2 GB
    root filesystem takes a while) and return a tritonserver stand-in that runs it."""
    from .oci import Layout

    layout_dir, name = split_image_argument(image)
    if not (layout_dir / "index.json").is_file():
        raise ImageError(f"{layout_dir} is not an OCI image layout (no index.json)", where=layout_dir,
                         hint="compose one with `trtis-build server` (it writes build/image)")
    layout = Layout.open(layout_dir)
    desc, manifest = layout.find_manifest(name)
    config = layout.read_json(manifest["config"]["digest"]).get("config", {})
    target = work_dir / desc.digest.split(":", 1)[1][:16]
    done = target / ".unpacked"
    if not done.is_file():
        if echo:
            echo(f"unpacking {layout_dir}{':' + name if name else ''} ({desc.digest[:19]}) into {target}")
        ref = name or _ref_name(layout, desc.digest)
        unpack(layout_dir, ref, target / "bundle")
        done.write_text(desc.digest + "\n")
        for old in work_dir.iterdir():  # keep only this image: each is a whole root filesystem
            if old != target and old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
    return server_shim(target / "bundle" / "rootfs", config, target / "shim")


def _ref_name(layout, digest: str) -> str:
    """umoci addresses images by their ref.name annotation: the one the only image carries."""
    from .oci import REF_NAME

    for entry in layout.index().get("manifests", []):
        name = (entry.get("annotations") or {}).get(REF_NAME)
        if name:
            return name
    raise ImageError(f"the image {digest} in {layout.root} has no name (org.opencontainers.image.ref.name)",
                     where=layout.root, hint="name it: skopeo copy oci:DIR oci:DIR:NAME")
