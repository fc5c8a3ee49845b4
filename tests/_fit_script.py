"""Run by tests/test_training.py in a process of its own, to be killed and resumed.

``python tests/_fit_script.py OUT [--kill-at-batch K] [--kill-in-write K] [--sigint-at K]``
trains a small GRU regressor with ``rnnjax.training.fit`` (checkpoints in ``OUT``, every 4
steps; evaluation every 2, keeping the best) and, unless killed, prints its final params and
best record as JSON. ``--kill-at-batch K`` SIGKILLs the process when it asks for batch ``K``
(steps ``0..K-1`` done); ``--kill-in-write K`` SIGKILLs it while the checkpoint of step ``K``
is written, before orbax commits it; ``--sigint-at K`` sends SIGINT (Ctrl-C) there.
"""

import argparse
import json
import os
import signal
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
from orbax.checkpoint._src.path import atomicity

import rnnjax
import rnnjax.training as training

STEPS = 24
cell = rnnjax.gru(4)


def loss_fn(params, batch, key):
    carry, _ = rnnjax.rnn(cell, params["gru"], batch["xs"])
    return jnp.mean((carry @ params["head"] - batch["ys"]) ** 2)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--kill-at-batch", type=int)
    parser.add_argument("--kill-in-write", type=int)
    parser.add_argument("--sigint-at", type=int)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    xs = rng.normal(size=(64, 5, 2)).astype(np.float32)
    data = {"xs": xs, "ys": np.sin(xs.sum((1, 2))).astype(np.float32)}
    val = {"xs": jnp.asarray(xs[:16] * 1.5), "ys": jnp.asarray(data["ys"][:16])}
    get_data = training.epoch_batches(data, 8)

    def get_batch(step):
        if step == args.kill_at_batch:
            os.kill(os.getpid(), signal.SIGKILL)
        if step == args.sigint_at:
            os.kill(os.getpid(), signal.SIGINT)
        return get_data(step)

    saving = {}
    save, finalize = ocp.CheckpointManager.save, atomicity.AtomicRenameTemporaryPath.finalize

    def save_noting_the_step(self, step, *a, **k):
        saving["step"] = step
        return save(self, step, *a, **k)

    def finalize_or_die(self, *a, **k):  # the files are written; the commit (rename) is next
        if saving.get("step") == args.kill_in_write:
            os.kill(os.getpid(), signal.SIGKILL)
        return finalize(self, *a, **k)

    ocp.CheckpointManager.save = save_noting_the_step
    atomicity.AtomicRenameTemporaryPath.finalize = finalize_or_die

    keys = jax.random.split(jax.random.key(0), 3)
    params = {"gru": cell.init(keys[0], 2), "head": jax.random.normal(keys[1], (4,))}
    trainer = training.make_trainer(loss_fn, optax.sgd(0.8, momentum=0.9))
    best = training.KeepBest("val_loss")
    try:
        state = training.fit(
            trainer,
            trainer.init(params, keys[2]),
            get_batch,
            STEPS,
            checkpoint_dir=os.path.join(args.out, "checkpoints"),
            checkpoint_every=4,
            metrics_path=os.path.join(args.out, "metrics.jsonl"),
            log_every=1,
            evaluate=lambda p: {"val_loss": float(loss_fn(p, val, None))},
            eval_every=2,
            keep_best=best,
            progress=False,
        )
    except KeyboardInterrupt:
        return 130
    as_lists = lambda tree: [np.asarray(leaf).tolist() for leaf in jax.tree.leaves(tree)]  # noqa: E731
    result = {
        "params": as_lists(state.params),
        "best": {"step": best.step, "score": best.score, "params": as_lists(best.params)},
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
