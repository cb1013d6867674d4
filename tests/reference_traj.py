"""Plain NumPy reference of the TrajGRU (Shi et al. 2017).

Written from the equations of the API reference, docs/api/traj_gru.md.

Nothing here imports keras or keras_convgru. The convolutions are
`reference.conv_nd` (explicit loops over kernel offsets); the bilinear
sampling is written out point by point, exactly as the page states it:
with `y0 = floor(py)`, `x0 = floor(px)`, `a = py - y0`, `b = px - x0`,

    sample = (1-a)(1-b) h[y0, x0] + (1-a) b h[y0, x0+1]
             + a (1-b) h[y0+1, x0] + a b h[y0+1, x0+1],

each neighbour outside the frame read as zero. Everything is float64 and
channels_last:

* sequences `(batch, time, rows, cols, channels)`, states
  `(batch, rows, cols, filters)`;
* weights in the contract's layout, a dict with the keys `kernel`,
  `recurrent_kernel`, `bias`, `flow_input_kernel`, `flow_state_kernel`,
  `flow_bias`, `flow_kernel`, `flow_output_bias` (the three biases may be
  missing: `use_bias=False`).
"""

import math

import numpy as np
from reference import _step_mask
from reference import _time_order
from reference import conv_nd
from reference import sigmoid


def leaky_relu(x, negative_slope=0.2):
    return np.where(x >= 0, x, negative_slope * x)


def bilinear_sample(image, py, px):
    """`image` `(rows, cols, channels)` sampled at the point `(py, px)`."""
    rows, cols = image.shape[:2]
    y0, x0 = math.floor(py), math.floor(px)
    a, b = py - y0, px - x0

    def pixel(y, x):
        if 0 <= y < rows and 0 <= x < cols:
            return image[y, x]
        return np.zeros(image.shape[-1])

    return (
        (1 - a) * (1 - b) * pixel(y0, x0)
        + (1 - a) * b * pixel(y0, x0 + 1)
        + a * (1 - b) * pixel(y0 + 1, x0)
        + a * b * pixel(y0 + 1, x0 + 1)
    )


def warp(state, flows):
    """Every link's warp of `state`, concatenated link-major.

    Args:
        state: `(batch, rows, cols, filters)`.
        flows: `(batch, rows, cols, 2 * links)`, channels `(2l, 2l + 1)`
            are `(dy_l, dx_l)`.

    Returns:
        `(batch, rows, cols, links * filters)`: channels
        `[l * filters, (l + 1) * filters)` are `h_l(y, x)`, `state` sampled
        at `(y + dy_l(y, x), x + dx_l(y, x))`.
    """
    state = np.asarray(state, np.float64)
    flows = np.asarray(flows, np.float64)
    batch, rows, cols, filters = state.shape
    links = flows.shape[-1] // 2
    out = np.zeros((batch, rows, cols, links * filters))
    for n in range(batch):
        for y in range(rows):
            for x in range(cols):
                for link in range(links):
                    dy = flows[n, y, x, 2 * link]
                    dx = flows[n, y, x, 2 * link + 1]
                    out[n, y, x, link * filters : (link + 1) * filters] = (
                        bilinear_sample(state[n], y + dy, x + dx)
                    )
    return out


def _same(x, w):
    return conv_nd(x, w, strides=1, padding="same")


def flows_of(x, h, weights, flow_activation=leaky_relu):
    """The flow generator: `Ff * flow_activation(Fx*x + Fh*h + bf) + bff`."""
    flow_bias = weights.get("flow_bias", 0.0)
    flow_output_bias = weights.get("flow_output_bias", 0.0)
    hidden = flow_activation(
        _same(x, weights["flow_input_kernel"])
        + _same(h, weights["flow_state_kernel"])
        + flow_bias
    )
    return _same(hidden, weights["flow_kernel"]) + flow_output_bias


def traj_gru_step(
    x,
    h,
    weights,
    activation=np.tanh,
    recurrent_activation=sigmoid,
    flow_activation=leaky_relu,
):
    """One TrajGRU step: frame `x` `(batch, rows, cols, channels)`, state
    `h`; returns the new state."""
    x = np.asarray(x, np.float64)
    h = np.asarray(h, np.float64)
    f = h.shape[-1]
    bias = weights.get("bias")
    bx, bh = (np.zeros(3 * f), np.zeros(3 * f)) if bias is None else bias
    flows = flows_of(x, h, weights, flow_activation)
    u = weights["recurrent_kernel"].reshape(-1, 3 * f)  # 1 x 1 convolution
    hh = warp(h, flows) @ u + bh
    xh = _same(x, weights["kernel"]) + bx
    z = recurrent_activation(xh[..., :f] + hh[..., :f])
    r = recurrent_activation(xh[..., f : 2 * f] + hh[..., f : 2 * f])
    h_tilde = activation(xh[..., 2 * f :] + r * hh[..., 2 * f :])
    return z * h + (1 - z) * h_tilde


def traj_gru_reference(
    x_seq, weights, h0=None, mask=None, go_backwards=False, **activations
):
    """TrajGRU over a sequence, masked steps as `keras.layers.GRU`.

    Returns:
        `(outputs, h_T)`, outputs `(batch, time, rows, cols, filters)` in
        processing order.
    """
    x_seq = np.asarray(x_seq, np.float64)
    filters = weights["recurrent_kernel"].shape[-1] // 3
    if h0 is None:
        h = np.zeros(x_seq.shape[:1] + x_seq.shape[2:-1] + (filters,))
    else:
        h = np.asarray(h0, np.float64)
    previous_output = np.zeros_like(h)
    outputs = []
    for t in _time_order(x_seq.shape[1], go_backwards):
        h_new = traj_gru_step(x_seq[:, t], h, weights, **activations)
        keep = _step_mask(mask, t, h)
        h = np.where(keep, h_new, h)
        previous_output = np.where(keep, h_new, previous_output)
        outputs.append(previous_output)
    return np.stack(outputs, axis=1), h
