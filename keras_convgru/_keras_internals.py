"""The two pieces of Keras's private `keras.src` that the package uses.

Both are what `keras.layers.RNN` itself is built on, and neither has a
public name. They live here, and only here, so that a Keras release that
moves them breaks one import, which the test suite (run against the
oldest Keras we claim and the newest) reports at once.

* `rnn`: the backend's time loop (`tf.while_loop`, `jax.lax.scan` or a
  Python loop), with Keras's semantics for masks, `go_backwards`,
  `unroll` and `zero_output_for_mask`. `ConvRNN` runs its own step
  function through it, so that a step receives everything it reads (the
  input projections, the dropout masks) as arguments; Keras's
  `RNN.inner_loop` would call `cell(inputs, states)` and nothing more.
* `DropoutRNNCell`: the mix-in through which a plain `keras.layers.RNN`
  draws a cell's dropout masks once per sequence, before its loop (on
  JAX they cannot be drawn inside the scan). The keras_convgru cells
  inherit it so that they behave as Keras's own cells there.
"""

from keras.src.backend import rnn
from keras.src.layers.rnn.dropout_rnn_cell import DropoutRNNCell

__all__ = ["DropoutRNNCell", "rnn"]
