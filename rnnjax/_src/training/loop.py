"""``fit``: the training loop, with checkpoints, metrics rows, evaluations and Ctrl-C.

The loop's data is a function of the step (``get_batch(step) -> batch``), so the data
position is the step itself: a run resumed from a checkpoint sees exactly the batches the
uninterrupted run would have, and (on CPU) ends with bit-identical params. After each step,
:class:`_Loop` logs, evaluates, checkpoints and stops when asked; what is written or shown
comes from process 0 only.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import jax
from jax.sharding import Mesh

from rnnjax._src.training.distributed import any_process, global_batch, is_primary, replicate
from rnnjax._src.training.step import Batch, KeepBest, Trainer, TrainState

Array = jax.Array


def _checkpointable(state: TrainState, best: KeepBest | None) -> Any:
    """The saved pytree: the state (its key as raw data), and with ``best`` its record too."""
    tree = state._replace(key=jax.random.key_data(state.key))
    return tree if best is None else {"state": tree, "best": best._tree(state.params)}


class _Checkpoints:
    """``fit``'s orbax checkpoints of the state (and the ``KeepBest`` record).

    Every process calls ``save`` and ``restore`` at the same steps; orbax coordinates them
    (each process writes its shards, process 0 the metadata, then it commits). Each checkpoint
    is written into a temporary directory and renamed once complete, so a run killed while
    writing leaves nothing that would be restored half-written.
    """

    def __init__(self, directory: str | Path, best: KeepBest | None) -> None:
        import orbax.checkpoint as ocp

        self.ocp, self.directory, self.best = ocp, Path(directory).absolute(), best
        options = ocp.CheckpointManagerOptions(max_to_keep=2, enable_async_checkpointing=False)
        self.manager = ocp.CheckpointManager(self.directory, options=options)

    def restore(self, state: TrainState) -> TrainState:
        """The latest checkpoint, placed like ``state`` (replicated on a mesh); or ``state``."""
        step = self.manager.latest_step()
        if step is None:
            return state
        target = self.ocp.args.StandardRestore(_checkpointable(state, self.best))
        restored = self.manager.restore(step, args=target)
        if self.best is not None:
            self.best._load(restored["best"])
            restored = restored["state"]
        key = jax.random.wrap_key_data(restored.key, impl=jax.random.key_impl(state.key))
        return restored._replace(key=key)

    def save(self, state: TrainState) -> None:
        if self.manager.latest_step() != int(state.step):
            tree = _checkpointable(state, self.best)
            self.manager.save(int(state.step), args=self.ocp.args.StandardSave(tree))

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


def _truncate_metrics(path: Path, step: int) -> None:
    """Drops a metrics file's rows past ``step``: those logged after the last checkpoint by a
    run that was then killed, which the resumed run is about to log again."""
    if not path.exists():
        return
    rows = path.read_text().splitlines()
    kept = [row for row in rows if row.strip() and json.loads(row)["step"] <= step]
    if len(kept) != len(rows):
        path.write_text("".join(row + "\n" for row in kept))


class _Output:
    """What a run shows and writes (metrics rows, progress bar, messages): from process 0
    only, so several processes write each row once and draw one bar."""

    def __init__(self, metrics_path: str | Path | None, start: int, total: int, bar: bool):
        self.primary, self.began, self.file = is_primary(), time.perf_counter(), None
        if self.primary and metrics_path is not None:
            _truncate_metrics(Path(metrics_path), start)
            self.file = open(metrics_path, "a")  # noqa: SIM115
        self.bar = _progress_bar(start, total, bar and self.primary)

    def _row(self, record: dict[str, Any]) -> None:
        if self.file is not None:
            self.file.write(json.dumps(record) + "\n")
            self.file.flush()

    def metrics(self, done: int, metrics: Mapping[str, Array]) -> None:
        if not self.primary:
            return
        values = {name: float(value) for name, value in metrics.items()}
        self._row({"step": done, **values, "seconds": time.perf_counter() - self.began})
        if self.bar is not None:
            self.bar.set_postfix({k: f"{v:.4g}" for k, v in values.items()}, refresh=False)

    def results(self, done: int, results: Mapping[str, float]) -> None:
        self._row({"step": done, **results})
        if self.bar is not None:
            self.bar.write(f"step {done}: " + ", ".join(f"{k} {v:.4g}" for k, v in results.items()))

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.update(1)

    def message(self, text: str) -> None:
        if self.primary:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.file is not None:
            self.file.close()


def _progress_bar(start: int, total: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)


@dataclasses.dataclass
class _Loop:
    """What ``fit`` does after each step: log, evaluate, checkpoint, stop when asked."""

    num_steps: int
    log_every: int
    eval_every: int
    checkpoint_every: int
    evaluate: Callable[[Any], Mapping[str, float]] | None
    keep_best: KeepBest | None
    checkpoints: _Checkpoints | None
    output: _Output
    stop: threading.Event

    def due(self, done: int, every: int) -> bool:
        return done % every == 0 or done == self.num_steps

    def after_step(self, done: int, state: TrainState, metrics: Mapping[str, Array]) -> None:
        if self.due(done, self.log_every):
            self.output.metrics(done, metrics)
        if self.evaluate is not None and self.due(done, self.eval_every):
            self.run_evaluation(done, state.params)
        stopping = self.stop_requested(done)
        if self.checkpoints is not None and (self.due(done, self.checkpoint_every) or stopping):
            self.checkpoints.save(state)
        self.output.advance()
        if stopping:
            self.stop_run(done)

    def run_evaluation(self, done: int, params: Any) -> None:
        assert self.evaluate is not None
        results = {name: float(value) for name, value in self.evaluate(params).items()}
        if self.keep_best is not None:
            self.keep_best.update(done, results, params)
        self.output.results(done, results)

    def stop_requested(self, done: int) -> bool:
        """Ctrl-C seen. With several processes, they agree at each ``log_every`` step (one
        small collective), so all stop after the same step."""
        if jax.process_count() == 1:
            return self.stop.is_set()
        return self.due(done, self.log_every) and any_process(self.stop.is_set())

    def stop_run(self, done: int) -> None:
        where = (
            f"saved a checkpoint in {self.checkpoints.directory}"
            if self.checkpoints is not None
            else "no checkpoint_dir, so nothing was saved"
        )
        self.output.message(
            f"rnnjax.training.fit: interrupted at step {done} of {self.num_steps}; {where}."
            " Run the same command again to resume from there."
        )
        raise KeyboardInterrupt


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
    mesh: Mesh | None = None,
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

    With ``mesh`` (e.g. :func:`data_parallel_mesh`), the run is data-parallel over every
    device of the mesh, across processes too (after ``jax.distributed.initialize()``, every
    process runs the same ``fit``): the initial and the restored state are replicated on each
    device, ``get_batch(step)`` returns this process's rows of the global batch (on one
    process the whole batch; :func:`epoch_batches` gives each process its share) and
    :func:`global_batch` assembles them, every process takes part in each checkpoint (give
    them all the same ``checkpoint_dir``, on a shared file system across hosts), and
    only process 0 writes metrics rows, draws the bar and prints. Ctrl-C is agreed between
    processes at ``log_every`` steps. The run equals a one-device run up to float rounding.

    Args:
      trainer: the :class:`Trainer` that :func:`make_trainer` returns (its jitted step).
      state: the starting state (used when there is no checkpoint to resume).
      get_batch: ``step -> batch``; must depend only on ``step`` (see :func:`epoch_batches`).
      num_steps: the total number of steps of the run (not the number still to do).
      checkpoint_dir: where checkpoints live (created if missing).
      checkpoint_every: steps between checkpoints.
      metrics_path: a JSON-lines file; one line per ``log_every`` steps and per evaluation,
        appended to (a resumed run continues the file).
      log_every: steps between metric lines and progress-bar updates.
      evaluate: ``params -> {name: value}``, run every ``eval_every`` steps and at the end
        (on every process, with the replicated params when ``mesh`` is given).
      eval_every: steps between evaluations (default: ``checkpoint_every``).
      keep_best: a :class:`KeepBest`, updated with each evaluation's results (needs
        ``evaluate``); restored with the state when a run resumes.
      progress: show a tqdm progress bar.
      place_batch: applied to each batch before the step, e.g. :func:`shard_batch`
        (not with ``mesh``, which places batches itself).
      mesh: a one-axis mesh to run data-parallel over (see above).

    Returns:
      The final :class:`TrainState`.

    Raises:
      KeyboardInterrupt: after Ctrl-C, once the checkpoint of the current step is written.
    """
    if keep_best is not None and evaluate is None:
        raise ValueError("rnnjax.training.fit: keep_best needs evaluate")
    if mesh is not None and place_batch is not None:
        raise ValueError("rnnjax.training.fit: give mesh or place_batch, not both")
    if mesh is not None:
        state, place_batch = replicate(state, mesh), functools.partial(global_batch, mesh=mesh)
    checkpoints = output = None
    try:
        if checkpoint_dir is not None:
            checkpoints = _Checkpoints(checkpoint_dir, keep_best)
            state = checkpoints.restore(state)
        start = int(state.step)
        output = _Output(metrics_path, start, num_steps, progress)
        with _sigint_requests_stop() as stop:
            loop = _Loop(
                num_steps=num_steps,
                log_every=log_every,
                eval_every=eval_every or checkpoint_every,
                checkpoint_every=checkpoint_every,
                evaluate=evaluate,
                keep_best=keep_best,
                checkpoints=checkpoints,
                output=output,
                stop=stop,
            )
            for step in range(start, num_steps):
                batch = get_batch(step)
                state, metrics = trainer.step(state, place_batch(batch) if place_batch else batch)
                loop.after_step(step + 1, state, metrics)
    finally:
        if output is not None:
            output.close()
        if checkpoints is not None:
            checkpoints.close()
    return state
