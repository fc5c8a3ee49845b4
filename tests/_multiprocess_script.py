"""Run by tests/test_training.py: ``fit`` over two real processes, and the runs it must equal.

``python tests/_multiprocess_script.py OUT --processes 2 --process-id I --port P
[--kill-at-batch K]`` is one of two processes on 127.0.0.1 (``jax.distributed`` with gloo
collectives on CPU; 2 simulated devices each through ``XLA_FLAGS``) training a small LSTM with
``fit(..., mesh=data_parallel_mesh())``: checkpoints in ``OUT/checkpoints`` (every 3 steps),
metrics rows in ``OUT/metrics.jsonl`` (every step), evaluation with ``KeepBest`` every 2.
``--kill-at-batch K`` SIGKILLs the process when it asks for batch ``K``;
``--sigint-at-batch K`` sends SIGINT (Ctrl-C) to process 1 alone there (exit status 130).

``python tests/_multiprocess_script.py OUT --processes 1`` runs the same training in one
process twice: on a mesh of all its devices (``OUT/mesh``) and with no mesh at all, on one
device (``OUT/one``). Each run prints its final params, optimiser state and best record as
JSON (process 0 only).
"""

import argparse
import json
import os
import signal
import sys

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

import rnnjax  # noqa: E402
import rnnjax.training as training  # noqa: E402

STEPS = 8
cell = rnnjax.lstm(4)


def loss_fn(params, batch, key):
    carry, _ = rnnjax.rnn(cell, params["lstm"], batch["xs"], seq_lengths=batch["lengths"])
    noise = 0.01 * jax.random.normal(key, carry.h.shape[:1])  # uses the step's key
    return jnp.mean((carry.h @ params["head"] + noise - batch["ys"]) ** 2)


def train(out, mesh, kill_at_batch=None, sigint_at_batch=None):
    rng = np.random.default_rng(0)
    xs = rng.normal(size=(32, 5, 2)).astype(np.float32)
    data = {"xs": xs, "lengths": rng.integers(1, 6, 32), "ys": np.sin(xs.sum((1, 2)))}
    val = {name: value[:8] for name, value in data.items()}
    local_rows = training.epoch_batches(data, 8, seed=1)  # this process's share of 8 rows

    def get_batch(step):
        if step == kill_at_batch:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == sigint_at_batch and jax.process_index() == 1:
            os.kill(os.getpid(), signal.SIGINT)
        return local_rows(step)

    keys = jax.random.split(jax.random.key(0), 3)
    params = {"lstm": cell.init(keys[0], 2), "head": jax.random.normal(keys[1], (4,))}
    trainer = training.make_trainer(loss_fn, optax.adam(1e-2))
    best = training.KeepBest("val_loss")
    state = training.fit(
        trainer,
        trainer.init(params, keys[2]),
        get_batch,
        STEPS,
        checkpoint_dir=os.path.join(out, "checkpoints"),
        checkpoint_every=3,
        metrics_path=os.path.join(out, "metrics.jsonl"),
        log_every=1,
        evaluate=lambda p: {"val_loss": trainer.evaluate(p, val)},
        eval_every=2,
        keep_best=best,
        progress=False,
        mesh=mesh,
    )
    as_lists = lambda tree: [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(tree)]  # noqa: E731
    return {
        "params": as_lists(state.params),
        "opt_state": as_lists(state.opt_state),
        "best": {"step": best.step, "score": best.score, "params": as_lists(best.params)},
        "devices": len(jax.tree.leaves(state.params)[0].sharding.device_set),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--processes", type=int, default=1)
    parser.add_argument("--process-id", type=int, default=0)
    parser.add_argument("--port", type=int)
    parser.add_argument("--kill-at-batch", type=int)
    parser.add_argument("--sigint-at-batch", type=int)
    args = parser.parse_args()
    if args.processes == 1:
        mesh = training.data_parallel_mesh()
        runs = {"mesh": train(os.path.join(args.out, "mesh"), mesh)}
        runs["one"] = train(os.path.join(args.out, "one"), None)
        print(json.dumps(runs))
        return 0
    jax.distributed.initialize(
        coordinator_address=f"127.0.0.1:{args.port}",
        num_processes=args.processes,
        process_id=args.process_id,
    )
    try:
        result = train(
            args.out, training.data_parallel_mesh(), args.kill_at_batch, args.sigint_at_batch
        )
    except KeyboardInterrupt:
        return 130
    if jax.process_index() == 0:
        print(json.dumps({"processes": jax.process_count(), **result}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
