"""Plain NumPy reference for ConvGRU and ConvLSTM, written from the
equations and weight tables of the API reference (docs/api/conv_gru.md and
docs/api/conv_lstm.md, which show the classes' docstrings).

Nothing here imports keras or keras_convgru: this module is the independent
oracle the layers are checked against. Everything is computed in float64 with
explicit loops over kernel offsets, so a reader can check it against the
equations line by line.

Layout conventions (channels_last):

* sequences: ``(batch, time, *spatial, channels)``
* kernels: ``(*kernel_size, in_channels, gates * filters)``
* states: ``(batch, *state_spatial, filters)``
"""

import itertools
import math

import numpy as np


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def _as_tuple(value, rank):
    if np.isscalar(value):
        return (int(value),) * rank
    value = tuple(int(v) for v in value)
    if len(value) != rank:
        raise ValueError(f"Expected {rank} values, received {value}")
    return value


def _same_padding(size, kernel, stride, dilation):
    """Left/right padding of one axis, exactly as TensorFlow's "same"."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def conv_output_spatial_shape(
    spatial_shape, kernel_size, strides, padding, dilation_rate
):
    """Spatial output size of a convolution, TensorFlow conventions."""
    rank = len(spatial_shape)
    strides = _as_tuple(strides, rank)
    dilation_rate = _as_tuple(dilation_rate, rank)
    kernel_size = _as_tuple(kernel_size, rank)
    shape = []
    for n, k, s, d in zip(spatial_shape, kernel_size, strides, dilation_rate):
        if padding == "same":
            shape.append(math.ceil(n / s))
        elif padding == "valid":
            shape.append((n - (k - 1) * d - 1) // s + 1)
        else:
            raise ValueError(f"Unknown padding: {padding!r}")
    return tuple(shape)


def conv_nd(x, w, strides=1, padding="valid", dilation_rate=1):
    """N-D cross-correlation (no kernel flip), channels_last.

    Args:
        x: ``(batch, *spatial, in_channels)``.
        w: ``(*kernel_size, in_channels, out_channels)``.
        strides, dilation_rate: int or tuple of ``rank`` ints.
        padding: ``"same"`` (TensorFlow's: extra pad on the right) or
            ``"valid"``.

    Returns:
        ``(batch, *out_spatial, out_channels)`` in float64.
    """
    x = np.asarray(x, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    rank = w.ndim - 2
    if x.ndim != rank + 2:
        raise ValueError(f"x has rank {x.ndim}, kernel implies {rank + 2}")
    kernel_size = w.shape[:rank]
    strides = _as_tuple(strides, rank)
    dilation_rate = _as_tuple(dilation_rate, rank)
    spatial = x.shape[1:-1]
    out_shape = conv_output_spatial_shape(
        spatial, kernel_size, strides, padding, dilation_rate
    )

    if padding == "same":
        pads = [
            _same_padding(n, k, s, d)
            for n, k, s, d in zip(spatial, kernel_size, strides, dilation_rate)
        ]
        x = np.pad(x, [(0, 0)] + pads + [(0, 0)])

    out = np.zeros((x.shape[0],) + out_shape + (w.shape[-1],), np.float64)
    for offset in itertools.product(*(range(k) for k in kernel_size)):
        window = tuple(
            slice(o * d, o * d + (n_out - 1) * s + 1, s)
            for o, d, s, n_out in zip(offset, dilation_rate, strides, out_shape)
        )
        patch = x[(slice(None),) + window + (slice(None),)]
        out += np.einsum("...c,cd->...d", patch, w[offset])
    return out


def group_norm(x, gamma, beta, groups, epsilon):
    """Group normalization of one block, channels_last, per sample.

    ``x`` is ``(batch, *spatial, channels)``; the channels are split into
    ``groups`` consecutive groups, and each sample's group is normalized
    over its spatial axes and its channels (population variance), then
    scaled by ``gamma`` and shifted by ``beta`` per channel. ``groups=1``
    is the layer normalization of the block.
    """
    x = np.asarray(x, np.float64)
    channels = x.shape[-1]
    width = channels // groups
    out = np.empty_like(x)
    for g in range(groups):
        block = x[..., g * width : (g + 1) * width]
        axes = tuple(range(1, x.ndim))
        mean = block.mean(axis=axes, keepdims=True)
        variance = ((block - mean) ** 2).mean(axis=axes, keepdims=True)
        out[..., g * width : (g + 1) * width] = (block - mean) / np.sqrt(
            variance + epsilon
        )
    return out * np.asarray(gamma, np.float64) + np.asarray(beta, np.float64)


def _normalize_gates(x, gates, norm, which):
    """Each gate's block of ``x`` normalized on its own, or ``x`` as is.

    ``norm`` is ``None`` or a dict with ``"groups"``, ``"epsilon"`` and,
    per normalized term ``which``, a ``(gamma, beta)`` pair covering the
    ``gates`` blocks of ``x``.
    """
    if norm is None:
        return x
    gamma, beta = (np.asarray(a, np.float64) for a in norm[which])
    n = x.shape[-1] // gates
    blocks = []
    for g in range(gates):
        part = slice(g * n, (g + 1) * n)
        blocks.append(
            group_norm(
                x[..., part],
                gamma[part],
                beta[part],
                norm["groups"],
                norm["epsilon"],
            )
        )
    return np.concatenate(blocks, axis=-1)


def _time_order(time_steps, go_backwards):
    steps = range(time_steps)
    return list(reversed(steps)) if go_backwards else list(steps)


def _step_mask(mask, t, state):
    """``(batch,)`` bool mask at step ``t`` shaped to broadcast on ``state``."""
    if mask is None:
        return np.ones((state.shape[0],) + (1,) * (state.ndim - 1), bool)
    m = np.asarray(mask, dtype=bool)[:, t]
    return m.reshape((state.shape[0],) + (1,) * (state.ndim - 1))


def _initial_state(x_seq, filters, kernel_size, strides, padding, dilation):
    spatial = conv_output_spatial_shape(
        x_seq.shape[2:-1], kernel_size, strides, padding, dilation
    )
    return np.zeros((x_seq.shape[0],) + spatial + (filters,), np.float64)


def conv_gru_reference(
    x_seq,
    kernel,
    recurrent_kernel,
    bias,
    *,
    strides=1,
    padding="valid",
    dilation_rate=1,
    reset_after=True,
    h0=None,
    mask=None,
    go_backwards=False,
    activation=np.tanh,
    recurrent_activation=sigmoid,
    norm=None,
):
    """ConvGRU over a sequence, channels_last, gate order z, r, h.

    ``bias`` is ``(3f,)``, ``(2, 3f)`` when ``reset_after`` (row 0 input
    bias, row 1 recurrent bias), or ``None`` (``use_bias=False``).

    ``norm`` (``normalization="layer"`` or ``"group"``): ``None`` or a dict
    with ``"groups"`` (1 for ``"layer"``), ``"epsilon"`` and ``(gamma,
    beta)`` pairs: ``"input"`` (3f, for ``W * x``), ``"recurrent"`` (3f for
    ``U * h``; with ``reset_after=False`` 2f, for ``Uz * h`` and ``Ur * h``)
    and, with ``reset_after=False``, ``"candidate"`` (f, for
    ``Uh * (r ⊙ h)``). Each gate's block is normalized on its own and the
    biases are added after the normalization.

    A masked step (``mask[b, t] == 0``) keeps the state and repeats the
    previous output (zeros before the first output), as ``keras.layers.GRU``
    does with its default ``zero_output_for_mask=False``.

    Returns:
        ``(outputs, h_T)``: outputs ``(batch, time, *state_spatial, f)`` in
        processing order (reversed in time when ``go_backwards``), as
        ``keras.layers.GRU(return_sequences=True)`` returns them.
    """
    x_seq = np.asarray(x_seq, np.float64)
    kernel = np.asarray(kernel, np.float64)
    recurrent_kernel = np.asarray(recurrent_kernel, np.float64)
    rank = kernel.ndim - 2
    filters = recurrent_kernel.shape[-1] // 3
    f = filters

    if bias is None:
        input_bias = np.zeros(3 * f)
        recurrent_bias = np.zeros(3 * f)
    elif reset_after:
        input_bias, recurrent_bias = np.asarray(bias, np.float64)
    else:
        input_bias = np.asarray(bias, np.float64)
        recurrent_bias = np.zeros(3 * f)

    u_z = recurrent_kernel[..., :f]
    u_r = recurrent_kernel[..., f : 2 * f]
    u_h = recurrent_kernel[..., 2 * f :]

    def recurrent_conv(state, w):
        return conv_nd(state, w, strides=1, padding="same", dilation_rate=1)

    if h0 is None:
        h = _initial_state(
            x_seq, f, kernel.shape[:rank], strides, padding, dilation_rate
        )
    else:
        h = np.asarray(h0, np.float64)
    previous_output = np.zeros_like(h)
    outputs = []
    for t in _time_order(x_seq.shape[1], go_backwards):
        x_conv = conv_nd(x_seq[:, t], kernel, strides, padding, dilation_rate)
        x_proj = _normalize_gates(x_conv, 3, norm, "input") + input_bias
        x_z = x_proj[..., :f]
        x_r = x_proj[..., f : 2 * f]
        x_h = x_proj[..., 2 * f :]

        if reset_after:
            h_conv = np.concatenate(
                [recurrent_conv(h, u) for u in (u_z, u_r, u_h)], axis=-1
            )
            h_proj = _normalize_gates(h_conv, 3, norm, "recurrent")
        else:
            h_conv = np.concatenate(
                [recurrent_conv(h, u) for u in (u_z, u_r)], axis=-1
            )
            h_proj = _normalize_gates(h_conv, 2, norm, "recurrent")
        z = recurrent_activation(x_z + h_proj[..., :f] + recurrent_bias[:f])
        r = recurrent_activation(
            x_r + h_proj[..., f : 2 * f] + recurrent_bias[f : 2 * f]
        )
        if reset_after:
            h_tilde = activation(
                x_h + r * (h_proj[..., 2 * f :] + recurrent_bias[2 * f :])
            )
        else:
            candidate = _normalize_gates(
                recurrent_conv(r * h, u_h), 1, norm, "candidate"
            )
            h_tilde = activation(x_h + candidate)
        h_new = z * h + (1.0 - z) * h_tilde

        keep = _step_mask(mask, t, h)
        h = np.where(keep, h_new, h)
        previous_output = np.where(keep, h_new, previous_output)
        outputs.append(previous_output)
    return np.stack(outputs, axis=1), h


def conv_lstm_reference(
    x_seq,
    kernel,
    recurrent_kernel,
    bias,
    *,
    strides=1,
    padding="valid",
    dilation_rate=1,
    h0=None,
    c0=None,
    mask=None,
    go_backwards=False,
    activation=np.tanh,
    recurrent_activation=sigmoid,
    peephole_kernel=None,
    norm=None,
):
    """ConvLSTM over a sequence, channels_last, gate order i, f, c, o.

    ``bias`` is ``(4f,)`` or ``None``. Masking and output order as in
    :func:`conv_gru_reference`.

    ``peephole_kernel`` (Shi et al. 2015): ``None``, ``(3, f)`` (one weight
    per channel, ``peepholes="channel"``) or ``(3, *state_spatial, f)`` (one
    per pixel and channel, ``"full"``), rows ``wci, wcf, wco``: ``i`` and
    ``f`` see the old cell state ``c``, ``o`` the new one ``c'``.

    ``norm``: ``None`` or a dict with ``"groups"``, ``"epsilon"`` and
    ``(gamma, beta)`` pairs ``"input"`` (4f, ``W * x``), ``"recurrent"``
    (4f, ``U * h``) and ``"cell"`` (f, ``c'`` before the output ``tanh``;
    the carried ``c'`` is not normalized). Biases and peepholes are added
    after the normalization.

    Returns:
        ``(outputs, h_T, c_T)``.
    """
    x_seq = np.asarray(x_seq, np.float64)
    kernel = np.asarray(kernel, np.float64)
    recurrent_kernel = np.asarray(recurrent_kernel, np.float64)
    rank = kernel.ndim - 2
    n = recurrent_kernel.shape[-1] // 4
    bias = np.zeros(4 * n) if bias is None else np.asarray(bias, np.float64)

    def gate(pre_activation, g):
        return pre_activation[..., g * n : (g + 1) * n]

    zeros = _initial_state(
        x_seq, n, kernel.shape[:rank], strides, padding, dilation_rate
    )
    h = zeros.copy() if h0 is None else np.asarray(h0, np.float64)
    c = zeros.copy() if c0 is None else np.asarray(c0, np.float64)
    previous_output = np.zeros_like(h)
    outputs = []
    if peephole_kernel is None:
        w_ci = w_cf = w_co = 0.0
    else:
        w_ci, w_cf, w_co = np.asarray(peephole_kernel, np.float64)
    for t in _time_order(x_seq.shape[1], go_backwards):
        x_conv = conv_nd(x_seq[:, t], kernel, strides, padding, dilation_rate)
        h_conv = conv_nd(h, recurrent_kernel, strides=1, padding="same")
        pre = (
            _normalize_gates(x_conv, 4, norm, "input")
            + _normalize_gates(h_conv, 4, norm, "recurrent")
            + bias
        )
        i = recurrent_activation(gate(pre, 0) + w_ci * c)
        f = recurrent_activation(gate(pre, 1) + w_cf * c)
        c_new = f * c + i * activation(gate(pre, 2))
        o = recurrent_activation(gate(pre, 3) + w_co * c_new)
        h_new = o * activation(_normalize_gates(c_new, 1, norm, "cell"))

        keep = _step_mask(mask, t, h)
        h = np.where(keep, h_new, h)
        c = np.where(keep, c_new, c)
        previous_output = np.where(keep, h_new, previous_output)
        outputs.append(previous_output)
    return np.stack(outputs, axis=1), h, c


def _channels_first_to_last(x, leading):
    """Move axis ``leading`` (the channel axis) to the end."""
    return np.moveaxis(x, leading, -1)


def _channels_last_to_first(x, leading):
    return np.moveaxis(x, -1, leading)


def channels_first(reference):
    """Wrap a reference so it takes and returns channels_first arrays.

    Sequences are ``(batch, time, channels, *spatial)``; states and
    per-step outputs are ``(batch, filters, *spatial)``. Kernels keep their
    layout (Keras does not change weight layouts with ``data_format``);
    a ``"full"`` peephole kernel is ``(3, filters, *spatial)``.
    """

    def wrapped(x_seq, *args, h0=None, c0=None, **kwargs):
        peephole_kernel = kwargs.get("peephole_kernel")
        if peephole_kernel is not None and np.ndim(peephole_kernel) > 2:
            # "full": (3, f, *spatial) with channels_first.
            kwargs["peephole_kernel"] = _channels_first_to_last(
                np.asarray(peephole_kernel), 1
            )
        x_seq = _channels_first_to_last(np.asarray(x_seq), 2)
        if h0 is not None:
            kwargs["h0"] = _channels_first_to_last(np.asarray(h0), 1)
        if c0 is not None:
            kwargs["c0"] = _channels_first_to_last(np.asarray(c0), 1)
        outputs, *states = reference(x_seq, *args, **kwargs)
        outputs = _channels_last_to_first(outputs, 2)
        states = [_channels_last_to_first(s, 1) for s in states]
        return (outputs, *states)

    wrapped.__name__ = f"{reference.__name__}_channels_first"
    wrapped.__doc__ = reference.__doc__
    return wrapped


conv_gru_reference_channels_first = channels_first(conv_gru_reference)
conv_lstm_reference_channels_first = channels_first(conv_lstm_reference)
