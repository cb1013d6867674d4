"""Plain-PyTorch PredRNN and PredRNN++: the native peers of
`bench_predrnn.py`.

Written the way their authors' code is written (thuml/predrnn-pytorch
`core/layers/SpatioTemporalLSTMCell.py` and `core/models/predrnn.py`;
PredRNN++'s causal LSTM and gradient highway unit as in OpenSTL's
`predrnnpp_modules.py`, after the authors' TensorFlow code): one
`nn.Conv2d` per state a cell reads (`conv_x`, `conv_h`, `conv_m`, ...),
channels-first tensors, the gates split off with `torch.split`, a Python
loop over time and over the stack, the spatiotemporal memory passed in a
zigzag (up the stack within a step, from the top cell back to the bottom
one at the next step), and a 1 x 1 `conv_last` (no bias) from the top
hidden state to the frame's channels. The models take and return
channels-last sequences `(batch, time, height, width, channels)` and
permute them, as the authors' `forward` does.

The equations are those of the contract (/work/shared/API.md,
"Spatiotemporal memory cells"), which are the authors': causal LSTM's
`conv_c2m` blocks in the order `i, g, f, o` and its output gate a `tanh`.
Two differences from the authors' code make the weights map 1:1 onto
`keras_convgru`'s cells: only the input convolution (`conv_x`, the GHU's
`x_concat`) has a bias (thuml's convolutions each have one, OpenSTL's
none), and the forget bias of 1 is that bias's initial value on the
forget blocks instead of a constant added in `forward` (the
`unit_forget_bias=True` of our cells). There is no layer norm (the
authors' `layer_norm=0`) and no scheduled sampling: training is teacher
forcing, the input of step `t` is always the true frame `t` (the authors'
`mask_true` all ones).

PredRNN is four ST-LSTM cells; PredRNN++ here is the stack
`kc.ConvRNN([CausalLSTM, GHU, CausalLSTM, CausalLSTM])` computes: a GHU
between the first two causal LSTMs and three causal LSTMs in all
(OpenSTL's model puts the GHU between the first two of four causal
LSTMs; the benchmark compares the same stack on both sides).

`check_torch_matches_kc` builds our Keras stack and the PyTorch model with
the same weights (`torch_state_from_kc`) and raises unless their outputs
agree; the benchmark's worker runs it before timing the PyTorch peer.
torch is imported inside the functions, so importing this file does not
import it.
"""

import functools

import numpy as np

LEARNING_RATE = 0.01
# Torch module attribute <- our cell's weight, per cell type: the 1:1 map.
# Kernels are transposed (kh, kw, in, out) -> (out, in, kh, kw).
KC_TO_TORCH = {
    "st_lstm": (
        ("conv_x", "kernel"),
        ("conv_h", "recurrent_kernel"),
        ("conv_m", "memory_kernel"),
        ("conv_o", "output_kernel"),
        ("conv_last", "fusion_kernel"),
    ),
    "causal_lstm": (
        ("conv_x", "kernel"),
        ("conv_h", "recurrent_kernel"),
        ("conv_c", "cell_kernel"),
        ("conv_m", "memory_kernel"),
        ("conv_c2m", "cell_to_memory_kernel"),
        ("conv_om", "memory_output_kernel"),
        ("conv_last", "fusion_kernel"),
    ),
    "ghu": (
        ("x_concat", "kernel"),
        ("z_concat", "recurrent_kernel"),
    ),
}
# The convolution that carries the cell's bias.
BIASED = {"st_lstm": "conv_x", "causal_lstm": "conv_x", "ghu": "x_concat"}
# The stacks, bottom to top.
STACKS = {
    "predrnn": ("st_lstm", "st_lstm", "st_lstm", "st_lstm"),
    "predrnn++": ("causal_lstm", "ghu", "causal_lstm", "causal_lstm"),
}


@functools.cache
def torch_modules():
    """The plain-PyTorch cells and the model class, as a dict:
    `SpatioTemporalLSTMCell`, `CausalLSTMCell`, `GHU` and `Model` (a stack
    of them with the zigzag memory and `conv_last`). Defined on first use
    so that importing this file does not import torch."""
    import torch
    from torch import nn

    def conv(in_channels, out_channels, kernel_size, bias=False):
        return nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            stride=1,
            padding=kernel_size // 2,
            bias=bias,
        )

    def init_forget_bias(bias, num_hidden, blocks):
        # The authors add a forget bias of 1.0 in forward; here it is the
        # initial value of those blocks of the input convolution's bias.
        with torch.no_grad():
            bias.zero_()
            for block in blocks:
                bias[block * num_hidden : (block + 1) * num_hidden] = 1.0

    class SpatioTemporalLSTMCell(nn.Module):
        """PredRNN's ST-LSTM (thuml/predrnn-pytorch, layer_norm=0)."""

        def __init__(self, in_channel, num_hidden, filter_size):
            super().__init__()
            self.num_hidden = num_hidden
            self.conv_x = conv(in_channel, num_hidden * 7, filter_size, True)
            self.conv_h = conv(num_hidden, num_hidden * 4, filter_size)
            self.conv_m = conv(num_hidden, num_hidden * 3, filter_size)
            self.conv_o = conv(num_hidden * 2, num_hidden, filter_size)
            self.conv_last = conv(num_hidden * 2, num_hidden, 1)
            init_forget_bias(self.conv_x.bias, num_hidden, (1, 4))

        def forward(self, x_t, h_t, c_t, m_t):
            x_concat = self.conv_x(x_t)
            h_concat = self.conv_h(h_t)
            m_concat = self.conv_m(m_t)
            i_x, f_x, g_x, i_x_prime, f_x_prime, g_x_prime, o_x = torch.split(
                x_concat, self.num_hidden, dim=1
            )
            i_h, f_h, g_h, o_h = torch.split(h_concat, self.num_hidden, dim=1)
            i_m, f_m, g_m = torch.split(m_concat, self.num_hidden, dim=1)

            i_t = torch.sigmoid(i_x + i_h)
            f_t = torch.sigmoid(f_x + f_h)
            g_t = torch.tanh(g_x + g_h)
            c_new = f_t * c_t + i_t * g_t

            i_t_prime = torch.sigmoid(i_x_prime + i_m)
            f_t_prime = torch.sigmoid(f_x_prime + f_m)
            g_t_prime = torch.tanh(g_x_prime + g_m)
            m_new = f_t_prime * m_t + i_t_prime * g_t_prime

            mem = torch.cat((c_new, m_new), 1)
            o_t = torch.sigmoid(o_x + o_h + self.conv_o(mem))
            h_new = o_t * torch.tanh(self.conv_last(mem))
            return h_new, c_new, m_new

    class CausalLSTMCell(nn.Module):
        """PredRNN++'s causal LSTM (OpenSTL, layer_norm=0)."""

        def __init__(self, in_channel, num_hidden, filter_size):
            super().__init__()
            self.num_hidden = num_hidden
            self.conv_x = conv(in_channel, num_hidden * 7, filter_size, True)
            self.conv_h = conv(num_hidden, num_hidden * 4, filter_size)
            self.conv_c = conv(num_hidden, num_hidden * 3, filter_size)
            self.conv_m = conv(num_hidden, num_hidden * 3, filter_size)
            self.conv_c2m = conv(num_hidden, num_hidden * 4, filter_size)
            self.conv_om = conv(num_hidden, num_hidden, filter_size)
            self.conv_last = conv(num_hidden * 2, num_hidden, 1)
            init_forget_bias(self.conv_x.bias, num_hidden, (1, 4))

        def forward(self, x_t, h_t, c_t, m_t):
            x_concat = self.conv_x(x_t)
            h_concat = self.conv_h(h_t)
            c_concat = self.conv_c(c_t)
            m_concat = self.conv_m(m_t)
            i_x, f_x, g_x, i_x_prime, f_x_prime, g_x_prime, o_x = torch.split(
                x_concat, self.num_hidden, dim=1
            )
            i_h, f_h, g_h, o_h = torch.split(h_concat, self.num_hidden, dim=1)
            i_m, f_m, m_m = torch.split(m_concat, self.num_hidden, dim=1)
            i_c, f_c, g_c = torch.split(c_concat, self.num_hidden, dim=1)

            i_t = torch.sigmoid(i_x + i_h + i_c)
            f_t = torch.sigmoid(f_x + f_h + f_c)
            g_t = torch.tanh(g_x + g_h + g_c)
            c_new = f_t * c_t + i_t * g_t

            c2m = self.conv_c2m(c_new)
            i_c, g_c, f_c, o_c = torch.split(c2m, self.num_hidden, dim=1)

            i_t_prime = torch.sigmoid(i_x_prime + i_m + i_c)
            f_t_prime = torch.sigmoid(f_x_prime + f_m + f_c)
            g_t_prime = torch.tanh(g_x_prime + g_c)
            m_new = f_t_prime * torch.tanh(m_m) + i_t_prime * g_t_prime
            o_m = self.conv_om(m_new)

            o_t = torch.tanh(o_x + o_h + o_c + o_m)
            mem = torch.cat((c_new, m_new), 1)
            h_new = o_t * torch.tanh(self.conv_last(mem))
            return h_new, c_new, m_new

    class GHU(nn.Module):
        """PredRNN++'s gradient highway unit (OpenSTL, layer_norm=0)."""

        def __init__(self, in_channel, num_hidden, filter_size):
            super().__init__()
            self.num_hidden = num_hidden
            self.x_concat = conv(in_channel, num_hidden * 2, filter_size, True)
            self.z_concat = conv(num_hidden, num_hidden * 2, filter_size)

        def forward(self, x, z):
            gates = self.x_concat(x) + self.z_concat(z)
            p, u = torch.split(gates, self.num_hidden, dim=1)
            p = torch.tanh(p)
            u = torch.sigmoid(u)
            return u * p + (1 - u) * z

    cell_classes = {
        "st_lstm": SpatioTemporalLSTMCell,
        "causal_lstm": CausalLSTMCell,
        "ghu": GHU,
    }

    class Model(nn.Module):
        """A stack of cells (`STACKS`) and `conv_last`, looped as the
        authors' `RNN.forward`: zero initial states, the memory in a
        zigzag, one predicted frame per input frame."""

        def __init__(self, stack, frame_channel, num_hidden, filter_size):
            super().__init__()
            self.kinds = STACKS[stack]
            self.num_hidden = num_hidden
            self.cell_list = nn.ModuleList(
                cell_classes[kind](
                    frame_channel if i == 0 else num_hidden,
                    num_hidden,
                    filter_size,
                )
                for i, kind in enumerate(self.kinds)
            )
            self.conv_last = nn.Conv2d(
                num_hidden, frame_channel, 1, stride=1, padding=0, bias=False
            )

        def forward(self, frames):
            # [batch, length, height, width, channel] ->
            # [batch, length, channel, height, width]
            frames = frames.permute(0, 1, 4, 2, 3).contiguous()
            batch, length, _, height, width = frames.shape
            zeros = frames.new_zeros(batch, self.num_hidden, height, width)
            h_t = [zeros] * len(self.kinds)
            c_t = [zeros] * len(self.kinds)
            memory = zeros
            next_frames = []
            for t in range(length):
                net = frames[:, t]
                for i, (kind, cell) in enumerate(
                    zip(self.kinds, self.cell_list)
                ):
                    if kind == "ghu":
                        h_t[i] = cell(net, h_t[i])
                    else:
                        h_t[i], c_t[i], memory = cell(
                            net, h_t[i], c_t[i], memory
                        )
                    net = h_t[i]
                next_frames.append(self.conv_last(net))
            # [length, batch, channel, height, width] ->
            # [batch, length, height, width, channel]
            return torch.stack(next_frames, dim=0).permute(1, 0, 3, 4, 2)

    return {
        "SpatioTemporalLSTMCell": SpatioTemporalLSTMCell,
        "CausalLSTMCell": CausalLSTMCell,
        "GHU": GHU,
        "Model": Model,
    }


# --------------------------------------------------------------------------
# Our Keras model, and its weights in PyTorch's layout
# --------------------------------------------------------------------------


def kc_cells(stack, filters, kernel):
    """Our cells of `stack` ("predrnn" or "predrnn++"), bottom to top."""
    import keras_convgru as kc

    classes = {
        "st_lstm": kc.SpatioTemporalLSTM2DCell,
        "causal_lstm": kc.CausalLSTM2DCell,
        "ghu": kc.GradientHighwayUnit2DCell,
    }
    return [classes[kind](filters, kernel) for kind in STACKS[stack]]


def kc_model(stack, input_shape, filters, kernel, batch_size=None):
    """Our PredRNN (`stack="predrnn"`) or PredRNN++ (`"predrnn++"`) on
    channels-last sequences `input_shape = (time, height, width,
    channels)`: `kc.ConvRNN(cells, return_sequences=True)` and a 1 x 1 x 1
    `Conv3D` without bias to the frame's channels (the authors'
    `conv_last`), as a functional `keras.Model` (not compiled)."""
    import keras

    import keras_convgru as kc

    inputs = keras.Input(input_shape, batch_size=batch_size)
    hidden = kc.ConvRNN(
        kc_cells(stack, filters, kernel), return_sequences=True, name="rnn"
    )(inputs)
    outputs = keras.layers.Conv3D(
        input_shape[-1], (1, 1, 1), use_bias=False, name="conv_last"
    )(hidden)
    # "predrnn++" is no valid TensorFlow scope name.
    return keras.Model(inputs, outputs, name=stack.replace("+", "p"))


def _torch_kernel(kernel):
    """(kh, kw, in, out) -> PyTorch's (out, in, kh, kw)."""
    return np.ascontiguousarray(np.asarray(kernel).transpose(3, 2, 0, 1))


def torch_state_from_kc(stack, model):
    """A `state_dict` (NumPy arrays) of the PyTorch `Model(stack, ...)`
    computing what our Keras `model` (`kc_model`) computes: every cell's
    weights through `KC_TO_TORCH`, transposed to PyTorch's layout, the
    bias onto the input convolution, and the `Conv3D` head onto
    `conv_last`."""

    def value(variable):
        return np.asarray(variable.numpy())

    state = {}
    cells = model.get_layer("rnn").cell.cells
    for i, (kind, cell) in enumerate(zip(STACKS[stack], cells)):
        for module, weight in KC_TO_TORCH[kind]:
            state[f"cell_list.{i}.{module}.weight"] = _torch_kernel(
                value(getattr(cell, weight))
            )
        state[f"cell_list.{i}.{BIASED[kind]}.bias"] = value(cell.bias)
    # Conv3D kernel (1, 1, 1, F, C) -> Conv2d weight (C, F, 1, 1).
    head = value(model.get_layer("conv_last").kernel)[0]
    state["conv_last.weight"] = _torch_kernel(head)
    return state


def torch_model(stack, frame_channel, filters, kernel, state=None):
    """The PyTorch peer; with `state` (from `torch_state_from_kc`) its
    weights, else PyTorch's default initialization (seeded)."""
    import torch

    torch.manual_seed(0)
    model = torch_modules()["Model"](stack, frame_channel, filters, kernel)
    if state is not None:
        model.load_state_dict(
            {k: torch.from_numpy(np.asarray(v)) for k, v in state.items()}
        )
    return model


def check_torch_matches_kc(
    stack, x, filters, kernel, tolerance=1e-4, scale=1.0, seed=1
):
    """Build our `kc_model(stack)` for `x` (channels last, `(batch, time,
    height, width, channels)`), give every weight random values (normal,
    `scale` over the square root of its fan-in, so the gates do not
    saturate), map them to the PyTorch model with `torch_state_from_kc`,
    run both on `x` and raise `AssertionError` unless the outputs agree
    within `tolerance` (max abs difference).

    Runs on any Keras backend. Returns `(state, max_abs_diff)`: the
    benchmark times the PyTorch peer with these weights.
    """
    import keras
    import torch

    model = kc_model(stack, x.shape[1:], filters, kernel)
    rng = np.random.default_rng(seed)
    for variable in model.weights:
        shape = tuple(variable.shape)
        fan_in = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        values = rng.standard_normal(shape) * scale / np.sqrt(fan_in)
        if len(shape) == 1:
            values = rng.uniform(-0.5, 0.5, shape)
        variable.assign(values.astype("float32"))
    ours = keras.ops.convert_to_numpy(model(x))
    state = torch_state_from_kc(stack, model)
    theirs = torch_model(stack, x.shape[-1], filters, kernel, state)
    with torch.no_grad():
        theirs = theirs(torch.from_numpy(np.ascontiguousarray(x))).numpy()
    diff = float(np.max(np.abs(ours - theirs)))
    if not diff < tolerance:
        raise AssertionError(
            f"the plain-PyTorch {stack} with our weights differs from "
            f"keras_convgru's by {diff:.3g} (max abs) >= {tolerance}: the "
            "weight mapping (KC_TO_TORCH) or one of the two models changed"
        )
    return state, diff


def build_torch(stack, x, y, filters, kernel, state=None):
    """`train`: one training step of the PyTorch peer on the channels-last
    NumPy batch `x` against `y` (forward over the sequence, MSE, backward,
    `torch.optim.SGD` step with learning rate 0.01). PyTorch keeps its
    default thread count."""
    import torch

    model = torch_model(stack, x.shape[-1], filters, kernel, state)
    inputs = torch.from_numpy(np.ascontiguousarray(x))
    target = torch.from_numpy(np.ascontiguousarray(y))
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.MSELoss()

    def train():
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), target)
        loss.backward()
        optimizer.step()

    return train
