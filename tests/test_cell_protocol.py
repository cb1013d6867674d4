"""The public cell protocol (docs/guides/cells.md), through public behaviour.

The guide's example cell, written with public Keras names only, is taken
from the guide itself (its Python block), so the tests hold the guide to
what they check: `ConvRNN` hoists its input projection, draws one dropout
mask per sequence and steps it like a NumPy loop of the equation. A toy
memory cell checks the zigzag rule of the spatiotemporal memory in
stacks (../shared/API.md, "Zigzag memory in stacks") against the rule
written out by hand.
"""

import pathlib
import re

import keras
import numpy as np
import pytest
from keras import ops
from reference import conv_nd

import keras_convgru as kc

GUIDE = pathlib.Path(__file__).parents[1] / "docs" / "guides" / "cells.md"


def guide_cell_class():
    """`ConvSimpleRNNCell`, defined by running the guide's block."""
    text = GUIDE.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    (block,) = [b for b in blocks if "class ConvSimpleRNNCell" in b]
    namespace = {"keras": keras, "ops": ops}
    exec(block, namespace)
    return namespace["ConvSimpleRNNCell"]


ConvSimpleRNNCell = guide_cell_class()


def frames(batch=2, steps=4, side=6, channels=3, seed=0):
    rng = np.random.default_rng(seed)
    shape = (batch, steps, side, side, channels)
    return rng.uniform(-1, 1, size=shape).astype("float32")


def test_guide_cell_steps_as_its_equation_written_in_numpy():
    x = frames()
    layer = kc.ConvRNN(ConvSimpleRNNCell(4, 3), return_sequences=True)
    layer.build(x.shape)
    kernel, recurrent_kernel, bias = layer.cell.get_weights()
    bias = np.random.default_rng(1).normal(size=bias.shape).astype("float32")
    layer.cell.bias.assign(bias)
    outputs = ops.convert_to_numpy(layer(x))
    h = np.zeros((2, 6, 6, 4), "float32")
    for t in range(x.shape[1]):
        h = np.tanh(
            conv_nd(x[:, t], kernel, padding="same")
            + bias
            + conv_nd(h, recurrent_kernel, padding="same")
        )
        np.testing.assert_allclose(outputs[:, t], h, rtol=1e-5, atol=1e-5)


class RecordingCell(ConvSimpleRNNCell):
    """Records how many frames each `input_projection` call gets."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.frames_per_call = []

    def input_projection(self, frames):
        self.frames_per_call.append(frames.shape[0])
        return super().input_projection(frames)


@pytest.mark.parametrize("hoisted", [True, False])
def test_guide_cell_gets_its_input_projection_hoisted(hoisted):
    x = frames(batch=2, steps=4)
    cell = RecordingCell(4, 3)
    layer = kc.ConvRNN(cell, return_sequences=True)
    # 4 channels x 36 pixels per step: hoisted by default, not at 0.
    layer.max_hoisted_step_elements = 2**15 if hoisted else 0
    assert layer.hoists_input_projection(x.shape) is hoisted
    layer(x)
    if hoisted:
        assert cell.frames_per_call == [2 * 4]  # batch * time, once
    else:
        assert cell.frames_per_call and set(cell.frames_per_call) == {2}


class MaskShowingCell(ConvSimpleRNNCell):
    """Outputs the recurrent dropout mask it is given at each step."""

    def recurrent_step(self, projection, states, recurrent_dropout_mask=None):
        shown = ops.ones_like(states[0])
        if recurrent_dropout_mask is not None:
            shown = shown * recurrent_dropout_mask
        return shown, [states[0]]


def test_guide_cell_gets_one_recurrent_dropout_mask_per_sequence():
    x = frames(batch=3, steps=5)
    layer = kc.ConvRNN(
        MaskShowingCell(4, 3, recurrent_dropout=0.5, seed=3),
        return_sequences=True,
    )
    masks = ops.convert_to_numpy(layer(x, training=True))
    for t in range(1, 5):
        np.testing.assert_array_equal(masks[:, t], masks[:, 0])
    # A real mask: scaled Bernoulli values, both kinds present, and a
    # different mask for each sample.
    assert set(np.unique(masks)) == {0.0, 2.0}
    assert not np.array_equal(masks[0, 0], masks[1, 0])
    # No mask outside training.
    np.testing.assert_array_equal(ops.convert_to_numpy(layer(x)), 1.0)


# -- zigzag memory -----------------------------------------------------------


@keras.saving.register_keras_serializable(package="test_cell_protocol")
class CountingMemoryCell(keras.layers.Layer):
    """States `[h, m]`: `m' = m + increment`, `h' = m'`; ignores its
    input. `increment` tells the cells of a stack apart."""

    rank = 2
    data_format = "channels_last"
    memory_state_index = 1

    def __init__(self, filters, increment, **kwargs):
        super().__init__(**kwargs)
        self.filters = filters
        self.increment = increment
        self.state_size = [filters, filters]
        self.output_size = filters

    def state_shape(self, batch_size, frame_shape):
        return (batch_size, *frame_shape, self.filters)

    def input_projection(self, frames):
        return ops.zeros_like(frames[..., :1])

    def recurrent_step(self, projection, states, recurrent_dropout_mask=None):
        m = states[1] + self.increment + projection
        return m, [m, m]

    def get_config(self):
        return {
            **super().get_config(),
            "filters": self.filters,
            "increment": self.increment,
        }


def test_zigzag_memory_flows_up_the_stack_and_back_to_the_bottom():
    x = frames(batch=1, steps=3, side=2)
    increments = (1.0, 2.0, 3.0)
    layer = kc.ConvRNN(
        [CountingMemoryCell(2, a) for a in increments],
        return_sequences=True,
        return_state=True,
    )
    outputs, *states = layer(x)
    # The rule written out: one memory climbs the stack every step.
    memory, expected_outputs, expected_states = 0.0, [], None
    for _ in range(3):
        per_cell = []
        for a in increments:
            memory = memory + a
            per_cell.append(memory)
        expected_outputs.append(memory)
        expected_states = per_cell
    np.testing.assert_array_equal(
        ops.convert_to_numpy(outputs)[0, :, 0, 0, 0], expected_outputs
    )
    assert expected_outputs == [6.0, 12.0, 18.0]
    # Each cell's own final states [h_T, m_T].
    for cell_states, value in zip(states, expected_states):
        for state in cell_states:
            np.testing.assert_array_equal(ops.convert_to_numpy(state), value)


def test_a_single_memory_cell_recurs_on_its_own_memory():
    x = frames(batch=1, steps=3, side=2)
    layer = kc.ConvRNN(CountingMemoryCell(2, 2.0), return_sequences=True)
    np.testing.assert_array_equal(
        ops.convert_to_numpy(layer(x))[0, :, 0, 0, 0], [2.0, 4.0, 6.0]
    )


def test_zigzag_memory_starts_from_the_last_memory_cells_initial_state():
    x = frames(batch=1, steps=1, side=2)
    layer = kc.ConvRNN(
        [
            CountingMemoryCell(2, 1.0),
            kc.ConvGRU2DCell(2, 1, padding="same"),
            CountingMemoryCell(2, 2.0),
        ]
    )
    zeros = np.zeros((1, 2, 2, 2), "float32")
    initial = [zeros, zeros + 10.0, zeros, zeros, zeros + 100.0]
    # The first memory cell reads the last one's m (100), not its own (10);
    # the ConvGRU cell in between never sees m.
    states = layer(x, initial_state=initial)
    np.testing.assert_array_equal(ops.convert_to_numpy(states), 103.0)


def test_memory_cells_of_different_filters_are_named():
    cells = [
        CountingMemoryCell(2, 1.0, name="narrow"),
        CountingMemoryCell(3, 1.0, name="wide"),
    ]
    with pytest.raises(ValueError, match="'narrow': 2, 'wide': 3"):
        kc.ConvRNN(cells)


class SeedlessCell(ConvSimpleRNNCell):
    """The guide's cell without its `seed_generator`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        del self.seed_generator


def test_a_dropout_cell_without_a_seed_generator_is_named():
    layer = kc.ConvRNN(SeedlessCell(4, 3, recurrent_dropout=0.5))
    with pytest.raises(ValueError, match="seed_generator"):
        layer(frames(), training=True)
    # Without dropout it needs none.
    assert tuple(layer(frames()).shape) == (2, 6, 6, 4)
