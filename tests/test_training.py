"""The layers train: fit lowers the loss (with and without XLA), every weight
gets a finite, non-zero gradient through every gate, and an optimizer step
moves every weight while regularizers and constraints take effect.
"""

import keras
import numpy as np
import pytest
from keras import ops

import keras_convgru as kc

BATCH = 2
TIME = 4
SIDE = 3
FILTERS = 2


def moving_pixel_data(rng, samples=16):
    """Sequences whose target is a running sum the layer must remember."""
    x = rng.normal(size=(samples, 3, SIDE, SIDE, 1)).astype("float32")
    y = 0.5 * np.tanh(x.sum(axis=1)).repeat(FILTERS, axis=-1)
    return x, y


@pytest.mark.parametrize("jit_compile", ["auto", True])
@pytest.mark.parametrize("layer_class", [kc.ConvGRU2D, kc.ConvLSTM2D])
def test_fit_lowers_the_loss(layer_class, jit_compile, rng):
    x, y = moving_pixel_data(rng)
    model = keras.Sequential(
        [keras.Input(x.shape[1:]), layer_class(FILTERS, 3, padding="same")]
    )
    model.compile(keras.optimizers.Adam(0.05), "mse", jit_compile=jit_compile)
    losses = model.fit(x, y, epochs=5, batch_size=8, verbose=0).history["loss"]
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0]


# --- gradients ---------------------------------------------------------------


def gradient_model():
    """GRU (both reset_after modes), LSTM and a stack, 3 steps of 3x3."""
    return keras.Sequential(
        [
            keras.Input((TIME, SIDE, SIDE, 1)),
            kc.ConvGRU2D(FILTERS, 3, padding="same", return_sequences=True),
            kc.ConvGRU2D(
                FILTERS,
                3,
                padding="same",
                reset_after=False,
                return_sequences=True,
            ),
            kc.ConvRNN(
                [
                    kc.ConvLSTM2DCell(FILTERS, 3, padding="same"),
                    kc.ConvGRU2DCell(FILTERS, 3, padding="same"),
                ]
            ),
        ]
    )


def gates_of_weights(model):
    """Per trainable variable path, how many gates its last axis fuses."""
    gates = {}
    for layer in model.layers:
        cells = getattr(layer.cell, "cells", [layer.cell])
        for cell in cells:
            for variable in cell.trainable_weights:
                gates[variable.path] = cell.gate_count
    return gates


def squared_error(outputs, targets):
    return ops.mean(ops.square(outputs - ops.convert_to_tensor(targets)))


def backend_gradients(model, x, y):
    """Gradients of the loss for `model.trainable_variables`, computed with
    the backend's own autodiff (not through Keras's trainer)."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = squared_error(model(x, training=True), y)
        return tape.gradient(loss, model.trainable_variables)
    if backend == "jax":
        import jax

        non_trainable = [v.value for v in model.non_trainable_variables]

        def loss_fn(trainable):
            outputs, _ = model.stateless_call(
                trainable, non_trainable, x, training=True
            )
            return squared_error(outputs, y)

        trainable = [v.value for v in model.trainable_variables]
        return jax.jit(jax.grad(loss_fn))(trainable)
    if backend == "torch":
        import torch

        variables = [v.value for v in model.trainable_variables]
        loss = squared_error(model(x, training=True), y)
        return torch.autograd.grad(loss, variables)
    raise AssertionError(f"no autodiff check written for backend {backend}")


def test_every_gate_of_every_weight_gets_a_finite_nonzero_gradient(rng):
    model = gradient_model()
    x = rng.normal(size=(BATCH, TIME, SIDE, SIDE, 1)).astype("float32")
    y = rng.normal(size=(BATCH, SIDE, SIDE, FILTERS)).astype("float32")
    gates = gates_of_weights(model)
    variables = model.trainable_variables
    gradients = backend_gradients(model, x, y)
    assert len(gradients) == len(variables) == len(gates) == 4 * 3
    for variable, gradient in zip(variables, gradients):
        gradient = ops.convert_to_numpy(gradient)
        assert gradient.shape == tuple(variable.shape), variable.path
        assert np.all(np.isfinite(gradient)), variable.path
        # Split the fused last axis: every gate must be wired to the loss.
        parts = np.split(gradient, gates[variable.path], axis=-1)
        if gradient.ndim == 2:
            # A GRU bias with reset_after: the input and the recurrent row.
            parts = [row for part in parts for row in part]
        for gate, part in enumerate(parts):
            assert np.abs(part).max() > 0, (variable.path, gate)


def test_train_step_moves_every_weight(rng):
    inputs = keras.Input((TIME, SIDE, SIDE, 1))
    x = keras.layers.Bidirectional(
        kc.ConvGRU2D(FILTERS, 3, padding="same", return_sequences=True)
    )(inputs)
    x = kc.ConvRNN(
        [
            kc.ConvGRU2DCell(FILTERS, 3, padding="same", reset_after=False),
            kc.ConvLSTM2DCell(FILTERS, 3, padding="same"),
        ],
        return_sequences=True,
    )(x)
    outputs = kc.ConvLSTM2D(FILTERS, 3, padding="same")(x)
    model = keras.Model(inputs, outputs)
    model.compile(keras.optimizers.SGD(0.1), "mse")
    x = rng.normal(size=(BATCH, TIME, SIDE, SIDE, 1)).astype("float32")
    y = rng.normal(size=(BATCH, SIDE, SIDE, FILTERS)).astype("float32")
    before = model.get_weights()
    loss = model.train_on_batch(x, y)
    assert np.isfinite(loss)
    after = model.get_weights()
    assert len(after) == 5 * 3
    for variable, old, new in zip(model.weights, before, after):
        assert np.all(np.isfinite(new)), variable.path
        assert np.abs(new - old).max() > 0, variable.path


def test_regularizers_add_losses_and_constraints_hold_after_a_step(rng):
    regularizer = keras.regularizers.L2(0.01)
    non_negative = keras.constraints.NonNeg()
    layer = kc.ConvLSTM2D(
        FILTERS,
        3,
        padding="same",
        bias_initializer="ones",
        kernel_regularizer=regularizer,
        recurrent_regularizer=regularizer,
        bias_regularizer=regularizer,
        activity_regularizer=regularizer,
        kernel_constraint=non_negative,
        recurrent_constraint=non_negative,
        bias_constraint=non_negative,
    )
    model = keras.Sequential([keras.Input((TIME, SIDE, SIDE, 1)), layer])
    model.compile(keras.optimizers.SGD(1.0), "mse")
    x = rng.normal(size=(BATCH, TIME, SIDE, SIDE, 1)).astype("float32")
    model(x)
    # kernel, recurrent kernel, bias and activity.
    assert len(model.losses) == 4
    assert all(float(ops.convert_to_numpy(loss)) > 0 for loss in model.losses)
    # A large step that would push weights negative; the constraints clip.
    y = -10.0 * np.ones((BATCH, SIDE, SIDE, FILTERS), "float32")
    model.train_on_batch(x, y)
    for weight in layer.get_weights():
        assert weight.min() >= 0.0
