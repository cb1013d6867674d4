"""Serving exports: an ONNX or LiteRT file of our layers computes `predict`.

Each test exports a small model with random (non-zero) weights through
`model.export(path, format=..., input_signature=...)`, runs the file in
that format's own runtime, onnxruntime or ai-edge-litert's interpreter, and
compares it with `model.predict` at two batch sizes. The signature is a
list of `keras.InputSpec`; its `None` dimensions are the file's dynamic
ones.

Which formats a backend exports depends on the Keras version (read from
`keras/src/export/` at each release tag):

* `format="onnx"`: Keras 3.8, TensorFlow (tf2onnx), JAX and torch. Before
  Keras 3.14, torch fixed every `None` dimension to 1 and JAX went through
  jax2tf and tf2onnx; from 3.14 torch keeps a `None` batch dynamic and JAX
  converts through jax2onnx.
* `format="litert"`: Keras 3.13, TensorFlow backend. Keras 3.15 adds the
  torch backend through the `litert-torch` package, which cannot be
  installed next to our pins (docs/guides/saving.md says why).

A test is collected only where the installed Keras exports its format from
the running backend as the test needs, so the suite also passes at our
oldest Keras (3.8). Where it is collected, a missing runtime package fails
it.

Tolerance: float32 throughout. The runtimes sum each convolution in their
own order (onnxruntime's MLAS, XNNPACK, oneDNN, Eigen), a few ulps per
convolution over a few time steps; the largest differences seen are about
4e-7 on outputs bounded by 1 (tanh), so `atol=1e-5` leaves a margin of 25
and still catches a wrong gate, weight or time step (differences of 1e-2
and more).
"""

import functools

import keras
import numpy as np
import pytest
from helpers import randomize_weights

import keras_convgru as kc

ATOL = 1e-5
BACKEND = keras.backend.backend()
KERAS_VERSION = tuple(int(part) for part in keras.version().split(".")[:2])

# Keras 3.8 added format="onnx" from TensorFlow; torch keeps a `None` batch
# dynamic and JAX converts through jax2onnx from Keras 3.14.
ONNX_EXPORTS = KERAS_VERSION >= (3, 8) and (
    BACKEND == "tensorflow" or KERAS_VERSION >= (3, 14)
)
# Keras 3.13 added format="litert", from the TensorFlow backend.
LITERT_EXPORTS = KERAS_VERSION >= (3, 13) and BACKEND == "tensorflow"

STEPS = 4
BATCH_SIZES = (1, 3)


def _randomize(model, seed):
    """Random weights: zero biases and orthogonal kernels hide mistakes."""
    randomize_weights(model, np.random.default_rng(seed), scale=0.3)
    return model


# Each builder returns the model and the shape of one of its frames.
# Unrolling needs the number of steps in the model itself.


def _stack_2d(data_format="channels_last", unroll=False):
    """`ConvGRU2D` (sequences) into `ConvLSTM2D` on 8x8 frames, 3 channels."""
    frame = (8, 8, 3) if data_format == "channels_last" else (3, 8, 8)
    inputs = keras.Input((STEPS if unroll else None, *frame))
    common = dict(padding="same", data_format=data_format, unroll=unroll)
    x = kc.ConvGRU2D(4, 3, return_sequences=True, **common)(inputs)
    outputs = kc.ConvLSTM2D(5, 3, **common)(x)
    return _randomize(keras.Model(inputs, outputs), seed=0), frame


def _stack_1d(unroll=False):
    """`ConvGRU1D` (strided, `reset_after=False`) into `ConvLSTM1D`."""
    frame = (10, 2)
    inputs = keras.Input((STEPS if unroll else None, *frame))
    x = kc.ConvGRU1D(
        3, 3, strides=2, reset_after=False, return_sequences=True, unroll=unroll
    )(inputs)
    outputs = kc.ConvLSTM1D(2, 3, padding="same", unroll=unroll)(x)
    return _randomize(keras.Model(inputs, outputs), seed=1), frame


def _stack_3d(unroll=False):
    """`ConvGRU3D` (sequences) into `ConvLSTM3D` on 4x4x4 volumes."""
    frame = (4, 4, 4, 1)
    inputs = keras.Input((STEPS if unroll else None, *frame))
    x = kc.ConvGRU3D(
        2, 2, padding="same", return_sequences=True, unroll=unroll
    )(inputs)
    outputs = kc.ConvLSTM3D(2, 3, unroll=unroll)(x)
    return _randomize(keras.Model(inputs, outputs), seed=2), frame


def _memory_stack():
    """PredRNN++'s cells (causal LSTM, highway, ST-LSTM: the zigzag memory)
    into an SA-ConvLSTM, on 6x6 frames."""
    frame = (6, 6, 2)
    inputs = keras.Input((None, *frame))
    cells = [
        kc.CausalLSTM2DCell(3, 3),
        kc.GradientHighwayUnit2DCell(3, 3),
        kc.SpatioTemporalLSTM2DCell(3, 3),
    ]
    x = kc.ConvRNN(cells, return_sequences=True)(inputs)
    outputs = kc.SAConvLSTM2D(2, 3)(x)
    return _randomize(keras.Model(inputs, outputs), seed=3), frame


def _frames(shape, seed):
    return np.random.default_rng(seed).uniform(-1, 1, shape).astype("float32")


def _spec(shape):
    return keras.InputSpec(shape=shape, dtype="float32")


def _assert_serves_predict(actual, model, x):
    expected = model.predict(x, verbose=0)
    assert actual.shape == expected.shape
    np.testing.assert_allclose(actual, expected, atol=ATOL, rtol=0)


# --- ONNX ---------------------------------------------------------------------


def _onnx_output(path, x):
    import onnxruntime

    session = onnxruntime.InferenceSession(
        str(path), providers=["CPUExecutionProvider"]
    )
    (spec,) = session.get_inputs()
    (output,) = session.run(None, {spec.name: x})
    return output


# TensorFlow's ONNX graph keeps the time loop (an ONNX `Loop`), so the
# number of steps stays free; torch traces the loop step by step, so its
# file has the number of steps of the signature.
ONNX_STEPS = None if BACKEND == "tensorflow" else STEPS


def _export_onnx_and_serve(model, frame, path):
    # A `None` batch in the signature: one file serves every batch size.
    model.export(
        path,
        format="onnx",
        input_signature=[_spec((None, ONNX_STEPS, *frame))],
        verbose=False,
    )
    for i, batch in enumerate(BATCH_SIZES):
        steps = ONNX_STEPS or STEPS + i
        x = _frames((batch, steps, *frame), seed=i)
        _assert_serves_predict(_onnx_output(path, x), model, x)


if ONNX_EXPORTS and BACKEND in ("tensorflow", "torch"):

    @pytest.mark.parametrize("data_format", ["channels_last", "channels_first"])
    def test_onnx_file_serves_predict_at_any_batch_size(tmp_path, data_format):
        model, frame = _stack_2d(data_format)
        _export_onnx_and_serve(model, frame, tmp_path / "convgru.onnx")

    def test_onnx_file_of_1d_layers_serves_predict(tmp_path):
        model, frame = _stack_1d()
        _export_onnx_and_serve(model, frame, tmp_path / "convgru_1d.onnx")

    def test_onnx_file_of_the_memory_cells_serves_predict(tmp_path):
        model, frame = _memory_stack()
        _export_onnx_and_serve(model, frame, tmp_path / "predrnn.onnx")


if ONNX_EXPORTS and BACKEND == "tensorflow":
    # On torch, Keras's own 3D convolutions (keras.layers.Conv3D,
    # ConvLSTM3D) do not export with a `None` batch ("onnx memory_format
    # support is not implemented", from Keras's channels_last_3d kernel).

    def test_onnx_file_of_3d_layers_serves_predict(tmp_path):
        model, frame = _stack_3d()
        _export_onnx_and_serve(model, frame, tmp_path / "convgru_3d.onnx")


if ONNX_EXPORTS and BACKEND == "jax":

    @pytest.mark.parametrize("batch", BATCH_SIZES)
    def test_onnx_file_with_static_shape_serves_predict_on_jax(tmp_path, batch):
        # jax2onnx cannot split the time-folded input projection back into
        # (batch, time) when either is symbolic ("reshape with symbolic
        # dimensions requires mapping to input axes"), so on JAX the file
        # has a fixed shape: one export per batch size.
        model, frame = _stack_2d()
        path = tmp_path / f"convgru_{batch}.onnx"
        model.export(
            path,
            format="onnx",
            input_signature=[_spec((batch, STEPS, *frame))],
            verbose=False,
        )
        x = _frames((batch, STEPS, *frame), seed=batch)
        _assert_serves_predict(_onnx_output(path, x), model, x)


# --- LiteRT -------------------------------------------------------------------


def _litert_output(path, x):
    """Runs a `.tflite` file's signature in ai-edge-litert's interpreter."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    (signature,) = interpreter.get_signature_list().values()
    (name,) = signature["inputs"]
    (output,) = interpreter.get_signature_runner()(**{name: x}).values()
    return output


def _export_litert(model, path, shape):
    model.export(
        path, format="litert", input_signature=[_spec(shape)], verbose=False
    )


if LITERT_EXPORTS:

    @pytest.mark.parametrize(
        "build",
        [
            _stack_2d,
            functools.partial(_stack_2d, "channels_first"),
            _stack_1d,
            _stack_3d,
        ],
        ids=["2d", "2d_channels_first", "1d", "3d"],
    )
    def test_litert_file_of_unrolled_layers_serves_any_batch_size(
        tmp_path, build
    ):
        # `unroll=True` and a fixed number of steps: plain LiteRT builtins
        # without a loop, so the batch size stays dynamic.
        model, frame = build(unroll=True)
        path = tmp_path / "convgru.tflite"
        _export_litert(model, path, (None, STEPS, *frame))
        for batch in BATCH_SIZES:
            x = _frames((batch, STEPS, *frame), seed=batch)
            _assert_serves_predict(_litert_output(path, x), model, x)

    def test_litert_file_with_fixed_batch_keeps_the_loop_for_any_length(
        tmp_path,
    ):
        # A static batch and frame size make every loop tensor's shape
        # static, so the converter lowers the time loop to a LiteRT WHILE
        # and the number of steps stays free.
        model, frame = _stack_2d()
        path = tmp_path / "convgru_loop.tflite"
        _export_litert(model, path, (2, None, *frame))
        for steps in (STEPS, STEPS + 3):
            x = _frames((2, steps, *frame), seed=steps)
            _assert_serves_predict(_litert_output(path, x), model, x)

    def test_litert_loop_with_dynamic_batch_runs_where_keras_conv_lstm_does(
        tmp_path,
    ):
        # The oracle: Keras's own ConvLSTM2D. With a dynamic batch the
        # converter keeps the loop's TensorList ops as select TensorFlow
        # ops (Flex), which ai-edge-litert's interpreter does not include.
        # Ours must run where Keras's layer runs and fail as it fails.
        frame = (8, 8, 3)
        x = _frames((2, STEPS, *frame), seed=0)

        def export_and_run(model, name):
            path = tmp_path / f"{name}.tflite"
            _export_litert(model, path, (None, None, *frame))
            try:
                return _litert_output(path, x), None
            except RuntimeError as error:
                return None, str(error)

        inputs = keras.Input((None, *frame))
        outputs = keras.layers.ConvLSTM2D(5, 3, padding="same")(inputs)
        reference = _randomize(keras.Model(inputs, outputs), seed=3)
        _, reference_error = export_and_run(reference, "keras")
        model, _ = _stack_2d()
        output, error = export_and_run(model, "ours")
        if reference_error is None:
            _assert_serves_predict(output, model, x)
        else:
            assert "FlexTensorListReserve" in reference_error
            assert error is not None and "FlexTensorListReserve" in error
