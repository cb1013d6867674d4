"""The convolution helpers of every cell: geometry, convolution, bias.

One place for what a convolution needs on every backend: the output size
of an axis (`conv_output_length`), the convolution itself in a cell's
data format (`convolve`, with TensorFlow's two CPU workarounds), a
per-channel bias (`add_channel_bias`) and the layout of a step tensor.
"""

import keras
from keras import ops

from keras_convgru._validation import standardize_tuple


def conv_output_length(length, kernel_size, stride, padding, dilation):
    """Output size of one spatial axis of a convolution.

    Works on Python ints, `None` (unknown size) and symbolic scalars (a
    dynamic frame size inside a traced function) alike.
    """
    if length is None:
        return None
    if padding == "same":
        return (length + stride - 1) // stride
    effective_kernel = (kernel_size - 1) * dilation + 1
    return (length - effective_kernel) // stride + 1


def channel_axis(data_format):
    """Axis of the channels in a step tensor `(batch, ...)`."""
    return -1 if data_format == "channels_last" else 1


def frame_shape(step_shape, data_format):
    """The spatial part of a step shape `(batch, ...)`."""
    if data_format == "channels_last":
        return tuple(step_shape[1:-1])
    return tuple(step_shape[2:])


def step_shape(batch, spatial, channels, data_format):
    """A step shape `(batch, ...)` from its parts."""
    if data_format == "channels_last":
        return (batch, *spatial, channels)
    return (batch, channels, *spatial)


def convolve(
    x, kernel, rank, data_format, strides=1, padding="same", dilation_rate=1
):
    """`ops.conv` in `data_format`, on every backend.

    Two TensorFlow CPU quirks are handled here, once for every convolution
    of the package:

    * Without oneDNN (the default on CPUs without AVX-512), TensorFlow's
      CPU convolutions take channels-last tensors only; channels-first
      tensors are transposed around the convolution there, which is
      correct on any device. JAX and PyTorch convolve channels first
      natively.
    * With oneDNN, a convolution of an empty batch returns the input's
      channel count instead of the kernel's (`(0, 5, 5, 2)` for a 2 -> 6
      channel kernel). The result is reshaped to the size the convolution
      has by definition, which is free for every other batch (the shape
      is the same).
    """
    tensorflow = keras.backend.backend() == "tensorflow"
    conv_format = data_format
    if tensorflow and data_format == "channels_first":
        x = ops.transpose(x, (0, *range(2, rank + 2), 1))
        conv_format = "channels_last"
    y = ops.conv(
        x,
        kernel,
        strides=strides,
        padding=padding,
        data_format=conv_format,
        dilation_rate=dilation_rate,
    )
    if not tensorflow:
        return y
    strides = standardize_tuple(strides, rank, "strides")
    dilation_rate = standardize_tuple(dilation_rate, rank, "dilation_rate")
    in_shape = ops.shape(x)
    out_spatial = [
        conv_output_length(n, k, s, padding, d)
        for n, k, s, d in zip(
            in_shape[1:-1], kernel.shape[:-2], strides, dilation_rate
        )
    ]
    y = ops.reshape(y, (-1, *out_spatial, kernel.shape[-1]))
    if data_format == "channels_first":
        y = ops.transpose(y, (0, rank + 1, *range(1, rank + 1)))
    return y


def add_channel_bias(x, bias, data_format):
    """`x + bias`, the bias along the channels (`None`: no bias)."""
    if bias is None:
        return x
    if data_format == "channels_first":
        bias = ops.reshape(bias, (-1,) + (1,) * (len(x.shape) - 2))
        # Bias first: Keras's TensorFlow `add(x, bias)` turns into a
        # BiasAdd that reads the bias as channels-last whenever the last
        # axis of `x` has the bias's length (a frame as wide as the
        # channels are many), adding it along the wrong axis.
        return ops.add(bias, x)
    return ops.add(x, bias)
