"""The frameworks' own test cases replayed through pylstm's public API.

* ONNX: the node test cases shipped in the ``onnx`` package (``onnx.backend.test.case.node``:
  every case whose graph holds an LSTM, GRU or RNN node) against the outputs shipped with them,
  through ``pylstm.from_onnx`` (the model in memory) and ``pylstm.load`` (the model saved to a
  file), and ONNX Runtime on the same model where it runs it. The shipped models take W, R, B
  (and P) as graph inputs; pylstm converts recurrent weights once, at load, and refuses that
  with ``UnsupportedError`` (README, "Weights are converted once, at load"), which is checked;
  the cases then run with those inputs frozen into initializers holding the values of the
  shipped data set, as a model is shipped.
* PyTorch: ``torch.testing._internal.common_modules.module_db``'s entries for ``nn.LSTM``,
  ``GRU``, ``RNN``, ``LSTMCell``, ``GRUCell``, ``RNNCell``: each module built from its
  ``module_inputs_func`` constructor arguments and run on its forward inputs (CPU, float32),
  with torch's initial weights and again with saturating ones; and the forward cases of their
  ``module_error_inputs_func``, which pylstm must refuse with ``ValueError`` as torch refuses
  them.

The Keras cases (the numbers of ``keras/src/layers/rnn/*_test.py``) are in
``test_framework_cases_keras.py``.
"""

from __future__ import annotations

import functools
import os
import warnings

import numpy as np
import pytest

import pylstm

RECURRENT_OPS = ("LSTM", "GRU", "RNN")
TORCH_CLASSES = ("LSTM", "GRU", "RNN", "LSTMCell", "GRUCell", "RNNCell")


# --------------------------------------------------------------------------------------------
# ONNX node test cases


@functools.lru_cache(maxsize=1)
def onnx_cases():
    """The shipped node test cases with a recurrent node, by name (``collect_testcases`` keeps a
    module-level list: collected once per process, unfiltered)."""
    try:
        from onnx.backend.test.case import node
    except ImportError:
        return {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the cases of other operators warn about overflows
        cases = node.collect_testcases(None)
    return {
        c.name: c
        for c in cases
        if c.model is not None and any(n.op_type in RECURRENT_OPS for n in c.model.graph.node)
    }


def onnx_case_names():
    names = sorted(onnx_cases())
    return names or [pytest.param("none", marks=pytest.mark.skip(reason="onnx is not installed"))]


def weight_inputs(node):
    """The names of the node's W, R, B (and LSTM P) inputs: what pylstm packs at load."""
    slots = [1, 2, 3] + ([7] if node.op_type == "LSTM" else [])
    return [node.input[i] for i in slots if i < len(node.input) and node.input[i]]


def frozen(model, feeds):
    """``model`` with its weight inputs turned into initializers holding ``feeds``' values (the
    frozen-weights form a shipped model has); the other feeds are returned."""
    import onnx
    from onnx import numpy_helper

    names = {
        n for node in model.graph.node if node.op_type in RECURRENT_OPS for n in weight_inputs(node)
    }
    out = onnx.ModelProto()
    out.CopyFrom(model)
    kept = [i for i in out.graph.input if i.name not in names]
    del out.graph.input[:]
    out.graph.input.extend(kept)
    out.graph.initializer.extend(numpy_helper.from_array(feeds[n], n) for n in sorted(names))
    return out, {k: v for k, v in feeds.items() if k not in names}


def ort_outputs(model, feeds):
    """ONNX Runtime's outputs, or None where it refuses the model (``layout=1``: README)."""
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 4
    try:
        session = ort.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:
        assert "layout" in str(exc).lower() or "batchwise" in str(exc).lower(), exc
        return None
    return session.run(None, feeds)


@pytest.mark.parametrize("name", onnx_case_names())
def test_onnx_node_case(name, tmp_path):
    onnx = pytest.importorskip("onnx")
    case = onnx_cases()[name]
    input_names = [i.name for i in case.model.graph.input]
    assert case.data_sets, name
    for k, (inputs, expected) in enumerate(case.data_sets):
        feeds = dict(zip(input_names, inputs))
        # As shipped (weights as graph inputs): refused at load, naming the node and the input.
        with pytest.raises(pylstm.UnsupportedError, match="computed at run time"):
            pylstm.from_onnx(case.model)

        model, run_feeds = frozen(case.model, feeds)
        path = os.path.join(tmp_path, f"{name}_{k}.onnx")
        onnx.save(model, path)
        runs = {
            "from_onnx": pylstm.from_onnx(model).run(None, run_feeds),
            "load": pylstm.load(path).run(None, run_feeds),
        }
        reference = ort_outputs(model, run_feeds)
        if reference is not None:
            runs["onnxruntime"] = reference
        else:  # only layout=1 is refused by ONNX Runtime, which pylstm runs (README)
            assert any(a.name == "layout" and a.i == 1 for a in case.model.graph.node[0].attribute)
        for how, got in runs.items():
            assert len(got) == len(expected), (name, how)
            for j, (g, e) in enumerate(zip(got, expected)):
                assert g.shape == e.shape and g.dtype == e.dtype, (name, how, j, g.shape, e.shape)
                # the tolerance shipped with the case (rtol 1e-3, atol 1e-7)
                np.testing.assert_allclose(
                    g, e, rtol=case.rtol, atol=case.atol, err_msg=f"{name} {how} output {j}"
                )


def onnx_data_folders():
    """The node test folders (``model.onnx``, ``test_data_set_*/input_*.pb``, ``output_*.pb``)
    where the onnx package ships them (a source checkout; the wheels ship the generators only,
    which :func:`onnx_cases` runs)."""
    try:
        import onnx
    except ImportError:
        return []
    root = os.path.join(os.path.dirname(onnx.__file__), "backend", "test", "data", "node")
    names = sorted(onnx_cases())
    return [os.path.join(root, n) for n in names if os.path.isdir(os.path.join(root, n))]


def read_pb(path):
    import onnx
    from onnx import numpy_helper

    tensor = onnx.TensorProto()
    with open(path, "rb") as f:
        tensor.ParseFromString(f.read())
    return numpy_helper.to_array(tensor)


@pytest.mark.parametrize(
    "folder",
    onnx_data_folders()
    or [
        pytest.param("none", marks=pytest.mark.skip(reason="this onnx ships no node data folders"))
    ],
)
def test_onnx_node_data_folder(folder, tmp_path):
    """The shipped files themselves: ``model.onnx`` loaded from disk (refused as shipped, then
    frozen) and each data set's ``.pb`` tensors."""
    onnx = pytest.importorskip("onnx")
    path = os.path.join(folder, "model.onnx")
    with pytest.raises(pylstm.UnsupportedError, match="computed at run time"):
        pylstm.load(path)
    shipped = onnx.load(path)
    names = [i.name for i in shipped.graph.input]
    sets = sorted(d for d in os.listdir(folder) if d.startswith("test_data_set_"))
    assert sets, folder
    for d in sets:
        files = sorted(os.listdir(os.path.join(folder, d)))
        inputs = [read_pb(os.path.join(folder, d, f)) for f in files if f.startswith("input_")]
        expected = [read_pb(os.path.join(folder, d, f)) for f in files if f.startswith("output_")]
        model, feeds = frozen(shipped, dict(zip(names, inputs)))
        frozen_path = os.path.join(tmp_path, "model.onnx")
        onnx.save(model, frozen_path)
        for j, (g, e) in enumerate(zip(pylstm.load(frozen_path).run(None, feeds), expected)):
            np.testing.assert_allclose(g, e, rtol=1e-3, atol=1e-7, err_msg=f"{folder} {d} {j}")


def test_onnx_cases_cover_the_three_operators():
    pytest.importorskip("onnx")
    ops = {n.op_type for c in onnx_cases().values() for n in c.model.graph.node}
    assert ops == set(RECURRENT_OPS)
    assert len(onnx_cases()) >= 18  # 6 per operator in onnx 1.23


# --------------------------------------------------------------------------------------------
# PyTorch module_db


@functools.lru_cache(maxsize=1)
def torch_module_infos():
    """``module_db``'s entries for the recurrent modules and cells, by class name (empty when
    torch's internal test helpers do not import: they need ``expecttest``)."""
    try:
        import torch.nn as nn
        from torch.testing._internal.common_modules import module_db
    except ImportError:
        return {}
    wanted = {getattr(nn, n) for n in TORCH_CLASSES}
    return {info.module_cls.__name__: info for info in module_db if info.module_cls in wanted}


def torch_skip_reason():
    try:
        import torch  # noqa: F401
    except ImportError:
        return "torch is not installed"
    try:
        import expecttest  # noqa: F401
    except ImportError:
        return "torch's module_db needs expecttest (pip install expecttest)"
    return "torch's module_db does not import"


def torch_params():
    infos = torch_module_infos()
    if not infos:
        return [pytest.param("none", marks=pytest.mark.skip(reason=torch_skip_reason()))]
    return sorted(infos)


def module_inputs(info, torch):
    return info.module_inputs_func(
        info, device="cpu", dtype=torch.float32, requires_grad=False, training=False
    )


def leaves(out):
    """Nested tuples of tensors or arrays, flattened to float64 numpy arrays."""
    if isinstance(out, (tuple, list)):
        return [a for o in out for a in leaves(o)]
    return [np.asarray(out.detach() if hasattr(out, "detach") else out, dtype=np.float64)]


@pytest.mark.parametrize("saturating", [False, True], ids=["torch_init", "saturating"])
@pytest.mark.parametrize("cls_name", torch_params())
def test_torch_module_db(cls_name, saturating):
    torch = pytest.importorskip("torch")
    info = torch_module_infos()[cls_name]
    cases = list(module_inputs(info, torch))
    assert cases, cls_name
    torch.manual_seed(len(cls_name))
    for case in cases:
        ctor, fwd = case.constructor_input, case.forward_input
        module = info.module_cls(*ctor.args, **ctor.kwargs).eval()
        if saturating:  # 3x torch's initial scale: most gate inputs far from the linear range
            with torch.no_grad():
                for p in module.parameters():
                    p.mul_(3.0)
        with torch.no_grad():
            expected = module(*fwd.args, **fwd.kwargs)
        got = pylstm.from_torch(module)(*fwd.args, **fwd.kwargs)
        what = f"{cls_name}{ctor.args} {ctor.kwargs} on {[tuple(getattr(a, 'shape', ())) for a in fwd.args]}"
        assert isinstance(got, tuple) == isinstance(expected, tuple), what
        got, expected = leaves(got), leaves(expected)
        assert len(got) == len(expected), what
        for g, e in zip(got, expected):
            assert g.shape == e.shape, what
            # relu RNNs are unbounded: 3e-5 relative to the largest value, else absolute
            assert np.abs(g - e).max() <= 3e-5 * max(1.0, np.abs(e).max()), what


@pytest.mark.parametrize("cls_name", torch_params())
def test_torch_module_db_error_inputs(cls_name):
    """The inputs torch refuses at forward time are refused by pylstm too, with ValueError
    naming the argument (README, "Errors")."""
    torch = pytest.importorskip("torch")
    info = torch_module_infos()[cls_name]
    if info.module_error_inputs_func is None:
        pytest.skip(f"module_db has no error inputs for {cls_name}")
    replayed = 0
    for err in info.module_error_inputs_func(
        info, device="cpu", dtype=torch.float32, requires_grad=False, training=False
    ):
        case = err.module_error_input
        if case.forward_input is None:  # a constructor error: torch builds no module to convert
            with pytest.raises(err.error_type):
                info.module_cls(*case.constructor_input.args, **case.constructor_input.kwargs)
            continue
        ctor = case.constructor_input
        module = info.module_cls(*ctor.args, **ctor.kwargs).eval()
        with pytest.raises(err.error_type), torch.no_grad():
            module(*case.forward_input.args, **case.forward_input.kwargs)
        model = pylstm.from_torch(module)
        args = case.forward_input.args
        if "dtype" in err.error_regex:
            # torch refuses input of another float dtype than the weights; pylstm takes
            # float16/32/64 and computes in float32 (README, quick start for PyTorch users)
            assert {a.dtype for a in args if hasattr(a, "dtype")} != {torch.float32}
            with torch.no_grad():
                expected = module(*[a.float() for a in args])
            got = model(*args)
            for g, e in zip(leaves(got), leaves(expected)):
                assert np.abs(g - e).max() <= 3e-5, cls_name  # unit-scale outputs
        else:
            with pytest.raises(ValueError, match=r"(input|hx|h|c|h_0|c_0)\b"):
                model(*args, **case.forward_input.kwargs)
        replayed += 1
    assert replayed, cls_name
