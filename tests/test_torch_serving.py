"""Serving torch.export programs that call bundle operators: `model add --torch-program`, the
Python-backend runner with a real Triton (nvidia-pytriton's tritonserver 2.51) over HTTP and
gRPC, and the PyTorch-backend form with trtis-launch's LD_PRELOAD.

pytriton's tritonserver has only the Python backend. The pytorch_libtorch form is therefore
checked as text (it parses as a Triton ModelConfig, names platform and TorchScript order),
through trtis-launch --trtis-dry-run (its LD_PRELOAD and LD_LIBRARY_PATH), by running its
traced model.pt in the real server through the Python runner (TORCH_PROGRAM=model.pt), and
by the server's refusal naming the missing backend; only the Python-backend form is served
for real."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from trtis_build.core.errors import ModelError
from trtis_build.core.files import sha256_file
from trtis_build.frameworks.torch import serving as torch_repo
from trtis_build.serving.server import ServerSettings, TritonServer, group_alive, shm_regions

from .conftest import REPO, trtis

np = pytest.importorskip("numpy")
needs_torch = pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                                 reason="torch not installed (pip install '.[torch]')")
needs_server = [
    pytest.mark.server, pytest.mark.torch, pytest.mark.compile, needs_torch,
    pytest.mark.skipif(importlib.util.find_spec("pytriton") is None,
                       reason="nvidia-pytriton (tritonserver) not installed: pip install '.[server]'"),
    pytest.mark.skipif(importlib.util.find_spec("tritonclient") is None,
                       reason="tritonclient not installed: pip install '.[server]'"),
]

# ------------------------------------------------------------------ pure part: the archive as data


def _tensor(dtype, *sizes):
    dims = [{"as_int": s} if isinstance(s, int) else
            {"as_expr": {"expr_str": f"Symbol('{s}', positive=True, integer=True)", "hint": {"as_int": 8}}}
            for s in sizes]
    return {"dtype": dtype, "sizes": dims, "device": {"type": "cpu", "index": None}}


def _spec(kind, context, children):
    return {"type": kind, "context": json.dumps(context), "children_spec": children}


LEAF = {"type": None, "context": None, "children_spec": []}


def program_json(*, inputs=("x", "y"), kwargs=(), outputs=("sum", "difference"), out_kind="builtins.dict",
                 targets=("torch.ops.trtis.add_sub.default", "_operator.getitem"), dtype=7, nested=None):
    """The fields of torch.export's serialized program (schema 8.x) that model add reads."""
    names = list(inputs) + list(kwargs)
    in_spec = _spec("builtins.tuple", None, [_spec("builtins.tuple", None, [LEAF] * len(inputs)),
                                             _spec("builtins.dict", list(kwargs), [LEAF] * len(kwargs))])
    out_spec = _spec(out_kind, list(outputs) if out_kind == "builtins.dict" else None, [LEAF] * len(outputs))
    nodes = [{"target": target, "inputs": [], "outputs": []} for target in targets]
    if nested:  # a higher-order op whose branch is a graph of its own
        nodes.append({"target": "torch.ops.higher_order.cond",
                      "inputs": [{"arg": {"as_graph": {"graph": {"nodes": [{"target": nested}]}}}}]})
    values = {name: _tensor(dtype, "s0") for name in names}
    values.update({f"out_{i}": _tensor(dtype, "s0") for i in range(len(outputs))})
    return {
        "graph_module": {
            "graph": {"nodes": nodes, "tensor_values": values},
            "signature": {
                "input_specs": [{"parameter": {"arg": {"name": "p_w"}}}] +
                [{"user_input": {"arg": {"as_tensor": {"name": n}}}} for n in names],
                "output_specs": [{"user_output": {"arg": {"as_tensor": {"name": f"out_{i}"}}}}
                                 for i in range(len(outputs))]},
            "module_call_graph": [{"fqn": "", "signature": {
                "in_spec": json.dumps([1, in_spec]), "out_spec": json.dumps([1, out_spec]),
                "forward_arg_names": names}}]},
        "range_constraints": {"s0": {"min_val": 0, "max_val": None}},
    }


MANIFEST = {"schema": 1, "libraries": [
    {"op": "addsub", "framework": "torch", "path": "torch/libaddsub.so", "ops": ["trtis::add_sub"],
     "namespaces": ["trtis"], "sha256": "aa"},
    {"op": "addsub", "framework": "tensorflow", "path": "tensorflow/libaddsub.so", "ops": ["TRTISExampleAddSub"]}]}
TORCH_NAMESPACES = {"aten", "prims", "higher_order"}.__contains__


def test_ops_called_reads_nested_graphs_and_skips_python_builtins(pure):
    program = program_json(nested="torch.ops.aten.sin.default")
    assert torch_repo.ops_called(program) == {"trtis::add_sub.default", "higher_order::cond", "aten::sin.default"}


def test_classify_maps_bundle_operators_and_copies_only_their_library(pure):
    use = torch_repo.classify_ops({"trtis::add_sub.default", "aten::add.Tensor"}, MANIFEST, TORCH_NAMESPACES)
    assert use.custom == {"trtis::add_sub.default": "torch/libaddsub.so"}
    assert use.builtin == ("aten::add.Tensor",)
    assert [lib["path"] for lib in use.libraries] == ["torch/libaddsub.so"]


def test_an_operator_no_bundle_provides_is_an_error_naming_it(pure):
    with pytest.raises(ModelError) as info:
        torch_repo.classify_ops({"myteam::scale.default", "aten::add.Tensor"}, MANIFEST, TORCH_NAMESPACES,
                                bundle="the bundle /b")
    text = info.value.render()
    assert "myteam::scale.default" in text and "/b" in text and "ops/torch/<name>" in text
    # A namespace the bundle's library owns, without the operator: an older or other bundle.
    with pytest.raises(ModelError, match=r"trtis::mul\.default \(namespace of torch/libaddsub.so\)"):
        torch_repo.classify_ops({"trtis::mul.default"}, MANIFEST, TORCH_NAMESPACES)


def test_program_info_names_dtypes_and_dynamic_dims(pure):
    info = torch_repo.program_info(program_json(kwargs=("scale",)))
    assert [(s.name, s.data_type, s.shape) for s in info.signature.inputs] == [
        ("x", "TYPE_FP32", (-1,)), ("y", "TYPE_FP32", (-1,)), ("scale", "TYPE_FP32", (-1,))]
    assert [s.name for s in info.signature.outputs] == ["sum", "difference"]  # the dict's order
    assert info.positional == ("x", "y") and info.hints["x"] == (8,) and info.device == "cpu"
    assert torch_repo.other_shapes(info) == {"x": (11,), "y": (11,), "scale": (11,)}  # one value per symbol
    tuple_out = torch_repo.program_info(program_json(outputs=("a", "b"), out_kind="builtins.tuple"))
    assert [s.name for s in tuple_out.signature.outputs] == ["output_0", "output_1"]


@pytest.mark.parametrize("change, says", [
    (dict(dtype=13), "dtype 13"),                                   # bfloat16: no NumPy type
    (dict(outputs=('a"b', "c")), "cannot be a Triton tensor name"),  # would break config.pbtxt
    (dict(outputs=("out__1", "c")), "contains '__'"),               # the PyTorch backend's index syntax
    (dict(out_kind="collections.namedtuple"), "returns a collections.namedtuple"),
])
def test_program_interfaces_triton_cannot_serve_are_refused(pure, change, says):
    with pytest.raises(ModelError, match=says):
        torch_repo.program_info(program_json(**change), where="p.pt2")


def _parse(text: str):
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_both_configs_parse_as_triton_model_configs(pure):
    info = torch_repo.program_info(program_json(kwargs=("scale",)))
    python = _parse(torch_repo.python_config("m", info, 0))
    assert python.backend == "python" and python.parameters["TORCH_PROGRAM"].string_value == "model.pt2"
    assert python.parameters["TORCH_ARGS"].string_value == "x,y"
    pytorch = _parse(torch_repo.pytorch_config("m", info, 4))
    assert pytorch.platform == "pytorch_libtorch" and not pytorch.backend and pytorch.max_batch_size == 4
    # The traced forward takes the inputs by position and returns the outputs as a tuple:
    # both keep the program's order (strict config ordering), never sorted.
    assert [i.name for i in pytorch.input] == ["x", "y", "scale"]
    assert [o.name for o in pytorch.output] == ["sum", "difference"]
    assert pytorch.instance_group[0].kind == pytorch.instance_group[0].KIND_CPU


def test_files_that_are_not_programs_are_refused_clearly(tmp_path, pure):
    junk = tmp_path / "junk.pt2"
    junk.write_bytes(b"\x80\x04not a zip")
    with pytest.raises(ModelError, match="not a zip file"):
        torch_repo.read_program(junk)
    scripted = tmp_path / "scripted.pt"
    with zipfile.ZipFile(scripted, "w") as archive:
        archive.writestr("scripted/data.pkl", b"\x80\x04.")
        archive.writestr("scripted/code/__torch__.py", "def forward(self, x): ...")
    with pytest.raises(ModelError, match="TorchScript archive") as info:
        torch_repo.read_program(scripted)
    assert "torch.export.save" in info.value.hint
    broken = tmp_path / "broken.pt2"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("broken/models/model.json", "{not json")
    with pytest.raises(ModelError, match="cannot be read as a torch.export archive"):
        torch_repo.read_program(broken)


# ------------------------------------------------------------------ trtis-launch: LD_PRELOAD


def _bundle_with_torch_library(root: Path, library: Path, entry: dict) -> Path:
    (root / "torch").mkdir(parents=True)
    shutil.copy2(library, root / "torch" / "libaddsub.so")
    (root / "manifest.json").write_text(json.dumps({"schema": 1, "libraries": [entry], "kernel_libraries": []}))
    return root


def _repository(root: Path, **configs: str) -> Path:
    for name, text in configs.items():
        (root / name / "configs").mkdir(parents=True)
        (root / name / "config.pbtxt").write_text('name: "%s"\nbackend: "python"\n' % name)
        (root / name / "configs" / "pytorch.pbtxt").write_text(text)
    return root


def test_pytorch_backend_models_are_found_in_the_config_the_server_reads(tmp_path, pure):
    from trtis_server import frameworks

    repo = _repository(tmp_path / "models", a='platform: "pytorch_libtorch"\n', b='backend: "pytorch"\n')
    assert frameworks.pytorch_backend_models(["tritonserver", f"--model-repository={repo}"]) == []
    chosen = ["tritonserver", "--model-repository", str(repo), "--model-config-name=pytorch"]
    assert frameworks.pytorch_backend_models(chosen) == ["a", "b"]
    assert frameworks.pytorch_backend_models(["tritonserver", "--model-repository=s3://bucket/m"]) == []


def test_launch_environment_preloads_torch_libraries_only_for_the_pytorch_backend(tmp_path, pure, monkeypatch):
    from trtis_server import launch

    repo = _repository(tmp_path / "models", a='platform: "pytorch_libtorch"\n')
    paths = {"torch": ["/ops/torch/liba.so"], "tensorflow": ["/ops/tensorflow/libb.so"]}
    monkeypatch.setenv("LD_PRELOAD", "/usr/lib/libjemalloc.so")
    python = launch.environment(paths, "backend-config", "/ops", ["tritonserver", f"--model-repository={repo}"])
    assert python["LD_PRELOAD"] == "/usr/lib/libjemalloc.so" and python["TRTIS_TORCH_OP_LIBRARIES"] == "/ops/torch/liba.so"
    pytorch = launch.environment(paths, "backend-config", "/ops", ["tritonserver", f"--model-repository={repo}",
                                                                    "--model-config-name=pytorch"])
    assert pytorch["LD_PRELOAD"].split() == ["/ops/torch/liba.so", "/usr/lib/libjemalloc.so"]  # never TF's
    assert launch.environment(paths, "preload", "/ops")["LD_PRELOAD"].startswith("/ops/torch/liba.so")


# ------------------------------------------------------------------ integration

EXPORT = r'''
import sys, torch
sys.path.insert(0, sys.argv[3])
import trtis_build
op = trtis_build.load_bundle(sys.argv[1], framework="torch").op("trtis::add_sub")

# The example's meta kernel compares sizes through the stable ABI, which specializes a
# dynamic dimension; a Python fake keeps it symbolic for export (serving never runs it).
@torch.library.register_fake("trtis::add_sub")
def _(x, y):
    return torch.empty_like(x), torch.empty_like(x)

class Custom(torch.nn.Module):
    def forward(self, x, y):
        total, difference = op(x, y)
        return {"sum": total, "difference": difference}

class Builtin(torch.nn.Module):
    def forward(self, x, y):
        return {"sum": x + y, "difference": x - y}

n = torch.export.Dim("n")
example = (torch.randn(8), torch.randn(8))
for name, module in (("custom", Custom()), ("builtin", Builtin())):
    program = torch.export.export(module, example, dynamic_shapes={"x": {0: n}, "y": {0: n}})
    torch.export.save(program, f"{sys.argv[2]}/{name}.pt2")
'''


def make_torch_project(root: Path) -> Path:
    """The example torch op alone: its kernels (the TensorFlow example's) beside ops/."""
    shutil.copytree(REPO / "ops" / "torch" / "addsub", root / "ops" / "torch" / "addsub",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (root / "kernels").mkdir()
    for kernel in (REPO / "ops" / "tensorflow" / "addsub").glob("addsub_kernel.*"):
        shutil.copy2(kernel, root / "kernels" / kernel.name)
    op_toml = root / "ops" / "torch" / "addsub" / "op.toml"
    op_toml.write_text(op_toml.read_text().replace("../../tensorflow/addsub/", "../../../kernels/"))
    return root


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = make_torch_project(tmp_path_factory.mktemp("torch-serve"))
    trtis("ops", "build", "--no-cuda", cwd=root)
    (root / "programs").mkdir()
    subprocess.run([sys.executable, "-c", EXPORT, str(root / "build" / "bundle"), str(root / "programs"), str(REPO)],
                   check=True, timeout=300, capture_output=True)
    return root


@pytest.fixture(scope="module")
def repo(project):
    models = project / "models"
    trtis("model", "add", "addsub", "--torch-program", "programs/custom.pt2", cwd=project)
    # Built-ins only, no bundle, PyTorch-backend config as config.pbtxt.
    trtis("model", "add", "addsub_builtin", "--torch-program", "programs/builtin.pt2", "--backend", "pytorch",
          "--bundle", str(project / "no-bundle-here"), cwd=project)
    # The traced TorchScript form, served through the Python runner (the only backend here).
    shutil.copytree(models / "addsub", models / "addsub_ts")
    for config in (models / "addsub_ts" / "config.pbtxt", models / "addsub_ts" / "configs" / "python.pbtxt"):
        config.write_text(config.read_text().replace('name: "addsub"', 'name: "addsub_ts"')
                          .replace('"model.pt2"', '"model.pt"'))
    # Broken copies, one failure each.
    for name in ("changed", "dupe"):
        shutil.copytree(models / "addsub", models / name)
        for config in (models / name / "config.pbtxt", *(models / name / "configs").glob("*.pbtxt")):
            config.write_text(config.read_text().replace('name: "addsub"', f'name: "{name}"'))
    with open(models / "changed" / "1" / "ops" / "torch" / "libaddsub.so", "ab") as library:
        library.write(b"\0")  # still loads; only its sha256 tells
    # Another library (one byte differs) of the same namespace: the runner's guard must refuse it.
    ops = models / "dupe" / "1" / "ops"
    (ops / "torch" / "libaddsub2.so").write_bytes((ops / "torch" / "libaddsub.so").read_bytes() + b"\0")
    manifest = json.loads((ops / "manifest.json").read_text())
    manifest["libraries"].append({**manifest["libraries"][0], "path": "torch/libaddsub2.so",
                                  "sha256": sha256_file(ops / "torch" / "libaddsub2.so")})
    (ops / "manifest.json").write_text(json.dumps(manifest))
    return models


@pytest.fixture(scope="module")
def server(repo, tmp_path_factory):
    log = tmp_path_factory.mktemp("log") / "server.log"
    settings = ServerSettings(models_dir=repo, log_file=log, load_timeout=180, model_config_name="python")
    with TritonServer(settings) as srv:
        yield srv, srv.load_models(["addsub", "addsub_builtin", "addsub_ts", "changed", "dupe"])
        pgid, prefix = srv.pid, srv.shm_prefix
    assert not group_alive(pgid), "tritonserver or a stub survived teardown"
    assert not shm_regions(prefix), "shared memory left behind"


class TestTorchModels:
    """One built bundle, two exported programs, one repository and one server for all."""

    pytestmark = needs_server

    def test_model_add_copies_the_library_program_runner_and_both_forms(self, repo):
        model = repo / "addsub"
        manifest = json.loads((model / "1" / "ops" / "manifest.json").read_text())
        assert [lib["ops"] for lib in manifest["libraries"]] == [["trtis::add_sub"]]
        assert (model / "1" / "model.pt2").is_file() and (model / "1" / "model.pt").is_file()
        assert (model / "1" / "model.py").read_text() == (REPO / "server" / "runners" / "torch_program.py").read_text()
        assert (model / "config.pbtxt").read_text() == (model / "configs" / "python.pbtxt").read_text()
        pytorch = _parse((model / "configs" / "pytorch.pbtxt").read_text())
        assert pytorch.platform == "pytorch_libtorch" and [o.name for o in pytorch.output] == ["sum", "difference"]
        metadata = json.loads((model / "trtis-model.json").read_text())
        assert metadata["ops"]["custom"] == {"trtis::add_sub.default": "torch/libaddsub.so"}
        assert metadata["forms"] == {"python": "ok", "pytorch": "ok"}
        assert [i["name"] for i in metadata["signature"]["inputs"]] == ["x", "y"]
        builtin = repo / "addsub_builtin"
        assert not (builtin / "1" / "ops").exists()
        assert (builtin / "config.pbtxt").read_text() == (builtin / "configs" / "pytorch.pbtxt").read_text()

    def test_reference_outputs_match_numpy(self, repo):
        for name in ("addsub", "addsub_builtin"):
            with np.load(repo / name / "reference.npz") as data:
                x, y = data["input:x"], data["input:y"]
                assert x.shape == (8,)  # the size the program was exported with
                np.testing.assert_array_equal(data["output:sum"], x + y)
                np.testing.assert_array_equal(data["output:difference"], x - y)

    def test_an_operator_missing_from_the_bundle_is_named_and_nothing_is_written(self, project, tmp_path):
        empty = tmp_path / "bundle"
        empty.mkdir()
        manifest = json.loads((project / "build" / "bundle" / "manifest.json").read_text())
        (empty / "manifest.json").write_text(json.dumps({**manifest, "libraries": []}))
        models = tmp_path / "models"
        result = trtis("model", "add", "m", "--torch-program", str(project / "programs" / "custom.pt2"),
                       "--models", str(models), "--bundle", str(empty), cwd=project, check=False)
        assert result.returncode == 11, result.stderr
        assert "trtis::add_sub.default" in result.stderr and "ops/torch/<name>" in result.stderr
        assert "Traceback" not in result.stderr
        assert not models.exists() or not any(models.iterdir())

    def test_a_library_that_cannot_load_fails_the_run_and_leaves_nothing(self, project, tmp_path):
        # A manifest entry that says the library needs a newer torch: the runner refuses it in
        # the fresh process, after the model directory was staged; the staging is gone.
        bundle = tmp_path / "bundle"
        shutil.copytree(project / "build" / "bundle", bundle)
        manifest = json.loads((bundle / "manifest.json").read_text())
        manifest["libraries"][0]["torch"] = {"abi": "stable", "target": "9.0"}
        (bundle / "manifest.json").write_text(json.dumps(manifest))
        models = tmp_path / "models"
        (models / "m").mkdir(parents=True)
        (models / "m" / "config.pbtxt").write_text("kept\n")
        result = trtis("model", "add", "m", "--torch-program", str(project / "programs" / "custom.pt2"),
                       "--models", str(models), "--bundle", str(bundle), "--force", cwd=project, check=False)
        assert result.returncode == 11, result.stderr
        assert "cannot be loaded" in result.stderr and "targets torch 9.0" in result.stderr
        assert sorted(p.name for p in models.iterdir()) == ["m"]  # no scratch directory left
        assert (models / "m" / "config.pbtxt").read_text() == "kept\n"  # the old model stayed

    def test_a_file_that_is_not_a_program_leaves_nothing(self, project, tmp_path):
        junk = tmp_path / "model.pt2"
        junk.write_bytes(b"PK\x03\x04 truncated")
        models = tmp_path / "models"
        result = trtis("model", "add", "m", "--torch-program", str(junk), "--models", str(models), cwd=project,
                       check=False)
        assert result.returncode == 11 and "torch.export.save" in result.stderr
        assert not models.exists()

    def test_the_runner_uses_an_identical_preloaded_library_and_refuses_another(self, repo, tmp_path):
        """What a Python stub meets when trtis-launch preloads the image's op library for the
        PyTorch backend (the stub inherits LD_PRELOAD)."""
        import torch

        version = repo / "addsub" / "1"
        library = version / "ops" / "torch" / "libaddsub.so"
        other = tmp_path / "libother.so"
        other.write_bytes(library.read_bytes() + b"\0")
        env = {"LD_LIBRARY_PATH": str(Path(torch.__file__).parent / "lib")}
        for preload, code in ((library, 0), (other, 3)):
            reference = tmp_path / f"{preload.stem}.npz"
            shutil.copy2(repo / "addsub" / "reference.npz", reference)
            result = subprocess.run([sys.executable, str(version / "model.py"), "--reference", str(reference),
                                     "--outputs", "sum,difference", "--args", "x,y"], capture_output=True,
                                    text=True, timeout=120, env={**os.environ, **env, "LD_PRELOAD": str(preload)})
            assert result.returncode == code, result.stderr
        assert "namespace(s) trtis are already registered" in result.stderr

    def test_trtis_launch_preloads_torch_libraries_for_pytorch_backend_models(self, repo, project, tmp_path,
                                                                               monkeypatch, capsys):
        from trtis_server import launch

        entry = json.loads((repo / "addsub" / "1" / "ops" / "manifest.json").read_text())["libraries"][0]
        bundle = _bundle_with_torch_library(tmp_path / "ops", project / "build" / "bundle" / entry["path"], entry)
        library = str(bundle / "torch" / "libaddsub.so")
        monkeypatch.delenv("LD_PRELOAD", raising=False)
        monkeypatch.setenv("LD_LIBRARY_PATH", "/given")

        def dry_run(*args):
            assert launch.main(["--trtis-dry-run", "tritonserver", f"--model-repository={repo}", *args],
                               bundle=str(bundle)) == 0
            return json.loads(capsys.readouterr().out)["env"]

        env = dry_run()  # addsub's config.pbtxt is the Python backend's, addsub_builtin's PyTorch's
        assert env["TRTIS_TORCH_OP_LIBRARIES"] == library and env["LD_PRELOAD"] == library
        libtorch = env["LD_LIBRARY_PATH"].split(":")
        assert (Path(libtorch[0]) / "libtorch_cpu.so").is_file() and libtorch[1:] == ["/given"]
        assert "LD_PRELOAD" not in dry_run("--model-config-name=python")  # every model's python config
        monkeypatch.setenv("TRTIS_TORCH_PRELOAD", "never")
        assert "LD_PRELOAD" not in dry_run()
        monkeypatch.setenv("TRTIS_TORCH_PRELOAD", "sometimes")
        assert launch.main(["--trtis-dry-run"], bundle=str(bundle)) == 3
        assert "TRTIS_TORCH_PRELOAD is 'sometimes'" in capsys.readouterr().err

    # -------------------------------------------------------------- a real server (the fixture above)

    def test_good_models_ready_broken_ones_refused_with_reasons(self, server):
        _, statuses = server
        for name in ("addsub", "addsub_builtin", "addsub_ts"):
            assert statuses[name].ready, statuses[name]
        assert "does not match its sha256" in statuses["changed"].reason
        assert "namespace(s) trtis are already registered" in statuses["dupe"].reason
        assert all("At:" not in s.reason for s in statuses.values())

    @pytest.mark.parametrize("protocol", ["http", "grpc"])
    @pytest.mark.parametrize("model", ["addsub", "addsub_builtin", "addsub_ts"])
    def test_infer_matches_numpy_at_sizes_other_than_the_export(self, server, protocol, model):
        import tritonclient.grpc as grpcclient
        import tritonclient.http as httpclient

        from trtis_build.serving.smoke import infer

        srv, _ = server
        module = httpclient if protocol == "http" else grpcclient
        rng = np.random.default_rng(5)
        for n in (1, 17, 1000):
            x, y = (rng.standard_normal(n).astype(np.float32) for _ in range(2))
            got = infer(module, srv.endpoints[protocol], model, {"x": x, "y": y}, ["sum", "difference"])
            np.testing.assert_array_equal(got["sum"], x + y)
            np.testing.assert_array_equal(got["difference"], x - y)

    def test_smoke_serves_torch_models_over_http_and_grpc(self, project, repo):
        result = trtis("smoke", "--json", "--model=addsub", "--model=addsub_ts", cwd=project, check=False)
        report = json.loads(result.stdout)
        assert result.returncode == 0, result.stdout + result.stderr
        for model in report["models"]:
            assert model["checks"] == {"http": "ok", "grpc": "ok", "metrics": "ok"}
            assert model["reference"] == "stored"

    def test_the_pytorch_form_is_explained_on_a_server_without_that_backend(self, project, repo):
        result = trtis("smoke", "--model=addsub_builtin", cwd=project, check=False, timeout=120)
        assert result.returncode == 1
        assert "unable to find backend library for backend 'pytorch'" in result.stdout
        assert "--model-config-name python" in result.stdout
