"""Plain NumPy reference for the spatiotemporal memory cells (PredRNN's
ST-LSTM, PredRNN++'s Causal LSTM and gradient highway unit, SA-ConvLSTM),
their zigzag memory in stacks and PredRNN-V2's decoupling loss.

Written only from the equations, weight tables and rules of the public
contract (API.md, "Spatiotemporal memory cells: PredRNN, PredRNN++,
SA-ConvLSTM"); nothing here imports keras or keras_convgru, so it is an
independent oracle for the layers. Everything is computed in float64.

Conventions (channels_last, 2D):

* sequences ``(batch, time, rows, cols, channels)``;
* states and per-step outputs ``(batch, rows, cols, filters)``;
* kernels ``(k, k, in_channels, blocks * filters)``, the blocks in the
  contract's order; every convolution is stride 1 and ``"same"``
  (TensorFlow's padding, via ``reference.conv_nd``);
* ``weights``: a dict by the contract's weight NAME (``kernel``,
  ``recurrent_kernel``, ``memory_kernel``, ...). ``bias`` may be absent
  (``use_bias=False``): it then counts as zero.

Every step function has the signature ``step(x, states, weights, *,
activation=np.tanh, recurrent_activation=sigmoid)`` and returns
``(output, new_states)`` as a Keras cell does. ``σ`` in the contract is
``recurrent_activation`` and ``tanh`` is ``activation``.
"""

import numpy as np
from reference import _step_mask
from reference import _time_order
from reference import conv_nd
from reference import sigmoid

# --- helpers ----------------------------------------------------------------


def _f64(a):
    return np.asarray(a, dtype=np.float64)


def _conv(x, w):
    """Stride-1 ``"same"`` convolution, channels_last (no bias)."""
    return conv_nd(_f64(x), _f64(w), strides=1, padding="same")


def _split(a, blocks):
    """Split the channel axis into ``blocks`` equal consecutive blocks."""
    n = a.shape[-1]
    assert n % blocks == 0, (n, blocks)
    w = n // blocks
    return [a[..., j * w : (j + 1) * w] for j in range(blocks)]


def _cat(*arrays):
    return np.concatenate(arrays, axis=-1)


def _bias(weights, name, size):
    b = weights.get(name)
    return np.zeros(size) if b is None else _f64(b)


def filters_of(weights):
    """``F``: the input channels of every recurrent kernel."""
    return _f64(weights["recurrent_kernel"]).shape[-2]


# --- cells ------------------------------------------------------------------


def st_lstm_step(
    x,
    states,
    weights,
    *,
    activation=np.tanh,
    recurrent_activation=sigmoid,
    return_deltas=False,
):
    """ST-LSTM (PredRNN) step. ``states = [h, c, m]``.

    Weights: ``kernel`` (k, k, in, 7F) blocks ``i, f, g, i', f', g', o``;
    ``recurrent_kernel`` (k, k, F, 4F) blocks ``i, f, g, o``;
    ``memory_kernel`` (k, k, F, 3F) blocks ``i', f', g'``;
    ``output_kernel`` (k, k, 2F, F) on ``[c' ; m']``; ``fusion_kernel``
    (1, 1, 2F, F) on ``[c' ; m']``; ``bias`` (7F,) added to ``W * x``.

    With ``return_deltas=True`` also returns ``(Δc, Δm) = (i ⊙ g,
    i' ⊙ g')``, the terms of PredRNN-V2's decoupling loss.
    """
    sig, act = recurrent_activation, activation
    h, c, m = (_f64(s) for s in states)
    f_ = filters_of(weights)
    xw = _conv(x, weights["kernel"]) + _bias(weights, "bias", 7 * f_)
    i_x, f_x, g_x, ip_x, fp_x, gp_x, o_x = _split(xw, 7)
    i_h, f_h, g_h, o_h = _split(_conv(h, weights["recurrent_kernel"]), 4)
    i_m, f_m, g_m = _split(_conv(m, weights["memory_kernel"]), 3)

    i = sig(i_x + i_h)
    f = sig(f_x + f_h)
    g = act(g_x + g_h)
    c_new = f * c + i * g

    ip = sig(ip_x + i_m)
    fp = sig(fp_x + f_m)
    gp = act(gp_x + g_m)
    m_new = fp * m + ip * gp

    cm = _cat(c_new, m_new)
    o = sig(o_x + o_h + _conv(cm, weights["output_kernel"]))
    h_new = o * act(_conv(cm, weights["fusion_kernel"]))
    new_states = [h_new, c_new, m_new]
    if return_deltas:
        return h_new, new_states, (i * g, ip * gp)
    return h_new, new_states


def causal_lstm_step(
    x, states, weights, *, activation=np.tanh, recurrent_activation=sigmoid
):
    """Causal LSTM (PredRNN++) step. ``states = [h, c, m]``.

    Weights: ``kernel`` (k, k, in, 7F) blocks ``i, f, g, i', f', g', o``;
    ``recurrent_kernel`` (k, k, F, 4F) blocks ``i, f, g, o``;
    ``cell_kernel`` (k, k, F, 3F) blocks ``i, f, g``; ``memory_kernel``
    (k, k, F, 3F) blocks ``i', f', m_m``; ``cell_to_memory_kernel``
    (k, k, F, 4F) blocks ``i, g, f, o`` IN THAT ORDER;
    ``memory_output_kernel`` (k, k, F, F); ``fusion_kernel``
    (1, 1, 2F, F) on ``[c' ; m']``; ``bias`` (7F,).

    The output gate ``o`` uses ``activation`` (tanh), as the contract
    says, not ``recurrent_activation``.
    """
    sig, act = recurrent_activation, activation
    h, c, m = (_f64(s) for s in states)
    f_ = filters_of(weights)
    xw = _conv(x, weights["kernel"]) + _bias(weights, "bias", 7 * f_)
    i_x, f_x, g_x, ip_x, fp_x, gp_x, o_x = _split(xw, 7)
    i_h, f_h, g_h, o_h = _split(_conv(h, weights["recurrent_kernel"]), 4)
    i_c, f_c, g_c = _split(_conv(c, weights["cell_kernel"]), 3)
    i_m, f_m, m_m = _split(_conv(m, weights["memory_kernel"]), 3)

    i = sig(i_x + i_h + i_c)
    f = sig(f_x + f_h + f_c)
    g = act(g_x + g_h + g_c)
    c_new = f * c + i * g

    i_c2, g_c2, f_c2, o_c2 = _split(
        _conv(c_new, weights["cell_to_memory_kernel"]), 4
    )
    ip = sig(ip_x + i_m + i_c2)
    fp = sig(fp_x + f_m + f_c2)
    gp = act(gp_x + g_c2)
    m_new = fp * act(m_m) + ip * gp

    o = act(o_x + o_h + o_c2 + _conv(m_new, weights["memory_output_kernel"]))
    h_new = o * act(_conv(_cat(c_new, m_new), weights["fusion_kernel"]))
    return h_new, [h_new, c_new, m_new]


def ghu_step(
    x, states, weights, *, activation=np.tanh, recurrent_activation=sigmoid
):
    """Gradient highway unit step. ``states = [z]``, output ``z'``.

    Weights: ``kernel`` (k, k, in, 2F) blocks ``p, u``;
    ``recurrent_kernel`` (k, k, F, 2F) blocks ``p, u``; ``bias`` (2F,).
    """
    (z,) = (_f64(s) for s in states)
    f_ = filters_of(weights)
    p_x, u_x = _split(
        _conv(x, weights["kernel"]) + _bias(weights, "bias", 2 * f_), 2
    )
    p_z, u_z = _split(_conv(z, weights["recurrent_kernel"]), 2)
    p = activation(p_x + p_z)
    u = recurrent_activation(u_x + u_z)
    z_new = u * p + (1.0 - u) * z
    return z_new, [z_new]


def conv_lstm_step(
    x, states, weights, *, activation=np.tanh, recurrent_activation=sigmoid
):
    """ConvLSTM step (gates ``i, f, c, o``), stride 1, ``"same"``.

    ``states = [h, c]``; ``kernel`` (k, k, in, 4F), ``recurrent_kernel``
    (k, k, F, 4F), ``bias`` (4F,).
    """
    h, c = (_f64(s) for s in states)
    f_ = filters_of(weights)
    pre = (
        _conv(x, weights["kernel"])
        + _conv(h, weights["recurrent_kernel"])
        + _bias(weights, "bias", 4 * f_)
    )
    i_, f, g, o = _split(pre, 4)
    c_new = recurrent_activation(f) * c + recurrent_activation(i_) * (
        activation(g)
    )
    h_new = recurrent_activation(o) * activation(c_new)
    return h_new, [h_new, c_new]


def conv_gru_step(
    x, states, weights, *, activation=np.tanh, recurrent_activation=sigmoid
):
    """ConvGRU step, ``reset_after=True`` (gates ``z, r, h``), stride 1,
    ``"same"``. ``states = [h]``; ``bias`` (2, 3F) (row 0 input, row 1
    recurrent) or absent.
    """
    (h,) = (_f64(s) for s in states)
    f_ = filters_of(weights)
    bias = weights.get("bias")
    if bias is None:
        b_in = b_rec = np.zeros(3 * f_)
    else:
        b_in, b_rec = _f64(bias)
    x_z, x_r, x_h = _split(_conv(x, weights["kernel"]) + b_in, 3)
    h_z, h_r, h_h = _split(_conv(h, weights["recurrent_kernel"]) + b_rec, 3)
    z = recurrent_activation(x_z + h_z)
    r = recurrent_activation(x_r + h_r)
    h_tilde = activation(x_h + r * h_h)
    h_new = z * h + (1.0 - z) * h_tilde
    return h_new, [h_new]


def _conv1x1(x, w, b):
    return _conv(x, w) + _f64(b)


def _attend(q, k, v):
    """``Σ_p' softmax_p'(q(p) · k(p')) v(p')``, over flattened positions.

    ``q``, ``k``: ``(batch, rows, cols, d)``; ``v``: ``(batch, rows, cols,
    F)``. The softmax runs over the N = rows x cols positions ``p'``, with
    no scaling of the scores.
    """
    batch, rows, cols, _ = q.shape
    n = rows * cols
    qf = q.reshape(batch, n, -1)
    kf = k.reshape(batch, n, -1)
    vf = v.reshape(batch, n, -1)
    scores = np.einsum("bpd,bqd->bpq", qf, kf)
    scores = scores - scores.max(axis=-1, keepdims=True)
    weights = np.exp(scores)
    weights /= weights.sum(axis=-1, keepdims=True)
    out = np.einsum("bpq,bqf->bpf", weights, vf)
    return out.reshape(batch, rows, cols, -1)


def sa_conv_lstm_step(
    x, states, weights, *, activation=np.tanh, recurrent_activation=sigmoid
):
    """SA-ConvLSTM (Lin et al. 2020) step. ``states = [h, c, m]``.

    A ConvLSTM step (``kernel``, ``recurrent_kernel``, ``bias``, gates
    ``i, f, c, o``) gives ``ĥ`` and ``c'``; then the self-attention memory
    with 1 x 1 convolutions: ``attention_kernel``/``attention_bias``
    (F -> 2d + F: ``q, k_h, v_h``), ``memory_attention_kernel``/
    ``memory_attention_bias`` (F -> d + F: ``k_m, v_m``),
    ``attention_output_kernel``/``attention_output_bias`` (2F -> 2F on
    ``[Z_h ; Z_m]``), ``memory_gate_kernel``/``memory_gate_bias``
    (3F -> 3F on ``[Z ; ĥ]``: ``a_i, a_g, a_o``). ``d`` is read off
    ``attention_kernel``'s shape. Output and next hidden state: ``h'``.
    """
    sig, act = recurrent_activation, activation
    h, c, m = (_f64(s) for s in states)
    f_ = filters_of(weights)
    h_hat, (_, c_new) = conv_lstm_step(
        x,
        [h, c],
        weights,
        activation=activation,
        recurrent_activation=recurrent_activation,
    )
    d = (_f64(weights["attention_kernel"]).shape[-1] - f_) // 2
    qkv = _conv1x1(
        h_hat, weights["attention_kernel"], weights["attention_bias"]
    )
    q, k_h, v_h = qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]
    kv = _conv1x1(
        m, weights["memory_attention_kernel"], weights["memory_attention_bias"]
    )
    k_m, v_m = kv[..., :d], kv[..., d:]
    z_h = _attend(q, k_h, v_h)
    z_m = _attend(q, k_m, v_m)
    z = _conv1x1(
        _cat(z_h, z_m),
        weights["attention_output_kernel"],
        weights["attention_output_bias"],
    )
    a_i, a_g, a_o = _split(
        _conv1x1(
            _cat(z, h_hat),
            weights["memory_gate_kernel"],
            weights["memory_gate_bias"],
        ),
        3,
    )
    gate = sig(a_i)
    m_new = (1.0 - gate) * m + gate * act(a_g)
    h_new = sig(a_o) * m_new
    return h_new, [h_new, c_new, m_new]


# --- stacks -----------------------------------------------------------------

STEPS = {
    # kind: (step function, number of states, carries the zigzag memory)
    "st_lstm": (st_lstm_step, 3, True),
    "causal_lstm": (causal_lstm_step, 3, True),
    "ghu": (ghu_step, 1, False),
    "sa_conv_lstm": (sa_conv_lstm_step, 3, False),
    "conv_lstm": (conv_lstm_step, 2, False),
    "conv_gru": (conv_gru_step, 1, False),
}


def cell(kind, weights, memory=None):
    """A ``steps`` entry for :func:`stack_reference`.

    ``kind``: a key of ``STEPS``; ``weights``: the dict by weight name;
    ``memory``: whether the cell's state 2 (of ``[h, c, m]``) is the
    zigzag memory (default: True for ``st_lstm`` and ``causal_lstm``).
    SA-ConvLSTM's ``m`` is its own (it is not in the contract's zigzag).
    """
    step, n_states, zigzag = STEPS[kind]
    return {
        "kind": kind,
        "step": step,
        "n_states": n_states,
        "memory": zigzag if memory is None else bool(memory),
        "weights": weights,
    }


def stack_reference(
    steps,
    x_seq,
    initial_states=None,
    go_backwards=False,
    mask=None,
    return_deltas=False,
    initial_output=None,
):
    """A stack of cells over ``x_seq`` (batch, time, rows, cols, channels).

    ``steps``: a list of :func:`cell` entries, bottom first; each cell's
    output is the next cell's input, the last cell's output is the
    stack's. ``initial_states``: ``None`` (zeros) or a list with, per
    cell, the list of its states.

    Zigzag memory (the contract's rule): at step ``t`` the first memory
    cell reads the ``m'`` that the LAST memory cell wrote at ``t − 1`` (at
    the first step: the last memory cell's initial ``m``); each further
    memory cell reads the ``m'`` the memory cell before it wrote at step
    ``t``. The ``m`` each memory cell keeps as its own state is the one it
    wrote. Other cells never see ``m``. With one memory cell ``m`` recurs.

    ``mask`` (batch, time): a masked step keeps every state of every cell
    (so the next step's zigzag memory is still the last memory cell's
    previous ``m``) and repeats the previous output (zeros before the
    first), as ``keras.layers.RNN`` without ``zero_output_for_mask``.
    ``initial_output``: that "previous output" before the first step
    (default zeros, as Keras's TensorFlow and PyTorch backends; Keras's
    JAX backend repeats the initial hidden state there instead, so pass
    the last cell's initial ``h`` to model it).
    ``go_backwards``: time is processed reversed and the outputs come back
    in processing order, as Keras returns them.

    Returns ``(outputs, final_states)`` (``outputs`` (batch, time, rows,
    cols, F_last); ``final_states`` a list per cell of its states), and,
    with ``return_deltas=True``, a third item: per cell, ``None`` or (for
    ``st_lstm``) the pair ``(Δc_seq, Δm_seq)``, each (batch, time, rows,
    cols, F), in processing order, for :func:`decoupling_loss`.
    """
    x_seq = _f64(x_seq)
    batch, time = x_seq.shape[:2]
    spatial = x_seq.shape[2:-1]
    memory_cells = [j for j, s in enumerate(steps) if s["memory"]]
    if initial_states is None:
        states = [
            [
                np.zeros((batch, *spatial, filters_of(s["weights"])))
                for _ in range(s["n_states"])
            ]
            for s in steps
        ]
    else:
        assert len(initial_states) == len(steps)
        states = [
            [_f64(a) for a in cell_states] for cell_states in initial_states
        ]
        for s, cell_states in zip(steps, states):
            assert len(cell_states) == s["n_states"], s["kind"]

    previous_output = None if initial_output is None else _f64(initial_output)
    outputs = []
    deltas = [([], []) if s["kind"] == "st_lstm" else None for s in steps]
    for t in _time_order(time, go_backwards):
        inputs = x_seq[:, t]
        zigzag = states[memory_cells[-1]][2] if memory_cells else None
        new_states = []
        for j, s in enumerate(steps):
            cell_states = list(states[j])
            if s["memory"]:
                cell_states[2] = zigzag
            if return_deltas and s["kind"] == "st_lstm":
                inputs, updated, (dc, dm) = s["step"](
                    inputs, cell_states, s["weights"], return_deltas=True
                )
                deltas[j][0].append(dc)
                deltas[j][1].append(dm)
            else:
                inputs, updated = s["step"](inputs, cell_states, s["weights"])
            if s["memory"]:
                zigzag = updated[2]
            new_states.append(updated)

        if previous_output is None:
            previous_output = np.zeros_like(inputs)
        keep = _step_mask(mask, t, inputs)
        states = [
            [np.where(keep, new, old) for new, old in zip(n_s, o_s)]
            for n_s, o_s in zip(new_states, states)
        ]
        previous_output = np.where(keep, inputs, previous_output)
        outputs.append(previous_output)

    result = (np.stack(outputs, axis=1), states)
    if return_deltas:
        deltas = [
            None
            if d is None
            else (np.stack(d[0], axis=1), np.stack(d[1], axis=1))
            for d in deltas
        ]
        return (*result, deltas)
    return result


# --- PredRNN-V2's decoupling loss -------------------------------------------


def decoupling_loss(delta_c_seq, delta_m_seq, adapter, weight, epsilon=0.0):
    """``weight`` x mean over time, batch and channels of |cos(A·Δc, A·Δm)|.

    ``delta_c_seq``, ``delta_m_seq``: (batch, time, rows, cols, F), the
    ``i ⊙ g`` and ``i' ⊙ g'`` of every step; ``adapter``: ``A``, a 1 x 1
    kernel (1, 1, F, F), no bias. The cosine of each (batch, time,
    channel) is taken over the rows x cols positions.

    Assumption (the contract names no epsilon): the cosine is exact,
    ``<a, b> / (|a| |b|)``. ``epsilon > 0`` switches to PredRNN-V2's
    ``F.normalize`` form, each vector divided by ``max(|v|, epsilon)``;
    the two agree whenever both norms exceed ``epsilon`` (the tests keep
    them far from zero, so either is fine). Masked steps are not treated
    specially (the tests use no mask with this loss).
    """
    dc = _f64(delta_c_seq)
    dm = _f64(delta_m_seq)
    adapter = _f64(adapter)
    batch, time = dc.shape[:2]
    flat_c = dc.reshape((batch * time,) + dc.shape[2:])
    flat_m = dm.reshape((batch * time,) + dm.shape[2:])
    a = _conv(flat_c, adapter).reshape(batch, time, -1, adapter.shape[-1])
    b = _conv(flat_m, adapter).reshape(batch, time, -1, adapter.shape[-1])
    norm_a = np.sqrt((a * a).sum(axis=2))
    norm_b = np.sqrt((b * b).sum(axis=2))
    if epsilon > 0:
        norm_a = np.maximum(norm_a, epsilon)
        norm_b = np.maximum(norm_b, epsilon)
    cosine = (a * b).sum(axis=2) / (norm_a * norm_b)  # (batch, time, F)
    return float(weight) * float(np.abs(cosine).mean())
