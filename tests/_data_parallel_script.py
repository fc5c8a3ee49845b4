"""Run by tests/test_training.py in a fresh process with 8 simulated CPU devices.

Trains a small LSTM regressor for a few steps on one device and on a mesh of all eight (batch
split, params replicated), and prints the largest parameter difference as JSON.
"""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax

import rnnjax
import rnnjax.training as training

cell = rnnjax.lstm(8)


def loss_fn(params, batch, key):
    carry, _ = rnnjax.rnn(cell, params["lstm"], batch["xs"], seq_lengths=batch["lengths"])
    return jnp.mean((carry.h @ params["head"] - batch["ys"]) ** 2)


def run(mesh):
    keys = jax.random.split(jax.random.key(0), 4)
    params = {"lstm": cell.init(keys[0], 3), "head": jax.random.normal(keys[1], (8,))}
    xs = jax.random.normal(keys[2], (32, 7, 3))
    batch = {"xs": xs, "lengths": jnp.arange(32) % 7 + 1, "ys": jnp.sin(xs[:, 0, 0])}
    trainer = training.make_trainer(loss_fn, optax.adam(1e-2))
    state = training.replicate(trainer.init(params, keys[3]), mesh)
    for _ in range(5):
        state, metrics = trainer.step(state, training.shard_batch(batch, mesh))
    return state, metrics


single, _ = run(training.data_parallel_mesh(jax.devices()[:1]))
sharded, metrics = run(training.data_parallel_mesh())
try:
    training.shard_batch({"x": jnp.ones((9, 2))}, training.data_parallel_mesh())
    uneven_error = None
except ValueError as error:
    uneven_error = str(error)
try:
    training.global_batch({"x": np.ones((9, 2))}, training.data_parallel_mesh())
    uneven_local_error = None
except ValueError as error:
    uneven_local_error = str(error)
mesh = training.data_parallel_mesh()
rows = np.arange(32.0).reshape(16, 2)
placed = training.global_batch(rows, mesh), training.shard_batch(rows, mesh)
key = training.replicate(jax.random.key(3), mesh)
difference = jax.tree.map(
    lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))), single.params, sharded.params
)
print(
    json.dumps(
        {
            "devices": len(jax.devices()),
            "params_devices": len(jax.tree.leaves(sharded.params)[0].devices()),
            "batch_sharding": str(training.shard_batch(jnp.ones((32, 2)), mesh).sharding.spec),
            "uneven_error": uneven_error,
            "uneven_local_error": uneven_local_error,
            "global_batch_equals_shard_batch": placed[0].sharding == placed[1].sharding
            and bool((placed[0] == placed[1]).all()),
            "replicated_key_is_typed": jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
            and len(key.devices()) == 8,
            "max_difference": max(jax.tree.leaves(difference)),
        }
    )
)
