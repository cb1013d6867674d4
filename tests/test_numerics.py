"""Numerics: long sequences, NaN and Inf inputs, half precision.

* 1,000 steps on small frames stay finite, `|h| <= 1`, and still match the
  NumPy reference (tests/reference.py) at the last step: no drift.
* NaN and Inf inputs follow IEEE arithmetic exactly as the float64 NumPy
  reference does, sample by sample. What that means, and is asserted:
  a NaN in sample b at step t leaves b's earlier outputs finite, makes b's
  outputs NaN from step t on where the NaN reaches (the recurrent
  convolution spreads it one kernel radius per step, so the whole state is
  NaN a few steps later), and never touches another sample of the batch.
  A whole frame of +-Inf gives Inf - Inf = NaN in the convolution, so it
  propagates like NaN; a lone +-Inf pixel saturates the gates (sigmoid and
  tanh of +-Inf are finite) and the outputs stay finite. A NaN or Inf
  frame at a *masked* step never reaches the state (Keras selects the
  carried state, it does not multiply by the mask).
* Mixed precision (`mixed_float16`, `mixed_bfloat16`, as the global policy
  or as the layer's `dtype=`) keeps a 100-step recurrence finite, `|h| <= 1`
  and close to the float32 result: within 1e-2 (float16) and 5e-2
  (bfloat16) everywhere, and 2e-3 / 1e-2 on average; measured: 4e-3 and
  3e-2 at most, 3e-4 and 3e-3 on average, on all three backends.
"""

import helpers
import keras
import numpy as np
import pytest
import reference
from helpers import randomize_weights
from keras import ops

FILTERS = 2
LAYERS = {family: helpers.LAYERS[family, 2] for family in ("gru", "lstm")}
REFERENCES = {
    "gru": reference.conv_gru_reference,
    "lstm": reference.conv_lstm_reference,
}


def random_layers(x_shape, rng, scale, **kwargs):
    """A ConvGRU2D and a ConvLSTM2D, built, with random weights."""
    layers, weights = {}, {}
    for family, layer_class in LAYERS.items():
        layer = layer_class(
            FILTERS,
            3,
            padding="same",
            return_sequences=True,
            return_state=True,
            **kwargs,
        )
        layer.build(x_shape)
        weights[family] = randomize_weights(layer, rng, scale)
        layers[family] = layer
    return layers, weights


def run_compiled(layers, x, mask=None):
    """Both layers side by side in one model, run by `predict_on_batch`
    (compiled on TensorFlow and JAX: one compilation for both families;
    a 1,000-step loop stepped eagerly would be slow).

    Returns {family: [sequence, *final states]} as float64 arrays.
    """
    frames = keras.Input(batch_shape=x.shape)
    inputs, arrays, kwargs = [frames], [x], {}
    if mask is not None:
        steps = keras.Input(batch_shape=mask.shape, dtype="bool")
        inputs.append(steps)
        arrays.append(mask)
        kwargs["mask"] = steps
    outputs = {f: list(layer(frames, **kwargs)) for f, layer in layers.items()}
    model = keras.Model(inputs, outputs)
    result = model.predict_on_batch(arrays if mask is not None else x)
    return {
        family: [np.asarray(ops.convert_to_numpy(t), "float64") for t in ts]
        for family, ts in result.items()
    }


# --- long sequences -----------------------------------------------------------


def test_a_thousand_steps_stay_finite_bounded_and_on_the_reference():
    rng = np.random.default_rng(3)
    steps = 1000
    # Large inputs and weights: the gates saturate often.
    x = (3.0 * rng.normal(size=(2, steps, 3, 3, 1))).astype("float32")
    layers, weights = random_layers(x.shape, rng, 1.0)
    results = run_compiled(layers, x)

    for family, (sequence, *states) in results.items():
        assert sequence.shape == (2, steps, 3, 3, FILTERS), family
        assert np.all(np.isfinite(sequence)), family
        assert np.abs(sequence).max() <= 1.0, family
        if family == "lstm":
            # The cell state may grow by at most 1 per step.
            assert np.all(np.isfinite(states[1]))
            assert np.abs(states[1]).max() <= steps
        expected = REFERENCES[family](x, *weights[family], padding="same")
        np.testing.assert_allclose(
            sequence, expected[0], atol=1e-4, rtol=0, err_msg=family
        )
        for actual, wanted in zip(states, expected[1:]):
            np.testing.assert_allclose(
                actual, wanted, atol=1e-5, rtol=0, err_msg=family
            )


# --- NaN and Inf --------------------------------------------------------------

BAD_STEP = 2
STEPS = 6
SIDE = 5
SAMPLES = {
    # name: (what is written into step BAD_STEP, the value, masked there)
    "nan pixel": ("pixel", np.nan, False),
    "inf frame": ("frame", np.inf, False),
    "-inf pixel": ("pixel", -np.inf, False),
    "nan frame, masked": ("frame", np.nan, True),
    "inf frame, masked": ("frame", np.inf, True),
    "clean": (None, None, False),
}
# The samples whose outputs become NaN from BAD_STEP on.
POISONED = ("nan pixel", "inf frame")


def poisoned_batch(rng):
    x = rng.uniform(-1, 1, size=(len(SAMPLES), STEPS, SIDE, SIDE, 1))
    x = x.astype("float32")
    mask = np.ones((len(SAMPLES), STEPS), bool)
    for b, (where, value, masked) in enumerate(SAMPLES.values()):
        if where == "pixel":
            x[b, BAD_STEP, 1, 3, 0] = value
        elif where == "frame":
            x[b, BAD_STEP] = value
        mask[b, BAD_STEP] = not masked
    return x, mask


def test_nan_and_inf_inputs_propagate_per_sample_as_ieee_arithmetic():
    rng = np.random.default_rng(5)
    x, mask = poisoned_batch(rng)
    layers, weights = random_layers(x.shape, rng, 0.4)
    results = run_compiled(layers, x, mask)

    names = list(SAMPLES)
    clean = names.index("clean")
    for family, (sequence, *states) in results.items():
        expected = REFERENCES[family](
            x, *weights[family], padding="same", mask=mask
        )
        for actual, wanted in zip([sequence, *states], expected):
            # NaN exactly where IEEE arithmetic puts it; the rest matches.
            np.testing.assert_allclose(
                actual, wanted, atol=1e-5, equal_nan=True, err_msg=family
            )
        for b, name in enumerate(names):
            what = f"{family}, {name}"
            assert np.all(np.isfinite(sequence[b, :BAD_STEP])), what
            if name in POISONED:
                assert np.isnan(sequence[b, BAD_STEP]).any(), what
                assert np.all(np.isnan(states[0][b])), what
            else:
                assert np.all(np.isfinite(sequence[b])), what
                assert np.all(np.isfinite(states[0][b])), what
        # The clean sample is what it is in a batch of its own.
        alone = REFERENCES[family](
            x[clean : clean + 1], *weights[family], padding="same"
        )
        np.testing.assert_allclose(
            sequence[clean], alone[0][0], atol=1e-5, err_msg=family
        )


# --- half precision -----------------------------------------------------------

HALF_TOLERANCES = {
    # compute dtype: (max, mean) absolute difference to float32
    "float16": (1e-2, 2e-3),
    "bfloat16": (5e-2, 1e-2),
}


@pytest.mark.parametrize(
    "policy,how",
    [
        ("mixed_float16", "global"),
        ("mixed_bfloat16", "global"),
        ("mixed_float16", "layer"),
        ("mixed_bfloat16", "layer"),
    ],
)
def test_mixed_precision_recurrence_is_stable_over_a_hundred_steps(
    policy, how, float32_policy
):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 100, 4, 4, 1)).astype("float32")
    layers, weights = random_layers(x.shape, rng, 0.5)
    expected = run_compiled(layers, x)

    if how == "global":
        keras.mixed_precision.set_dtype_policy(policy)
        half_layers, _ = random_layers(x.shape, rng, 0.5)
    else:
        half_layers, _ = random_layers(x.shape, rng, 0.5, dtype=policy)
    compute_dtype = policy.split("_")[1]
    for family, layer in half_layers.items():
        layer.set_weights(weights[family])
        assert layer.compute_dtype == compute_dtype
        assert all(w.dtype == "float32" for w in layer.weights)
    actual = run_compiled(half_layers, x)

    worst, average = HALF_TOLERANCES[compute_dtype]
    for family in LAYERS:
        for a, e in zip(actual[family], expected[family]):
            assert np.all(np.isfinite(a)), family
            assert np.abs(e - a).max() <= worst, family
            assert np.abs(e - a).mean() <= average, family
        # Outputs and h are tanh-bounded.
        sequence, h = actual[family][:2]
        assert np.abs(sequence).max() <= 1.0, family
        assert np.abs(h).max() <= 1.0, family
