"""`ConvRecurrentLayer`: the base of every family's layer.

A family layer (`ConvGRU2D`, `ConvLSTM3D`, `TrajGRU2D`, ...) is a
`ConvRNN` around one cell built from the layer's own arguments. Its
`__init__` writes every argument out (as `keras.layers.ConvLSTM2D`'s
does) and hands them here; the cell's arguments reach the cell, the RNN
arguments `ConvRNN`, and the config is the cell's plus the RNN's, so an
argument added to a cell reaches its layer and its config in one edit.
"""

from keras_convgru.conv_rnn import ConvRNN


def cell_argument(name):
    """A read-only property of a layer: its cell's argument `name`."""

    def getter(self):
        return getattr(self.cell, name)

    getter.__name__ = name
    getter.__doc__ = f"The cell's `{name}` (read-only)."
    return property(getter)


#: The arguments of a family layer that are `ConvRNN`'s, not the cell's.
RNN_ARGUMENTS = (
    "activity_regularizer",
    "return_sequences",
    "return_state",
    "go_backwards",
    "stateful",
    "unroll",
    "zero_output_for_mask",
    "fuse_recurrence",
)


class ConvRecurrentLayer(ConvRNN):
    """A `ConvRNN` around one cell built from the layer's own arguments.

    The family layers set `cell_class`. Their config is the cell's config
    plus the RNN arguments, as `keras.layers.ConvLSTM2D`'s is, and the
    cell's arguments read on the layer (`layer.filters`,
    `layer.kernel_size`, ...), as on Keras's.
    """

    cell_class = None

    def __init__(self, arguments, **kwargs):
        """`arguments`: the family layer's named arguments (cell and RNN)."""
        arguments = dict(arguments)
        rnn_arguments = {
            name: arguments.pop(name)
            for name in RNN_ARGUMENTS
            if name in arguments
        }
        cell = self.cell_class(
            **arguments, name="cell", dtype=kwargs.get("dtype")
        )
        super().__init__(cell, **rnn_arguments, **kwargs)

    filters = cell_argument("filters")
    kernel_size = cell_argument("kernel_size")
    strides = cell_argument("strides")
    padding = cell_argument("padding")
    data_format = cell_argument("data_format")
    dilation_rate = cell_argument("dilation_rate")
    activation = cell_argument("activation")
    recurrent_activation = cell_argument("recurrent_activation")
    use_bias = cell_argument("use_bias")
    kernel_initializer = cell_argument("kernel_initializer")
    recurrent_initializer = cell_argument("recurrent_initializer")
    bias_initializer = cell_argument("bias_initializer")
    kernel_regularizer = cell_argument("kernel_regularizer")
    recurrent_regularizer = cell_argument("recurrent_regularizer")
    bias_regularizer = cell_argument("bias_regularizer")
    kernel_constraint = cell_argument("kernel_constraint")
    recurrent_constraint = cell_argument("recurrent_constraint")
    bias_constraint = cell_argument("bias_constraint")
    dropout = cell_argument("dropout")
    recurrent_dropout = cell_argument("recurrent_dropout")
    seed = cell_argument("seed")

    def get_config(self):
        config = super().get_config()
        del config["cell"]
        cell_config = self.cell.get_config()
        for key in ("name", "trainable", "dtype", "rank"):
            cell_config.pop(key, None)
        return {**config, **cell_config}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


class NormalizationArguments:
    """The normalization arguments read on a layer (ConvGRU, ConvLSTM)."""

    normalization = cell_argument("normalization")
    norm_groups = cell_argument("norm_groups")
    norm_epsilon = cell_argument("norm_epsilon")
