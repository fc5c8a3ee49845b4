"""Batches of similar lengths, each cut to its own longest sequence (tf.data's
``bucket_by_sequence_length``), for training loops over padded sequences."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any

import jax
import numpy as np

WHERE = "rnnjax.training.bucket_batches"


def _check_arrays(arrays: Any, lengths: np.ndarray, batch_size: int) -> tuple[list[Any], int]:
    """The leaves and the time axis they share; named errors for what does not fit."""
    leaves = [np.asarray(leaf) for leaf in jax.tree.leaves(arrays)]
    examples = len(lengths)
    if lengths.ndim != 1 or not np.issubdtype(lengths.dtype, np.integer):
        raise TypeError(
            f"{WHERE}: lengths must be integers [examples]; got dtype {lengths.dtype} and shape"
            f" {lengths.shape}"
        )
    if any(len(leaf) != examples for leaf in leaves):
        raise ValueError(
            f"{WHERE}: arrays and lengths must share their leading axis; got lengths"
            f" [{examples}] and arrays {[leaf.shape for leaf in leaves]}"
        )
    times = {leaf.shape[1] for leaf in leaves if leaf.ndim >= 2}
    if len(times) != 1:
        raise ValueError(
            f"{WHERE}: the arrays of rank >= 2 are sequences [examples, time, ...] and must"
            f" share one time axis; got shapes {[leaf.shape for leaf in leaves]}"
        )
    time = times.pop()
    if examples and not 0 <= lengths.min() <= lengths.max() <= time:
        raise ValueError(f"{WHERE}: lengths must be in [0, {time}] (the time axis)")
    if not 0 < batch_size <= examples:
        raise ValueError(
            f"{WHERE}: batch_size must be in [1, {examples}] (the number of examples); got"
            f" {batch_size}"
        )
    return leaves, time


def _epoch_batches(
    lengths: np.ndarray, batch_size: int, buckets: np.ndarray, rng: np.random.Generator
) -> list[np.ndarray]:
    """One epoch's batches of example indices: a random ``n % batch_size`` examples left out,
    the rest in random order grouped by bucket, cut into batches, the batches shuffled."""
    order = rng.permutation(len(lengths))[: len(lengths) - len(lengths) % batch_size]
    order = order[np.argsort(buckets[order], kind="stable")]
    batches = order.reshape(-1, batch_size)
    return list(batches[rng.permutation(len(batches))])


def bucket_batches(
    arrays: Mapping[str, Any] | tuple[Any, ...],
    batch_size: int,
    *,
    lengths: Any,
    boundaries: Sequence[int] | None = None,
    seed: int = 0,
) -> Callable[[int], Any]:
    """``get_batch(step)`` that groups sequences of similar length, as :func:`epoch_batches`
    over the same arrays but with less padding per batch.

    Each epoch the examples are shuffled (by ``seed`` and the epoch, so a resumed run sees the
    same batches), grouped by length (stably, so the shuffle decides who shares a batch), cut
    into batches of ``batch_size`` and the batches shuffled. Every array of rank >= 2 is a
    sequence ``[examples, time, ...]`` and is cut to the batch's time ``t``: its longest
    sequence, or with ``boundaries`` the smallest boundary (or the full time) at or above it.
    So a batch's padding is at most its bucket's width, and a jitted step compiles at most
    ``len(boundaries) + 1`` times. Padding must come after each sequence (post-padding, as
    :func:`~rnnjax.pad_sequences` does): cutting keeps steps ``[0, t)``, and with
    ``seq_lengths`` the result is the one on the full-length batch. A random
    ``examples % batch_size`` are left out of each epoch; every other example is in exactly
    one batch.

    Args:
      arrays: a pytree (e.g. a dict) of arrays with a leading example axis ``[examples,
        ...]``; those of rank >= 2 share the time axis ``[examples, time, ...]``.
      batch_size: examples per batch, in ``[1, examples]``.
      lengths: integer ``[examples]``, each sequence's valid steps (in ``[0, time]``).
      boundaries: increasing bucket edges ``b_0 < b_1 < ...``; the bucket ``(b_{i-1}, b_i]``
        pads to ``b_i`` and lengths above the last edge to the full time. ``None``: every
        batch to its own longest sequence (a jitted step may compile once per length).
      seed: of the shuffles.

    Returns:
      ``get_batch(step) -> batch``, the pytree of ``batch_size`` examples for ``step`` (cut to
      its time), a pure function of ``step`` (``fit`` can resume).

    Raises:
      ValueError, TypeError: for arrays without a common example or time axis, lengths that
        are not integers ``[examples]`` in ``[0, time]``, a ``batch_size`` out of range, or
        boundaries that are not increasing positive ints.

    Example:
      >>> import numpy as np, rnnjax
      >>> ids, lengths = rnnjax.pad_sequences([[1] * n for n in (2, 9, 3, 8, 1, 9)])
      >>> data = {"ids": ids, "lengths": lengths, "labels": np.arange(6)}
      >>> get_batch = rnnjax.training.bucket_batches(data, 2, lengths=lengths, boundaries=[4])
      >>> sorted(get_batch(step)["ids"].shape for step in range(3))  # one epoch
      [(2, 4), (2, 9), (2, 9)]
    """
    lengths = np.asarray(lengths)
    leaves, time = _check_arrays(arrays, lengths, batch_size)
    edges = np.asarray(boundaries if boundaries is not None else [], np.int64)
    if boundaries is not None and (
        edges.ndim != 1 or np.any(edges < 1) or np.any(np.diff(edges) <= 0)
    ):
        raise ValueError(f"{WHERE}: boundaries must be increasing ints >= 1; got {boundaries}")
    buckets = lengths if boundaries is None else np.searchsorted(edges, lengths, side="left")
    pad_to = np.append(edges[edges < time], time)  # the time of each bucket
    treedef = jax.tree.structure(arrays)
    per_epoch = len(lengths) // batch_size

    @lru_cache(maxsize=1)  # one shuffle per epoch, not per step
    def epoch_rows(epoch: int) -> list[np.ndarray]:
        return _epoch_batches(lengths, batch_size, buckets, np.random.default_rng([seed, epoch]))

    def get_batch(step: int) -> Any:
        epoch, index = divmod(int(step), per_epoch)
        rows = epoch_rows(epoch)[index]
        longest = max(int(lengths[rows].max()), 1)
        cut = longest if boundaries is None else int(pad_to[np.searchsorted(pad_to, longest)])
        return jax.tree.unflatten(
            treedef, [leaf[rows, :cut] if leaf.ndim >= 2 else leaf[rows] for leaf in leaves]
        )

    return get_batch
