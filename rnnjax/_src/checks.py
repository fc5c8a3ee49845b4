"""Checks shared by :func:`rnnjax.rnn` and :func:`rnnjax.linear_recurrence`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def check_seq_lengths(
    seq_lengths: Any, batch_shape: tuple[int, ...], time: int, where: str = "rnnjax.rnn"
) -> Array:
    """``seq_lengths`` as an array, after checking shape ``batch_shape``, dtype and range."""
    shape = getattr(seq_lengths, "shape", None)
    if shape is None or tuple(shape) != batch_shape:
        actual = type(seq_lengths) if shape is None else tuple(shape)
        raise ValueError(
            f"{where}: seq_lengths must have shape {batch_shape} (the batch shape of xs);"
            f" got {actual}"
        )
    if not jnp.issubdtype(seq_lengths.dtype, jnp.integer):
        raise TypeError(
            f"{where}: seq_lengths must have an integer dtype; got {seq_lengths.dtype}"
            f" with shape {tuple(shape)}"
        )
    if not isinstance(seq_lengths, jax.core.Tracer):
        concrete = np.asarray(seq_lengths)
        if concrete.size and (concrete.min() < 0 or concrete.max() > time):
            raise ValueError(
                f"{where}: seq_lengths must lie in [0, {time}] (the length of xs);"
                f" got values from {concrete.min()} to {concrete.max()}"
            )
    return jnp.asarray(seq_lengths)
