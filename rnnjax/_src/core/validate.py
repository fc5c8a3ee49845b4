"""Argument checks for the public entry points.

Each check takes ``where`` (the entry point as a user wrote it, ``"rnnjax.rnn"``,
``"rnnjax.nnx.LSTM"``) and the argument's ``name``, and raises a ``TypeError`` (wrong kind of
value) or ``ValueError`` (right kind, bad value) that names both and what was given. Entry
points check once, at the door; the internals they call trust their inputs. Every check reads
types and shapes only, so under ``jax.jit`` it runs once, at trace time.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src.core.contract import Cell


def describe(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{type(value).__name__} of dtype {value.dtype} and shape {tuple(value.shape)}"
    return f"{value!r} of type {type(value).__name__}"


def check_bool(where: str, name: str, value: Any) -> bool:
    """``value`` as a Python bool; anything but ``True``/``False`` (a string such as ``"no"``,
    an int, an array) is a ``TypeError``."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise TypeError(f"{where}: {name} must be True or False; got {describe(value)}")


def check_int(where: str, name: str, value: Any, *, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``; bools, floats (``2.0``) and strings are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{where}: {name} must be an int >= {minimum}; got {describe(value)}")
    if value < minimum:
        raise ValueError(f"{where}: {name} must be an int >= {minimum}; got {value!r}")
    return int(value)


def check_rate(where: str, name: str, value: Any) -> float:
    """``value`` as a float in ``[0, 1)`` (a dropout rate)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.floating)):
        raise TypeError(f"{where}: {name} must be a number in [0, 1); got {describe(value)}")
    if not 0 <= value < 1:
        raise ValueError(f"{where}: {name} must be a number in [0, 1); got {value!r}")
    return float(value)


def check_choice(where: str, name: str, value: Any, choices: tuple[Any, ...]) -> Any:
    """``value`` if it is one of ``choices`` (compared by type and value, so ``1`` is not
    ``True``)."""
    if any(type(value) is type(c) and value == c for c in choices):
        return value
    raise ValueError(f"{where}: {name} must be one of {choices}; got {describe(value)}")


def check_floating_dtype(where: str, name: str, value: Any) -> jnp.dtype:
    """``value`` (``jnp.bfloat16``, ``"float32"``, ...) as a real floating dtype."""
    try:
        dtype = jnp.dtype(value)
    except TypeError:
        dtype = None
    if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
        raise TypeError(
            f"{where}: {name} must be a real floating dtype (jnp.float32, jnp.bfloat16, ...);"
            f" got {value!r}"
        )
    return dtype


def check_floating(where: str, name: str, tree: Any) -> Any:
    """``tree`` after checking every leaf is an array of a real floating dtype: integer,
    bool and complex leaves are refused, never cast."""
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        dtype = getattr(leaf, "dtype", None)
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            at = f"{name}{jax.tree_util.keystr(path)}"
            raise TypeError(
                f"{where}: {at} must be a real floating array (float32, bfloat16, ...);"
                f" got {describe(leaf)}"
            )
    return tree


def check_cell(where: str, cell: Any, name: str = "cell") -> Cell:
    """``cell`` if it is an :class:`~rnnjax.Cell`; a factory not yet called (``rnnjax.lstm``),
    a layer or a Flax module is a ``TypeError`` that says what to pass instead."""
    if isinstance(cell, Cell):
        return cell
    hint = ""
    if callable(cell) and getattr(cell, "__module__", "").startswith("rnnjax._src"):
        hint = f" (call the factory first: rnnjax.{getattr(cell, '__name__', '?')}(hidden_size))"
    raise TypeError(
        f"{where}: {name} must be an rnnjax.Cell, e.g. rnnjax.lstm(32); got {describe(cell)}" + hint
    )


def check_key(where: str, name: str, value: Any) -> Any:
    """``value`` if it is one PRNG key: a typed key (``jax.random.key(0)``, shape ``()``) or a
    raw ``uint32[2]`` key (``jax.random.PRNGKey(0)``). Reads the dtype and shape only."""
    dtype, shape = getattr(value, "dtype", None), getattr(value, "shape", None)
    if dtype is not None and shape is not None:
        if jnp.issubdtype(dtype, jax.dtypes.prng_key) and tuple(shape) == ():
            return value
        if dtype == jnp.uint32 and tuple(shape) == (2,):
            return value
    raise TypeError(
        f"{where}: {name} must be one PRNG key, e.g. jax.random.key(0); got {describe(value)}"
    )
