"""keras_convgru.losses: BalancedMSE and BalancedMAE (Shi et al. 2017)
against a NumPy reference, and as Keras losses (reductions, sample_weight,
config, saving, training).

Tolerance: the losses are float32 means of float32 products, the
reference a float64 mean: rtol 1e-5.
"""

import doctest
import inspect
import os

import keras
import numpy as np
import pytest

from keras_convgru import losses

# Shi et al. 2017's balancing weights (mm/h), with one more, lower
# threshold below which the weight stays 1.
THRESHOLDS = [0.5, 2.0, 5.0, 10.0, 30.0]
WEIGHTS = [1.5, 2.0, 5.0, 10.0, 30.0]
LOSSES = {"mse": losses.BalancedMSE, "mae": losses.BalancedMAE}
ERRORS = {"mse": np.square, "mae": np.abs}


def reference_weights(y_true, thresholds, weights):
    """The weight of the highest threshold reached, 1 below the lowest."""
    index = np.searchsorted(np.asarray(thresholds), y_true, side="right")
    return np.concatenate([[1.0], weights])[index]


def reference(kind, y_true, y_pred, thresholds=THRESHOLDS, weights=WEIGHTS):
    y_true, y_pred = y_true.astype("float64"), y_pred.astype("float64")
    w = reference_weights(y_true, thresholds, weights)
    return np.mean(w * ERRORS[kind](y_true - y_pred))


def rain(rng, shape=(2, 3, 32, 32, 1)):
    """Rain-like fields: mostly 0, gamma-distributed intensities up to tens
    of mm/h, and a forecast with multiplicative and additive errors."""
    wet = rng.uniform(size=shape) < 0.3
    y_true = np.where(wet, rng.gamma(0.8, 6.0, shape), 0.0)
    y_pred = np.maximum(
        y_true * rng.lognormal(0.0, 0.4, shape) + rng.normal(0, 0.5, shape),
        0.0,
    )
    return y_true.astype("float32"), y_pred.astype("float32")


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("seed", [0, 1])
def test_balanced_loss_matches_the_reference_on_rain(kind, seed):
    y_true, y_pred = rain(np.random.default_rng(seed))
    assert (y_true >= THRESHOLDS[-1]).any()  # every weight is used
    got = float(LOSSES[kind](THRESHOLDS, WEIGHTS)(y_true, y_pred))
    np.testing.assert_allclose(got, reference(kind, y_true, y_pred), 1e-5)


@pytest.mark.parametrize("kind", LOSSES)
def test_balanced_loss_matches_the_reference_on_random_fields(kind):
    rng = np.random.default_rng(2)
    y_true = rng.uniform(-1.0, 40.0, (4, 5, 6)).astype("float32")
    y_pred = rng.uniform(-1.0, 40.0, (4, 5, 6)).astype("float32")
    got = float(LOSSES[kind](THRESHOLDS, WEIGHTS)(y_true, y_pred))
    np.testing.assert_allclose(got, reference(kind, y_true, y_pred), 1e-5)


@pytest.mark.parametrize("kind", LOSSES)
def test_weight_is_that_of_the_highest_threshold_reached(kind):
    # Values at, just below and above each threshold; y_pred = y_true + 1,
    # so each element's loss is its weight.
    y_true = np.array([[-3.0, 0.0, 0.75, 1.0, 2.5, 3.0, 3.5, 100.0]])
    loss = LOSSES[kind]([1.0, 3.0], [4.0, 0.0], reduction=None)
    got = np.asarray(loss(y_true[..., None], y_true[..., None] + 1.0))
    np.testing.assert_array_equal(got, [[1, 1, 1, 4, 4, 0, 0, 0]])


@pytest.mark.parametrize("kind", LOSSES)
def test_reductions_are_keras_reductions(kind):
    # Like keras.losses.MeanSquaredError: `call` averages the last axis;
    # "sum_over_batch_size" is then the mean over all elements.
    y_true, y_pred = rain(np.random.default_rng(3), (2, 3, 8, 8, 2))
    w = reference_weights(y_true.astype("float64"), THRESHOLDS, WEIGHTS)
    per_element = w * ERRORS[kind](y_true.astype("float64") - y_pred)
    per_row = per_element.mean(axis=-1)
    for reduction, want in [
        (None, per_row),
        ("none", per_row),
        ("sum", per_row.sum()),
        ("sum_over_batch_size", per_element.mean()),
        ("mean", per_element.mean()),
    ]:
        loss = LOSSES[kind](THRESHOLDS, WEIGHTS, reduction=reduction)
        got = np.asarray(loss(y_true, y_pred))
        assert got.shape == np.shape(want), reduction
        np.testing.assert_allclose(got, want, rtol=1e-5, err_msg=reduction)


@pytest.mark.parametrize("kind", LOSSES)
def test_with_every_weight_one_it_is_the_keras_loss(kind):
    # sample_weight and masks are Keras's: compare with keras' own loss.
    keras_loss = {
        "mse": keras.losses.MeanSquaredError(),
        "mae": keras.losses.MeanAbsoluteError(),
    }[kind]
    rng = np.random.default_rng(4)
    loss = LOSSES[kind]([1.0], [1.0])
    # A weight per sample, and one per row of a (3, 4, 5) batch (the loss
    # averages the last axis).
    for shape, sample_weight in [
        ((3, 5), np.array([0.0, 1.0, 2.5])),
        ((3, 4, 5), rng.uniform(size=(3, 4))),
    ]:
        y_true, y_pred = rain(rng, shape)
        for kwargs in ({}, {"sample_weight": sample_weight}):
            np.testing.assert_allclose(
                float(loss(y_true, y_pred, **kwargs)),
                float(keras_loss(y_true, y_pred, **kwargs)),
                rtol=1e-6,
            )


@pytest.mark.parametrize("kind", LOSSES)
def test_compiled_model_trains_evaluates_saves_and_loads(kind, tmp_path):
    y_true, x = rain(np.random.default_rng(5), (6, 3, 8, 8, 1))
    inputs = keras.Input((3, 8, 8, 1))
    model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
    model.compile(optimizer="sgd", loss=LOSSES[kind](THRESHOLDS, WEIGHTS))
    history = model.fit(x, y_true, batch_size=3, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    evaluated = model.evaluate(x, y_true, batch_size=6, verbose=0)
    predicted = np.asarray(model.predict(x, verbose=0))
    np.testing.assert_allclose(
        evaluated, reference(kind, y_true, predicted), rtol=1e-5
    )
    path = os.path.join(tmp_path, "model.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded.loss) is LOSSES[kind]
    assert loaded.loss.get_config() == model.loss.get_config()
    np.testing.assert_allclose(
        loaded.evaluate(x, y_true, batch_size=6, verbose=0),
        evaluated,
        rtol=1e-6,
    )


@pytest.mark.parametrize("kind", LOSSES)
def test_get_config_round_trips_every_argument(kind):
    loss = LOSSES[kind](
        (1, 2.5), [3, 4.0], reduction="sum", name="b", dtype="float64"
    )
    config = loss.get_config()
    assert config == {
        "name": "b",
        "reduction": "sum",
        "thresholds": [1.0, 2.5],
        "weights": [3.0, 4.0],
        "dtype": "float64",
    }
    assert set(config) == set(inspect.signature(LOSSES[kind]).parameters)
    assert LOSSES[kind].from_config(config).get_config() == config
    restored = keras.saving.deserialize_keras_object(
        keras.saving.serialize_keras_object(loss)
    )
    assert type(restored) is LOSSES[kind]
    assert restored.get_config() == config
    name = f"keras_convgru>{LOSSES[kind].__name__}"
    assert keras.saving.get_registered_object(name) is LOSSES[kind]


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize(
    "thresholds,weights,error,words",
    [
        ([1.0, 1.0], [1.0, 2.0], ValueError, "strictly increasing"),
        ([2.0, 1.0], [1.0, 2.0], ValueError, "thresholds=[2.0, 1.0]"),
        ([1.0, 2.0], [1.0], ValueError, "weights=[1.0]"),
        ([], [], ValueError, "thresholds=[]"),
        ([1.0], [-1.0], ValueError, "non-negative"),
        ([1.0], [float("nan")], ValueError, "weights=[nan]"),
        (1.0, [1.0], TypeError, "thresholds=1.0"),
        ("12", [1.0, 1.0], TypeError, "thresholds='12'"),
        ([1.0, "2"], [1.0, 1.0], TypeError, "thresholds=[1.0, '2']"),
        ([1.0], [True], TypeError, "weights=[True]"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(
    kind, thresholds, weights, error, words
):
    with pytest.raises(error, match=words.replace("[", r"\[")):
        LOSSES[kind](thresholds, weights)


@pytest.mark.parametrize("cls", LOSSES.values(), ids=lambda c: c.__name__)
def test_docstring_has_keras_sections_and_a_running_example(cls):
    doc = cls.__doc__
    for section in ("Args:", "Input shape:", "Example:", "```"):
        assert section in doc, f"{cls.__name__} lacks {section}"
    for name in inspect.signature(cls).parameters:
        assert f"        {name}:" in doc, f"{cls.__name__} lacks {name}"
    finder = doctest.DocTestFinder(recurse=False)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    tests = finder.find(cls, cls.__name__, globs={})
    assert sum(len(t.examples) for t in tests) > 0
    for test in tests:
        runner.run(test)
    assert runner.summarize(verbose=False).failed == 0
