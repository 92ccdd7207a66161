"""Step masks, in one place: how sequence lengths, Keras masks and ONNX ``sequence_lens`` become
the engine's step mask, and how Keras propagates and merges masks between layers.

The engine takes a time-major ``uint8`` mask ``[T, B]`` (1 = a valid step) or None (every
step valid). Keras masks are batch-major ``[B, T]`` bools that flow with the tensors they
belong to; ONNX gives one length per sequence.
"""

from __future__ import annotations

import numpy as np

from .validation import to_numpy


def lengths_mask(lengths, T: int):
    """The engine mask ``[T, B]`` of sequences of ``lengths`` (int ``[B]``), or None when
    every sequence is ``T`` long."""
    if lengths is None or (len(lengths) and lengths.min() >= T):
        return None
    return np.ascontiguousarray(np.arange(T)[:, None] < lengths[None, :], np.uint8)


def packed_lengths_mask(lengths, batch: int, steps: int) -> np.ndarray:
    """PyTorch packed-sequence lengths (``lengths=`` of a PyTorch-style model, each ``1..T``)
    -> the engine mask ``[T, B]`` (uint8) of valid steps.

    Raises
    ------
    TypeError
        ``lengths`` are not integers.
    ValueError
        Wrong count, or a length outside ``1..T``.
    """
    arr = to_numpy(lengths)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must be integers, got dtype {arr.dtype}")
    if arr.shape != (batch,):
        raise ValueError(
            f"lengths: expected one length per sequence, shape ({batch},), got {arr.shape}"
        )
    if batch and (arr.min() < 1 or arr.max() > steps):
        raise ValueError(
            f"lengths must be between 1 and the sequence length {steps}, got min {arr.min()} "
            f"and max {arr.max()}"
        )
    return np.ascontiguousarray(np.arange(steps)[:, None] < arr[None, :].astype(np.int64), np.uint8)


def sequence_lens(value, B: int, T: int, what: str):
    """ONNX ``sequence_lens``: int64 ``[B]``, each in ``[0, T]`` (None when not given).

    Raises
    ------
    TypeError
        Not integers.
    ValueError
        Not one length per sequence, or a length outside ``[0, T]``.
    """
    if value is None:
        return None
    lens = np.asarray(value)
    if lens.dtype.kind not in "iu":
        raise TypeError(f"{what}: sequence_lens must be integers, got dtype {lens.dtype}")
    if lens.shape != (B,):
        raise ValueError(
            f"{what}: sequence_lens must have shape [{B}] (one length per sequence), "
            f"got {list(lens.shape)}"
        )
    if B and (lens.min() < 0 or lens.max() > T):
        raise ValueError(
            f"{what}: sequence_lens must be between 0 and the sequence length {T}, got "
            f"min {lens.min()} and max {lens.max()}"
        )
    return lens.astype(np.int64)


def batch_mask(mask, shape) -> np.ndarray | None:
    """A user's ``[B, T]`` mask (any dtype, read as bool) checked against ``shape``."""
    if mask is None:
        return None
    m = to_numpy(mask)
    if m.shape != tuple(shape):
        raise ValueError(f"mask: expected shape {tuple(shape)} [B, T], got {m.shape}")
    return m.astype(bool)


def engine_mask(mask):
    """A batch-major ``[B, T]`` bool mask as the engine's time-major ``uint8`` ``[T, B]``."""
    if mask is None:
        return None
    return np.ascontiguousarray(np.asarray(mask, bool).T, np.uint8)


def hold_across_chunks(y, mask_t, previous) -> None:
    """Streaming: steps before a sequence's first valid step in this chunk repeat the last
    output of the previous chunk (the engine starts each call from zero outputs). ``y``
    ``[B, T, O]`` is changed in place."""
    valid = mask_t.T.astype(bool)  # [B, T]
    first = np.where(valid.any(axis=1), valid.argmax(axis=1), valid.shape[1])
    before = np.arange(valid.shape[1])[None, :] < first[:, None]
    y[before] = np.broadcast_to(previous[:, None, :], y.shape)[before]


def token_mask(ids) -> np.ndarray:
    """Keras ``Embedding(mask_zero=True)``: a step is valid when its token id is not 0."""
    return ids != 0


def not_masked(x, mask_value) -> np.ndarray:
    """Keras ``Masking``: a step is valid when any feature differs from ``mask_value``."""
    return np.any(x != mask_value, axis=-1)


def merge_masks(masks, keras_major: int):
    """Keras merge layers (``Add``...): Keras 3: None when any input has none, else the inputs'
    masks ORed; tf.keras 2: the masks present ANDed (None when there are none)."""
    if keras_major < 3:
        present = [np.asarray(m, bool) for m in masks if m is not None]
        return np.logical_and.reduce(present) if present else None
    if not masks or any(m is None for m in masks):
        return None
    return np.logical_or.reduce([np.asarray(m, bool) for m in masks])


def concatenate_masks(xs, masks, axis: int, keras_major: int):
    """Keras ``Concatenate``: each input's mask (all True where it has none) broadcast over the
    features, joined along ``axis``, then any (Keras 3) / all (tf.keras 2) over the last axis;
    None when no input has a mask."""
    if all(m is None for m in masks):
        return None
    full = []
    for x, m in zip(xs, masks):
        if m is None:
            full.append(np.ones(x.shape, bool))
        else:
            m = np.asarray(m, bool)
            full.append(np.broadcast_to(m[..., None], x.shape) if m.ndim < x.ndim else m)
    joined = np.concatenate(full, axis=axis)
    return joined.any(axis=-1) if keras_major >= 3 else joined.all(axis=-1)
