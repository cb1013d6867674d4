"""Quickstart: predict the next frame of a moving square with a ConvGRU.

Each sequence shows a bright 3x3 square moving across a noisy 16x16 frame
with a constant velocity. At every step the model sees the current frame and
predicts where the square will be in the next one, so it has to infer the
velocity from the frames it has seen so far.

Run with:

    python examples/quickstart_moving_squares.py --epochs 5 --seed 0
"""

import argparse

import keras
import numpy as np

import keras_convgru as kc

FRAME_SIZE = 16
SQUARE_SIZE = 3
NUM_FRAMES = 8


def make_moving_squares(num_sequences, seed, noise=0.1):
    """Builds noisy input frames and the clean next-frame targets.

    Returns:
        A tuple `(frames, targets)` of float32 arrays of shape
        `(num_sequences, NUM_FRAMES, FRAME_SIZE, FRAME_SIZE, 1)`;
        `targets[:, t]` is the square mask of frame `t + 1`.
    """
    rng = np.random.default_rng(seed)
    # One extra frame so that the last input frame has a target.
    masks = np.zeros(
        (num_sequences, NUM_FRAMES + 1, FRAME_SIZE, FRAME_SIZE, 1),
        dtype="float32",
    )
    last_corner = FRAME_SIZE - SQUARE_SIZE
    for i in range(num_sequences):
        velocity = np.zeros(2, dtype=int)
        while not velocity.any():
            velocity = rng.integers(-1, 2, size=2)
        # Pick a start from which the square stays inside every frame.
        start = np.empty(2, dtype=int)
        for axis in range(2):
            low = max(0, -velocity[axis] * NUM_FRAMES)
            high = min(last_corner, last_corner - velocity[axis] * NUM_FRAMES)
            start[axis] = rng.integers(low, high + 1)
        for t in range(NUM_FRAMES + 1):
            row, col = start + t * velocity
            masks[i, t, row : row + SQUARE_SIZE, col : col + SQUARE_SIZE] = 1.0
    frames = masks[:, :-1] + rng.normal(0.0, noise, masks[:, :-1].shape)
    frames = np.clip(frames, 0.0, 1.0).astype("float32")
    targets = masks[:, 1:]
    return frames, targets


def build_model(filters=16):
    """A ConvGRU over frames of any length, with a per-frame 1x1 head."""
    inputs = keras.Input((None, FRAME_SIZE, FRAME_SIZE, 1))
    x = kc.ConvGRU2D(filters, 3, padding="same", return_sequences=True)(inputs)
    outputs = keras.layers.TimeDistributed(
        keras.layers.Conv2D(1, 1, activation="sigmoid")
    )(x)
    model = keras.Model(inputs, outputs, name="moving_squares_convgru")
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=1e-2),
        loss="binary_crossentropy",
    )
    return model


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        parser.error(f"--epochs must be at least 1, got {args.epochs}")

    keras.utils.set_random_seed(args.seed)
    frames, targets = make_moving_squares(256, seed=args.seed)
    print(f"keras {keras.version()} ({keras.backend.backend()} backend)")
    print(f"keras_convgru {kc.__version__}")
    print(f"frames {frames.shape}, targets {targets.shape}")

    model = build_model()
    model.summary()
    history = model.fit(
        frames, targets, batch_size=32, epochs=args.epochs, verbose=1
    )

    losses = history.history["loss"]
    for epoch, loss in enumerate(losses, start=1):
        print(f"epoch {epoch}: loss {loss:.4f}")
    if len(losses) < 2:
        print("loss fell: n/a (train for 2 or more epochs to compare)")
        return 0
    fell = losses[-1] < losses[0]
    print(
        f"loss fell: {'yes' if fell else 'no'} "
        f"({losses[0]:.4f} -> {losses[-1]:.4f})"
    )
    return 0 if fell else 1


if __name__ == "__main__":
    raise SystemExit(main())
