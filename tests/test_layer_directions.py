"""Two directions in a ``pylstm.Layer`` mean a bidirectional layer: the first runs forward and the
second backward unless a direction's ``reverse=`` says otherwise. Against torch's
``bidirectional=True`` modules (saturating weights, fp32: 3e-5 for unit-scale outputs, c_n
scaled by its row as in test_torch_parity)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import assert_close, make_module, torch_forward

import pylstm

torch = pytest.importorskip("torch")

GATES = {"lstm": 4, "gru": 3, "rnn_tanh": 1}


def directions_of(module, layer, *, reverse_flags=(None, None)):
    """The module's two directions of ``layer`` as pylstm.Directions, reverse= as given."""
    sd = {k: v.detach().numpy() for k, v in module.named_parameters()}
    out = []
    for sfx, rev in zip((f"_l{layer}", f"_l{layer}_reverse"), reverse_flags):
        kw = {} if rev is None else {"reverse": rev}
        out.append(
            pylstm.Direction(
                w=sd["weight_ih" + sfx],
                r=sd["weight_hh" + sfx],
                bias_w=sd["bias_ih" + sfx],
                bias_r=sd["bias_hh" + sfx],
                **kw,
            )
        )
    return out


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
@pytest.mark.parametrize("num_layers", [1, 2])
def test_two_directions_without_reverse_are_bidirectional(cell, num_layers):
    rng = np.random.default_rng(5)
    module = make_module(cell, 5, 9, rng=rng, num_layers=num_layers, bidirectional=True)
    name = "rnn" if cell.startswith("rnn") else cell
    layers = [pylstm.Layer(name, directions_of(module, k)) for k in range(num_layers)]
    assert [[d.reverse for d in layer.directions] for layer in layers] == [
        [False, True]
    ] * num_layers
    model = pylstm.from_arrays(layers)
    x = rng.normal(size=(7, 3, 5)).astype(np.float32)
    hx_ref = torch_forward(module, x)
    y, state = model(x)
    h = state[0] if cell == "lstm" else state
    assert_close(y, hx_ref[0], atol=3e-5, what="output")  # unit-scale outputs
    assert_close(h, hx_ref[1], atol=3e-5, what="h_n")
    if cell == "lstm":
        assert_close(state[1], hx_ref[2], atol=3e-5, scaled=True, what="c_n")
    # and with lengths: the backward direction starts at each sequence's last valid step
    lengths = [7, 4, 1]
    y_ref, h_ref, _ = torch_forward(module, x, lengths=lengths)
    y, state = model(x, lengths=lengths)
    assert_close(y, y_ref, atol=3e-5, what="output with lengths")  # unit-scale outputs
    assert_close(state[0] if cell == "lstm" else state, h_ref, atol=3e-5, what="h_n lengths")


def test_explicit_reverse_is_used_as_given():
    """reverse=True on the first and False on the second: the backward half comes first."""
    rng = np.random.default_rng(6)
    module = make_module("lstm", 4, 6, rng=rng, bidirectional=True)
    x = rng.normal(size=(5, 2, 4)).astype(np.float32)
    y_ref = torch_forward(module, x)[0]
    fwd, bwd = directions_of(module, 0, reverse_flags=(False, True))
    swapped = pylstm.from_arrays(
        pylstm.Layer(
            "lstm",
            [
                pylstm.Direction(**{**vars(bwd), "reverse": True}),
                pylstm.Direction(**{**vars(fwd), "reverse": False}),
            ],
        )
    )
    y = swapped(x)[0]
    assert_close(y[..., :6], y_ref[..., 6:], atol=3e-5, what="backward half")  # unit scale
    assert_close(y[..., 6:], y_ref[..., :6], atol=3e-5, what="forward half")
    # two explicit forward directions: both halves are the forward LSTM of their weights
    twice = pylstm.from_arrays(
        pylstm.Layer("lstm", [fwd, pylstm.Direction(**{**vars(fwd), "reverse": False})])
    )
    y = twice(x)[0]
    assert_close(y[..., :6], y_ref[..., :6], atol=3e-5, what="first forward")
    assert_close(y[..., 6:], y_ref[..., :6], atol=3e-5, what="second forward")


def test_one_direction_defaults_to_forward():
    d = pylstm.Direction(w=np.ones((4, 2)), r=np.ones((4, 1)))
    assert pylstm.Layer("lstm", [d]).directions[0].reverse is False
    assert (
        pylstm.Layer("lstm", [pylstm.Direction(**{**vars(d), "reverse": True})])
        .directions[0]
        .reverse
        is True
    )
