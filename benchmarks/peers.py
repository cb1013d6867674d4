"""Native peers of the benchmark: ConvLSTM/ConvGRU written without Keras.

`bench_convrnn.py` compares the Keras layers with what users of the
frameworks themselves write:

- plain PyTorch (`torch ConvLSTM`, `torch ConvGRU`): the ConvLSTM of
  ndrplz/ConvLSTM_pytorch and the ConvGRU of happyjin/ConvGRU-pytorch, the
  two most copied PyTorch implementations: channels-first tensors, one
  `nn.Conv2d` over `torch.cat([x, h], dim=1)` per step, a Python loop over
  time, `torch.optim.SGD`;
- Flax (`flax ConvLSTMCell`): `flax.linen.ConvLSTMCell` stepped by
  `flax.linen.RNN`, the forward and the training step (loss, `jax.grad`,
  SGD update) each under `jax.jit`. Flax has no ConvGRU.

Every builder returns `(forward, train)`: two functions of no argument
that run one forward pass (no gradients) and one training step (forward
over the sequence, MSE against zeros of the output sequence, backward,
SGD step with learning rate 0.01, Keras's "sgd" default) and return once
the work is done. The frameworks are imported inside the builders, so a
worker process loads only the framework it measures.
"""

import functools

import numpy as np

LEARNING_RATE = 0.01


# --------------------------------------------------------------------------
# Plain PyTorch
# --------------------------------------------------------------------------


@functools.cache
def torch_modules():
    """The plain-PyTorch ConvLSTM and ConvGRU classes, `(ConvLSTM, ConvGRU)`.

    Defined on first use so that importing this file does not import torch.
    Both take `(batch, time, channels, height, width)` and return the
    hidden state of every step in the same layout.
    """
    import torch
    from torch import nn

    class ConvLSTMCell(nn.Module):
        """ndrplz/ConvLSTM_pytorch's cell: one convolution over the
        concatenated input and hidden state gives the four gates, split in
        the order i, f, o, g."""

        def __init__(self, input_dim, hidden_dim, kernel_size):
            super().__init__()
            self.hidden_dim = hidden_dim
            self.conv = nn.Conv2d(
                input_dim + hidden_dim,
                4 * hidden_dim,
                kernel_size,
                padding=kernel_size // 2,
                bias=True,
            )

        def forward(self, x, state):
            h, c = state
            combined = self.conv(torch.cat([x, h], dim=1))
            cc_i, cc_f, cc_o, cc_g = torch.split(
                combined, self.hidden_dim, dim=1
            )
            i = torch.sigmoid(cc_i)
            f = torch.sigmoid(cc_f)
            o = torch.sigmoid(cc_o)
            g = torch.tanh(cc_g)
            c = f * c + i * g
            h = o * torch.tanh(c)
            return h, c

    class ConvGRUCell(nn.Module):
        """happyjin/ConvGRU-pytorch's cell: `conv_gates` over cat(x, h)
        gives the reset and update gates, `conv_can` over cat(x, r * h) the
        candidate; h' = (1 - u) * h + u * tanh(candidate).

        This is the GRU with the reset gate *before* the state's
        convolution: `kc.ConvGRU2D(reset_after=False)` with u = 1 - z (the
        default `reset_after=True` applies it after; the convolutions'
        FLOPs are the same)."""

        def __init__(self, input_dim, hidden_dim, kernel_size):
            super().__init__()
            self.hidden_dim = hidden_dim
            padding = kernel_size // 2
            self.conv_gates = nn.Conv2d(
                input_dim + hidden_dim,
                2 * hidden_dim,
                kernel_size,
                padding=padding,
                bias=True,
            )
            self.conv_can = nn.Conv2d(
                input_dim + hidden_dim,
                hidden_dim,
                kernel_size,
                padding=padding,
                bias=True,
            )

        def forward(self, x, h):
            gates = self.conv_gates(torch.cat([x, h], dim=1))
            gamma, beta = torch.split(gates, self.hidden_dim, dim=1)
            reset = torch.sigmoid(gamma)
            update = torch.sigmoid(beta)
            candidate = self.conv_can(torch.cat([x, reset * h], dim=1))
            return (1 - update) * h + update * torch.tanh(candidate)

    class ConvLSTM(nn.Module):
        """One ConvLSTM layer, batch first, zero initial state, a Python
        loop over time; returns every step's hidden state."""

        def __init__(self, input_dim, hidden_dim, kernel_size):
            super().__init__()
            self.hidden_dim = hidden_dim
            self.cell = ConvLSTMCell(input_dim, hidden_dim, kernel_size)

        def forward(self, x):
            b, t, _, height, width = x.shape
            h = x.new_zeros(b, self.hidden_dim, height, width)
            c = x.new_zeros(b, self.hidden_dim, height, width)
            outputs = []
            for step in range(t):
                h, c = self.cell(x[:, step], (h, c))
                outputs.append(h)
            return torch.stack(outputs, dim=1)

    class ConvGRU(nn.Module):
        """One ConvGRU layer, batch first, zero initial state, a Python
        loop over time; returns every step's hidden state."""

        def __init__(self, input_dim, hidden_dim, kernel_size):
            super().__init__()
            self.hidden_dim = hidden_dim
            self.cell = ConvGRUCell(input_dim, hidden_dim, kernel_size)

        def forward(self, x):
            b, t, _, height, width = x.shape
            h = x.new_zeros(b, self.hidden_dim, height, width)
            outputs = []
            for step in range(t):
                h = self.cell(x[:, step], h)
                outputs.append(h)
            return torch.stack(outputs, dim=1)

    return ConvLSTM, ConvGRU


def build_torch(kind, x, filters, kernel):
    """`(forward, train)` of a plain-PyTorch ConvLSTM (`kind="lstm"`) or
    ConvGRU (`"gru"`) on `x`, a channels-last NumPy batch
    `(batch, time, height, width, channels)` (transposed once to PyTorch's
    channels-first layout). PyTorch keeps its default thread count."""
    import torch

    conv_lstm, conv_gru = torch_modules()
    torch.manual_seed(0)
    model = (conv_lstm if kind == "lstm" else conv_gru)(
        x.shape[-1], filters, kernel
    )
    inputs = torch.from_numpy(np.ascontiguousarray(x.transpose(0, 1, 4, 2, 3)))
    target = torch.zeros(
        inputs.shape[0], inputs.shape[1], filters, *inputs.shape[3:]
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    loss_fn = torch.nn.MSELoss()

    def forward():
        with torch.no_grad():
            model(inputs)

    def train():
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), target)
        loss.backward()
        optimizer.step()

    return forward, train


# --------------------------------------------------------------------------
# Flax
# --------------------------------------------------------------------------

# Flax's ConvLSTMCell (flax/linen/recurrent.py) splits its fused gates as
# i, g, f, o (g: the candidate, our c) and adds 1 to the forget gate's
# pre-activation in the call: f = sigmoid(f + 1). Ours are i, f, c, o, with
# any forget bias in the `bias` weight. Its `ih` and `hh` convolutions have
# a bias each; ours has one, on the input side.
OURS_TO_FLAX = (0, 2, 1, 3)  # Flax gate k is our gate OURS_TO_FLAX[k].


def flax_params_from_kc(kernel, recurrent_kernel, bias):
    """Flax `ConvLSTMCell` parameters (under `flax.linen.RNN`) computing
    the same as a `kc.ConvLSTM2D` cell with these weights.

    kernel (kh, kw, C, 4F), recurrent_kernel (kh, kw, F, 4F) and bias (4F,)
    hold our gates i, f, c, o along the last axis. Flax's `ih` kernel and
    `hh` kernel are the same arrays with the gates reordered to i, c, f, o;
    `ih` bias is ours reordered, with 1 taken off the forget gate (Flax adds
    it back in its call); `hh` bias is zero.
    """

    def reorder(a):
        gates = np.split(np.asarray(a), 4, axis=-1)
        return np.concatenate([gates[k] for k in OURS_TO_FLAX], axis=-1)

    b = np.split(np.asarray(bias), 4)
    b[1] = b[1] - 1.0
    ih_bias = np.concatenate([b[k] for k in OURS_TO_FLAX])
    return {
        "params": {
            "cell": {
                "ih": {"kernel": reorder(kernel), "bias": ih_bias},
                "hh": {
                    "kernel": reorder(recurrent_kernel),
                    "bias": np.zeros_like(ih_bias),
                },
            }
        }
    }


def flax_model(filters, kernel):
    """`flax.linen.ConvLSTMCell` stepped by `flax.linen.RNN` (batch
    first, zero initial carry, every step's output)."""
    import flax.linen as nn

    return nn.RNN(
        nn.ConvLSTMCell(
            features=filters, kernel_size=(kernel, kernel), padding="SAME"
        )
    )


def check_flax_matches_kc(x, filters, kernel, tolerance=1e-4):
    """Build a `kc.ConvLSTM2D` on `x` (Keras's JAX backend), give every
    gate a random bias, map its weights to Flax's parameters with
    `flax_params_from_kc`, run both and raise `AssertionError` unless the
    output sequences agree within `tolerance` (max abs difference).

    Returns `(params, max_abs_diff)`: the benchmark times Flax with these
    parameters.
    """
    import jax
    import keras

    import keras_convgru as kc

    if keras.backend.backend() != "jax":
        raise RuntimeError(
            "the Flax check builds kc.ConvLSTM2D on Keras's JAX backend; "
            f"this process runs {keras.backend.backend()!r} "
            "(set KERAS_BACKEND=jax before importing keras)"
        )
    layer = kc.ConvLSTM2D(
        filters, kernel, padding="same", return_sequences=True
    )
    layer.build(x.shape)
    rng = np.random.default_rng(1)
    layer.cell.bias.assign(
        rng.uniform(-0.5, 0.5, layer.cell.bias.shape).astype("float32")
    )
    ours = keras.ops.convert_to_numpy(layer(x))
    params = flax_params_from_kc(
        keras.ops.convert_to_numpy(layer.cell.kernel),
        keras.ops.convert_to_numpy(layer.cell.recurrent_kernel),
        keras.ops.convert_to_numpy(layer.cell.bias),
    )
    params = jax.tree.map(jax.numpy.asarray, params)
    theirs = np.asarray(flax_model(filters, kernel).apply(params, x))
    diff = float(np.max(np.abs(ours - theirs)))
    if not diff < tolerance:
        raise AssertionError(
            "flax.linen.ConvLSTMCell with kc.ConvLSTM2D's weights (gates "
            "reordered i,f,c,o -> i,c,f,o, forget bias - 1) differs from "
            f"kc.ConvLSTM2D by {diff:.3g} (max abs) >= {tolerance}: the "
            "weight mapping or one of the two cells changed"
        )
    return params, diff


def build_flax(x, filters, kernel, params=None):
    """`(forward, train)` of Flax's ConvLSTM on `x` (channels last).

    `params` (from `check_flax_matches_kc`) or, if None, Flax's own
    initialization. The training step is loss + `jax.value_and_grad` +
    `optax.sgd` (a plain `p - lr * g` if optax is not installed), jitted
    as one function; the forward is the jitted `apply`.
    """
    import jax
    import jax.numpy as jnp

    model = flax_model(filters, kernel)
    inputs = jnp.asarray(x)
    target = jnp.zeros(x.shape[:-1] + (filters,), inputs.dtype)
    if params is None:
        params = model.init(jax.random.key(0), inputs)
    params = jax.tree.map(jnp.asarray, params)

    def loss_fn(p, xb, yb):
        return jnp.mean(jnp.square(model.apply(p, xb) - yb))

    try:
        import optax
    except ImportError:
        optax = None
    if optax is not None:
        tx = optax.sgd(LEARNING_RATE)

        @jax.jit
        def train_step(p, opt_state, xb, yb):
            loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb)
            updates, opt_state = tx.update(grads, opt_state, p)
            return optax.apply_updates(p, updates), opt_state, loss

        state = [params, tx.init(params)]
    else:

        @jax.jit
        def train_step(p, opt_state, xb, yb):
            loss, grads = jax.value_and_grad(loss_fn)(p, xb, yb)
            p = jax.tree.map(lambda w, g: w - LEARNING_RATE * g, p, grads)
            return p, opt_state, loss

        state = [params, None]
    apply = jax.jit(model.apply)

    def forward():
        apply(state[0], inputs).block_until_ready()

    def train():
        state[0], state[1], loss = train_step(
            state[0], state[1], inputs, target
        )
        loss.block_until_ready()

    return forward, train
