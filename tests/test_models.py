"""`kc.models`: the encoder-forecaster and PredRNN's next-frame model.

Oracles: the recurrent layers run by `kc.ConvRNN` over the true frames
(teacher forcing), the model's own free-running path, the sampling
schedules' formulas as the authors' code writes them (thuml/predrnn-
pytorch `run.py`), PredRNN's `reshape_patch` in NumPy, and, for the
upsampling, the phase statistics that show a transposed convolution's
checkerboard.
"""

import math

import keras
import numpy as np
import pytest
from helpers import to_numpy
from keras import ops

import keras_convgru as kc

FAMILY_CELLS = {
    "ConvGRU2DCell": {},
    "ConvLSTM2DCell": {},
    "TrajGRU2DCell": {"links": 2, "flow_filters": 4, "flow_kernel_size": 3},
    "SpatioTemporalLSTM2DCell": {},
    "CausalLSTM2DCell": {},
    "SAConvLSTM2DCell": {},
}


def frames(batch=2, steps=5, side=16, channels=1, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch, steps, side, side, channels)
    return rng.uniform(0, 1, size=shape).astype("float32")


def randomize(model, seed=1, scale=0.3):
    rng = np.random.default_rng(seed)
    for weight in model.trainable_weights:
        weight.assign(rng.normal(scale=scale, size=weight.shape))


# -- EncoderForecaster --------------------------------------------------------


@pytest.mark.parametrize("cell", list(FAMILY_CELLS))
def test_encoder_forecaster_runs_every_cell_family(cell):
    model = kc.models.EncoderForecaster(
        cell,
        filters=[4, 6],
        strides=[2, 2],
        output_steps=3,
        cell_arguments=FAMILY_CELLS[cell],
    )
    out = model(frames())
    assert tuple(out.shape) == (2, 3, 16, 16, 1)
    cells = [layer.cell for layer in model.encoders + model.forecasters]
    assert {type(c).__name__ for c in cells} == {cell}


def test_encoder_forecaster_forecasters_start_from_the_encoders_states():
    model = kc.models.EncoderForecaster(
        "ConvGRU2DCell", filters=[4, 6], strides=2, output_steps=2
    )
    x = frames()
    model(x)
    randomize(model)
    # The forecast depends on the observed frames only through the
    # encoders' final states: the same states give the same forecast.
    encoded = model.encode(x)
    y = ops.zeros((2, 2, 4, 4, 1))
    for i in reversed(range(2)):
        y = model.forecasters[i](y, initial_state=encoded[i][1])
        shape = ops.shape(y)
        flat = ops.reshape(y, (-1, *shape[2:]))
        for layer in model.upsamplers[i]:
            flat = layer(flat)
        y = ops.reshape(flat, (shape[0], shape[1], *ops.shape(flat)[1:]))
    shape = ops.shape(y)
    head = model.head(ops.reshape(y, (-1, *shape[2:])))
    expected = ops.reshape(head, (2, 2, 16, 16, 1))
    np.testing.assert_allclose(
        to_numpy(model(x)), to_numpy(expected), rtol=1e-5, atol=1e-6
    )


@pytest.mark.parametrize("cell", ["ConvGRU2DCell", "SpatioTemporalLSTM2DCell"])
def test_encoder_states_up_to_t_see_no_later_frame(cell):
    model = kc.models.EncoderForecaster(
        cell, filters=[4, 4], strides=2, output_steps=2
    )
    x = frames(batch=1, steps=5)
    model(x)
    randomize(model)
    before = [to_numpy(sequence) for sequence, _ in model.encode(x)]
    for t in (1, 3):
        changed = x.copy()
        changed[:, t:] = frames(batch=1, steps=5 - t, seed=t + 5)
        # One sequence per call, at the same batch position.
        after = [to_numpy(sequence) for sequence, _ in model.encode(changed)]
        for scale, (a, b) in enumerate(zip(before, after)):
            change = np.abs(a - b).reshape(5, -1).max(axis=-1)
            assert change[:t].max() == 0.0, (scale, t, change)
            assert change[t:].min() > 1e-6, (scale, t, change)


def phase_spread(field, stride):
    """Largest difference between the means of the `stride x stride`
    phases of a 2D field: large for a periodic (checkerboard) pattern."""
    means = [
        field[i::stride, j::stride].mean()
        for i in range(stride)
        for j in range(stride)
    ]
    return max(means) - min(means)


def test_the_phase_statistic_sees_a_transposed_convolutions_checkerboard():
    keras.utils.set_random_seed(0)
    up = keras.layers.Conv2DTranspose(1, 3, strides=2, padding="same")
    out = to_numpy(up(np.ones((1, 16, 16, 4), "float32")))[0, 8:24, 8:24, 0]
    assert phase_spread(out, 2) > 1e-2


def test_a_constant_field_gives_a_forecast_without_a_checkerboard():
    model = kc.models.EncoderForecaster(
        "ConvGRU2DCell",
        filters=[4, 4],
        strides=2,
        output_steps=2,
        kernel_size=1,
    )
    x = np.full((1, 3, 64, 64, 1), 0.7, "float32")
    model(x)
    randomize(model, scale=0.5)
    forecast = to_numpy(model(x))
    assert np.abs(forecast).max() > 1e-3
    for step in range(2):
        centre = forecast[0, step, 24:40, 24:40, 0]
        assert phase_spread(centre, 2) < 1e-5, centre


def test_encoder_forecaster_checks_its_arguments():
    with pytest.raises(ValueError, match="strides"):
        kc.models.EncoderForecaster("ConvGRU2DCell", [4, 4], [2], 2)
    with pytest.raises(ValueError, match="cell='GRU'"):
        kc.models.EncoderForecaster("GRU", [4], 2, 2)
    model = kc.models.EncoderForecaster("ConvGRU2DCell", [4, 4], 4, 2)
    with pytest.raises(ValueError, match=r"product of `strides` \(16\)"):
        model(frames(side=24))


def test_encoder_forecaster_saves_and_loads(tmp_path):
    model = kc.models.EncoderForecaster(
        ["TrajGRU2DCell", "ConvLSTM2DCell"],
        filters=[4, 6],
        strides=[2, 2],
        output_steps=2,
        output_activation="sigmoid",
        cell_arguments=None,
    )
    x = frames()
    model(x)
    randomize(model)
    config = model.get_config()
    assert config["cell"] == ["TrajGRU2DCell", "ConvLSTM2DCell"]
    rebuilt = kc.models.EncoderForecaster.from_config(config)
    assert rebuilt.get_config() == config
    path = tmp_path / "encoder_forecaster.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    np.testing.assert_allclose(
        to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6, atol=1e-6
    )


# -- the sampling schedules -------------------------------------------------


def authors_linear(iteration):
    """run.py's `schedule_sampling`: eta starts at 1.0 and falls by
    0.00002 per iteration until `sampling_stop_iter` (50000)."""
    return max(0.0, 1.0 - 0.00002 * iteration) if iteration < 50000 else 0.0


def authors_reverse(iteration, step_1=25000, step_2=50000, alpha=5000):
    """run.py's `reserve_schedule_sampling_exp`: (eta, r_eta)."""
    if iteration < step_1:
        r_eta = 0.5
    elif iteration < step_2:
        r_eta = 1.0 - 0.5 * math.exp(-float(iteration - step_1) / alpha)
    else:
        r_eta = 1.0
    if iteration < step_1:
        eta = 0.5
    elif iteration < step_2:
        eta = 0.5 - (0.5 / (step_2 - step_1)) * (iteration - step_1)
    else:
        eta = 0.0
    return eta, r_eta


ITERATIONS = [0, 1, 12345, 24999, 25000, 30000, 49999, 50000, 80000]


@pytest.mark.parametrize("iteration", ITERATIONS)
def test_the_schedules_give_the_authors_probabilities(iteration):
    linear, observed = kc.models.LinearSampling().probabilities(
        ops.convert_to_tensor(float(iteration))
    )
    np.testing.assert_allclose(
        to_numpy(linear), authors_linear(iteration), atol=1e-6
    )
    assert observed == 1.0
    eta, r_eta = kc.models.ReverseSampling().probabilities(
        ops.convert_to_tensor(float(iteration))
    )
    expected_eta, expected_r_eta = authors_reverse(iteration)
    np.testing.assert_allclose(to_numpy(eta), expected_eta, atol=1e-6)
    np.testing.assert_allclose(to_numpy(r_eta), expected_r_eta, atol=1e-6)


@pytest.mark.parametrize(
    "schedule",
    [
        kc.models.ConstantSampling(0.25),
        kc.models.LinearSampling(1000),
        kc.models.ReverseSampling(10, 20, 3.0),
    ],
)
def test_schedules_round_trip_through_their_config(schedule):
    config = keras.saving.serialize_keras_object(schedule)
    again = keras.saving.deserialize_keras_object(config)
    assert type(again) is type(schedule)
    assert again.get_config() == schedule.get_config()


def test_schedules_check_their_arguments():
    with pytest.raises(ValueError, match="probability=1.5"):
        kc.models.ConstantSampling(1.5)
    with pytest.raises(ValueError, match="steps"):
        kc.models.LinearSampling(0)
    with pytest.raises(ValueError, match="start=5 and stop=5"):
        kc.models.ReverseSampling(5, 5)


# -- NextFrameForecaster ----------------------------------------------------


def reshape_patch(frames, p):
    """PredRNN's `preprocess.reshape_patch`, in NumPy."""
    b, t, h, w, c = frames.shape
    a = frames.reshape(b, t, h // p, p, w // p, p, c)
    a = a.transpose(0, 1, 2, 4, 3, 5, 6)
    return a.reshape(b, t, h // p, w // p, p * p * c)


def test_patches_are_predrnns_reshape_patch_and_invert():
    x = frames(steps=3, side=8, channels=2)
    patched = to_numpy(kc.models.space_to_depth(x, 4))
    np.testing.assert_array_equal(patched, reshape_patch(x, 4))
    back = to_numpy(kc.models.depth_to_space(patched, 4))
    np.testing.assert_array_equal(back, x)


def next_frame_model(sampling, patch_size=2, decoupling_weight=0.0):
    cells = [
        kc.SpatioTemporalLSTM2DCell(4, 3, decoupling_weight=decoupling_weight),
        kc.SpatioTemporalLSTM2DCell(4, 3, decoupling_weight=decoupling_weight),
    ]
    return kc.models.NextFrameForecaster(
        cells,
        input_steps=3,
        output_steps=3,
        patch_size=patch_size,
        sampling=sampling,
        seed=4,
    )


def teacher_forced(model, x):
    """The stack over the true frames by `kc.ConvRNN`, then the head."""
    p = model.patch_size
    patched = kc.models.space_to_depth(x[:, :-1], p)
    hidden = kc.ConvRNN(model.stack, return_sequences=True)(patched)
    shape = ops.shape(hidden)
    head = model.head(ops.reshape(hidden, (-1, *shape[2:])))
    predictions = ops.reshape(head, (shape[0], shape[1], *ops.shape(head)[1:]))
    return to_numpy(kc.models.depth_to_space(predictions, p))


def test_sampling_probability_one_is_teacher_forcing():
    x = frames(steps=6, side=8)
    model = next_frame_model(kc.models.ConstantSampling(1.0))
    model(x)
    randomize(model)
    trained = to_numpy(model(x, training=True))
    np.testing.assert_allclose(
        trained, teacher_forced(model, x), rtol=1e-5, atol=1e-6
    )


def test_sampling_probability_zero_is_free_running():
    x = frames(steps=6, side=8)
    model = next_frame_model(kc.models.ConstantSampling(0.0))
    model(x)
    randomize(model)
    trained = to_numpy(model(x, training=True))
    free = to_numpy(model(x[:, :3]))
    np.testing.assert_array_equal(trained, free)
    # predict feeds its own predictions whatever frames follow.
    np.testing.assert_array_equal(to_numpy(model(x)), free)
    # The observed part is teacher forced in both.
    np.testing.assert_allclose(
        free[:, :2], teacher_forced(model, x)[:, :2], rtol=1e-5, atol=1e-6
    )


def test_probability_one_trains_exactly_as_teacher_forcing():
    x = frames(batch=4, steps=6, side=8)
    model = next_frame_model(kc.models.ConstantSampling(1.0), patch_size=1)
    model(x)
    randomize(model)
    # The same network as a functional teacher-forcing model.
    inputs = keras.Input((5, 8, 8, 1))
    hidden = kc.ConvRNN(
        [kc.SpatioTemporalLSTM2DCell(4, 3) for _ in range(2)],
        return_sequences=True,
    )(inputs)
    outputs = keras.layers.Conv3D(1, 1, use_bias=False)(hidden)
    reference = keras.Model(inputs, outputs)

    def network(m):
        """The stack's weights, then the head's kernel (as a Conv3D's)."""
        cells = [w for cell in m.stack for w in cell.weights]
        return [to_numpy(w) for w in cells] + [
            to_numpy(m.head.kernel).reshape(1, 1, 1, 4, 1)
        ]

    reference.set_weights(network(model))
    for m in (model, reference):
        m.compile(keras.optimizers.SGD(0.1), "mse")
    model.fit(x, x[:, 1:], batch_size=4, epochs=1, verbose=0)
    reference.fit(x[:, :-1], x[:, 1:], batch_size=4, epochs=1, verbose=0)
    for mine, theirs in zip(network(model), reference.get_weights()):
        np.testing.assert_allclose(mine, theirs, rtol=1e-4, atol=1e-6)
    assert float(to_numpy(model.sampling_iteration)) == 1.0


def test_sampling_draws_per_sample_and_counts_the_steps():
    x = np.repeat(frames(batch=1, steps=6, side=8), 16, axis=0)
    model = next_frame_model(kc.models.ConstantSampling(0.5))
    model(x)
    randomize(model)
    out = to_numpy(model(x, training=True))
    forecast = out[:, 3:].reshape(16, -1)
    # Identical samples, different draws: some forecasts differ (by far
    # more than oneDNN's rounding, which differs with the batch position).
    assert np.abs(forecast - forecast[:1]).max() > 1e-3
    # The observed part is always the true frames.
    assert np.abs(out[:, :2] - out[:1, :2]).max() < 1e-5
    assert float(to_numpy(model.sampling_iteration)) == 1.0
    model(x, training=True)
    assert float(to_numpy(model.sampling_iteration)) == 2.0
    model(x)
    assert float(to_numpy(model.sampling_iteration)) == 2.0


def test_reverse_sampling_replaces_observed_frames_too():
    x = np.repeat(frames(batch=1, steps=6, side=8), 16, axis=0)
    model = next_frame_model(kc.models.ReverseSampling(10, 20, 3.0))
    model(x)
    randomize(model)
    # At iteration 0 both probabilities are 0.5: observed frames vary too.
    out = to_numpy(model(x, training=True))
    observed = out[:, 1:3].reshape(16, -1)
    assert np.abs(observed - observed[:1]).max() > 1e-3
    # Past `stop`: every observed frame true, every later one predicted.
    model.sampling_iteration.assign(25.0)
    np.testing.assert_allclose(
        to_numpy(model(x, training=True)), to_numpy(model(x)), atol=1e-6
    )


def test_the_decoupling_loss_reaches_model_losses():
    x = frames(steps=6, side=8)
    model = next_frame_model(kc.models.LinearSampling(), decoupling_weight=0.1)
    model(x, training=True)
    assert len(model.losses) == 2
    assert all(float(to_numpy(loss)) > 0 for loss in model.losses)
    model(x)
    assert not model.losses
    model.compile("adam", "mse")
    history = model.fit(x, x[:, 1:], epochs=2, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))


def test_next_frame_forecaster_saves_and_loads(tmp_path):
    x = frames(steps=6, side=8)
    model = next_frame_model(kc.models.ReverseSampling(10, 20, 3.0))
    model(x)
    randomize(model)
    model.sampling_iteration.assign(7.0)
    path = tmp_path / "predrnn.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert isinstance(loaded.sampling, kc.models.ReverseSampling)
    assert float(to_numpy(loaded.sampling_iteration)) == 7.0
    np.testing.assert_allclose(
        to_numpy(loaded(x)), to_numpy(model(x)), rtol=1e-6, atol=1e-6
    )


def test_next_frame_forecaster_checks_its_inputs():
    model = next_frame_model(kc.models.LinearSampling(), patch_size=3)
    with pytest.raises(ValueError, match="patch_size=3"):
        model(frames(steps=6, side=8))
    model = next_frame_model(kc.models.LinearSampling())
    with pytest.raises(ValueError, match="input_steps=3"):
        model(frames(steps=2, side=8))
    with pytest.raises(TypeError, match="sampling"):
        kc.models.NextFrameForecaster([kc.ConvGRU2DCell(2, 3)], sampling=0.5)
