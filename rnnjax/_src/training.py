"""Training utilities: a jitted, clipped train step, a resumable loop, data parallelism.

The loop's data is a function of the step (``get_batch(step) -> batch``), so the data
position is the step itself: a run resumed from a checkpoint sees exactly the batches the
uninterrupted run would have, and (on CPU) ends with bit-identical params.
"""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

Array = jax.Array
Batch = Any
LossFn = Callable[[Any, Batch, Array], Array]
"""``loss_fn(params, batch, key) -> scalar loss``; ``key`` is fresh each step (dropout)."""


class TrainState(NamedTuple):
    """Everything a run needs to continue exactly: a plain pytree, checkpointed whole.

    Attributes:
      step: int32 scalar, the number of updates done (and so the data position).
      params: the model's params.
      opt_state: the optimiser's state.
      key: the run's base PRNG key (typed); step ``s`` uses ``fold_in(key, s)``.
    """

    step: Array
    params: Any
    opt_state: Any
    key: Array


class Trainer(NamedTuple):
    """A train step and an eval step built by :func:`make_trainer`.

    Attributes:
      init: ``(params, key) -> TrainState``.
      step: jitted ``(state, batch) -> (state, {"loss", "grad_norm"})``; ``grad_norm`` is the
        global norm of the gradients before clipping.
      evaluate: jitted ``(params, batch) -> loss`` (``key`` fixed, for a deterministic loss).
    """

    init: Callable[[Any, Array], TrainState]
    step: Callable[[TrainState, Batch], tuple[TrainState, dict[str, Array]]]
    evaluate: Callable[[Any, Batch], Array]


def make_trainer(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    *,
    clip_norm: float | None = 1.0,
) -> Trainer:
    """Builds a jitted train step from a loss and an optax optimiser.

    Gradients are clipped to global norm ``clip_norm`` first (``optax.clip_by_global_norm``;
    exploding gradients are the failure RNNs meet first); ``clip_norm=None`` turns it off.

    Args:
      loss_fn: ``(params, batch, key) -> scalar``.
      optimizer: any ``optax.GradientTransformation``, e.g. ``optax.adam(1e-3)``.
      clip_norm: the global-norm bound, or ``None``.

    Example:
      >>> import jax, jax.numpy as jnp, optax, rnnjax.training
      >>> loss = lambda params, batch, key: jnp.mean((batch * params["w"] - 1.0) ** 2)
      >>> trainer = rnnjax.training.make_trainer(loss, optax.sgd(0.1))
      >>> state = trainer.init({"w": jnp.zeros(())}, jax.random.key(0))
      >>> state, metrics = trainer.step(state, jnp.ones(4))
      >>> int(state.step), float(metrics["grad_norm"])
      (1, 2.0)
    """
    if clip_norm is not None:
        optimizer = optax.chain(optax.clip_by_global_norm(clip_norm), optimizer)

    def init(params: Any, key: Array) -> TrainState:
        return TrainState(jnp.zeros((), jnp.int32), params, optimizer.init(params), key)

    @jax.jit
    def step(state: TrainState, batch: Batch) -> tuple[TrainState, dict[str, Array]]:
        key = jax.random.fold_in(state.key, state.step)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {"loss": loss, "grad_norm": optax.tree.norm(grads)}
        return TrainState(state.step + 1, params, opt_state, state.key), metrics

    @jax.jit
    def evaluate(params: Any, batch: Batch) -> Array:
        return loss_fn(params, batch, jax.random.key(0))

    return Trainer(init, step, evaluate)


def epoch_batches(
    arrays: Mapping[str, Any] | tuple[Any, ...], batch_size: int, *, seed: int = 0
) -> Callable[[int], Any]:
    """``get_batch(step)`` over arrays with a leading example axis, reshuffled every epoch.

    The order depends only on ``seed`` and the epoch, so ``get_batch(step)`` is the same batch
    in a resumed run. The last partial batch of an epoch is dropped.

    Example:
      >>> import numpy as np, rnnjax.training
      >>> data = {"x": np.zeros((10, 3)), "y": np.arange(10)}
      >>> get_batch = rnnjax.training.epoch_batches(data, batch_size=4)  # 2 batches an epoch
      >>> get_batch(0)["x"].shape
      (4, 3)
      >>> bool((get_batch(5)["y"] == get_batch(5)["y"]).all())  # a function of the step
      True
    """
    leaves, treedef = jax.tree.flatten(arrays)
    examples = len(leaves[0])
    if any(len(leaf) != examples for leaf in leaves):
        raise ValueError(
            "rnnjax.training.epoch_batches: arrays must share their leading axis; got lengths"
            f" {[len(leaf) for leaf in leaves]}"
        )
    if not 0 < batch_size <= examples:
        raise ValueError(
            f"rnnjax.training.epoch_batches: batch_size must be in [1, {examples}] (the number"
            f" of examples); got {batch_size}"
        )
    per_epoch = examples // batch_size

    def get_batch(step: int) -> Any:
        epoch, index = divmod(int(step), per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(examples)
        rows = order[index * batch_size : (index + 1) * batch_size]
        return jax.tree.unflatten(treedef, [np.asarray(leaf)[rows] for leaf in leaves])

    return get_batch


class KeepBest:
    """The params of the best evaluation so far, kept by :func:`fit` and checkpointed with
    the training state, so a resumed run reports the same best as an uninterrupted one.

    Args:
      metric: the name, in the dict that ``fit``'s ``evaluate`` returns, to rank by.
      mode: ``"min"`` (a loss, an error) or ``"max"`` (an accuracy). Ties keep the earlier.

    Attributes:
      params: the params at the best evaluation; ``None`` before the first.
      score: its ``metric`` value (``inf`` for ``"min"``, ``-inf`` for ``"max"`` before any).
      step: the step it was taken at; ``-1`` before any evaluation.

    Example:
      >>> import rnnjax.training
      >>> best = rnnjax.training.KeepBest("val_loss")
      >>> best.update(100, {"val_loss": 0.5}, params={"w": 1.0})
      True
      >>> best.update(200, {"val_loss": 0.7}, params={"w": 2.0})
      False
      >>> best.step, best.score, best.params
      (100, 0.5, {'w': 1.0})
    """

    def __init__(self, metric: str, mode: Literal["min", "max"] = "min") -> None:
        if mode not in ("min", "max"):
            raise ValueError(f"rnnjax.training.KeepBest: mode must be 'min' or 'max'; got {mode!r}")
        self.metric, self.mode = metric, mode
        self.params: Any = None
        self.score = math.inf if mode == "min" else -math.inf
        self.step = -1

    def update(self, step: int, results: Mapping[str, float], params: Any) -> bool:
        """Takes ``params`` if ``results[metric]`` beats the best so far; says whether it did."""
        if self.metric not in results:
            raise KeyError(
                f"rnnjax.training.KeepBest: evaluate returned no {self.metric!r}; it returned"
                f" {sorted(results)}"
            )
        score = float(results[self.metric])
        better = score < self.score if self.mode == "min" else score > self.score
        if better:
            self.params, self.score, self.step = params, score, int(step)
        return better

    def _tree(self, params_like: Any) -> dict[str, Any]:
        """What a checkpoint holds: ``params_like`` stands in before the first evaluation."""
        params = params_like if self.params is None else self.params
        step, score = np.asarray(self.step, np.int64), np.asarray(self.score, np.float64)
        return {"step": step, "score": score, "params": params}

    def _load(self, tree: Mapping[str, Any]) -> None:
        self.step, self.score = int(tree["step"]), float(tree["score"])
        self.params = None if self.step < 0 else tree["params"]


def _checkpointable(state: TrainState, best: KeepBest | None) -> Any:
    """The saved pytree: the state (its key as raw data), and with ``best`` its record too."""
    tree = state._replace(key=jax.random.key_data(state.key))
    return tree if best is None else {"state": tree, "best": best._tree(state.params)}


def _resume(
    checkpoint_dir: str | Path, state: TrainState, best: KeepBest | None
) -> tuple[Any, TrainState]:
    """An orbax checkpoint manager over ``checkpoint_dir``, and its latest state if any (with
    ``best`` loaded from it).

    Orbax writes each checkpoint into a temporary directory and renames it once complete, so
    a run killed while writing leaves nothing that would be restored half-written.
    """
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(
        Path(checkpoint_dir).absolute(),
        options=ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False),
    )
    if manager.latest_step() is not None:
        target = _checkpointable(state, best)
        restored = manager.restore(manager.latest_step(), args=ocp.args.StandardRestore(target))
        if best is not None:
            best._load(restored["best"])
            restored = restored["state"]
        state = restored._replace(key=jax.random.wrap_key_data(restored.key))
    return manager, state


def _truncate_metrics(path: Path, step: int) -> None:
    """Drops a metrics file's rows past ``step``: those logged after the last checkpoint by a
    run that was then killed, which the resumed run is about to log again."""
    if not path.exists():
        return
    rows = path.read_text().splitlines()
    kept = [row for row in rows if row.strip() and json.loads(row)["step"] <= step]
    if len(kept) != len(rows):
        path.write_text("".join(row + "\n" for row in kept))


@contextmanager
def _sigint_requests_stop() -> Iterator[threading.Event]:
    """Inside, Ctrl-C (SIGINT) sets the event instead of raising wherever it lands, so the
    loop stops between steps with a consistent state. Outside the main thread: a no-op."""
    stop = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def fit(
    trainer: Trainer,
    state: TrainState,
    get_batch: Callable[[int], Batch],
    num_steps: int,
    *,
    checkpoint_dir: str | Path | None = None,
    checkpoint_every: int = 100,
    metrics_path: str | Path | None = None,
    log_every: int = 10,
    evaluate: Callable[[Any], Mapping[str, float]] | None = None,
    eval_every: int | None = None,
    keep_best: KeepBest | None = None,
    progress: bool = True,
    place_batch: Callable[[Batch], Batch] | None = None,
) -> TrainState:
    """Runs ``trainer.step`` until ``state.step == num_steps``, resuming where it left off.

    With ``checkpoint_dir``, the whole :class:`TrainState` (params, optimiser state, step,
    which is the data position, and the PRNG key) is saved with orbax every
    ``checkpoint_every`` steps and at the end; if the directory already holds a checkpoint, the
    run restores the latest one and continues from there, so an interrupted run finishes
    exactly as an uninterrupted one would: the same final params, the same ``keep_best``
    record (checkpointed with the state), and the same metrics rows (rows past the restored
    step, logged after the last checkpoint, are dropped before the run continues).

    Ctrl-C (SIGINT) stops the run after the step in progress: it saves a checkpoint of that
    step, prints how to resume, and raises ``KeyboardInterrupt``. A kill at any point, a
    checkpoint write included, loses at most the steps since the last complete checkpoint.

    Args:
      trainer: from :func:`make_trainer`.
      state: the starting state (used when there is no checkpoint to resume).
      get_batch: ``step -> batch``; must depend only on ``step`` (see :func:`epoch_batches`).
      num_steps: the total number of steps of the run (not the number still to do).
      checkpoint_dir: where checkpoints live (created if missing).
      checkpoint_every: steps between checkpoints.
      metrics_path: a JSON-lines file; one line per ``log_every`` steps and per evaluation,
        appended to (a resumed run continues the file).
      log_every: steps between metric lines and progress-bar updates.
      evaluate: ``params -> {name: value}``, run every ``eval_every`` steps and at the end.
      eval_every: steps between evaluations (default: ``checkpoint_every``).
      keep_best: a :class:`KeepBest`, updated with each evaluation's results (needs
        ``evaluate``); restored with the state when a run resumes.
      progress: show a tqdm progress bar.
      place_batch: applied to each batch before the step, e.g. :func:`shard_batch`.

    Returns:
      The final :class:`TrainState`.

    Raises:
      KeyboardInterrupt: after Ctrl-C, once the checkpoint of the current step is written.
    """
    if keep_best is not None and evaluate is None:
        raise ValueError("rnnjax.training.fit: keep_best needs evaluate")
    manager = None
    if checkpoint_dir is not None:
        manager, state = _resume(checkpoint_dir, state, keep_best)
    if metrics_path is not None:
        _truncate_metrics(Path(metrics_path), int(state.step))
    metrics_file = None if metrics_path is None else open(metrics_path, "a")  # noqa: SIM115
    eval_every = eval_every or checkpoint_every

    def log(record: dict[str, Any]) -> None:
        if metrics_file is not None:
            metrics_file.write(json.dumps(record) + "\n")
            metrics_file.flush()

    def save(state: TrainState) -> None:
        import orbax.checkpoint as ocp

        assert manager is not None
        if manager.latest_step() != int(state.step):
            manager.save(
                int(state.step), args=ocp.args.StandardSave(_checkpointable(state, keep_best))
            )

    start = int(state.step)
    bar = _progress_bar(start, num_steps, progress)
    began = time.perf_counter()
    try:
        with _sigint_requests_stop() as stop:
            for step in range(start, num_steps):
                batch = get_batch(step)
                if place_batch is not None:
                    batch = place_batch(batch)
                state, metrics = trainer.step(state, batch)
                done = step + 1
                if done % log_every == 0 or done == num_steps:
                    values = {name: float(value) for name, value in metrics.items()}
                    log({"step": done, **values, "seconds": time.perf_counter() - began})
                    if bar is not None:
                        bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)
                if evaluate is not None and (done % eval_every == 0 or done == num_steps):
                    results = {name: float(v) for name, v in evaluate(state.params).items()}
                    if keep_best is not None:
                        keep_best.update(done, results, state.params)
                    log({"step": done, **results})
                    if bar is not None:
                        bar.write(
                            f"step {done}: " + ", ".join(f"{k} {v:.4g}" for k, v in results.items())
                        )
                if manager is not None and (
                    done % checkpoint_every == 0 or done == num_steps or stop.is_set()
                ):
                    save(state)
                if bar is not None:
                    bar.update(1)
                if stop.is_set():
                    where = (
                        f"saved a checkpoint in {checkpoint_dir}"
                        if manager
                        else ("no checkpoint_dir, so nothing was saved")
                    )
                    print(
                        f"rnnjax.training.fit: interrupted at step {done} of {num_steps};"
                        f" {where}. Run the same command again to resume from there.",
                        file=sys.stderr,
                    )
                    raise KeyboardInterrupt
    finally:
        if bar is not None:
            bar.close()
        if metrics_file is not None:
            metrics_file.close()
        if manager is not None:
            manager.wait_until_finished()
            manager.close()
    return state


def _progress_bar(start: int, total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)


def data_parallel_mesh(devices: Any = None, axis_name: str = "data") -> Mesh:
    """A one-axis :class:`~jax.sharding.Mesh` over ``devices`` (default: all of them).

    On several hosts, call ``jax.distributed.initialize()`` first; ``jax.devices()`` then
    lists every host's devices and the same code splits the global batch across all of them.
    """
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (axis_name,))


def shard_batch(batch: Batch, mesh: Mesh) -> Batch:
    """Splits every array of ``batch`` along its leading (example) axis across ``mesh``.

    Raises:
      ValueError: if a leading axis does not divide evenly by the number of devices.
    """
    axis = mesh.axis_names[0]
    devices = mesh.devices.size

    def place(array: Any) -> Array:
        if np.shape(array)[0] % devices:
            raise ValueError(
                f"rnnjax.training.shard_batch: the batch axis ({np.shape(array)[0]}) must divide"
                f" by the number of devices ({devices}); got an array of shape {np.shape(array)}"
            )
        return jax.device_put(array, NamedSharding(mesh, PartitionSpec(axis)))

    return jax.tree.map(place, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a copy of every array of ``tree`` (params, a TrainState) on each device."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))
