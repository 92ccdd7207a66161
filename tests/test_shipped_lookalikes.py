"""Small models built the way shipped ones are, exported or saved the way their frameworks do,
run through pylstm and compared with their framework (and ONNX Runtime for the ONNX exports):

* a speech recogniser's shape: a convolutional front end (Conv2d + BatchNorm + ReLU + MaxPool on
  a spectrogram, or Conv1d + ReLU + MaxPool on features) before a bidirectional LSTM, a Linear
  and log_softmax (CTC-style log-probabilities), ``torch.onnx.export(dynamo=False)`` with dynamic
  batch and time, loaded with ``pylstm.load(.onnx)`` and run at other batch sizes and lengths;
* a streaming voice-activity detector's shape: a torch module with an ``LSTMCell``, explicit
  ``(h, c)`` inputs and outputs and an ``if sample_rate == 16000`` switch between two front
  ends, exported through ``torch.jit.script`` (the switch becomes an ONNX ``If`` on the
  sample-rate input), streamed chunk by chunk with the state fed back, at both rates;
* a Keras encoder-decoder: the decoder LSTM started from the encoder's states
  (``initial_state=[h, c]``; also a bidirectional encoder whose states are concatenated), saved
  ``.keras``;
* a Keras Conv1D-LSTM forecaster (causal Conv1D, pooling, LSTM, Dense horizon), saved ``.keras``
  and ``.h5``.

Weights are random at 3x the frameworks' initial scale, so most gates saturate. Tolerances:
3e-5 absolute on unit-scale outputs (probabilities, states, LSTM outputs); log-probabilities and
unbounded regressions 3e-5 relative to their row's largest magnitude (float32, another summation
order).
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest

import pylstm

ATOL = 3e-5


def close(got, expected, what, rel=False):
    got = np.asarray(got, np.float64)
    expected = np.asarray(expected, np.float64)
    assert got.shape == expected.shape, (what, got.shape, expected.shape)
    bound = ATOL * (np.maximum(1.0, np.abs(expected).max(axis=-1, keepdims=True)) if rel else 1.0)
    err = np.abs(got - expected)
    assert np.all(err <= bound), f"{what}: max error {err.max():.3g}"


def ort_session(path):
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.log_severity_level = 4
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def saturate_torch(module, torch, scale=3.0, seed=0):
    """Every parameter times ``scale``; BatchNorm running statistics made non-trivial."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.mul_(scale)
        for m in module.modules():
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.BatchNorm1d):
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.5)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
    return module.eval()


def export(module, args, path, torch, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes about LSTM batch sizes, If
        torch.onnx.export(module, args, path, dynamo=False, **kwargs)
    return path


# --------------------------------------------------------------------------------------------
# (a) convolutional front end -> bidirectional LSTM -> Linear -> log_softmax (CTC-style)


def ctc_models(torch):
    nn = torch.nn

    class CRNN(nn.Module):
        """Spectrogram [B, 1, 32 mels, T] -> log-probabilities [T/2, B, 12] (CTC's layout)."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Sequential(
                nn.Conv2d(1, 8, 3, padding=1),
                nn.BatchNorm2d(8),
                nn.ReLU(),
                nn.MaxPool2d(2),
                nn.Conv2d(8, 8, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d((2, 1)),
            )
            self.rnn = nn.LSTM(8 * 8, 24, num_layers=2, bidirectional=True)
            self.fc = nn.Linear(48, 12)

        def forward(self, spec):
            f = self.conv(spec)  # [B, C, F', T']
            b, c, h, t = f.shape
            f = f.permute(3, 0, 1, 2).reshape(t, b, c * h)  # [T', B, C*F']
            y, _ = self.rnn(f)
            return torch.log_softmax(self.fc(y), dim=-1)

    class ConvBiLSTM(nn.Module):
        """Features [B, 20, T] -> log-probabilities [B, T/2, 10] (batch-first LSTM)."""

        def __init__(self):
            super().__init__()
            self.conv = nn.Conv1d(20, 32, 5, padding=2)
            self.pool = nn.MaxPool1d(2)
            self.rnn = nn.LSTM(32, 24, batch_first=True, bidirectional=True)
            self.fc = nn.Linear(48, 10)

        def forward(self, feats):
            f = self.pool(torch.relu(self.conv(feats))).transpose(1, 2)  # [B, T', 32]
            y, _ = self.rnn(f)
            return self.fc(y).log_softmax(-1)

    return {
        "crnn_conv2d": (CRNN, (2, 1, 32, 16), {0: "batch", 3: "time"}, {1: "batch", 0: "time"}),
        "conv1d_bilstm": (
            ConvBiLSTM,
            (2, 20, 16),
            {0: "batch", 2: "time"},
            {0: "batch", 1: "time"},
        ),
    }


@pytest.mark.parametrize("name", ["crnn_conv2d", "conv1d_bilstm"])
def test_ctc_front_end_bilstm_onnx(name, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    cls, shape, in_axes, out_axes = ctc_models(torch)[name]
    torch.manual_seed(1)
    module = saturate_torch(cls(), torch)
    path = export(
        module,
        (torch.randn(*shape),),
        str(tmp_path / f"{name}.onnx"),
        torch,
        input_names=["x"],
        output_names=["log_probs"],
        dynamic_axes={"x": in_axes, "log_probs": out_axes},
        opset_version=17,
    )
    model = pylstm.load(path)
    assert "LSTM" in repr(model)  # the recurrent nodes run on the engine
    session = ort_session(path)
    rng = np.random.default_rng(2)
    time_axis = max(in_axes)
    for batch, steps in ((2, 16), (5, 40), (1, 6)):  # other batches and lengths than at export
        x_shape = list(shape)
        x_shape[0], x_shape[time_axis] = batch, steps
        x = (rng.standard_normal(x_shape) * 2).astype(np.float32)
        (got,) = model.run(None, {"x": x})
        with torch.no_grad():
            expected = module(torch.from_numpy(x)).numpy()
        close(got, expected, f"{name} B={batch} T={steps} vs torch", rel=True)
        close(got, session.run(None, {"x": x})[0], f"{name} vs onnxruntime", rel=True)
        # log-probabilities: each frame's probabilities sum to 1
        np.testing.assert_allclose(np.exp(got).sum(-1), 1.0, atol=1e-5)


# --------------------------------------------------------------------------------------------
# (b) streaming voice-activity detector: LSTMCell, explicit state, a sample-rate switch


def vad_module(torch):
    nn = torch.nn

    class VAD(nn.Module):
        """A chunk of audio [B, N] (512 samples at 16 kHz, 256 at 8 kHz) and the state (h, c)
        -> speech probability [B, 1] and the next state."""

        def __init__(self, hidden: int = 32):
            super().__init__()
            self.front16 = nn.Conv1d(1, 16, kernel_size=64, stride=32)
            self.front8 = nn.Conv1d(1, 16, kernel_size=32, stride=16)
            self.cell = nn.LSTMCell(16, hidden)
            self.head = nn.Linear(hidden, 1)

        def forward(self, x, h, c, sr: int):
            if sr == 16000:
                f = torch.relu(self.front16(x.unsqueeze(1)))
            else:
                f = torch.relu(self.front8(x.unsqueeze(1)))
            h, c = self.cell(f.mean(dim=2), (h, c))
            return torch.sigmoid(self.head(h)), h, c

    return VAD


def test_streaming_vad_with_sample_rate_switch(tmp_path):
    torch = pytest.importorskip("torch")
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(3)
    module = saturate_torch(vad_module(torch)(), torch)
    H = 32
    scripted = torch.jit.script(module)  # keeps the `if sr == 16000` as control flow
    path = export(
        scripted,
        (torch.randn(2, 512), torch.zeros(2, H), torch.zeros(2, H), 16000),
        str(tmp_path / "vad.onnx"),
        torch,
        input_names=["x", "h", "c", "sr"],
        output_names=["prob", "h_n", "c_n"],
        dynamic_axes={"x": {0: "batch", 1: "samples"}, "h": {0: "batch"}, "c": {0: "batch"}},
        opset_version=17,
    )
    ops = {n.op_type for n in onnx.load(path).graph.node}
    assert {"If", "LSTM"} <= ops, ops  # the switch is an If on the sample-rate input

    model = pylstm.load(path)
    session = ort_session(path)
    # The chunk's state is explicit (inputs h, c), as in shipped VADs: it streams by feeding
    # the state back. There is no time axis for stream() to follow (each call is one step
    # whose input is a mean over the chunk): refused, naming the node.
    with pytest.raises(ValueError, match="ReduceMean"):
        model.stream(2)
    rng = np.random.default_rng(4)
    for rate, samples in ((16000, 512), (8000, 256)):
        B = 3
        h = c = np.zeros((B, H), np.float32)
        h_ort, c_ort = h, c
        h_t = c_t = torch.zeros(B, H)
        sr = np.array(rate, np.int64)
        for step in range(6):
            x = (rng.standard_normal((B, samples)) * 0.5).astype(np.float32)
            prob, h, c = model.run(None, {"x": x, "h": h, "c": c, "sr": sr})
            prob_ort, h_ort, c_ort = session.run(None, {"x": x, "h": h_ort, "c": c_ort, "sr": sr})
            with torch.no_grad():
                prob_t, h_t, c_t = module(torch.from_numpy(x), h_t, c_t, rate)
            what = f"{rate} Hz chunk {step}"
            close(prob, prob_t.numpy(), f"{what} prob vs torch")
            close(h, h_t.numpy(), f"{what} h vs torch")
            close(c, c_t.numpy(), f"{what} c vs torch", rel=True)  # c is unbounded
            close(prob, prob_ort, f"{what} prob vs onnxruntime")
            close(h, h_ort, f"{what} h vs onnxruntime")
    # the switch is taken at run time: the same call at the other rate gives the other branch
    x = rng.standard_normal((1, 256)).astype(np.float32)
    zero = np.zeros((1, H), np.float32)
    p8 = model.run(None, {"x": x, "h": zero, "c": zero, "sr": np.array(8000, np.int64)})[0]
    p16 = model.run(None, {"x": x, "h": zero, "c": zero, "sr": np.array(16000, np.int64)})[0]
    with torch.no_grad():
        close(
            p16, module(torch.from_numpy(x), torch.zeros(1, H), torch.zeros(1, H), 16000)[0], "16k"
        )
    assert not np.allclose(p8, p16)


# --------------------------------------------------------------------------------------------
# Keras look-alikes


def keras_or_skip():
    os.environ.setdefault("KERAS_BACKEND", "torch")
    return pytest.importorskip("keras")


def saturate_keras(model, rng, scale=3.0):
    for w in model.weights:
        fan_in = int(np.prod(w.shape[:-1])) if len(w.shape) > 1 else 1
        w.assign((rng.uniform(-1, 1, w.shape) * scale / np.sqrt(max(fan_in, 1))).astype(np.float32))


def keras_outputs(model, inputs):
    keras = keras_or_skip()
    out = model(inputs)
    return [
        np.asarray(keras.ops.convert_to_numpy(o)) for o in (out if isinstance(out, list) else [out])
    ]


def encoder_decoder(keras, bidirectional):
    L = keras.layers
    enc_in = keras.Input((None, 8), name="encoder_inputs")
    dec_in = keras.Input((None, 6), name="decoder_inputs")
    if bidirectional:
        _, fh, fc, bh, bc = L.Bidirectional(L.LSTM(16, return_state=True), name="encoder")(enc_in)
        states = [L.Concatenate()([fh, bh]), L.Concatenate()([fc, bc])]
        units = 32
    else:
        _, h, c = L.LSTM(16, return_state=True, name="encoder")(enc_in)
        states = [h, c]
        units = 16
    dec = L.LSTM(units, return_sequences=True, name="decoder")(dec_in, initial_state=states)
    out = L.Dense(6, activation="softmax", name="next_token")(dec)
    return keras.Model([enc_in, dec_in], out)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["lstm_encoder", "bilstm_encoder"])
def test_keras_encoder_decoder_initial_states(bidirectional, tmp_path):
    keras = keras_or_skip()
    model = encoder_decoder(keras, bidirectional)
    rng = np.random.default_rng(5 + bidirectional)
    saturate_keras(model, rng)
    path = str(tmp_path / "seq2seq.keras")
    model.save(path)
    for how, m in {"live": pylstm.from_keras(model), "file": pylstm.load(path)}.items():
        for batch, t_in, t_out in ((4, 11, 7), (1, 3, 9)):
            src = (rng.standard_normal((batch, t_in, 8)) * 2).astype(np.float32)
            tgt = (rng.standard_normal((batch, t_out, 6)) * 2).astype(np.float32)
            (expected,) = keras_outputs(model, [src, tgt])
            close(m([src, tgt]), expected, f"{how} B={batch}")
            close(m({"encoder_inputs": src, "decoder_inputs": tgt}), expected, f"{how} dict")


@pytest.mark.parametrize("suffix", [".keras", ".h5"])
def test_keras_conv1d_lstm_forecaster(suffix, tmp_path):
    keras = keras_or_skip()
    pytest.importorskip("h5py")
    L = keras.layers
    model = keras.Sequential(
        [
            keras.Input((48, 3)),  # 48 past steps of 3 series
            L.Conv1D(16, 5, padding="causal", activation="relu"),
            L.MaxPooling1D(2),
            L.Conv1D(16, 3, padding="same", activation="relu"),
            L.LSTM(32, return_sequences=True),
            L.LSTM(16),
            L.Dropout(0.2),
            L.Dense(12),  # 12 steps ahead
        ]
    )
    rng = np.random.default_rng(7)
    saturate_keras(model, rng)
    path = str(tmp_path / f"forecaster{suffix}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Keras 3 calls .h5 legacy
        model.save(path)
    x = (rng.standard_normal((9, 48, 3)) * 2).astype(np.float32)
    (expected,) = keras_outputs(model, x)
    for how, m in {"live": pylstm.from_keras(model), "file": pylstm.load(path)}.items():
        close(m(x), expected, f"{suffix} {how}", rel=True)  # an unbounded regression
