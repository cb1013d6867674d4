"""The fused recurrence: a whole sequence of ConvGRU or ConvLSTM steps with
its own backward pass.

Differentiating Keras's time loop step by step makes every time step call
the backend's convolution gradients: the state-to-state convolution's
filter gradient and input gradient, each over one step's `batch` frames.
Here the filter gradient, which does not depend on the order of the steps,
is computed once, after the backward loop, over the `time * batch` frames
of the sequence: one matrix product per kernel tap. What remains inside
the backward loop is the gate derivatives and the state gradient, a plain
convolution with the flipped kernel (the adjoint of the state-to-state
convolution). From the zero initial state (no `initial_state`, not
`stateful`) the first step's state-to-state convolution and the gradient
into that state are skipped: both are known to be zero.

No backend convolution gradient is called, which is what matters on JAX's
CPU backend: XLA:CPU runs convolution gradients inside a `lax.scan` about
20x slower than outside one, and there this path trains a ConvLSTM 13x
faster than Keras's loop. On TensorFlow and PyTorch the per-step
convolution gradients are fast and this path measured slower (its extra
passes through memory cost more than the batched filter gradient saves);
docs/performance.md has the figures.

Everything is `keras.ops`, wrapped in `keras.ops.custom_gradient`, so it
runs on TensorFlow, JAX and PyTorch. `ConvRNN` uses it when
`ConvRNN.uses_fused_recurrence` says so; the equations are those of the
cells' `recurrent_step`, and the tests compare both paths (outputs and
every gradient) on every backend.

Layouts: everything here is time-major, `(time, batch, *spatial,
channels)` (or `(time, batch, channels, *spatial)`), so that the loops
read their steps off the leading axis without a transpose.
"""

import itertools

import keras
from keras import ops

from keras_convgru import _gates
from keras_convgru._keras_internals import rnn as backend_rnn


def _scan(step, init, xs, reverse=False):
    """`carry, ys = scan(step, init, xs)` over the leading axis of `xs`.

    `step(carry, x) -> (carry, y)`, with `carry` a list and `x`, `y`
    tuples of tensors. On PyTorch a Python loop (eager: no step is run
    twice); elsewhere Keras's backend loop (`tf.while_loop` with tensor
    arrays, `jax.lax.scan`).
    """
    steps = xs[0].shape[0]
    if steps == 0:
        # A one-step sequence leaves nothing to scan; one step on zeros
        # gives the shapes of the (empty) outputs.
        zeros = tuple(ops.zeros(ops.shape(x)[1:], x.dtype) for x in xs)
        _, y = step(list(init), zeros)
        empty = tuple(ops.zeros((0, *ops.shape(v)), v.dtype) for v in y)
        return list(init), empty
    if keras.backend.backend() == "torch":
        order = range(steps - 1, -1, -1) if reverse else range(steps)
        carry, ys = list(init), [None] * steps
        for t in order:
            carry, ys[t] = step(carry, tuple(x[t] for x in xs))
        return carry, tuple(ops.stack(y) for y in zip(*ys))

    def step_function(inputs, states):
        carry, y = step(list(states), tuple(inputs))
        return tuple(y), list(carry)

    if reverse:
        xs = tuple(ops.flip(x, axis=0) for x in xs)
    _, ys, carry = backend_rnn(
        step_function,
        tuple(xs),
        list(init),
        time_major=True,
        input_length=xs[0].shape[0],
    )
    if reverse:
        ys = tuple(ops.flip(y, axis=0) for y in ys)
    return list(carry), tuple(ys)


class _Geometry:
    """Channel handling and the convolutions of one cell, time-major."""

    def __init__(self, cell):
        self.cell = cell
        self.rank = cell.rank
        self.kernel_size = tuple(cell.kernel_size)
        self.channels_last = cell.data_format == "channels_last"
        # Channel axis of one step `(batch, ...)` and of a time-major
        # sequence `(time, batch, ...)`.
        self.axis = cell.channel_axis
        self.sequence_axis = -1 if self.channels_last else 2

    def concat(self, xs):
        return ops.concatenate(xs, axis=self.axis)

    def conv(self, x, kernel, padding="same"):
        """The state-to-state convolution of one step `(batch, ...)`."""
        return self.cell.convolve(x, kernel, padding=padding)

    def adjoint_kernel(self, kernel):
        """The kernel whose 'same' convolution is the state gradient."""
        spatial = tuple(range(self.rank))
        for axis in spatial:  # one axis per flip: Keras 3.8 takes one
            kernel = ops.flip(kernel, axis=axis)
        return ops.transpose(kernel, (*spatial, self.rank + 1, self.rank))

    def adjoint_conv(self, grads, adjoint_kernel):
        """Gradient of `conv(x, kernel)` with respect to `x`, given the
        gradient of its output (one step, `(batch, ...)`).

        For an odd kernel 'same' pads symmetrically and the adjoint is a
        'same' convolution with the flipped kernel; an even kernel pads
        one more pixel after than before, so the adjoint pads the other
        way round, explicitly.
        """
        if all(k % 2 for k in self.kernel_size):
            return self.conv(grads, adjoint_kernel)
        pads = [(k // 2, (k - 1) // 2) for k in self.kernel_size]
        grads = ops.pad(grads, self._frame_pads(pads))
        return self.conv(grads, adjoint_kernel, padding="valid")

    def _frame_pads(self, spatial_pads):
        if self.channels_last:
            return [(0, 0), *spatial_pads, (0, 0)]
        return [(0, 0), (0, 0), *spatial_pads]

    def kernel_gradient(self, states, grads):
        """Gradient of the state-to-state kernel over all given steps.

        `states` are the convolution's inputs and `grads` the gradients of
        its outputs, `(steps, batch, ...)` each; the result is shaped like
        the kernel, `(*kernel_size, state_channels, grad_channels)`. Per
        tap, one matrix product over every pixel of every step.
        """
        in_channels = states.shape[self.sequence_axis]
        out_channels = grads.shape[self.sequence_axis]
        frames = ops.reshape(states, (-1, *ops.shape(states)[2:]))
        frame_grads = ops.reshape(grads, (-1, *ops.shape(grads)[2:]))
        pads = [((k - 1) // 2, k // 2) for k in self.kernel_size]
        padded = ops.pad(frames, self._frame_pads(pads))
        if self.channels_last:
            grads_2d = ops.reshape(frame_grads, (-1, out_channels))
        else:
            grads_2d = ops.reshape(
                frame_grads, (ops.shape(frame_grads)[0], out_channels, -1)
            )
        spatial_start = 1 if self.channels_last else 2
        taps = []
        for offset in itertools.product(*(range(k) for k in self.kernel_size)):
            index = [slice(None)] * len(padded.shape)
            for axis, (start, k) in enumerate(zip(offset, self.kernel_size)):
                stop = start - (k - 1)
                index[spatial_start + axis] = slice(start, stop or None)
            tap = padded[tuple(index)]
            if self.channels_last:
                tap = ops.reshape(tap, (-1, in_channels))
                taps.append(ops.einsum("mc,md->cd", tap, grads_2d))
            else:
                tap = ops.reshape(tap, (ops.shape(tap)[0], in_channels, -1))
                taps.append(ops.einsum("ncs,nds->cd", tap, grads_2d))
        kernel = ops.stack(taps)
        return ops.reshape(
            kernel, (*self.kernel_size, in_channels, out_channels)
        )

    def channel_sum(self, x):
        """Sum over every axis but the channels (a bias gradient)."""
        channel = self.sequence_axis % len(x.shape)
        axes = [a for a in range(len(x.shape)) if a != channel]
        return ops.sum(x, axis=axes)


def _stack_with(first, rest):
    """`first` (one step) in front of `rest` (steps) along time."""
    return ops.concatenate([ops.expand_dims(first, 0), rest], axis=0)


def lstm_sequence(cell, projections, h0, c0, mask, zero_initial):
    """Every step of a ConvLSTM cell (`sigmoid`/`tanh`, no peepholes, no
    normalization) over time-major input projections.

    Args:
        cell: the `ConvLSTMCell`.
        projections: `(time, batch, ...)`, the input projections with the
            input bias (`cell.input_projection` of every frame).
        h0, c0: the initial states `(batch, ...)`.
        mask: `None` or the recurrent dropout mask (like `h0`).
        zero_initial: whether `h0` and `c0` are the zero state.

    Returns:
        `(outputs, c_last)`: all `h`, time-major, and the last cell state.
    """
    geometry = _Geometry(cell)
    kernel = ops.cast(cell.recurrent_kernel, projections.dtype)
    masked = mask is not None
    # Keras's PyTorch custom gradient takes one output: there all h and
    # the last cell state travel as one tensor, the cell state as one more
    # step. Elsewhere two outputs (slicing one costs a copy of the whole
    # gradient on TensorFlow).
    packed = keras.backend.backend() == "torch"
    args = [projections, kernel, h0, c0] + ([mask] if masked else [])

    masked_state = cell.masked_state

    @ops.custom_gradient
    def sequence(projections, kernel, h0, c0, *maybe_mask):
        m = maybe_mask[0] if masked else None

        def step(h, c, p, first):
            # The gates' pre-activations: the projection plus, but from the
            # zero state, the state's convolution.
            pre = p
            if not (first and zero_initial):
                pre = p + geometry.conv(masked_state(h, m), kernel)
            return _gates.lstm(
                cell.split_gates(pre, 4), c, ops.tanh, ops.sigmoid
            )

        h1, c1, gates0 = step(h0, c0, projections[0], first=True)

        def scan_step(carry, x):
            h, c, gates = step(carry[0], carry[1], x[0], first=False)
            return [h, c], (h, c, *gates)

        (_, c_last), ys = _scan(scan_step, [h1, c1], (projections[1:],))
        hs = _stack_with(h1, ys[0])
        cs = _stack_with(c1, ys[1])
        gates_rest = ys[2:]
        if packed:
            output = ops.concatenate([hs, ops.expand_dims(c_last, 0)], 0)
        else:
            output = (hs, c_last)

        def grad(*args, upstream=None):
            if upstream is None:
                upstream = args[0] if len(args) == 1 else args
            if packed:
                d_hs, dc_last = upstream[:-1], upstream[-1]
            else:
                d_hs, dc_last = upstream
            adjoint = geometry.adjoint_kernel(kernel)

            def step_grad(dh_next, dc_next, dh_out, c_prev, c, gates):
                i, f, g, o = gates
                dh = dh_out + dh_next
                tanh_c = ops.tanh(c)
                dc = dc_next + dh * o * (1.0 - tanh_c * tanh_c)
                d_pre = geometry.concat(
                    [
                        dc * g * i * (1.0 - i),
                        dc * c_prev * f * (1.0 - f),
                        dc * i * (1.0 - g * g),
                        dh * tanh_c * o * (1.0 - o),
                    ]
                )
                return d_pre, dc * f

            def scan_grad(carry, x):
                dh_out, c_prev, c, *gates = x
                d_pre, dc_prev = step_grad(
                    carry[0], carry[1], dh_out, c_prev, c, gates
                )
                dh_prev = masked_state(geometry.adjoint_conv(d_pre, adjoint), m)
                return [dh_prev, dc_prev], (d_pre,)

            (dh1, dc1), (d_pre_rest,) = _scan(
                scan_grad,
                [ops.zeros_like(h0), dc_last],
                (d_hs[1:], cs[:-1], cs[1:], *gates_rest),
                reverse=True,
            )
            d_pre0, dc0 = step_grad(dh1, dc1, d_hs[0], c0, c1, gates0)
            d_projections = _stack_with(d_pre0, d_pre_rest)
            # The state-to-state convolutions' inputs, step by step.
            conv_inputs = masked_state(hs[:-1], m)
            d_kernel = geometry.kernel_gradient(conv_inputs, d_pre_rest)
            if zero_initial:
                dh0 = ops.zeros_like(h0)
            else:
                dh0 = masked_state(geometry.adjoint_conv(d_pre0, adjoint), m)
                d_kernel = d_kernel + geometry.kernel_gradient(
                    ops.expand_dims(masked_state(h0, m), 0),
                    ops.expand_dims(d_pre0, 0),
                )
            grads = [d_projections, d_kernel, dh0, dc0]
            if masked:
                grads.append(ops.zeros_like(m))
            return tuple(grads)

        return output, grad

    output = sequence(*args)
    if packed:
        return output[:-1], output[-1]
    return tuple(output)


def gru_sequence(cell, projections, h0, mask, zero_initial):
    """Every step of a ConvGRU cell (`reset_after=True`, `sigmoid`/`tanh`,
    no normalization) over time-major input projections.

    Args:
        cell: the `ConvGRUCell`.
        projections: `(time, batch, ...)`, the input projections with the
            input bias.
        h0: the initial state `(batch, ...)`.
        mask: `None` or the recurrent dropout mask (like `h0`).
        zero_initial: whether `h0` is the zero state.

    Returns:
        All `h`, time-major.
    """
    geometry = _Geometry(cell)
    filters = cell.filters
    dtype = projections.dtype
    kernel = ops.cast(cell.recurrent_kernel, dtype)
    use_bias = cell.use_bias
    if use_bias:
        bias = ops.cast(cell.bias[1], dtype)
    else:
        bias = ops.zeros((3 * filters,), dtype)
    masked = mask is not None
    args = [projections, kernel, bias, h0] + ([mask] if masked else [])

    masked_state = cell.masked_state

    @ops.custom_gradient
    def sequence(projections, kernel, bias, h0, *maybe_mask):
        m = maybe_mask[0] if masked else None

        def step(h, p, first):
            if first and zero_initial:
                r_all = cell.add_channel_bias(ops.zeros_like(p), bias)
            else:
                r_all = cell.add_channel_bias(
                    geometry.conv(masked_state(h, m), kernel), bias
                )
            r_h = cell.split_gates(r_all, 3)
            h_new, z, r, h_tilde = _gates.gru_reset_after(
                cell.split_gates(p, 3), r_h, h, ops.tanh, ops.sigmoid
            )
            return h_new, (z, r, h_tilde, r_h[2])

        h1, saved0 = step(h0, projections[0], first=True)

        def scan_step(carry, x):
            h, saved = step(carry[0], x[0], first=False)
            return [h], (h, *saved)

        _, ys = _scan(scan_step, [h1], (projections[1:],))
        hs = _stack_with(h1, ys[0])
        saved_rest = ys[1:]

        def grad(*args, upstream=None):
            if upstream is None:
                (upstream,) = args
            adjoint = geometry.adjoint_kernel(kernel)

            def step_grad(dh_next, dh_out, h_prev, saved):
                z, r, h_tilde, r_h = saved
                dh = dh_out + dh_next
                da = dh * (1.0 - z) * (1.0 - h_tilde * h_tilde)
                dz = dh * (h_prev - h_tilde) * z * (1.0 - z)
                dr = da * r_h * r * (1.0 - r)
                d_projection = geometry.concat([dz, dr, da])
                d_recurrent = geometry.concat([dz, dr, da * r])
                return d_projection, d_recurrent, dh * z

            def scan_grad(carry, x):
                dh_out, h_prev, *saved = x
                dp, dr, dh_direct = step_grad(carry[0], dh_out, h_prev, saved)
                dh_prev = dh_direct + masked_state(
                    geometry.adjoint_conv(dr, adjoint), m
                )
                return [dh_prev], (dp, dr)

            (dh1,), (dp_rest, dr_rest) = _scan(
                scan_grad,
                [ops.zeros_like(h0)],
                (upstream[1:], hs[:-1], *saved_rest),
                reverse=True,
            )
            dp0, dr0, dh0_direct = step_grad(dh1, upstream[0], h0, saved0)
            d_projections = _stack_with(dp0, dp_rest)
            d_kernel = geometry.kernel_gradient(
                masked_state(hs[:-1], m), dr_rest
            )
            d_bias = geometry.channel_sum(dr_rest) + geometry.channel_sum(
                ops.expand_dims(dr0, 0)
            )
            if zero_initial:
                dh0 = ops.zeros_like(h0)
            else:
                dh0 = dh0_direct + masked_state(
                    geometry.adjoint_conv(dr0, adjoint), m
                )
                d_kernel = d_kernel + geometry.kernel_gradient(
                    ops.expand_dims(masked_state(h0, m), 0),
                    ops.expand_dims(dr0, 0),
                )
            if not use_bias:
                d_bias = ops.zeros_like(bias)
            grads = [d_projections, d_kernel, d_bias, dh0]
            if masked:
                grads.append(ops.zeros_like(m))
            return tuple(grads)

        return hs, grad

    return sequence(*args)
