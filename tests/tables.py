"""The tables of classes and the weight helpers that the tests share.

One place for the facts every test module needs: which class is the
ConvGRU or ConvLSTM layer or cell of a rank, and how to give a layer
random weights. The weight layout (`contract_weight_shapes`) is the one
the API reference states (docs/api/conv_gru.md, docs/api/conv_lstm.md:
the weight tables), written out here independently of the package, so
that a layer with a wrong layout fails `set_weights`.
"""

import keras_convgru as kc

RANKS = (1, 2, 3)
GRU_LAYERS = {1: kc.ConvGRU1D, 2: kc.ConvGRU2D, 3: kc.ConvGRU3D}
LSTM_LAYERS = {1: kc.ConvLSTM1D, 2: kc.ConvLSTM2D, 3: kc.ConvLSTM3D}
GRU_CELLS = {1: kc.ConvGRU1DCell, 2: kc.ConvGRU2DCell, 3: kc.ConvGRU3DCell}
LSTM_CELLS = {1: kc.ConvLSTM1DCell, 2: kc.ConvLSTM2DCell, 3: kc.ConvLSTM3DCell}
# Keyed by (family, rank), family "gru" or "lstm".
LAYERS = {
    **{("gru", rank): cls for rank, cls in GRU_LAYERS.items()},
    **{("lstm", rank): cls for rank, cls in LSTM_LAYERS.items()},
}
CELLS = {
    **{("gru", rank): cls for rank, cls in GRU_CELLS.items()},
    **{("lstm", rank): cls for rank, cls in LSTM_CELLS.items()},
}
GATES = {"gru": 3, "lstm": 4}


def random_weights(shapes, rng, scale):
    """Normal float32 arrays of the given shapes, drawn in order."""
    return [rng.normal(scale=scale, size=s).astype("float32") for s in shapes]


def randomize_weights(layer, rng, scale):
    """Sets random weights on a built layer (or cell); returns them."""
    weights = random_weights([w.shape for w in layer.weights], rng, scale)
    layer.set_weights(weights)
    return weights


def contract_weight_shapes(
    family,
    kernel_size,
    in_channels,
    filters,
    use_bias=True,
    reset_after=True,
    peepholes=None,
    normalization=None,
    state_spatial=None,
    data_format="channels_last",
):
    """The weights' shapes in the documented order: `kernel`,
    `recurrent_kernel`, (maybe) `bias`, (LSTM, maybe) `peephole_kernel`,
    then with `normalization` the `gamma`, `beta` pairs of
    `norm_weight_names`. `state_spatial` is needed for `peepholes="full"`.
    """
    units = GATES[family] * filters
    shapes = [
        tuple(kernel_size) + (in_channels, units),
        tuple(kernel_size) + (filters, units),
    ]
    if use_bias:
        two_biases = family == "gru" and reset_after
        shapes.append((2, units) if two_biases else (units,))
    if peepholes == "channel":
        shapes.append((3, filters))
    elif peepholes == "full":
        if data_format == "channels_last":
            shapes.append((3, *state_spatial, filters))
        else:
            shapes.append((3, filters, *state_spatial))
    if normalization is not None:
        for _, blocks in norm_blocks(family, reset_after):
            shapes += [(blocks * filters,)] * 2
    return shapes


def norm_blocks(family, reset_after=True):
    """The normalized terms, as documented: (sublayer name, gate blocks)."""
    if family == "lstm":
        return [("input_norm", 4), ("recurrent_norm", 4), ("cell_norm", 1)]
    if reset_after:
        return [("input_norm", 3), ("recurrent_norm", 3)]
    return [("input_norm", 3), ("recurrent_norm", 2), ("candidate_norm", 1)]
