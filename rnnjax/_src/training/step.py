"""Training utilities: a jitted, clipped train step, batches by step, the best params.

The loop over them, ``fit``, is in ``training_loop.py``; data parallelism in
``distributed.py``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

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
    arrays: Mapping[str, Any] | tuple[Any, ...],
    batch_size: int,
    *,
    seed: int = 0,
    process_index: int | None = None,
    process_count: int | None = None,
) -> Callable[[int], Any]:
    """``get_batch(step)`` over arrays with a leading example axis, reshuffled every epoch.

    The order depends only on ``seed`` and the epoch, so ``get_batch(step)`` is the same batch
    in a resumed run. The last partial batch of an epoch is dropped.

    ``batch_size`` is the global batch size. With several processes, each gets its own
    ``batch_size // process_count`` rows of every global batch (process ``p`` the ``p``-th
    block), so the processes together see what one process would, in the same order; that is
    what ``fit(..., mesh=...)`` expects from ``get_batch``. ``process_index`` and
    ``process_count`` default to ``jax.process_index()`` and ``jax.process_count()``.

    Example:
      >>> import numpy as np, rnnjax.training
      >>> data = {"x": np.zeros((10, 3)), "y": np.arange(10)}
      >>> get_batch = rnnjax.training.epoch_batches(data, batch_size=4)  # 2 batches an epoch
      >>> get_batch(0)["x"].shape
      (4, 3)
      >>> bool((get_batch(5)["y"] == get_batch(5)["y"]).all())  # a function of the step
      True
      >>> share = rnnjax.training.epoch_batches(data, 4, process_index=1, process_count=2)
      >>> bool((share(5)["y"] == get_batch(5)["y"][2:]).all())  # process 1 of 2: rows 2, 3
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
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if batch_size % count or not 0 <= index < count:
        raise ValueError(
            f"rnnjax.training.epoch_batches: batch_size ({batch_size}) must divide by"
            f" process_count ({count}), and process_index must be in [0, {count}); got"
            f" process_index {index}"
        )
    per_epoch, share = examples // batch_size, batch_size // count

    def get_batch(step: int) -> Any:
        epoch, position = divmod(int(step), per_epoch)
        order = np.random.default_rng([seed, epoch]).permutation(examples)
        first = position * batch_size + index * share
        rows = order[first : first + share]
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
