"""Checks shared by :func:`rnnjax.rnn` and :func:`rnnjax.linear_recurrence`."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src.core.validate import check_floating

Array = jax.Array


def check_seq_lengths(
    seq_lengths: Any,
    batch_shape: tuple[int, ...],
    time: int,
    where: str = "rnnjax.rnn",
    argument: str = "seq_lengths",
    source: str = "xs",
) -> Array:
    """``seq_lengths`` as an array, after checking shape ``batch_shape``, dtype and range
    ``[0, time]``; errors name ``argument`` and the array ``source`` it measures."""
    shape = getattr(seq_lengths, "shape", None)
    if shape is None or tuple(shape) != batch_shape:
        actual = type(seq_lengths) if shape is None else tuple(shape)
        raise ValueError(
            f"{where}: {argument} must have shape {batch_shape} (the batch shape of {source});"
            f" got {actual}"
        )
    if not jnp.issubdtype(seq_lengths.dtype, jnp.integer):
        raise TypeError(
            f"{where}: {argument} must have an integer dtype; got {seq_lengths.dtype}"
            f" with shape {tuple(shape)}"
        )
    if not isinstance(seq_lengths, jax.core.Tracer):
        concrete = np.asarray(seq_lengths)
        if concrete.size and (concrete.min() < 0 or concrete.max() > time):
            raise ValueError(
                f"{where}: {argument} must lie in [0, {time}] (the length of {source});"
                f" got values from {concrete.min()} to {concrete.max()}"
            )
    return jnp.asarray(seq_lengths)


def shape_error(argument: str, expected: str, actual: Any, where: str = "rnnjax.rnn") -> ValueError:
    return ValueError(f"{where}: {argument} must have shape {expected}; got {actual}")


def check_carry(
    carry: Any, expected: Any, where: str = "rnnjax.rnn", argument: str = "initial_carry"
) -> Any:
    """``carry`` after checking it has the structure and shapes of ``expected`` (arrays or
    ``jax.ShapeDtypeStruct``s). A plain tuple where a NamedTuple carry is expected (the
    LSTM's, an attention cell's) is refused: rnnjax does not guess what its entries are."""
    fields = getattr(type(expected), "_fields", None)
    if fields and type(carry) in (tuple, list):
        name = type(expected).__name__
        spelled = f"rnnjax.{name}({', '.join(f'{field}=...' for field in fields)})"
        hint = " (Flax's LSTM carry is (c, h), PyTorch's (h, c))" if name == "LSTMState" else ""
        raise TypeError(
            f"{where}: {argument} must be {spelled}, not a plain {type(carry).__name__}, whose"
            f" order rnnjax does not guess{hint}: build it with {name}'s field names"
        )
    check_floating(where, argument, carry)  # never cast: it would set the scan's dtype
    same_structure = jax.tree.structure(carry) == jax.tree.structure(expected)  # type: ignore[operator]
    shapes = [tuple(jnp.shape(leaf)) for leaf in jax.tree.leaves(carry)]
    if not same_structure or shapes != [tuple(leaf.shape) for leaf in jax.tree.leaves(expected)]:
        expected_shapes = jax.tree.map(lambda leaf: tuple(leaf.shape), expected)
        actual_shapes = jax.tree.map(lambda leaf: tuple(jnp.shape(leaf)), carry)
        raise shape_error(argument, f"{expected_shapes} ([*batch, hidden])", actual_shapes, where)
    return carry


def input_size_of(where: str, cell: Any, params: Any) -> int:
    """``cell.input_size(params)``: the feature size ``x_t`` must have, after the cell has
    checked that ``params`` are its own; its complaint is re-raised under ``where``."""
    check_floating(where, "params", params)
    try:
        size = cell.input_size(params)
    except (ValueError, TypeError, KeyError, AttributeError, IndexError) as error:
        kind = TypeError if isinstance(error, (TypeError, AttributeError)) else ValueError
        raise kind(f"{where}: params are not this cell's: {error}") from None
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise TypeError(
            f"{where}: cell.input_size(params) must return an int (the feature size of x_t);"
            f" got {type(size).__name__}"
        )
    return int(size)


def checked_step(cell: Any, where: str) -> Any:
    """``cell.step`` with its arguments checked first, as :func:`rnnjax.rnn` checks its own:
    the params (``cell.input_size``), ``x [*batch, features]`` and the carry. The checks read
    shapes only, so under ``jit`` or a scan they run once, at trace time."""
    step = cell.step

    def step_checked(params: Any, carry: Any, x: Any) -> Any:
        input_size = input_size_of(where, cell, params)
        if not hasattr(x, "shape") or jnp.ndim(x) < 1 or x.shape[-1] != input_size:
            actual = getattr(x, "shape", type(x))
            raise shape_error(
                "x", f"[*batch, {input_size}] (the params' input size)", actual, where
            )
        check_floating(where, "x", x)
        expected = jax.eval_shape(lambda: cell.initial_carry(params, tuple(x.shape[:-1])))
        return step(params, check_carry(carry, expected, where, "carry"), x)

    return step_checked
