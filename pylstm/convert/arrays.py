"""Models built straight from numpy arrays, for weights trained elsewhere: the layers a user
built with :class:`pylstm.Layer` (the raw-weights builder), as canonical layers.

Pure conversion; :func:`pylstm.from_arrays` (:mod:`pylstm.assemble`) builds the engine and the
face.
"""

from __future__ import annotations

from collections.abc import Sequence

from .builder import Layer, as_canonical
from .canonical import CanonicalLayer


def convert_layers(layers: Sequence[Layer] | Layer) -> tuple:
    """The canonical layers of ``layers`` (one :class:`pylstm.Layer`, or a sequence of them or
    of :class:`~pylstm.convert.canonical.CanonicalLayer`).

    Raises
    ------
    TypeError
        An element is not a :class:`pylstm.Layer`.
    """
    if isinstance(layers, (Layer, CanonicalLayer)):
        layers = [layers]
    out = []
    for i, layer in enumerate(layers):
        if not isinstance(layer, (Layer, CanonicalLayer)):
            raise TypeError(f"layers[{i}] must be a pylstm.Layer, got {type(layer).__name__}")
        out.append(as_canonical(layer))
    return tuple(out)
