"""Unit tests of the serving stages' pure parts: op classification, signature -> Triton
config, server command line and environment, smoke comparisons. No process starts here
(the `pure` fixture fails a test that tries)."""

from __future__ import annotations

import socket
from pathlib import Path
from types import SimpleNamespace as NS

import pytest

from trtis_build.frameworks.tensorflow import serving as model_repo
from trtis_build.serving import server as serve
from trtis_build.serving import smoke
from trtis_build.core.errors import ServerError
from trtis_build.core.errors import ModelError
from trtis_build.frameworks.tensorflow.serving import Signature, TensorSpec

MANIFEST = {
    "schema": 1, "trtis_build_version": "0.1.0", "toolchain": {"fingerprint": "x"},
    "cuda": {"enabled": False}, "kernel_libraries": [{"path": "kernels/tensorflow-addsub.so"}],
    "libraries": [
        {"op": "addsub", "framework": "tensorflow", "path": "tensorflow/libaddsub.so",
         "ops": ["TRTISExampleAddSub"], "sha256": "aa"},
        {"op": "scale", "framework": "tensorflow", "path": "tensorflow/libscale.so",
         "ops": ["TRTISScale", "TRTISScaleGrad"], "sha256": "bb"},
        {"op": "addsub", "framework": "tensorrt", "path": "tensorrt/libaddsub.so", "ops": [],
         "plugins": [{"name": "TRTISExampleAddSub", "version": "1", "namespace": "trtis"}]},
    ],
}
BUILTINS = {"Placeholder", "Identity", "AddV2", "Sub", "StatefulPartitionedCall", "NoOp"}


def meta_graph(nodes, functions):
    """A stand-in with the fields of a MetaGraphDef that ops_used reads."""
    library = NS(function=[NS(signature=NS(name=name), node_def=[NS(op=op) for op in ops])
                           for name, ops in functions.items()])
    return NS(graph_def=NS(node=[NS(op=op) for op in nodes], library=library))


def tensor_info(dtype, dims, unknown_rank=False):
    return NS(dtype=dtype, tensor_shape=NS(unknown_rank=unknown_rank, dim=[NS(size=d) for d in dims]))


SIG = Signature("serving_default",
                (TensorSpec("x", "TYPE_FP32", "float32", (-1,)), TensorSpec("y", "TYPE_FP32", "float32", (-1,))),
                (TensorSpec("difference", "TYPE_FP32", "float32", (-1,)),
                 TensorSpec("sum", "TYPE_FP32", "float32", (-1,))))


def test_ops_used_reads_function_bodies_and_skips_function_calls(pure):
    graph = meta_graph(["Placeholder", "StatefulPartitionedCall", "__inference_serve_12"],
                       {"__inference_serve_12": ["TRTISExampleAddSub", "Identity"],
                        "__inference_inner_3": ["TRTISScale"]})
    assert model_repo.ops_used(graph) == {"Placeholder", "StatefulPartitionedCall",
                                          "TRTISExampleAddSub", "Identity", "TRTISScale"}


def test_classify_maps_bundle_ops_first_and_only_needed_libraries(pure):
    # TRTISExampleAddSub is also "registered" (the bundle was loaded in this process): it
    # must still be found in the bundle, not taken for a built-in.
    is_builtin = (BUILTINS | {"TRTISExampleAddSub"}).__contains__
    use = model_repo.classify_ops({"Placeholder", "TRTISExampleAddSub", "AddV2"}, MANIFEST, is_builtin)
    assert use.custom == {"TRTISExampleAddSub": "tensorflow/libaddsub.so"}
    assert use.builtin == ("AddV2", "Placeholder")
    assert [lib["path"] for lib in use.libraries] == ["tensorflow/libaddsub.so"]


def test_classify_one_library_for_two_ops(pure):
    use = model_repo.classify_ops({"TRTISScale", "TRTISScaleGrad"}, MANIFEST, BUILTINS.__contains__)
    assert [lib["op"] for lib in use.libraries] == ["scale"]


def test_classify_unknown_op_is_an_error_naming_it(pure):
    with pytest.raises(ModelError) as info:
        model_repo.classify_ops({"Placeholder", "MyMissingOp", "OtherOp"}, MANIFEST,
                                BUILTINS.__contains__, bundle="the bundle /b")
    text = info.value.render()
    assert "MyMissingOp" in text and "OtherOp" in text and "/b" in text
    assert "ops build" in text  # says how to fix


def test_tensorrt_plugins_are_not_tensorflow_ops(pure):
    with pytest.raises(ModelError, match="TRTISFoo"):
        model_repo.classify_ops({"TRTISFoo"}, MANIFEST, BUILTINS.__contains__)


def test_signature_from_meta_graph_types_and_shapes(pure):
    signature_def = NS(inputs={"y": tensor_info(9, [-1, 3]), "x": tensor_info(1, [-1])},
                       outputs={"out": tensor_info(10, [2])})
    graph = NS(signature_def={"serving_default": signature_def})
    sig = model_repo.signature_from_meta_graph(graph)
    assert [(s.name, s.data_type, s.shape) for s in sig.inputs] == [
        ("x", "TYPE_FP32", (-1,)), ("y", "TYPE_INT64", (-1, 3))]
    assert sig.outputs == (TensorSpec("out", "TYPE_BOOL", "bool", (2,)),)


def test_signature_errors(pure):
    graph = NS(signature_def={"other": NS(inputs={}, outputs={})})
    with pytest.raises(ModelError, match="no signature 'serving_default'.*other"):
        model_repo.signature_from_meta_graph(graph)
    graph = NS(signature_def={"serving_default": NS(inputs={"x": tensor_info(1, [], unknown_rank=True)},
                                                    outputs={"y": tensor_info(1, [1])})})
    with pytest.raises(ModelError, match="unknown rank"):
        model_repo.signature_from_meta_graph(graph)
    graph = NS(signature_def={"serving_default": NS(inputs={"x": tensor_info(8, [1])},
                                                    outputs={"y": tensor_info(1, [1])})})
    with pytest.raises(ModelError, match="no Triton equivalent"):  # DT_COMPLEX64
        model_repo.signature_from_meta_graph(graph)
    # An output of unknown rank comes from the ops (a custom op without a shape function), not
    # from the input signature: the error says so and names the fix.
    graph = NS(signature_def={"serving_default": NS(inputs={"x": tensor_info(1, [1])},
                                                    outputs={"y": tensor_info(1, [], unknown_rank=True)})})
    with pytest.raises(ModelError, match="signature output 'y' has an unknown rank.*without SetShapeFn") as error:
        model_repo.signature_from_meta_graph(graph)
    assert "input_signature" not in error.value.hint and "SetShapeFn" in error.value.hint
    graph = NS(signature_def={"serving_default": NS(inputs={"x y": tensor_info(1, [1])},
                                                    outputs={"y": tensor_info(1, [1])})})
    with pytest.raises(ModelError, match="signature input 'x y' cannot be a Triton tensor name"):
        model_repo.signature_from_meta_graph(graph)
    # A TF1-built SavedModel can carry an input named like a Python keyword, which
    # tf.saved_model.load (the Python backend's runner) cannot turn into an argument.
    graph = NS(signature_def={"serving_default": NS(inputs={"in": tensor_info(1, [1])},
                                                    outputs={"class": tensor_info(1, [1])})})
    with pytest.raises(ModelError, match="signature input 'in' is a Python keyword") as error:
        model_repo.signature_from_meta_graph(graph)
    assert "in_" in error.value.hint
    graph = NS(signature_def={"serving_default": NS(inputs={"x": tensor_info(1, [1])},
                                                    outputs={"class": tensor_info(1, [1])})})
    assert [t.name for t in model_repo.signature_from_meta_graph(graph).outputs] == ["class"]  # an output may be


def test_dims_with_and_without_batching(pure):
    vec = TensorSpec("x", "TYPE_FP32", "float32", (-1, 4))
    assert model_repo.config_dims(vec, 0) == (-1, 4)
    assert model_repo.config_dims(vec, 8) == (4,)
    scalar_items = TensorSpec("x", "TYPE_FP32", "float32", (-1,))
    assert model_repo.config_dims(scalar_items, 8) == (1,)
    assert model_repo.model_dims(scalar_items, 8) == ()
    with pytest.raises(ModelError, match="batch dimension"):
        model_repo.config_dims(TensorSpec("x", "TYPE_FP32", "float32", (3, 4)), 8)


def _parse(text: str):
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
    from google.protobuf import text_format

    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_python_config_parses_as_triton_model_config(pure):
    config = _parse(model_repo.python_config("addsub", SIG, 0))
    assert config.name == "addsub" and config.backend == "python" and config.max_batch_size == 0
    assert [(i.name, list(i.dims)) for i in config.input] == [("x", [-1]), ("y", [-1])]
    assert [o.name for o in config.output] == ["difference", "sum"]
    assert config.parameters["SIGNATURE_DEF"].string_value == "serving_default"
    assert config.instance_group[0].kind == config.instance_group[0].KIND_CPU


def test_tensorflow_config_has_platform_and_op_libraries(pure):
    text = model_repo.tensorflow_config("addsub", SIG, 4, ["/models/addsub/1/ops/tensorflow/libaddsub.so"])
    config = _parse(text)
    assert config.platform == "tensorflow_savedmodel" and not config.backend
    assert list(config.model_operations.op_library_filename) == ["/models/addsub/1/ops/tensorflow/libaddsub.so"]
    assert config.max_batch_size == 4
    assert list(config.input[0].dims) == [1] and list(config.input[0].reshape.shape) == []
    assert config.input[0].HasField("reshape")
    # A model of built-ins has no model_operations block at all.
    assert "model_operations" not in model_repo.tensorflow_config("b", SIG, 0, [])


def test_model_manifest_keeps_schema_and_only_given_libraries(pure):
    subset = model_repo.model_manifest(MANIFEST, MANIFEST["libraries"][:1], "/bundle")
    assert subset["schema"] == 1 and subset["toolchain"] == {"fingerprint": "x"}
    assert [lib["path"] for lib in subset["libraries"]] == ["tensorflow/libaddsub.so"]
    assert subset["kernel_libraries"] == [] and subset["source_bundle"] == "/bundle"


def test_reference_inputs_are_deterministic_and_shaped(pure):
    np = pytest.importorskip("numpy")
    a = model_repo.reference_inputs(SIG, 0)
    b = model_repo.reference_inputs(SIG, 0)
    assert a["x"].shape == (8,) and a["x"].dtype == np.float32
    assert np.array_equal(a["x"], b["x"]) and not np.array_equal(a["x"], a["y"])
    assert model_repo.reference_inputs(SIG, 4)["x"].shape == (2,)


INSTALL = serve.ServerInstall(Path("/opt/ts/bin/tritonserver"), Path("/opt/ts/backends/python"),
                              Path("/opt/ts/stub"), Path("/opt/libs"))


def test_server_command_is_loopback_explicit_cpu(pure):
    ports = serve.Ports(8000, 8001, 8002)
    command = serve.server_command(INSTALL, Path("/m"), ports, Path("/rt/backends"), "trtis_1_ab_",
                                   model_config_name="python")
    assert command[0] == "/opt/ts/bin/tritonserver"
    for flag in ("--model-control-mode=explicit", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
                 "--metrics-address=127.0.0.1", "--http-port=8000", "--grpc-port=8001",
                 "--metrics-port=8002", "--pinned-memory-pool-byte-size=0",
                 "--cuda-memory-pool-byte-size=0:0", "--allow-gpu-metrics=false",
                 "--backend-directory=/rt/backends", "--model-repository=/m",
                 "--backend-config=python,shm-region-prefix-name=trtis_1_ab_",
                 "--model-config-name=python", "--strict-readiness=false"):
        assert flag in command
    assert not any(part.startswith("--load-model") for part in command)


def test_server_env_puts_the_environment_first(pure):
    env = serve.server_env({"PATH": "/usr/bin", "LD_LIBRARY_PATH": "/x", "PYTHONPATH": "/p"},
                           INSTALL, Path("/venv"))
    assert env["PATH"].split(":")[0] == "/venv/bin"
    libs = env["LD_LIBRARY_PATH"].split(":")
    assert "/opt/libs" in libs and libs[-1] == "/x"
    import sysconfig

    assert libs[0] == sysconfig.get_config_var("LIBDIR")
    assert "PYTHONPATH" not in env


def test_discover_models_skips_half_written_and_plain_dirs(tmp_path, pure):
    for name in ("b", "a", ".a.adding-x"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.pbtxt").write_text("")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "configs").mkdir()
    (tmp_path / "notes").mkdir()
    assert serve.discover_models(tmp_path) == ["a", "b", "c"]
    with pytest.raises(ServerError, match="no models"):
        serve.discover_models(tmp_path / "notes")
    with pytest.raises(ServerError, match="does not exist"):
        serve.discover_models(tmp_path / "missing")


def test_port_in_use_is_a_clear_error(pure):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(ServerError) as info:
            serve.choose_ports(serve.ServerSettings(models_dir=Path("."), grpc_port=port))
    assert f"grpc port {port}" in info.value.message and "in use" in info.value.message
    ports = serve.choose_ports(serve.ServerSettings(models_dir=Path(".")))
    assert len({ports.http, ports.grpc, ports.metrics}) == 3


def test_missing_server_binary(tmp_path, pure):
    with pytest.raises(ServerError, match="not found or not executable"):
        serve.find_tritonserver(tmp_path / "bin" / "tritonserver")


def test_short_reason_drops_python_traceback(pure):
    text = "Internal: OpLibraryError: missing\n\nAt:\n  model.py(59): load\n"
    assert serve.short_reason(text) == "Internal: OpLibraryError: missing"


def test_count_successes_parses_prometheus_text(pure):
    text = ('# HELP nv_inference_request_success x\n'
            'nv_inference_request_success{model="a",version="1"} 3\n'
            'nv_inference_request_success{model="b",version="1"} 0\n'
            'nv_inference_request_failure{model="a",version="1"} 7\n')
    assert smoke.count_successes(text) == {"a": 3, "b": 0}


def test_compare_reports_the_first_difference(pure):
    np = pytest.importorskip("numpy")
    want = {"sum": np.array([1.0, 2.0], np.float32)}
    assert smoke.compare({"sum": np.array([1.0, 2.0000001], np.float32)}, want) == "ok"
    assert "max abs error" in smoke.compare({"sum": np.array([1.0, 2.5], np.float32)}, want)
    assert "shape" in smoke.compare({"sum": np.array([1.0], np.float32)}, want)
    assert "missing" in smoke.compare({}, want)


def test_client_shapes_add_the_served_item_dimension(pure):
    np = pytest.importorskip("numpy")
    metadata = {"max_batch_size": 4, "signature": {
        "inputs": [{"name": "x", "data_type": "TYPE_FP32", "numpy_dtype": "float32", "shape": [-1]}],
        "outputs": []}}
    shaped = smoke.to_client_shapes({"x": np.zeros(2, np.float32)}, metadata)
    assert shaped["x"].shape == (2, 1)
    assert smoke.to_client_shapes({"x": np.zeros(2, np.float32)}, {**metadata, "max_batch_size": 0})["x"].shape == (2,)
