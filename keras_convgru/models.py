"""Forecasting models: the encoder-forecaster of Shi et al. and PredRNN's
autoregressive next-frame model with scheduled sampling.

* `EncoderForecaster`: Shi et al. 2015 (ConvLSTM) and 2017 (TrajGRU,
  the HKO-7 benchmark): per scale a downsampling convolution then a
  recurrent layer; the forecaster runs top-down, each of its recurrent
  layers starting from the encoder's state at the same scale.
* `NextFrameForecaster`: PredRNN's model (Wang et al. 2017, 2022): a
  stack of cells stepped frame by frame, a 1 x 1 convolution to the next
  frame, optional space-to-depth patches, trained with scheduled sampling
  (`LinearSampling`) or PredRNN-V2's reverse schedule (`ReverseSampling`).
"""

import inspect
import math

import keras
from keras import ops

from keras_convgru import _recurrence
from keras_convgru import _replicas
from keras_convgru import _rnn_checks
from keras_convgru._validation import is_int
from keras_convgru._validation import validate_positive_int
from keras_convgru.conv_rnn import ConvRNN

_register = keras.saving.register_keras_serializable(package="keras_convgru")


def _positive_ints(values, name, count=None):
    """A tuple of positive ints (one int for all, with `count`)."""
    if is_int(values) and count is not None:
        values = (values,) * count
    if not isinstance(values, (list, tuple)) or not values:
        raise ValueError(
            f"Argument `{name}` must be a non-empty list of positive "
            f"integers. Received: {name}={values!r}"
        )
    return tuple(validate_positive_int(v, name) for v in values)


def _per_frame(layer, x):
    """`layer` applied to every frame of `(batch, time, ...)`."""
    shape = ops.shape(x)
    y = layer(ops.reshape(x, (-1, *shape[2:])))
    return ops.reshape(y, (shape[0], shape[1], *ops.shape(y)[1:]))


class _BuiltFromInputShape:
    """A model whose `build` creates every sublayer from the input shape,
    which a loaded file rebuilds from (before any call)."""

    def get_build_config(self):
        return {"input_shape": self._built_input_shape}

    def build_from_config(self, config):
        self.build(config["input_shape"])


# -- the encoder-forecaster --------------------------------------------------


@_register
class EncoderForecaster(_BuiltFromInputShape, keras.Model):
    """Encoder-forecaster of Shi et al. 2015 and 2017 (HKO-7).

    The encoder runs, per scale `s`, a strided convolution of every frame
    then a recurrent layer over the sequence; the forecaster runs the
    scales top-down for `output_steps` steps: each recurrent layer starts
    from the encoder's final states at its scale, the top one is fed no
    input (zeros), and each one's outputs are upsampled (resized, then a
    convolution: no checkerboard) into the input of the next scale down; a
    last upsampling and a 3 x 3 convolution give the frames.

    ```
    encoder:    x_1..x_T -> [conv/s_1 -> RNN_1] -> ... -> [conv/s_S -> RNN_S]
    forecaster: 0 -> RNN'_S (from RNN_S's states) -> up s_S -> ...
                  -> RNN'_1 (from RNN_1's states) -> up s_1 -> head
    ```

    The encoder is causal: its states at step `t` depend on frames up to
    `t` only (per-frame convolutions, recurrent layers).

    Args:
        cell: the recurrent cell class of every scale (a keras_convgru
            cell class or its registered name, e.g. `"ConvGRU2DCell"`,
            `"TrajGRU2DCell"`, `"SpatioTemporalLSTM2DCell"`), or a list,
            one per scale.
        filters: list of ints, the recurrent filters per scale, bottom
            first (also the downsampling convolutions' filters).
        strides: int or list of ints, the downsampling stride per scale.
        output_steps: int, the number of frames to forecast.
        kernel_size: int, the recurrent cells' kernel size (default 3).
        conv_kernel_size: int, the kernel of the downsampling and
            upsampling convolutions (default 3).
        output_channels: int or `None` (default: the input's channels).
        output_activation: activation of the frames (default `None`).
        output_bias_initializer: initializer of the last convolution's
            bias (default `"zeros"`; e.g. a negative constant under a
            `"sigmoid"` for mostly dry rain fields).
        cell_arguments: dict of further arguments of every cell (e.g.
            `{"links": 5}` for TrajGRU), or `None`.
        **kwargs: standard model arguments (`name`, ...).

    Call arguments:
        inputs: observed frames `(batch, time, rows, cols, channels)`;
            `rows` and `cols` divisible by the product of `strides`.
        training: Python boolean.

    Input shape:
        `(batch, time, rows, cols, channels)`.

    Output shape:
        `(batch, output_steps, rows, cols, output_channels)`.

    Example:

    >>> import numpy as np
    >>> import keras_convgru as kc
    >>> model = kc.models.EncoderForecaster(
    ...     "ConvGRU2DCell", filters=[8, 16], strides=2, output_steps=3)
    >>> tuple(model(np.zeros((2, 5, 16, 16, 1), "float32")).shape)
    (2, 3, 16, 16, 1)
    """

    def __init__(
        self,
        cell,
        filters,
        strides,
        output_steps,
        kernel_size=3,
        conv_kernel_size=3,
        output_channels=None,
        output_activation=None,
        output_bias_initializer="zeros",
        cell_arguments=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.filters = _positive_ints(filters, "filters")
        scales = len(self.filters)
        self.strides = _positive_ints(strides, "strides", scales)
        if len(self.strides) != scales:
            raise ValueError(
                "Arguments `strides` and `filters` need one entry per scale. "
                f"Received: strides={strides!r} and filters={filters!r}"
            )
        self.output_steps = validate_positive_int(output_steps, "output_steps")
        self.kernel_size = validate_positive_int(kernel_size, "kernel_size")
        self.conv_kernel_size = validate_positive_int(
            conv_kernel_size, "conv_kernel_size"
        )
        self.output_channels = (
            None
            if output_channels is None
            else validate_positive_int(output_channels, "output_channels")
        )
        self.output_activation = keras.activations.get(output_activation)
        self.output_bias_initializer = keras.initializers.get(
            output_bias_initializer
        )
        self.cell_arguments = dict(cell_arguments or {})
        cells = cell if isinstance(cell, (list, tuple)) else [cell] * scales
        if len(cells) != scales:
            raise ValueError(
                "Argument `cell` needs one cell class per scale (or one for "
                f"all). Received: cell={cell!r} and filters={filters!r}"
            )
        self.cell = [_cell_name(c) for c in cells]
        classes = [_cell_class(c) for c in cells]
        k = self.conv_kernel_size

        def conv(filters, strides=1, name=None, activation="leaky_relu"):
            return keras.layers.Conv2D(
                filters,
                k,
                strides=strides,
                padding="same",
                activation=activation,
                name=name,
            )

        def recurrent(i, role):
            cell = classes[i](
                self.filters[i],
                self.kernel_size,
                **_same_padding(classes[i]),
                **self.cell_arguments,
                name=f"{role}_cell_{i}",
            )
            return ConvRNN(
                cell,
                return_sequences=True,
                return_state=role == "encoder",
                name=f"{role}_{i}",
            )

        self.downsamplers = [
            conv(f, s, name=f"downsample_{i}")
            for i, (f, s) in enumerate(zip(self.filters, self.strides))
        ]
        self.encoders = [recurrent(i, "encoder") for i in range(scales)]
        self.forecasters = [recurrent(i, "forecaster") for i in range(scales)]
        # Upsampling from scale i to scale i - 1 (or to the frames): the
        # channels of the scale below (the bottom one's for the frames).
        self.upsamplers = [
            (
                keras.layers.UpSampling2D(
                    s, interpolation="bilinear", name=f"resize_{i}"
                ),
                conv(self.filters[max(i - 1, 0)], name=f"upsample_{i}"),
            )
            for i, s in enumerate(self.strides)
        ]
        self.head = None

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 5:
            raise ValueError(
                "EncoderForecaster takes sequences of frames (batch, time, "
                f"rows, cols, channels). Received: input_shape={input_shape}"
            )
        factor = math.prod(self.strides)
        for axis, size in zip(("rows", "cols"), input_shape[2:4]):
            if size is not None and size % factor:
                raise ValueError(
                    f"EncoderForecaster needs frames whose {axis} divide by "
                    f"the product of `strides` ({factor}). Received: "
                    f"strides={self.strides} and input_shape={input_shape}"
                )
        channels = self.output_channels or input_shape[-1]
        self.head = keras.layers.Conv2D(
            channels,
            3,
            padding="same",
            activation=self.output_activation,
            bias_initializer=self.output_bias_initializer,
            name="head",
        )
        # Every sublayer, built here for its scale (a loaded model is
        # built from its build config, before any call).
        batch, steps, frame_rows, frame_cols, frame_channels = input_shape
        sizes = [(frame_rows, frame_cols)]
        for s in self.strides:
            sizes.append(
                tuple(None if n is None else n // s for n in sizes[-1])
            )
        # The top forecaster is fed zeros of one channel; the others the
        # upsampled outputs of the scale above, with their own filters.
        top = len(self.filters) - 1
        for i, (f, downsample) in enumerate(
            zip(self.filters, self.downsamplers)
        ):
            before = self.filters[i - 1] if i else frame_channels
            downsample.build((None, *sizes[i], before))
            self.encoders[i].build((batch, steps, *sizes[i + 1], f))
            forecast_input = 1 if i == top else f
            self.forecasters[i].build(
                (batch, self.output_steps, *sizes[i + 1], forecast_input)
            )
            self.upsamplers[i][1].build((None, *sizes[i], f))
        self.head.build((None, frame_rows, frame_cols, self.filters[0]))
        self._built_input_shape = input_shape
        self.built = True

    def encode(self, inputs, training=None):
        """The encoder: per scale, its output sequence and final states."""
        x, encoded = inputs, []
        for downsample, encoder in zip(self.downsamplers, self.encoders):
            x = _per_frame(downsample, x)
            x, *states = encoder(x, training=training)
            encoded.append((x, states))
        return encoded

    def call(self, inputs, training=None):
        encoded = self.encode(inputs, training=training)
        top_sequence = encoded[-1][0]
        shape = ops.shape(top_sequence)
        y = ops.zeros(
            (shape[0], self.output_steps, *shape[2:4], 1), inputs.dtype
        )
        for i in reversed(range(len(self.filters))):
            y = self.forecasters[i](
                y, initial_state=encoded[i][1], training=training
            )
            for layer in self.upsamplers[i]:
                y = _per_frame(layer, y)
        return _per_frame(self.head, y)

    def compute_output_shape(self, input_shape):
        channels = self.output_channels or input_shape[-1]
        return (
            input_shape[0],
            self.output_steps,
            *input_shape[2:4],
            channels,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "cell": list(self.cell),
            "filters": list(self.filters),
            "strides": list(self.strides),
            "output_steps": self.output_steps,
            "kernel_size": self.kernel_size,
            "conv_kernel_size": self.conv_kernel_size,
            "output_channels": self.output_channels,
            "output_activation": keras.activations.serialize(
                self.output_activation
            ),
            "output_bias_initializer": keras.initializers.serialize(
                self.output_bias_initializer
            ),
            "cell_arguments": dict(self.cell_arguments),
        }


def _cell_class(cell):
    """A cell class from a class or its name (`"ConvGRU2DCell"`)."""
    if isinstance(cell, type):
        return cell
    import keras_convgru

    found = getattr(keras_convgru, str(cell), None)
    if not isinstance(found, type) or not str(cell).endswith("Cell"):
        raise ValueError(
            "Argument `cell` must be a keras_convgru cell class or its name "
            f"(e.g. 'ConvGRU2DCell'). Received: cell={cell!r}"
        )
    return found


def _cell_name(cell):
    return _cell_class(cell).__name__


def _same_padding(cell_class):
    """`padding="same"` for the cells that take a padding other than it."""
    parameter = inspect.signature(cell_class).parameters.get("padding")
    if parameter is not None and parameter.default != "same":
        return {"padding": "same"}
    return {}


# -- scheduled sampling ------------------------------------------------------


class SamplingSchedule:
    """How often a training step feeds the true frame instead of the
    model's own prediction, as a function of the training iteration.

    `probabilities(iteration)` returns `(forecast, observed)`: the
    probability of the true frame at the steps after the observed frames,
    and at the observed frames themselves (after the first).
    """

    def probabilities(self, iteration):
        raise NotImplementedError

    def get_config(self):
        return {}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@_register
class ConstantSampling(SamplingSchedule):
    """A fixed probability of the true frame after the observed frames:
    `1.0` is teacher forcing, `0.0` free running. The observed frames are
    always the true ones.

    Args:
        probability: float in [0, 1].
    """

    def __init__(self, probability):
        self.probability = float(probability)
        if not 0.0 <= self.probability <= 1.0:
            raise ValueError(
                "Argument `probability` must be between 0 and 1. "
                f"Received: probability={probability!r}"
            )

    def probabilities(self, iteration):
        return self.probability, 1.0

    def get_config(self):
        return {"probability": self.probability}


@_register
class LinearSampling(SamplingSchedule):
    """PredRNN's scheduled sampling: the probability of feeding the true
    frame after the observed frames falls linearly, by `1 / steps` per
    iteration, from 1 to 0 (the authors' `sampling_start_value=1.0`,
    `sampling_changing_rate=0.00002`, `sampling_stop_iter=50000`):

    ```
    ε(i) = max(0, 1 − i / steps)
    ```

    The observed frames are always the true ones.

    Args:
        steps: int, the iterations from 1 to 0 (default 50000).
    """

    def __init__(self, steps=50000):
        self.steps = validate_positive_int(steps, "steps")

    def probabilities(self, iteration):
        return ops.maximum(0.0, 1.0 - iteration / self.steps), 1.0

    def get_config(self):
        return {"steps": self.steps}


@_register
class ReverseSampling(SamplingSchedule):
    """PredRNN-V2's reverse scheduled sampling (Wang et al. 2022), with
    the authors' defaults: at the observed frames the probability of the
    true frame rises from 0.5 to 1 (exponentially), after them it falls
    from 0.5 to 0 (linearly), between iterations `start` and `stop`:

    ```
    i < start:          ε_r = 0.5,                       ε = 0.5
    start <= i < stop:  ε_r = 1 − 0.5 exp(−(i − start) / alpha),
                        ε   = 0.5 − 0.5 (i − start) / (stop − start)
    i >= stop:          ε_r = 1,                         ε = 0
    ```

    Args:
        start: int (default 25000), `r_sampling_step_1`.
        stop: int (default 50000), `r_sampling_step_2`.
        alpha: float (default 5000), `r_exp_alpha`.
    """

    def __init__(self, start=25000, stop=50000, alpha=5000.0):
        self.start = validate_positive_int(start, "start")
        self.stop = validate_positive_int(stop, "stop")
        if self.stop <= self.start:
            raise ValueError(
                "Argument `stop` must be larger than `start`. Received: "
                f"start={start} and stop={stop}"
            )
        if not float(alpha) > 0:
            raise ValueError(
                f"Argument `alpha` must be positive. Received: alpha={alpha!r}"
            )
        self.alpha = float(alpha)

    def probabilities(self, iteration):
        i = ops.clip(iteration, self.start, self.stop) - self.start
        forecast = 0.5 - 0.5 * i / (self.stop - self.start)
        observed = 1.0 - 0.5 * ops.exp(-i / self.alpha)
        observed = ops.where(iteration >= self.stop, 1.0, observed)
        return forecast, observed

    def get_config(self):
        return {"start": self.start, "stop": self.stop, "alpha": self.alpha}


# -- the next-frame model ----------------------------------------------------


def space_to_depth(frames, patch_size):
    """`(batch, time, rows, cols, c)` -> `(batch, time, rows / p,
    cols / p, p * p * c)`, PredRNN's `reshape_patch`."""
    if patch_size == 1:
        return frames
    b, t, rows, cols, c = ops.shape(frames)
    p = patch_size
    x = ops.reshape(frames, (b, t, rows // p, p, cols // p, p, c))
    x = ops.transpose(x, (0, 1, 2, 4, 3, 5, 6))
    return ops.reshape(x, (b, t, rows // p, cols // p, p * p * c))


def depth_to_space(patches, patch_size):
    """The inverse of `space_to_depth`."""
    if patch_size == 1:
        return patches
    b, t, rows, cols, depth = ops.shape(patches)
    p = patch_size
    x = ops.reshape(patches, (b, t, rows, cols, p, p, depth // (p * p)))
    x = ops.transpose(x, (0, 1, 2, 4, 3, 5, 6))
    return ops.reshape(x, (b, t, rows * p, cols * p, depth // (p * p)))


@_register
class NextFrameForecaster(_BuiltFromInputShape, keras.Model):
    """PredRNN's autoregressive next-frame model over a stack of cells.

    Frames (cut into `patch_size` x `patch_size` patches stacked along the
    channels, PredRNN's `patch_size`) are stepped one at a time through the
    stack of `cells` (any keras_convgru cells; the spatiotemporal memory
    of PredRNN's cells flows in its zigzag); a 1 x 1 convolution (no bias)
    of the top cell's output predicts the next frame:

    ```
    x̂_(t+1) = W_out * stack(x'_t, states_(t−1)),   t = 1 .. T − 1
    x'_t = x_t                      observed frames (t <= input_steps)
    x'_t = x̂_t                      after them, when not training
    x'_t = x_t with probability ε,  after them, in training
           x̂_t otherwise
    ```

    with `T = input_steps + output_steps`. In training the model takes the
    whole sequence (the frames to forecast too) and the sampling schedule
    `sampling` draws, per sample and step, whether the step gets the true
    frame or the model's prediction (scheduled sampling; PredRNN-V2's
    `ReverseSampling` also replaces observed frames by predictions). `ε`
    is one value per training step for every replica, read from the
    model's own step counter `sampling_iteration`; the draws are per
    sample, and data parallel (`MirroredStrategy`, JAX's `DataParallel`)
    each sample gets the draws one device would give it. Outside
    training (`predict`, `evaluate`) the model always feeds its own
    predictions after the observed frames. The output is
    the `T − 1` next-frame predictions (as PredRNN trains on them): train
    with `fit(sequences, sequences[:, 1:])`; the forecast is the last
    `output_steps` of them. Cells with a step loss (PredRNN-V2's
    decoupling, `decoupling_weight`) add it to `model.losses` in training.

    Args:
        cells: a keras_convgru cell or a list of them (a stack), e.g.
            `[kc.SpatioTemporalLSTM2DCell(64, 5) for _ in range(4)]`.
        input_steps: int, the observed frames (default 10).
        output_steps: int, the frames to forecast (default 10).
        patch_size: int (default 1), the side of the patches.
        sampling: a `ConstantSampling`, `LinearSampling` (default:
            `LinearSampling()`, the authors' 1 -> 0 over 50,000 steps) or
            `ReverseSampling` schedule.
        seed: int, the seed of the sampling draws.
        **kwargs: standard model arguments (`name`, ...).

    Call arguments:
        inputs: frames `(batch, time, rows, cols, channels)`, `time` at
            least `input_steps` (`input_steps + output_steps` in
            training, for scheduled sampling).
        training: Python boolean.

    Input shape:
        `(batch, time, rows, cols, channels)`, `rows` and `cols`
        divisible by `patch_size`.

    Output shape:
        `(batch, input_steps + output_steps − 1, rows, cols, channels)`.

    Example:

    >>> import numpy as np
    >>> import keras_convgru as kc
    >>> model = kc.models.NextFrameForecaster(
    ...     [kc.SpatioTemporalLSTM2DCell(8, 3) for _ in range(2)],
    ...     input_steps=4, output_steps=2, patch_size=2)
    >>> tuple(model(np.zeros((1, 4, 8, 8, 1), "float32")).shape)
    (1, 5, 8, 8, 1)
    """

    def __init__(
        self,
        cells,
        input_steps=10,
        output_steps=10,
        patch_size=1,
        sampling=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        cells = list(cells) if isinstance(cells, (list, tuple)) else [cells]
        _rnn_checks.check_cells(cells)
        self.stack = cells
        self.input_steps = validate_positive_int(input_steps, "input_steps")
        self.output_steps = validate_positive_int(output_steps, "output_steps")
        self.patch_size = validate_positive_int(patch_size, "patch_size")
        if sampling is None:
            sampling = LinearSampling()
        if not isinstance(sampling, SamplingSchedule):
            raise TypeError(
                "Argument `sampling` must be a ConstantSampling, "
                "LinearSampling or ReverseSampling schedule. "
                f"Received: sampling={sampling!r}"
            )
        self.sampling = sampling
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.head = None
        # The training steps taken, which the sampling schedule reads: one
        # value for every replica.
        self.sampling_iteration = self.add_weight(
            name="sampling_iteration",
            shape=(),
            initializer="zeros",
            trainable=False,
            aggregation="only_first_replica",
        )

    def build(self, input_shape):
        input_shape = tuple(input_shape)
        if len(input_shape) != 5:
            raise ValueError(
                "NextFrameForecaster takes sequences of frames (batch, time, "
                f"rows, cols, channels). Received: input_shape={input_shape}"
            )
        p = self.patch_size
        for axis, size in zip(("rows", "cols"), input_shape[2:4]):
            if size is not None and size % p:
                raise ValueError(
                    f"NextFrameForecaster needs frames whose {axis} divide "
                    f"by `patch_size`. Received: patch_size={p} and "
                    f"input_shape={input_shape}"
                )
        if input_shape[1] is None or input_shape[1] < self.input_steps:
            raise ValueError(
                f"NextFrameForecaster needs at least input_steps="
                f"{self.input_steps} frames. Received: input_shape="
                f"{input_shape}"
            )
        rows, cols, channels = input_shape[2:]
        patched = (
            input_shape[0],
            None if rows is None else rows // p,
            None if cols is None else cols // p,
            channels * p * p,
        )
        shape = patched
        for cell in self.stack:
            if not cell.built:
                cell.build(shape)
            shape = _recurrence.cell_shapes(cell, shape)[0]
        self.head = keras.layers.Conv2D(
            channels * p * p, 1, use_bias=False, name="head"
        )
        self.head.build(shape)
        self._built_input_shape = input_shape
        self.built = True

    def call(self, inputs, training=None):
        frames = space_to_depth(inputs, self.patch_size)
        total = self.input_steps + self.output_steps
        sampled = bool(training) and frames.shape[1] is not None
        sampled = sampled and frames.shape[1] >= total
        batch = ops.shape(frames)[0]
        step_shape = (batch, *ops.shape(frames)[2:])
        states = [
            [ops.zeros(s, self.compute_dtype) for s in shapes]
            for shapes in _state_shapes(self.stack, step_shape)
        ]
        true_token = observed_token = None
        if sampled:
            forecast_p, observed_p = self.sampling.probabilities(
                ops.cast(self.sampling_iteration, "float32")
            )
            draws = self._sampling_draws(total - 1, batch)
            true_token = ops.cast(draws[0] < forecast_p, frames.dtype)
            observed_token = ops.cast(draws[1] < observed_p, frames.dtype)
            self.sampling_iteration.assign_add(1.0)
        loss_cells = [
            i
            for i, cell in enumerate(self.stack)
            if training and getattr(cell, "step_loss_weight", 0) > 0
        ]
        sums = [0.0] * len(loss_cells)
        predictions, prediction = [], None
        for t in range(total - 1):
            x = frames[:, t] if t < frames.shape[1] else None
            if t == 0:
                pass
            elif t < self.input_steps:
                if sampled:
                    token = observed_token[t]
                    x = token * x + (1.0 - token) * prediction
            elif sampled:
                token = true_token[t]
                x = token * x + (1.0 - token) * prediction
            else:
                x = prediction
            output, states, terms = _recurrence.step_stack(
                self.stack, x, states, loss_cells=loss_cells
            )
            for k, term in enumerate(terms):
                sums[k] = sums[k] + ops.mean(term)
            prediction = self.head(output)
            predictions.append(prediction)
        for k, i in enumerate(loss_cells):
            weight = self.stack[i].step_loss_weight
            self.add_loss(weight * sums[k] / (total - 1))
        outputs = ops.stack(predictions, axis=1)
        return depth_to_space(outputs, self.patch_size)

    def _sampling_draws(self, steps, batch):
        """Uniform draws `(2, steps, batch, 1, 1, 1)`, per sample and step.

        On one of several TensorFlow replicas (`MirroredStrategy`), each
        holding a copy of the seed generator's state, the draws are those
        of the global batch of `batch * replicas` samples, as one device
        would draw them, and this replica keeps the rows of its share: its
        samples get the choices one device would give them, where draws
        of the local batch would repeat on every replica.
        """
        replica, replicas = _replicas.replica_slot()
        shape = (2, steps, batch * replicas, 1, 1, 1)
        draws = keras.random.uniform(shape, seed=self.seed_generator)
        if replicas == 1:
            return draws
        start = (0, 0, replica * batch, 0, 0, 0)
        return ops.slice(draws, start, (2, steps, batch, 1, 1, 1))

    def compute_output_shape(self, input_shape):
        total = self.input_steps + self.output_steps
        return (input_shape[0], total - 1, *input_shape[2:])

    def get_config(self):
        return {
            **super().get_config(),
            "cells": [
                keras.saving.serialize_keras_object(c) for c in self.stack
            ],
            "input_steps": self.input_steps,
            "output_steps": self.output_steps,
            "patch_size": self.patch_size,
            "sampling": keras.saving.serialize_keras_object(self.sampling),
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["cells"] = [
            keras.saving.deserialize_keras_object(c) for c in config["cells"]
        ]
        config["sampling"] = keras.saving.deserialize_keras_object(
            config["sampling"]
        )
        return cls(**config)


def _state_shapes(cells, step_shape):
    shapes = []
    for cell in cells:
        step_shape, state_shapes = _recurrence.cell_shapes(cell, step_shape)
        shapes.append(state_shapes)
    return shapes
