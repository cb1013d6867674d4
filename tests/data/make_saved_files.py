"""Makes the `.keras` files that tests/test_saved_files.py loads.

Run from the repository root, on the TensorFlow backend, with the package
of the commit the files are to pin down:

    KERAS_BACKEND=tensorflow python tests/data/make_saved_files.py

For each case in `CASES` it builds a tiny model (fixed input shape, 2-4
filters, frames of at most 6x6, kernel 3, at most 4 steps) around one
public layer, sets every weight from a seeded NumPy generator (scale 0.3,
so that no bias is zero; the normalization scales `gamma` are 1 + 0.3 *
noise), and writes

* `tests/data/NAME.keras`: the model, `model.save(...)`;
* `tests/data/NAME.npz`: float32 `x` (a seeded input, batch 2) and `y0`,
  `y1`, ... (the model's outputs on `x`, `model.predict`, computed by
  this process before saving);
* `tests/data/manifest.json`: for each case its layer's name and class,
  the constructor arguments that were passed (the test checks the loaded
  layer's config has them), its weights' names and shapes, in
  `model.weights` order, with a fingerprint of their values (sum and sum
  of squares, float64), and for the
  files as a whole the commit, Keras, TensorFlow and NumPy versions they
  were made with.

Then it loads each file back in this process and checks the predictions
match, as the test does.

The files are a regression guard: do not remake them to make the test
pass. Remake them only on purpose (a deliberate change of the saved
format), and say so in the commit.
"""

import json
import os
import pathlib
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]
# This checkout's package, not an installed (or editable) one elsewhere.
sys.path.insert(0, str(ROOT))
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import numpy as np  # noqa: E402

import keras_convgru as kc  # noqa: E402

# The folder the files go to: tests/data, or the one given as argument.
OUT = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else HERE
SCALE = 0.3
BATCH = 2


def _sequential(name, input_shape, layer):
    return keras.Sequential([keras.Input(input_shape), layer], name=name)


def _functional(name, input_shape, layer):
    inputs = keras.Input(input_shape, name="frames")
    outputs = layer(inputs)
    return keras.Model(inputs, outputs, name=name)


# name -> (how the model is made, input shape without the batch axis,
#          layer class, layer arguments)
# Every layer is named "layer" (and each stacked cell explicitly) so the
# weights' paths do not depend on Keras's automatic name counters.
CASES = {
    "conv_gru1d_return_state": (
        _functional,
        (4, 6, 2),
        kc.ConvGRU1D,
        {
            "filters": 3,
            "kernel_size": 3,
            "padding": "same",
            "return_state": True,
            "go_backwards": True,
        },
    ),
    "conv_gru2d": (
        _sequential,
        (4, 6, 6, 2),
        kc.ConvGRU2D,
        {
            "filters": 3,
            "kernel_size": 3,
            "padding": "same",
            "return_sequences": True,
        },
    ),
    "conv_gru3d_channels_first": (
        _sequential,
        (3, 2, 4, 4, 4),
        kc.ConvGRU3D,
        {
            "filters": 2,
            "kernel_size": 3,
            "padding": "same",
            "data_format": "channels_first",
        },
    ),
    "conv_lstm1d": (
        _sequential,
        (4, 6, 2),
        kc.ConvLSTM1D,
        {
            "filters": 3,
            "kernel_size": 3,
            "padding": "valid",
            "return_sequences": True,
        },
    ),
    "conv_lstm2d": (
        _sequential,
        (4, 6, 6, 2),
        kc.ConvLSTM2D,
        {"filters": 3, "kernel_size": 3, "padding": "same"},
    ),
    "conv_lstm3d": (
        _sequential,
        (3, 4, 4, 4, 2),
        kc.ConvLSTM3D,
        {"filters": 2, "kernel_size": 3, "padding": "same"},
    ),
    "traj_gru2d_channels_first": (
        _sequential,
        (4, 2, 6, 6),
        kc.TrajGRU2D,
        {
            "filters": 3,
            "kernel_size": 3,
            "links": 3,
            "flow_filters": 4,
            "flow_kernel_size": 3,
            "data_format": "channels_first",
            "return_sequences": True,
        },
    ),
    "conv_rnn_stack": (
        _functional,
        (4, 6, 6, 2),
        kc.ConvRNN,
        {
            "cell": [
                (
                    "ConvGRU2DCell",
                    {"filters": 3, "kernel_size": 3, "padding": "same"},
                ),
                ("ConvLSTM2DCell", {"filters": 2, "kernel_size": 3}),
                (
                    "TrajGRU2DCell",
                    {
                        "filters": 2,
                        "kernel_size": 3,
                        "links": 2,
                        "flow_filters": 2,
                        "flow_kernel_size": 3,
                    },
                ),
            ],
            "return_sequences": True,
        },
    ),
    "conv_rnn_cell": (
        _sequential,
        (4, 6, 2),
        kc.ConvRNN,
        {
            "cell": [
                (
                    "ConvLSTM1DCell",
                    {"filters": 2, "kernel_size": 3, "padding": "same"},
                )
            ],
            "go_backwards": True,
        },
    ),
    "conv_gru2d_reset_before": (
        _sequential,
        (4, 6, 6, 2),
        kc.ConvGRU2D,
        {
            "filters": 3,
            "kernel_size": 3,
            "padding": "same",
            "reset_after": False,
        },
    ),
    "conv_gru2d_group_norm": (
        _sequential,
        (4, 6, 6, 2),
        kc.ConvGRU2D,
        {
            "filters": 4,
            "kernel_size": 3,
            "padding": "same",
            "normalization": "group",
            "norm_groups": 2,
        },
    ),
    "conv_lstm2d_peepholes_layer_norm": (
        _sequential,
        (4, 6, 6, 2),
        kc.ConvLSTM2D,
        {
            "filters": 3,
            "kernel_size": 3,
            "padding": "same",
            "peepholes": "channel",
            "normalization": "layer",
        },
    ),
    "conv_lstm2d_peepholes_full_return_state": (
        _functional,
        (4, 5, 5, 2),
        kc.ConvLSTM2D,
        {
            "filters": 2,
            "kernel_size": 3,
            "padding": "valid",
            "peepholes": "full",
            "return_sequences": True,
            "return_state": True,
        },
    ),
}


def make_layer(layer_class, arguments):
    arguments = dict(arguments)
    if "cell" in arguments:
        cells = [
            getattr(kc, cell_class)(**cell_arguments, name=f"cell_{i}")
            for i, (cell_class, cell_arguments) in enumerate(arguments["cell"])
        ]
        arguments["cell"] = cells if len(cells) > 1 else cells[0]
    return layer_class(**arguments, name="layer")


def set_random_weights(model, rng):
    for weight in model.weights:
        noise = SCALE * rng.standard_normal(weight.shape)
        if weight.path.endswith("/gamma"):
            noise += 1.0
        weight.assign(noise.astype("float32"))


def outputs_of(model, x):
    y = model.predict(x, batch_size=BATCH, verbose=0)
    ys = list(y) if isinstance(y, (list, tuple)) else [y]
    return [np.asarray(v, dtype="float32") for v in ys]


def versions():
    import tensorflow as tf

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "keras_convgru"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return {
        "commit": commit,
        "package_dirty": bool(dirty),
        "keras_convgru": kc.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "python": sys.version.split()[0],
    }


def to_json(value, indent=""):
    """JSON with dicts indented, one key a line; a list on one line, but a
    list of weights (name, shape, fingerprint) one weight a line."""
    inner = indent + " "
    if (
        isinstance(value, list)
        and value
        and all(
            isinstance(item, list) and isinstance(item[0], str)
            for item in value
        )
    ):
        items = [f"{inner}{json.dumps(item)}" for item in value]
        return "[\n" + ",\n".join(items) + "\n" + indent + "]"
    if not isinstance(value, dict):
        return json.dumps(value)
    items = [
        f"{inner}{json.dumps(key)}: {to_json(value[key], inner)}"
        for key in sorted(value)
    ]
    return "{\n" + ",\n".join(items) + "\n" + indent + "}"


def main():
    if keras.backend.backend() != "tensorflow":
        raise SystemExit("run on the TensorFlow backend")
    if pathlib.Path(kc.__file__).resolve().parent != ROOT / "keras_convgru":
        raise SystemExit(f"imported {kc.__file__}, not {ROOT}'s package")
    manifest = {"made_with": versions(), "cases": {}}
    for index, (name, case) in enumerate(CASES.items()):
        make_model, input_shape, layer_class, arguments = case
        keras.backend.clear_session()
        rng = np.random.default_rng(20240 + index)
        model = make_model(
            name, input_shape, make_layer(layer_class, arguments)
        )
        set_random_weights(model, rng)
        x = rng.standard_normal((BATCH, *input_shape)).astype("float32")
        ys = outputs_of(model, x)
        model.save(OUT / f"{name}.keras")
        np.savez_compressed(
            OUT / f"{name}.npz",
            x=x,
            **{f"y{i}": y for i, y in enumerate(ys)},
        )
        layer = model.get_layer("layer")
        manifest["cases"][name] = {
            "layer_class": type(layer).__name__,
            "arguments": arguments,
            "input_shape": list(input_shape),
            "output_shapes": [list(y.shape) for y in ys],
            "weights": [
                [
                    w.name,
                    list(w.shape),
                    float(np.sum(w.numpy(), dtype="float64")),
                    float(np.sum(np.square(w.numpy(), dtype="float64"))),
                ]
                for w in model.weights
            ],
        }
        keras.backend.clear_session()
        loaded = keras.saving.load_model(OUT / f"{name}.keras")
        for y, y_loaded in zip(ys, outputs_of(loaded, x), strict=True):
            np.testing.assert_allclose(y_loaded, y, rtol=1e-6, atol=1e-6)
        print(
            f"{name}: {len(model.weights)} weights, outputs "
            f"{[y.shape for y in ys]}"
        )
    (OUT / "manifest.json").write_text(to_json(manifest) + "\n")


if __name__ == "__main__":
    main()
