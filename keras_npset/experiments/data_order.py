"""Training batches whose order depends only on (seed, epoch), so a run can resume exactly.

Keras's own `shuffle=True` draws each epoch's order from a generator whose
state is not saved with a checkpoint, so a resumed run would see different
batches than the uninterrupted one. Here epoch `e` visits the training
samples in the order `np.random.default_rng([seed, e]).permutation(n)`,
whatever happened before: a run resumed at epoch `e` gets exactly the
batches the uninterrupted run got.

The orders of all remaining epochs are computed up front and fed through one
`tf.data` pipeline that `fit` consumes `steps_per_epoch` batches at a time.
(A `PyDataset` told the epoch by a callback would race: Keras creates the
next epoch's iterator, and `tf.data` prefetches from it, before the
callbacks' `on_epoch_begin` runs.)

Example:

```python
batches, steps = epoch_batches(x, y, batch_size=16, seed=0, initial_epoch=3, epochs=10)
model.fit(batches, steps_per_epoch=steps, epochs=10, initial_epoch=3)
```
"""

from __future__ import annotations

import math

import numpy as np
import tensorflow as tf

from keras_npset.validation import check_int

# Most batches, and bytes, gathered by one call of the input pipeline's map.
GATHER_CHUNK_BATCHES = 16
GATHER_CHUNK_BYTES = 4 * 2**20


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The order in which epoch `epoch` visits `n` training samples (int64 indices)."""
    return np.random.default_rng([int(seed), int(epoch)]).permutation(n)


def epoch_batches(
    x: np.ndarray,
    y: np.ndarray,
    batch_size: int,
    seed: int,
    initial_epoch: int,
    epochs: int,
) -> tuple[tf.data.Dataset, int]:
    """Batches of epochs `initial_epoch .. epochs - 1`, each in `epoch_order` order.

    Args:
        x: training features, (samples, ...).
        y: training targets, (samples, ...).
        batch_size: samples per batch; an epoch's last batch may be smaller.
        seed: seed of the orders (the run's seed).
        initial_epoch: first epoch to produce (0-based).
        epochs: one past the last epoch to produce.

    Returns:
        `(dataset, steps_per_epoch)`: pass both to `fit` (`steps_per_epoch`
        makes Keras keep one iterator across epochs).
    """
    n = len(x)
    if n == 0 or len(y) != n:
        raise ValueError(
            f"Expected non-empty `x` and `y` with the same number of samples. "
            f"Received: x.shape={np.shape(x)}, y.shape={np.shape(y)}"
        )
    batch_size = check_int("batch_size", batch_size, 1)
    if not 0 <= initial_epoch < epochs:
        raise ValueError(
            "Expected 0 <= initial_epoch < epochs. "
            f"Received: initial_epoch={initial_epoch}, epochs={epochs}"
        )
    orders = np.stack([epoch_order(seed, e, n) for e in range(initial_epoch, epochs)])
    x_all = tf.constant(x)
    y_all = tf.constant(y)

    # When every batch is full, the batches say so: a static batch size lets
    # SparseDense's "auto" kernel choose while tracing instead of switching at
    # run time in every layer and step. No sample is dropped.
    full = n % batch_size == 0
    # Rows are gathered several batches at a time and then split: each call of
    # the map function costs about 50 microseconds on a 2-core CPU, which one
    # call per batch made a fixed cost of every training step, felt most by a
    # small (pruned) network. A chunk stays within `GATHER_CHUNK_BYTES`.
    sample_bytes = sum(t.shape.num_elements() * t.dtype.size for t in (x_all, y_all)) // n
    per_gather = GATHER_CHUNK_BYTES // (batch_size * max(1, sample_bytes))
    per_gather = max(1, min(GATHER_CHUNK_BATCHES, per_gather))

    def gather(idx):
        return tf.gather(x_all, idx), tf.gather(y_all, idx)

    def one_epoch(order):
        # Chunks never straddle epochs. `rebatch` cuts one epoch's chunks
        # into batches of `batch_size`; only its last chunk can leave a
        # remainder, which becomes the epoch's last, partial batch: the
        # batches are `order` cut every `batch_size`, as without chunks.
        chunks = tf.data.Dataset.from_tensor_slices(order).batch(per_gather * batch_size)
        return chunks.map(gather).rebatch(batch_size, drop_remainder=full)

    dataset = (
        tf.data.Dataset.from_tensor_slices(orders.astype(np.int64)).flat_map(one_epoch).prefetch(2)
    )
    # Nothing here is tuned (the map is sequential, the prefetch fixed), and the
    # autotuner's thread is what deleting the iterator at fit's end waits for:
    # up to 5 s in about half of the runs on a 2-core machine.
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.with_options(options), math.ceil(n / batch_size)


def execution_steps(requested: int, steps_per_epoch: int) -> int:
    """The largest divisor of `steps_per_epoch` that is at most `requested`.

    Keras's `steps_per_execution` runs that many steps per call into
    TensorFlow, and a call that starts an epoch's last steps runs all of them,
    taking batches of the next epoch (the iterator of `epoch_batches` spans
    every epoch). A divisor keeps each epoch's batches in its own epoch, where
    the topology callbacks act between them.

    >>> execution_steps(8, 24), execution_steps(8, 25), execution_steps(8, 7)
    (8, 5, 7)
    """
    requested = check_int("requested", requested, 1)
    steps_per_epoch = check_int("steps_per_epoch", steps_per_epoch, 1)
    return max(d for d in range(1, min(requested, steps_per_epoch) + 1) if steps_per_epoch % d == 0)
