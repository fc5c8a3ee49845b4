"""The kit cells are built with, public as ``rnnjax.cell_factory``, ``rnnjax.gated_cell``,
``rnnjax.linear_scan_cell``, ``rnnjax.diagonal_cell`` and ``rnnjax.diagonal_jacobian_of``,
and the small parts (zero carries, the input projection, the recurrent matmul, a params check)
that the built-in families share.

One builder per capability family, each filling in what the equations determine:

* :func:`gated_cell`: from the input projection, the recurrent matmul, a linear ``combine``
  and the elementwise ``gates``, the step and the ``projection`` and ``gate_split``
  capabilities (the fast backward pass of :func:`rnnjax.rnn`);
* :func:`linear_scan_cell`: from the coefficients ``(a_t, b_t)`` of ``h_t = a_t h_{t-1} +
  b_t``, the step and the ``linear_scan`` capability (the parallel scan);
* :func:`diagonal_cell`: a gated cell whose recurrence is elementwise per hidden unit, with
  the ``diagonal_jacobian`` capability too (``rnnjax.rnn(..., parallel="newton")``).

:func:`cell_factory` caches a factory by its settings, so a cell built twice is the same
object: a static argument of ``jax.jit`` that compiles once.

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
import numpy as np
from jax.typing import DTypeLike

from rnnjax._src.cells.initializers import INITIALIZERS
from rnnjax._src.core.checks import checked_step
from rnnjax._src.core.contract import (
    BatchShape,
    Carry,
    Cell,
    CombineFn,
    DiagonalJacobian,
    GatesFn,
    GateSplit,
    LinearScan,
    Params,
    ProjectFn,
    Projection,
    RecurrentFn,
)
from rnnjax._src.core.matmul import add_bias, apply_mask, matmul
from rnnjax._src.core.validate import check_bool, check_choice, check_int, describe
from rnnjax._src.linear.recurrence import merge_complex, split_complex

Array = jax.Array


def cell_factory(make: Callable[..., Cell]) -> Callable[..., Cell]:
    """Decorator: a cell factory that returns the same :class:`~rnnjax.Cell` for equal settings.

    A cell is a static argument wherever it is jitted (in :func:`rnnjax.rnn`'s scans, in your
    own ``jax.jit(..., static_argnums=...)``), compared by identity of its functions. A
    factory that builds its functions anew on each call makes a new cell each time, and each
    new cell compiles again; decorated, the factory builds one cell per setting, however the
    settings are spelled (``lstm(8)`` and ``lstm(8, initializer="keras")``).

    The settings are checked at the door, under the factory's name, before the cache is
    consulted (where ``2.0 == 2`` and ``True == 1`` would find another setting's cell):
    ``hidden_size`` an int >= 1; a setting whose default is a bool, an int, a float, a
    string or a callable must be one too (an int for a float is taken as that float); any
    setting must be hashable (a Python value, not an array). The cell's ``step`` checks
    its arguments as :func:`rnnjax.rnn` does (at trace time).

    Args:
      make: ``(*settings) -> Cell``, e.g. ``(hidden_size, *, some_option=...) -> Cell``.

    Returns:
      ``make`` with its cells cached by their settings.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> @rnnjax.cell_factory
      ... def leaky(hidden_size, *, leak=0.5):
      ...     def init(key, input_size, dtype=jnp.float32):
      ...         return {"w": jax.random.normal(key, (input_size, hidden_size), dtype)}
      ...     def initial_carry(params, batch_shape, dtype=None):
      ...         shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
      ...         return jnp.zeros((*shape, hidden_size), dtype or params["w"].dtype)
      ...     def step(params, h, x):
      ...         h = leak * h + (1 - leak) * jnp.tanh(x @ params["w"])
      ...         return h, h
      ...     return rnnjax.Cell(init, initial_carry, step,
      ...                        lambda params: params["w"].shape[0], lambda h: h)
      >>> leaky(8) is leaky(8, leak=0.5)
      True
      >>> leaky(8, leak="half")
      Traceback (most recent call last):
      ...
      TypeError: leaky: leak must be a real number (a Python float); got 'half' of type str
    """
    signature = inspect.signature(make)
    # The library's own factories are called as rnnjax.<name> (a doctest's run in this module).
    library = make.__module__.startswith("rnnjax._src.") and make.__module__ != __name__
    where = f"rnnjax.{make.__name__}" if library else make.__name__

    @functools.lru_cache(maxsize=None, typed=True)  # typed: ``peephole=1`` is not ``True``
    def checked(*args: Any, **kwargs: Any) -> Cell:
        cell = make(*args, **kwargs)
        if not isinstance(cell, Cell):
            raise TypeError(
                f"{where}: a cell factory must return an rnnjax.Cell; got {describe(cell)}"
            )
        first = f"{args[0]!r}" if args else ""
        return cell._replace(step=checked_step(cell, f"{where}({first}).step"))

    @functools.wraps(make)
    def make_once(*args: Any, **kwargs: Any) -> Cell:
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise TypeError(f"{where}: {error}") from None
        bound.apply_defaults()
        for name, value in bound.arguments.items():
            default = signature.parameters[name].default
            bound.arguments[name] = check_setting(where, name, value, default)
        return checked(*bound.args, **bound.kwargs)

    return make_once


def check_setting(where: str, name: str, value: Any, default: Any) -> Any:
    """One setting of a cell factory, checked by the type of its ``default`` (``hidden_size``
    an int >= 1, ``initializer`` a known scheme); every setting must be hashable."""
    if name == "hidden_size":
        return check_int(where, name, value)
    if default is inspect.Parameter.empty:
        default = None  # no default to read a type from: hashable is all we can ask
    if name == "initializer" and isinstance(default, str):
        return check_choice(where, name, value, INITIALIZERS)
    if isinstance(default, bool):
        return check_bool(where, name, value)
    if isinstance(default, (int, float)) and not _is_number(value, integer=type(default) is int):
        kind = "an int" if type(default) is int else "a real number (a Python float)"
        raise TypeError(f"{where}: {name} must be {kind}; got {describe(value)}")
    if isinstance(default, str) and not isinstance(value, str):
        raise TypeError(f"{where}: {name} must be a string; got {describe(value)}")
    if callable(default) and not callable(value):
        raise TypeError(f"{where}: {name} must be callable; got {describe(value)}")
    try:
        hash(value)
    except TypeError:
        raise TypeError(
            f"{where}: {name} must be a hashable Python value (the factory keeps one cell per"
            f" setting); got {describe(value)}"
        ) from None
    if type(default) in (int, float):
        return type(default)(value)
    return value


def _is_number(value: Any, *, integer: bool) -> bool:
    """A Python (or NumPy scalar) int, or with ``integer=False`` a real number; never a bool
    or an array."""
    numbers: tuple[type, ...] = (int, np.integer)
    if not integer:
        numbers += (float, np.floating)
    return isinstance(value, numbers) and not isinstance(value, (bool, np.bool_))


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
    """``input_size`` of a built-in cell: ``kernel.shape[0]``, once the params are checked:
    a ``params_type``, or a NamedTuple with exactly its fields, of the expected shapes.

    ``recurrent_bias``: ``None`` where the params type has no such field, else whether the
    cell needs one (the GRU's two forms). ``more``: the shapes of any further fields.
    """
    expected: dict[str, Any] = {"kernel": f"[input_size, {width}]"}
    expected.update(recurrent_kernel=(hidden, width), bias=(width,))
    if recurrent_bias is not None:
        expected["recurrent_bias"] = (width,) if recurrent_bias else None
    expected.update(more)

    own_fields = getattr(params_type, "_fields", None)

    def shapes(fields: dict[str, Any]) -> str:
        return ", ".join(f"{key}={value}" for key, value in fields.items())

    def input_size(params: Params) -> int:
        got = {key: getattr(params, key, "missing") for key in expected}
        got = {k: tuple(v.shape) if hasattr(v, "shape") else v for k, v in got.items()}
        kernel = got["kernel"]
        fields = getattr(type(params), "_fields", None)
        fits = (
            fields == own_fields
            and isinstance(kernel, tuple)
            and len(kernel) == 2
            and kernel[1] == width
            and all(got[key] == value for key, value in expected.items() if key != "kernel")
        )
        if not fits:
            other = "" if fields in (None, own_fields) else f", fields {fields}"
            raise ValueError(
                f"rnnjax.{name}: params must be {params_type.__name__}({shapes(expected)});"
                f" got {type(params).__name__} with {shapes(got)}{other}"
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
    """A cell from its parts: the step ``gates(params, carry, combine(project(params, x),
    recurrent(params, output(carry))))``, with the ``projection`` and ``gate_split``
    capabilities filled in from the same functions.

    :func:`rnnjax.rnn` then hoists ``project`` over all steps when it pays, takes a recurrent
    dropout mask on ``h`` where it enters ``recurrent``, and differentiates the cell with its
    fast tangent rule (weight gradients as large matmuls after the reverse scan). What it
    needs: ``combine`` linear in both arguments, and the step's whole dependence on the
    params through ``project``, ``recurrent`` and ``gates``. :func:`rnnjax.check_cell`
    checks a built cell against these promises.

    Args:
      init: ``(key, input_size, dtype=jnp.float32) -> params``.
      initial_carry: ``(params, batch_shape, dtype=None) -> carry``.
      input_size: ``(params) -> int``, the feature size of ``x_t`` (and the place to check
        that the params are the cell's).
      output: ``(carry) -> h [*batch, hidden]``, what a step emits and what enters the
        recurrent matmul.
      recurrent: ``(params, h) -> [*batch, width]``, ``h @ recurrent_kernel`` (plus any
        recurrent bias).
      combine: ``(projected, recurrent) -> z``, linear in both (``jnp.add`` mostly); ``z``
        may be a pytree.
      gates: ``(params, carry, z) -> (carry, y_t)``, the elementwise rest of the step.
      project: ``(params, xs) -> [..., width]``; by default ``xs @ params.kernel +
        params.bias`` (params with those attributes).

    Returns:
      A :class:`~rnnjax.Cell` with ``projection`` and ``gate_split``.

    Example: the coupled-gate LSTM (input gate ``1 - f``), params a dict:

      >>> import jax, jax.numpy as jnp, rnnjax
      >>> H = 4
      >>> def init(key, input_size, dtype=jnp.float32):
      ...     k1, k2 = jax.random.split(key)
      ...     return {"w": jax.random.normal(k1, (input_size, 3 * H), dtype) / 2,
      ...             "u": jax.random.normal(k2, (H, 3 * H), dtype) / 2,
      ...             "b": jnp.zeros((3 * H,), dtype)}
      >>> def initial_carry(params, batch_shape, dtype=None):
      ...     shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
      ...     zeros = jnp.zeros((*shape, H), dtype or params["u"].dtype)
      ...     return rnnjax.LSTMState(zeros, zeros)
      >>> def gates(params, carry, z):
      ...     f, g, o = jnp.split(z, 3, axis=-1)
      ...     f = jax.nn.sigmoid(f)
      ...     c = f * carry.c + (1 - f) * jnp.tanh(g)
      ...     h = jax.nn.sigmoid(o) * jnp.tanh(c)
      ...     return rnnjax.LSTMState(h, c), h
      >>> cifg = rnnjax.gated_cell(
      ...     init, initial_carry, input_size=lambda p: p["w"].shape[0],
      ...     output=lambda carry: carry.h, recurrent=lambda p, h: h @ p["u"],
      ...     combine=jnp.add, gates=gates, project=lambda p, xs: xs @ p["w"] + p["b"])
      >>> params = cifg.init(jax.random.key(0), 3)
      >>> carry, ys = rnnjax.rnn(cifg, params, jnp.ones((2, 5, 3)))
      >>> ys.shape, cifg.gate_split is not None
      ((2, 5, 4), True)
    """

    def projected_step(
        params: Params, carry: Carry, projected: Array, recurrent_mask: Array | None = None
    ) -> tuple[Carry, Array]:
        h = apply_mask(output(carry), recurrent_mask)
        return gates(params, carry, combine(projected, recurrent(params, h)))

    def step(params: Params, carry: Carry, x: Array) -> tuple[Carry, Array]:
        return projected_step(params, carry, project(params, x))

    projection = Projection(project, projected_step)
    gate_split = GateSplit(recurrent, combine, gates)
    return Cell(init, initial_carry, step, input_size, output, projection, gate_split)


def linear_scan_cell(
    init: Callable[..., Params],
    initial_carry: Callable[..., Array],
    input_size: Callable[[Params], int],
    coefficients: Callable[[Params, Array], tuple[Array, Array]],
    *,
    start: Callable[[Params, Array], Array] | None = None,
) -> Cell:
    """A cell linear in its state, ``h_t = a_t * h_{t-1} + b_t`` with ``(a_t, b_t) =
    coefficients(params, x_t)``, ``y_t = h_t``: the step and the ``linear_scan`` capability,
    with which :func:`rnnjax.rnn` runs all steps at once (:func:`rnnjax.linear_recurrence`).

    ``coefficients`` sees the inputs only, never ``h``, and takes any leading axes (the
    driver calls it on ``[time, *batch, input]`` at once). Complex ``a, b [..., N]`` are for
    a real carry ``[*batch, 2N]`` holding the real parts, then the imaginary parts
    (:func:`rnnjax.lru`).

    Args:
      init: ``(key, input_size, dtype=jnp.float32) -> params``.
      initial_carry: ``(params, batch_shape, dtype=None) -> h [*batch, hidden]``.
      input_size: ``(params) -> int``.
      coefficients: ``(params, xs [..., input]) -> (a, b)``, each ``[..., hidden]`` (or
        complex ``[..., hidden / 2]``).
      start: optional ``(params, xs [..., input]) -> h``, the state at a document start
        (:class:`~rnnjax.LinearScan`'s ``start``; :func:`rnnjax.rg_lru`'s
        ``document_starts="recurrentgemma"``).

    Returns:
      A :class:`~rnnjax.Cell` with ``linear_scan``, carry and output ``h``.

    Example: a leaky average, ``h_t = f_t h_{t-1} + (1 - f_t) tanh(x_t V)``:

      >>> import jax, jax.numpy as jnp, rnnjax
      >>> def init(key, input_size, dtype=jnp.float32):
      ...     return {"w": jax.random.normal(key, (input_size, 8), dtype) / 2}
      >>> def initial_carry(params, batch_shape, dtype=None):
      ...     shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
      ...     return jnp.zeros((*shape, 4), dtype or params["w"].dtype)
      >>> def coefficients(params, xs):
      ...     f, v = jnp.split(xs @ params["w"], 2, axis=-1)
      ...     f = jax.nn.sigmoid(f)
      ...     return f, (1 - f) * jnp.tanh(v)
      >>> leaky = rnnjax.linear_scan_cell(
      ...     init, initial_carry, lambda params: params["w"].shape[0], coefficients)
      >>> params = leaky.init(jax.random.key(0), 3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 50, 3))
      >>> _, parallel = rnnjax.rnn(leaky, params, xs, parallel=True)
      >>> _, stepped = rnnjax.rnn(leaky, params, xs, parallel=False)
      >>> bool(jnp.allclose(parallel, stepped, atol=1e-6))
      True
    """

    def step(params: Params, h: Array, x: Array) -> tuple[Array, Array]:
        a, b = coefficients(params, x)
        if jnp.iscomplexobj(a) or jnp.iscomplexobj(b):
            h_new = merge_complex(a * split_complex(h) + b).astype(h.dtype)
        else:
            h_new = a * h + b
        return h_new, h_new

    return Cell(
        init, initial_carry, step, input_size, identity, linear_scan=LinearScan(coefficients, start)
    )


def diagonal_jacobian_of(step: Callable[..., tuple[Carry, Array]]) -> DiagonalJacobian:
    """The :class:`~rnnjax.DiagonalJacobian` capability of ``step``, derived from it, for a
    step whose Jacobian with respect to the carry is block-diagonal over the hidden units
    (unit ``u`` of the new carry reads unit ``u`` of the old one only).

    The carry's ``k`` arrays (each ``[*batch, H]``) are stacked as ``s [*batch, H, k]``; the
    step is linearised once (one forward pass) and its linear map applied to the ``k`` unit
    vectors of the block, each broadcast over all units. Because no unit reads another,
    column ``j`` of every unit's block comes out of the ``j``-th product at once: the exact
    Jacobian in ``k`` elementwise passes. For a step that mixes units this is wrong, and
    :func:`rnnjax.check_cell` says so.

    Args:
      step: ``(params, carry, x_t) -> (carry, y_t)``.

    Returns:
      ``DiagonalJacobian(jacobian_step)``, ``jacobian_step(params, carry, x_t) -> ((carry,
      y_t), jacobian [*batch, H, k, k])``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> def step(params, h, x):              # an IndRNN: u * h is elementwise
      ...     h = jnp.tanh(x @ params["w"] + params["u"] * h)
      ...     return h, h
      >>> jacobian_step = rnnjax.diagonal_jacobian_of(step).step
      >>> params = {"w": jnp.ones((3, 4)), "u": jnp.full((4,), 0.5)}
      >>> (h, y), jacobian = jacobian_step(params, jnp.zeros((2, 4)), jnp.ones((2, 3)))
      >>> jacobian.shape                       # [batch, H, 1, 1]: d h'_u / d h_u
      (2, 4, 1, 1)
    """

    def jacobian_step(params: Params, carry: Carry, x: Array) -> tuple[tuple[Carry, Array], Array]:
        leaves, treedef = jax.tree.flatten(carry)
        k = len(leaves)

        def stacked_step(stacked: Array) -> tuple[Array, tuple[Carry, Array]]:
            old = jax.tree.unflatten(treedef, [stacked[..., j] for j in range(k)])
            new, y = step(params, old, x)
            return jnp.stack(jax.tree.leaves(new), axis=-1), (new, y)

        stacked = jnp.stack(leaves, axis=-1)
        _, linear, (new, y) = jax.linearize(stacked_step, stacked, has_aux=True)
        basis = jnp.eye(k, dtype=stacked.dtype)
        columns = [linear(jnp.broadcast_to(basis[j], stacked.shape)) for j in range(k)]
        return (new, y), jnp.stack(columns, axis=-1)

    return DiagonalJacobian(jacobian_step)


def diagonal_cell(
    init: Callable[..., Params],
    initial_carry: Callable[..., Carry],
    input_size: Callable[[Params], int],
    output: Callable[[Carry], Array],
    recurrent: RecurrentFn,
    combine: CombineFn,
    gates: GatesFn,
    project: ProjectFn = input_projection,
) -> Cell:
    """:func:`gated_cell` for a recurrence that is elementwise per hidden unit (``recurrent``
    multiplies ``h`` by vectors, ``gates`` works unit by unit), with the
    ``diagonal_jacobian`` capability too (:func:`diagonal_jacobian_of` its step), so that
    ``rnnjax.rnn(..., parallel="newton")`` solves the whole sequence by Newton's method.

    Args: as :func:`gated_cell`'s.

    Returns:
      A :class:`~rnnjax.Cell` with ``projection``, ``gate_split`` and ``diagonal_jacobian``.

    Example: an IndRNN, ``h_t = tanh(x_t W + b + u * h_{t-1})``:

      >>> import jax, jax.numpy as jnp, rnnjax
      >>> def init(key, input_size, dtype=jnp.float32):
      ...     return {"w": jax.random.normal(key, (input_size, 4), dtype) / 2,
      ...             "u": jnp.full((4,), 0.5, dtype), "b": jnp.zeros((4,), dtype)}
      >>> def initial_carry(params, batch_shape, dtype=None):
      ...     shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
      ...     return jnp.zeros((*shape, 4), dtype or params["u"].dtype)
      >>> indrnn = rnnjax.diagonal_cell(
      ...     init, initial_carry, input_size=lambda p: p["w"].shape[0], output=lambda h: h,
      ...     recurrent=lambda p, h: p["u"] * h, combine=jnp.add,
      ...     gates=lambda p, h, z: (jnp.tanh(z), jnp.tanh(z)),
      ...     project=lambda p, xs: xs @ p["w"] + p["b"])
      >>> params = indrnn.init(jax.random.key(0), 3)
      >>> xs = jax.random.normal(jax.random.key(1), (2, 20, 3))
      >>> _, newton = rnnjax.rnn(indrnn, params, xs, parallel="newton")
      >>> _, stepped = rnnjax.rnn(indrnn, params, xs, parallel=False)
      >>> bool(jnp.allclose(newton, stepped, atol=1e-5))
      True
    """
    cell = gated_cell(init, initial_carry, input_size, output, recurrent, combine, gates, project)
    return cell._replace(diagonal_jacobian=diagonal_jacobian_of(cell.step))


def identity(carry: Array) -> Array:
    """``output`` of a cell whose carry is ``h`` itself."""
    return carry
