"""The canonical model is frozen: nothing can change a layer, a direction or their weights after
they are made, and the raw-weights builder (pylstm.Layer / pylstm.Direction) never rewrites
what it was given."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest

import pylstm
from pylstm.assemble import build_engine
from pylstm.convert.builder import canonical_layer
from pylstm.convert.canonical import CanonicalDirection, CanonicalLayer
from pylstm.runtime.engine import LayerShape

ARRAYS = ("w", "r", "bias_w", "bias_r", "peephole", "proj")


def raw_direction(rng, H=3, I=2, P=2):
    return pylstm.Direction(
        w=rng.normal(size=(4 * H, I)),
        r=rng.normal(size=(4 * H, P)),
        bias_w=rng.normal(size=4 * H),
        bias_r=rng.normal(size=4 * H),
        peephole=rng.normal(size=(3, H)),
        proj=rng.normal(size=(P, H)),
    )


def test_canonical_layer_and_direction_cannot_be_mutated():
    rng = np.random.default_rng(0)
    layer = canonical_layer("lstm", [raw_direction(rng), raw_direction(rng)], gate_order="iofc")
    assert isinstance(layer, CanonicalLayer)
    for name in ("cell", "directions", "clip", "hidden_size", "input_size", "masked_output"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(layer, name, getattr(layer, name))
    assert isinstance(layer.directions, tuple)  # no append / item assignment
    with pytest.raises(TypeError):
        layer.directions[0] = layer.directions[1]
    for d in layer.directions:
        assert isinstance(d, CanonicalDirection)
        assert isinstance(d.activations, tuple)
        for name in ARRAYS:
            a = getattr(d, name)
            assert a.dtype == np.float32 and a.flags.c_contiguous
            assert not a.flags.writeable, name
            with pytest.raises(ValueError):
                a[...] = 0.0
            with pytest.raises(ValueError):
                a.flags.writeable = True  # owns its memory: cannot be made writeable again
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(d, name, None)
        with pytest.raises(dataclasses.FrozenInstanceError):
            d.reverse = not d.reverse


def test_canonical_types_refuse_writeable_or_mismatched_arrays():
    rng = np.random.default_rng(1)
    layer = canonical_layer("gru", [pylstm.Direction(w=rng.normal(size=(6, 2)), r=np.ones((6, 2)))])
    d = layer.directions[0]
    fields = {f.name: getattr(d, f.name) for f in dataclasses.fields(d)}
    with pytest.raises(TypeError, match="read-only float32"):
        CanonicalDirection(**{**fields, "w": np.ones((6, 2), np.float32)})
    with pytest.raises(ValueError, match="shape"):
        dataclasses.replace(layer, hidden_size=3)


def test_builder_layer_is_immutable_and_leaves_its_inputs_alone():
    rng = np.random.default_rng(2)
    d = raw_direction(rng)
    before = {k: np.array(getattr(d, k)) for k in ARRAYS}
    layer = pylstm.Layer("lstm", [d], gate_order="iofc")
    # the raw direction is untouched (no reordering in place, no reverse filled in)
    assert d.reverse is None and d.activations is None
    for k in ARRAYS:
        assert np.array_equal(getattr(d, k), before[k])
    # later changes to the raw arrays do not reach the layer
    d.w[...] = 0.0
    assert np.any(layer.directions[0].w != 0.0)
    with pytest.raises(AttributeError):
        layer.gate_order = "ifgo"
    with pytest.raises(AttributeError):
        layer.directions = []
    with pytest.raises(AttributeError):
        layer.canonical = None
    assert layer.gate_order is None
    assert layer.directions[0].reverse is False


def test_engine_takes_both_forms_and_keeps_only_the_shapes():
    rng = np.random.default_rng(3)
    layer = pylstm.Layer("lstm", [raw_direction(rng)])
    x = rng.normal(size=(4, 2, 2)).astype(np.float32)
    y1 = pylstm.from_arrays([layer])(x)[0]
    y2 = pylstm.from_arrays([layer.canonical])(x)[0]
    np.testing.assert_array_equal(y1, y2)
    engine = build_engine([layer])
    # the weights are held once, packed; the engine keeps the layer's shape and options
    assert engine.layers[0] == LayerShape.of(layer.canonical)
    unpacked = engine.unpack()[0].directions[0]
    np.testing.assert_array_equal(unpacked.w, layer.canonical.directions[0].w)  # exact: fp32
    np.testing.assert_array_equal(unpacked.r, layer.canonical.directions[0].r)


def test_pickled_layers_stay_frozen():
    rng = np.random.default_rng(4)
    layer = pylstm.Layer("lstm", [raw_direction(rng)])
    again = pickle.loads(pickle.dumps(layer))
    assert isinstance(again, pylstm.Layer)
    for k in ARRAYS:
        a = getattr(again.directions[0], k)
        assert not a.flags.writeable
        np.testing.assert_array_equal(a, getattr(layer.directions[0], k))
    with pytest.raises(AttributeError):
        again.cell = "gru"
