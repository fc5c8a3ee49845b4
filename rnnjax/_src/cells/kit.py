"""The kit the cells are built with: a cached factory, the builder of gated cells, and the
small parts (zero carries, the input projection, the recurrent matmul, a params check) that
every family shares.

A cell built by :func:`gated_cell` from its three parts (the input projection, the recurrent
matmul and the elementwise gates) gets every capability of the contract
(:mod:`rnnjax._src.core.contract`) from one set of equations.

Matmuls with low-precision weights (bfloat16, float16) accumulate and return float32
(``preferred_element_type``), so the gates and the state after them run in float32: the
hardware's fast low-precision matmul, without rounding the gates.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from jax.typing import DTypeLike

from rnnjax._src.cells.initializers import INITIALIZERS
from rnnjax._src.core.checks import checked_step
from rnnjax._src.core.contract import (
    BatchShape,
    Carry,
    Cell,
    CombineFn,
    GatesFn,
    GateSplit,
    Params,
    ProjectFn,
    Projection,
    RecurrentFn,
)
from rnnjax._src.core.matmul import add_bias, apply_mask, matmul
from rnnjax._src.core.validate import check_bool, check_choice, check_int

Array = jax.Array


def cell_factory(make: Callable[..., Cell]) -> Callable[..., Cell]:
    """``make``, returning the same :class:`Cell` for equal settings however they are spelled
    (``lstm(8)``, ``lstm(8, initializer="keras")``), so a cell is a stable static argument;
    its ``step`` checks its arguments as :func:`rnnjax.rnn` does (at trace time)."""
    signature = inspect.signature(make)

    @functools.lru_cache(maxsize=None, typed=True)  # typed: ``peephole=1`` is not ``True``
    def checked(*args: Any, **kwargs: Any) -> Cell:
        cell = make(*args, **kwargs)
        where = f"rnnjax.{make.__name__}({args[0]}).step"
        return cell._replace(step=checked_step(cell, where))

    @functools.wraps(make)
    def make_once(*args: Any, **kwargs: Any) -> Cell:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        _check_settings(f"rnnjax.{make.__name__}", signature, bound.arguments)
        return checked(*bound.args, **bound.kwargs)

    return make_once


def _check_settings(where: str, signature: inspect.Signature, arguments: dict[str, Any]) -> None:
    """A cell factory's arguments, checked before the per-setting cache is consulted (where
    ``2.0 == 2`` and ``True == 1`` would find another setting's cell): ``hidden_size`` an int,
    ``initializer`` a known scheme, bool settings bools, callables callable."""
    arguments["hidden_size"] = check_int(where, "hidden_size", arguments["hidden_size"])
    for name, value in arguments.items():
        default = signature.parameters[name].default
        if name == "hidden_size":
            continue
        if name == "initializer":
            check_choice(where, name, value, INITIALIZERS)
        elif isinstance(default, bool):
            arguments[name] = check_bool(where, name, value)
        elif callable(default) and not callable(value):
            raise TypeError(f"{where}: {name} must be callable; got {value!r}")


def batch_tuple(batch_shape: BatchShape) -> tuple[int, ...]:
    return (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)


def zeros_carry(params: Params, batch_shape: BatchShape, dtype: DTypeLike | None = None) -> Array:
    hidden = params.recurrent_kernel.shape[0]
    return jnp.zeros((*batch_tuple(batch_shape), hidden), dtype or params.recurrent_kernel.dtype)


def input_projection(params: Params, xs: Array) -> Array:
    return add_bias(matmul(xs, params.kernel), params.bias)


def recurrent_matmul(params: Params, h: Array) -> Array:
    return matmul(h, params.recurrent_kernel)


def params_check(
    name: str,
    params_type: type,
    hidden: int,
    width: int,
    recurrent_bias: bool | None = None,
    **more: tuple[int, ...],
) -> Callable[[Params], int]:
    """``input_size`` of a built-in cell: ``kernel.shape[0]``, once the params are checked.

    ``recurrent_bias``: ``None`` where the params type has no such field, else whether the
    cell needs one (the GRU's two forms). ``more``: the shapes of any further fields.
    """
    expected: dict[str, Any] = {"kernel": f"[input_size, {width}]"}
    expected.update(recurrent_kernel=(hidden, width), bias=(width,))
    if recurrent_bias is not None:
        expected["recurrent_bias"] = (width,) if recurrent_bias else None
    expected.update(more)

    def describe(fields: dict[str, Any]) -> str:
        return ", ".join(f"{key}={value}" for key, value in fields.items())

    def input_size(params: Params) -> int:
        got = {key: getattr(params, key, "missing") for key in expected}
        got = {k: tuple(v.shape) if hasattr(v, "shape") else v for k, v in got.items()}
        kernel = got["kernel"]
        fits = (
            isinstance(kernel, tuple)
            and len(kernel) == 2
            and kernel[1] == width
            and all(got[key] == value for key, value in expected.items() if key != "kernel")
        )
        if not fits:
            raise ValueError(
                f"rnnjax.{name}: params must be {params_type.__name__}({describe(expected)});"
                f" got {type(params).__name__} with {describe(got)}"
            )
        return int(kernel[0])

    return input_size


def gated_cell(
    init: Callable[..., Params],
    initial_carry: Callable[..., Carry],
    input_size: Callable[[Params], int],
    output: Callable[[Carry], Array],
    recurrent: RecurrentFn,
    combine: CombineFn,
    gates: GatesFn,
    project: ProjectFn = input_projection,
) -> Cell:
    """The cell whose step is ``gates(params, carry, combine(project(params, x),
    recurrent(params, h)))``; ``project`` is ``x @ kernel + bias`` unless given."""

    def projected_step(
        params: Params, carry: Carry, projected: Array, recurrent_mask: Array | None = None
    ) -> tuple[Carry, Array]:
        h = apply_mask(output(carry), recurrent_mask)
        return gates(params, carry, combine(projected, recurrent(params, h)))

    def step(params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        return projected_step(params, carry, project(params, x))

    return Cell(
        init,
        initial_carry,
        step,
        input_size,
        output,
        Projection(project, projected_step),
        GateSplit(recurrent, combine, gates),
    )


def identity(carry: Array) -> Array:
    return carry
