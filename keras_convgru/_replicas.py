"""Which replica of a TensorFlow distribution strategy a call runs on.

The package's math uses `keras.ops` only; this module reads the
environment a call runs in, and is the one place that asks TensorFlow
about it. It exists for random draws per sample under
`tf.distribute.MirroredStrategy`: each replica runs the model on its
share of the global batch and holds its own copy of every seed
generator's state, so a draw shaped by the local batch gives every
replica the same values. A model that draws for the global
batch (`batch * num_replicas`), as one device would, and keeps the rows of
its replica's share instead gives each sample the values one device would
give it.

On JAX (`keras.distribution.DataParallel` runs one program over the global
batch) and PyTorch, and on TensorFlow outside a strategy, in its
cross-replica context, or with one replica, a call is the only replica:
`(0, 1)`.
"""

import keras


def replica_slot():
    """`(replica_id, num_replicas)` of the TensorFlow replica running now.

    `replica_id` is this replica's place in its sync group (an int32 tensor
    when there is more than one replica: use it with `keras.ops`), so its
    share of a global batch of `batch * num_replicas` is rows
    `replica_id * batch` to `(replica_id + 1) * batch`, the split of
    TensorFlow's distributed datasets. `(0, 1)` when the call is not one
    of several replicas (see the module's docstring).
    """
    if keras.backend.backend() != "tensorflow":
        return 0, 1
    import tensorflow as tf

    # None in the cross-replica context (a strategy's scope outside
    # `strategy.run`); the default strategy's context has one replica.
    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync <= 1:
        return 0, 1
    return context.replica_id_in_sync_group, context.num_replicas_in_sync
