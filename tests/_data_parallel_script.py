"""Run by tests/test_training.py in a fresh process with 8 simulated CPU devices.

Trains a small LSTM regressor for a few steps on one device and on a mesh of all eight (batch
split, params replicated), runs ``time_sharded_linear_recurrence`` on four, and prints the
largest differences from the one-device results, and the error messages, as JSON.
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


def time_sharded_differences():
    """``time_sharded_linear_recurrence`` at T=65,536 on 4 devices, and a minGRU run through
    it, against the unsharded results: the largest differences of values and gradients."""
    mesh = training.data_parallel_mesh(jax.devices()[:4], axis_name="time")
    keys = jax.random.split(jax.random.key(5), 5)
    a = jax.random.uniform(keys[0], (2, 65536, 4), minval=0.9, maxval=1.0)
    b = jax.random.normal(keys[1], (2, 65536, 4))
    initial, lengths = jax.random.normal(keys[2], (2, 4)), jnp.array([65536, 40001])

    def loss(function, a, b, initial, reverse):
        final, hs = function(a, b, initial=initial, seq_lengths=lengths, reverse=reverse)
        return jnp.sum(final**2) + jnp.mean(jnp.sin(hs) * b)

    sharded = jax.jit(
        jax.value_and_grad(
            lambda *args: loss(
                lambda *a, **k: rnnjax.time_sharded_linear_recurrence(*a, mesh, **k), *args
            ),
            argnums=(0, 1, 2),
        ),
        static_argnums=3,
    )
    plain = jax.jit(
        jax.value_and_grad(lambda *args: loss(rnnjax.linear_recurrence, *args), argnums=(0, 1, 2)),
        static_argnums=3,
    )
    worst = {}
    for reverse in (False, True):
        got, want = sharded(a, b, initial, reverse), plain(a, b, initial, reverse)
        final, hs = rnnjax.time_sharded_linear_recurrence(
            a, b, mesh, initial=initial, seq_lengths=lengths, reverse=reverse
        )
        final_want, hs_want = rnnjax.linear_recurrence(
            a, b, initial=initial, seq_lengths=lengths, reverse=reverse
        )
        scale = float(jnp.max(jnp.abs(hs_want)))
        worst[f"reverse={reverse}"] = {
            "hs": float(jnp.max(jnp.abs(hs - hs_want))) / scale,
            "final": float(jnp.max(jnp.abs(final - final_want))) / scale,
            "loss": abs(float(got[0] - want[0])) / abs(float(want[0])),
            "grads": max(
                float(jnp.max(jnp.abs(g - w)) / jnp.max(jnp.abs(w)))
                for g, w in zip(got[1], want[1], strict=True)
            ),
            "hs_sharding": str(tuple(hs.sharding.spec)),
        }
    cell = rnnjax.min_gru(8)
    params, xs = cell.init(keys[3], 3), jax.random.normal(keys[4], (2, 1024, 3))
    a_min, b_min = cell.linear_scan.coefficients(params, xs)
    _, hs = rnnjax.time_sharded_linear_recurrence(a_min, b_min, mesh)
    _, ys = rnnjax.rnn(cell, params, xs)
    worst["min_gru"] = float(jnp.max(jnp.abs(hs - ys)))
    try:
        rnnjax.time_sharded_linear_recurrence(a[:, :10], b[:, :10], mesh)
    except ValueError as error:
        worst["error"] = str(error)
    return worst


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
            "time_sharded": time_sharded_differences(),
        }
    )
)
