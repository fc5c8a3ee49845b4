"""The checks of :func:`rnnjax.decode`: its static options, declared once in one frozen
object, and its arguments. Each error names ``rnnjax.decode`` and the argument.

Types and shapes are checked at trace time. Values are checked where they are concrete (an
eager call); under ``jax.jit`` a traced value cannot be read, and a row with an invalid one
(a start token outside ``[0, vocab)``, a temperature that is not positive, a negative or
non-finite ``length_penalty``) gets the score NaN instead (see :func:`invalid_rows`).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src.core.validate import check_choice, check_int, check_key, describe

Array = jax.Array

WHERE = "rnnjax.decode"
METHODS: tuple[str, ...] = ("greedy", "sample", "beam")


def _optional_int(name: str, value: Any, minimum: int) -> int | None:
    return None if value is None else check_int(WHERE, name, value, minimum=minimum)


@dataclasses.dataclass(frozen=True)
class Options:
    """The static options of :func:`rnnjax.decode`, checked and normalised on construction:
    one compiled loop per ``step_fn``, options and shapes (the object is hashable)."""

    max_length: int
    method: str
    eos_id: int | None
    top_k: int | None
    beam_width: int
    pad_id: int

    def __post_init__(self) -> None:
        checked = {
            "max_length": check_int(WHERE, "max_length", self.max_length),
            "method": check_choice(WHERE, "method", self.method, METHODS),
            "eos_id": _optional_int("eos_id", self.eos_id, minimum=0),
            "top_k": _optional_int("top_k", self.top_k, minimum=1),
            "beam_width": check_int(WHERE, "beam_width", self.beam_width),
            "pad_id": check_int(WHERE, "pad_id", self.pad_id, minimum=0),
        }
        for name, value in checked.items():
            object.__setattr__(self, name, value)


def _is_array(leaf: Any) -> bool:
    return isinstance(leaf, (jax.Array, np.ndarray, np.generic, int, float, complex))


def check_arguments(step_fn: Any, params: Any, carry: Any, start_tokens: Any) -> int:
    """The batch size, after checking ``step_fn`` is callable, ``start_tokens`` are ``[batch]``
    integers, and every leaf of ``params`` and ``carry`` is an array (``carry``'s with the
    leading batch axis)."""
    if not callable(step_fn):
        raise TypeError(f"{WHERE}: step_fn must be callable; got {type(step_fn).__name__}")
    shape = getattr(start_tokens, "shape", None)
    dtype: Any = getattr(start_tokens, "dtype", None)
    if shape is None or len(shape) != 1 or not jnp.issubdtype(dtype, jnp.integer):
        got = f"{dtype}{list(shape)}" if shape is not None else type(start_tokens).__name__
        raise TypeError(f"{WHERE}: start_tokens must be [batch] integers; got {got}")
    batch = int(shape[0])
    for name, tree in (("params", params), ("carry", carry)):
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            at = f"{name}{jax.tree_util.keystr(path)}"
            if not _is_array(leaf):
                raise TypeError(f"{WHERE}: {at} must be an array; got {describe(leaf)}")
            if name == "carry" and (np.ndim(leaf) < 1 or np.shape(leaf)[0] != batch):
                raise ValueError(
                    f"{WHERE}: every carry leaf must have the leading batch axis [{batch}, ...]"
                    f" (start_tokens' batch); got {at} with shape {tuple(np.shape(leaf))}"
                )
    return batch


def check_scale(name: str, value: Any, shapes: tuple[tuple[int, ...], ...]) -> Array:
    """``temperature`` (positive) or ``length_penalty`` (``>= 0`` and finite) as a float32
    array, after checking it is a real number or a real array of one of ``shapes``; its
    values are checked where they are concrete."""
    dtype = getattr(value, "dtype", None)
    real_dtype = dtype is not None and (
        jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.floating)
    )
    python_real = isinstance(value, (int, float)) and not isinstance(value, bool)
    shown = " or ".join(str(list(shape)) for shape in shapes)
    if not (real_dtype or python_real):
        raise TypeError(
            f"{WHERE}: {name} must be a real number or a real array of shape {shown};"
            f" got {describe(value)}"
        )
    if tuple(np.shape(value)) not in shapes:
        raise ValueError(
            f"{WHERE}: {name} must have shape {shown}; got shape {tuple(np.shape(value))}"
        )
    if not isinstance(value, jax.core.Tracer):
        values = np.asarray(value, np.float64)
        if name == "temperature" and not (values > 0).all():
            raise ValueError(f"{WHERE}: temperature must be positive; got {value!r}")
        if name == "length_penalty" and not ((values >= 0) & np.isfinite(values)).all():
            raise ValueError(f"{WHERE}: length_penalty must be >= 0 and finite; got {value!r}")
    return jnp.asarray(value, jnp.float32)


def check_sampling_key(method: str, key: Any) -> Array | None:
    """The key for sampling (required), ``None`` for the other methods (a given key must
    still be a key)."""
    if key is None:
        if method == "sample":
            raise ValueError(f"{WHERE}: method='sample' needs a key (e.g. key=jax.random.key(0))")
        return None
    key = check_key(WHERE, "key", key)
    return key if method == "sample" else None


def _types(tree: Any) -> Any:
    return jax.tree.map(lambda leaf: f"{jnp.result_type(leaf)}{list(jnp.shape(leaf))}", tree)


def _step_output(output: Any, carry: Any, batch: int) -> tuple[Any, Any]:
    """``(new_carry, logits)`` from ``step_fn``'s output shapes, or a ``TypeError`` naming the
    ``(carry, logits)`` order."""
    expected = f"step_fn must return the pair (carry, logits [{batch}, vocab]), in that order"
    if not (isinstance(output, tuple) and len(output) == 2):
        got = f"a tuple of {len(output)}" if isinstance(output, tuple) else "one value"
        raise TypeError(f"{WHERE}: {expected}; got {got}: {_types(output)}")
    new_carry, logits = output
    if not isinstance(logits, jax.ShapeDtypeStruct):
        swapped = jax.tree.structure(logits) == jax.tree.structure(carry)  # type: ignore[operator]
        hint = " (it looks like (logits, carry): return (carry, logits))" if swapped else ""
        raise TypeError(
            f"{WHERE}: {expected}; got {type(logits).__name__} in the logits' place:"
            f" {_types(output)}{hint}"
        )
    return new_carry, logits


def check_step_fn(step_fn: Any, params: Any, carry: Any, batch: int, options: Options) -> int:
    """The vocabulary size, after checking the shapes and dtypes of what ``step_fn`` returns
    (shapes only: at trace time) and the options that depend on the vocabulary."""
    tokens = jax.ShapeDtypeStruct((batch,), jnp.int32)
    new_carry, logits = _step_output(jax.eval_shape(step_fn, params, carry, tokens), carry, batch)
    if logits.ndim != 2 or logits.shape[0] != batch:
        raise ValueError(
            f"{WHERE}: step_fn must return logits [batch, vocab] with batch {batch};"
            f" got {logits.dtype}{list(logits.shape)}"
        )
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(
            f"{WHERE}: step_fn must return real floating logits (float32, bfloat16, ...);"
            f" got {logits.dtype}{list(logits.shape)}"
        )
    carry_types, new_types = _types(carry), _types(new_carry)
    if carry_types != new_types:
        swapped = _types(logits) == carry_types
        hint = " (it looks like (logits, carry): return (carry, logits))" if swapped else ""
        raise ValueError(
            f"{WHERE}: step_fn must return a carry of the structure, shapes and dtypes it"
            f" takes, {carry_types}; got {new_types}{hint}"
        )
    vocab = int(logits.shape[1])
    if options.top_k is not None and options.top_k > vocab:
        raise ValueError(
            f"{WHERE}: top_k must be at most the vocabulary size {vocab}; got {options.top_k}"
        )
    for name in ("eos_id", "pad_id"):
        value = getattr(options, name)
        if value is not None and value >= vocab:
            raise ValueError(
                f"{WHERE}: {name} must be below the vocabulary size {vocab}; got {value}"
            )
    return vocab


def invalid_rows(
    options: Options, start_tokens: Array, vocab: int, temperature: Array, alpha: Array
) -> Array:
    """bool ``[batch]``: the rows with a value that only a traced call can carry, a start token
    outside ``[0, vocab)``, a temperature (sampling) that is not positive, or a length penalty
    (beam search) that is negative or not finite. :func:`rnnjax.decode` gives them the score
    NaN."""
    invalid = (start_tokens < 0) | (start_tokens >= vocab)
    if options.method == "sample":
        invalid = invalid | ~(temperature > 0)
    if options.method == "beam":
        invalid = invalid | ~((alpha >= 0) & jnp.isfinite(alpha))
    return jnp.broadcast_to(invalid, start_tokens.shape)


def check_start_range(start_tokens: Any, vocab: Any) -> None:
    """Out-of-range start tokens, where both they and the vocabulary size are concrete."""
    if isinstance(start_tokens, jax.core.Tracer) or isinstance(vocab, jax.core.Tracer):
        return
    tokens = np.asarray(start_tokens)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= int(vocab)):
        raise ValueError(
            f"{WHERE}: start_tokens must lie in [0, {int(vocab)}) (the vocabulary of step_fn's"
            f" logits); got values from {tokens.min()} to {tokens.max()}"
        )
