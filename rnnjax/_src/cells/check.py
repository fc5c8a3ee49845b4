"""``rnnjax.check_cell``: a cell's contract and the promises of its capabilities, checked.

Every capability (``projection``, ``gate_split``, ``linear_scan``, ``diagonal_jacobian``) is
a second way to compute the cell's ``step``, and :func:`rnnjax.rnn` takes it without calling
``step`` at all. The check runs the cell over a few steps of ``xs`` and compares, at each
step, every declared capability with ``step``: the values, and the tangents (``jax.jvp``
with respect to the params, the carry and ``x`` together, a random direction), since the
driver differentiates the capability and not the step. ``diagonal_jacobian``'s Jacobian is
compared with ``jax.jacfwd`` of the step. The cells package may not import the scan, so the
steps are a Python loop over ``cell.step``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from rnnjax._src.core.checks import check_carry, input_size_of
from rnnjax._src.core.contract import Carry, Cell, Params
from rnnjax._src.core.validate import check_cell as check_is_cell
from rnnjax._src.core.validate import check_floating
from rnnjax._src.linear.recurrence import merge_complex, split_complex

Array = jax.Array
WHERE = "rnnjax.check_cell"
StepResult = tuple[Carry, Array]
Step = Callable[[Params, Carry, Array], StepResult]


class CellCheckError(ValueError):
    """Raised by :func:`rnnjax.check_cell` when a cell breaks its contract or a capability
    disagrees with its ``step``; the message names the capability and the size of the
    disagreement."""


def check_cell(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    carry: Carry | None = None,
    rtol: float = 1e-4,
    atol: float = 1e-5,
) -> tuple[str, ...]:
    """Checks that ``cell`` keeps the cell contract and that every capability it declares
    computes what its ``step`` computes, values and tangents, over the time steps of ``xs``.

    The contract: ``cell.input_size(params) == xs.shape[-1]``; ``step`` keeps the carry's
    structure, shapes and dtypes; ``y_t`` equals ``cell.output`` of the new carry. Then, at
    each step, from the carry the steps before it left:

    * ``projection``: ``projection.step(p, c, projection.project(p, x), None)``;
    * ``gate_split``: ``gates(p, c, combine(project(p, x), recurrent(p, output(c))))``;
    * ``linear_scan``: ``a * h + b`` with ``(a, b) = coefficients(p, x)`` (complex ``a, b``
      on the real carry ``[Re h, Im h]``);
    * ``diagonal_jacobian``: its step's ``(carry, y)``, and its Jacobian against
      ``jax.jacfwd`` of ``step`` with respect to the carry, which must be block-diagonal over
      the hidden units (zero between different units);

    each equal to ``step`` within ``|got - want| <= atol + rtol * |want|``, and so are their
    tangents (``jax.jvp`` along one random direction of the params, the carry and ``x``).

    Args:
      cell: the :class:`~rnnjax.Cell` to check.
      params: its params, from ``cell.init``.
      xs: ``[*batch, time, input_size]``, a few steps (``time >= 1``) of typical inputs.
      carry: the carry before the first step; ``cell.initial_carry(params, batch)`` if
        ``None``. A random one checks more than zeros do.
      rtol, atol: the tolerances, suited to float32.

    Returns:
      The names of what was checked: ``"contract"`` and each declared capability.

    Raises:
      CellCheckError: naming the capability, the largest difference, where it is (the carry
        or ``y``, the leaf and index), the time step, and whether in values or tangents.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.lstm(4)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> rnnjax.check_cell(cell, params, jax.random.normal(jax.random.key(1), (2, 3, 3)))
      ('contract', 'projection', 'gate_split')
    """
    cell = check_is_cell(WHERE, cell)
    xs = _checked_xs(input_size_of(WHERE, cell, params), xs)
    expected = jax.eval_shape(lambda: cell.initial_carry(params, xs.shape[:-2]))
    if carry is None:
        carry = cell.initial_carry(params, xs.shape[:-2])
    carry = check_carry(carry, expected, WHERE, "carry")
    checks = _capability_checks(cell)
    tolerance = (rtol, atol)
    for t in range(xs.shape[-2]):
        x = xs[..., t, :]
        want = _contract(cell, params, carry, x, t)
        tangents = _random_tangents((params, carry, x), t)
        want_tangent = _tangent(cell.step, (params, carry, x), tangents)
        for name, path in checks.items():
            _compare(name, path(params, carry, x), want, t, "values", tolerance)
            got_tangent = _tangent(path, (params, carry, x), tangents)
            _compare(name, got_tangent, want_tangent, t, "tangents", tolerance)
        if cell.diagonal_jacobian is not None:
            _check_jacobian(cell, params, carry, x, t, tolerance)
        carry = want[0]
    return ("contract", *checks)


def _checked_xs(input_size: int, xs: Any) -> Array:
    shape = getattr(xs, "shape", None)
    if shape is None or len(shape) < 2 or shape[-1] != input_size or shape[-2] < 1:
        raise ValueError(
            f"{WHERE}: xs must have shape [*batch, time >= 1, {input_size}] (the params' input"
            f" size); got {shape if shape is not None else type(xs)}"
        )
    return check_floating(WHERE, "xs", jnp.asarray(xs))


def _contract(cell: Cell, params: Params, carry: Carry, x: Array, t: int) -> StepResult:
    """``cell.step``'s result, after checking its carry keeps the structure, shapes and dtypes
    and ``y`` is ``cell.output`` of the new carry."""
    new_carry, y = cell.step(params, carry, x)
    same = jax.tree.structure(new_carry) == jax.tree.structure(carry)  # type: ignore[operator]
    kinds = [(leaf.shape, leaf.dtype) for leaf in jax.tree.leaves(new_carry)]
    if not same or kinds != [(jnp.shape(leaf), leaf.dtype) for leaf in jax.tree.leaves(carry)]:
        raise CellCheckError(
            f"{WHERE}: step must return a carry of the structure, shapes and dtypes it was"
            f" given: {_describe(carry)}; got {_describe(new_carry)} at time step {t}"
        )
    output = cell.output(new_carry)
    if jnp.shape(y) != jnp.shape(output) or jnp.result_type(y) != jnp.result_type(output):
        raise CellCheckError(
            f"{WHERE}: step's y must be output(carry) (shape {jnp.shape(output)}, dtype"
            f" {jnp.result_type(output)}); got shape {jnp.shape(y)}, dtype {jnp.result_type(y)}"
        )
    _compare("output", ((), output), ((), y), t, "values", (0.0, 0.0))
    return new_carry, y


def _describe(tree: Any) -> Any:
    return jax.tree.map(lambda leaf: f"{jnp.result_type(leaf)}{list(jnp.shape(leaf))}", tree)


def _capability_checks(cell: Cell) -> dict[str, Step]:
    """Each declared capability as a second way to compute ``step``."""
    checks: dict[str, Step] = {}
    projection, split = cell.projection, cell.gate_split
    if projection is not None:

        def projected(params: Params, carry: Carry, x: Array) -> StepResult:
            return projection.step(params, carry, projection.project(params, x), None)

        checks["projection"] = projected
    if projection is not None and split is not None:

        def gated(params: Params, carry: Carry, x: Array) -> StepResult:
            recurrent = split.recurrent(params, cell.output(carry))
            return split.gates(
                params, carry, split.combine(projection.project(params, x), recurrent)
            )

        checks["gate_split"] = gated
    if cell.linear_scan is not None:
        checks["linear_scan"] = _linear_step(cell.linear_scan.coefficients)
    if cell.diagonal_jacobian is not None:
        jacobian_step = cell.diagonal_jacobian.step

        def without_jacobian(params: Params, carry: Carry, x: Array) -> StepResult:
            return jacobian_step(params, carry, x)[0]

        checks["diagonal_jacobian"] = without_jacobian
    return checks


def _linear_step(coefficients: Callable[[Params, Array], tuple[Array, Array]]) -> Step:
    """The step the ``linear_scan`` capability promises (the convention of
    :class:`~rnnjax.LinearScan`: complex coefficients on a real ``[Re h, Im h]`` carry)."""

    def step(params: Params, h: Array, x: Array) -> StepResult:
        if not isinstance(h, jax.Array | np.ndarray):
            raise CellCheckError(
                f"{WHERE}: linear_scan needs a carry that is one array h; got {_describe(h)}"
            )
        a, b = coefficients(params, x)
        if jnp.iscomplexobj(a) or jnp.iscomplexobj(b):
            h_new = merge_complex(a * split_complex(h) + b).astype(h.dtype)
        else:
            h_new = a * h + b
        return h_new, h_new

    return step


def _random_tangents(primals: Any, t: int) -> Any:
    """A random direction for every leaf of ``primals`` (all floating: checked before)."""
    leaves, treedef = jax.tree.flatten(primals)
    keys = jax.random.split(jax.random.key(t), len(leaves))
    tangents = [
        jax.random.normal(key, jnp.shape(leaf), jnp.result_type(leaf))
        for key, leaf in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, tangents)


def _tangent(step: Step, primals: tuple[Any, ...], tangents: tuple[Any, ...]) -> StepResult:
    return jax.jvp(step, primals, tangents)[1]


def _compare(
    name: str,
    got: StepResult,
    want: StepResult,
    t: int,
    what: str,
    tolerance: tuple[float, float],
) -> None:
    """Raises naming ``name`` where ``got`` and ``want`` (each ``(carry, y)``) differ in
    structure or shape, or beyond ``tolerance`` (``rtol, atol``): at the largest difference."""
    worst: tuple[float, str, Any, Any] | None = None
    for part, got_part, want_part in (("the carry", got[0], want[0]), ("y", got[1], want[1])):
        if jax.tree.structure(got_part) != jax.tree.structure(want_part):  # type: ignore[operator]
            raise CellCheckError(
                f"{WHERE}: {name} disagrees with step: {part} {_describe(got_part)}, step's"
                f" {_describe(want_part)}, at time step {t}"
            )
        for (path, want_leaf), got_leaf in zip(
            jax.tree_util.tree_leaves_with_path(want_part), jax.tree.leaves(got_part), strict=True
        ):
            where = f"{part}{jax.tree_util.keystr(path)}"
            got_leaf, want_leaf = (
                np.asarray(got_leaf, np.float64),
                np.asarray(want_leaf, np.float64),
            )
            if got_leaf.shape != want_leaf.shape:
                raise CellCheckError(
                    f"{WHERE}: {name} disagrees with step: {where} has shape {got_leaf.shape},"
                    f" step's {want_leaf.shape}, at time step {t}"
                )
            difference = np.nan_to_num(np.abs(got_leaf - want_leaf), nan=np.inf)
            outside = not _within(difference, want_leaf, tolerance)
            if outside and (worst is None or difference.max() > worst[0]):
                worst = (float(difference.max()), where, got_leaf, want_leaf)
    if worst is not None:
        largest, where, got_leaf, want_leaf = worst
        index = np.unravel_index(np.argmax(np.abs(got_leaf - want_leaf)), got_leaf.shape)
        raise CellCheckError(
            f"{WHERE}: {name} disagrees with step: max |difference| {largest:.3g} in {where}"
            f" (at index {tuple(map(int, index))}: {got_leaf[index]:.6g} against step's"
            f" {want_leaf[index]:.6g}), time step {t}, {what}"
        )


def _within(difference: np.ndarray, want: np.ndarray, tolerance: tuple[float, float]) -> bool:
    rtol, atol = tolerance
    return bool((difference <= atol + rtol * np.abs(want)).all())


def _check_jacobian(
    cell: Cell, params: Params, carry: Carry, x: Array, t: int, tolerance: tuple[float, float]
) -> None:
    """``diagonal_jacobian``'s Jacobian against ``jax.jacfwd`` of ``step`` per example: the
    blocks on the diagonal equal, and nothing off it (a step that mixes units has no
    diagonal Jacobian)."""
    assert cell.diagonal_jacobian is not None
    leaves, treedef = jax.tree.flatten(carry)
    batch, hidden, k = leaves[0].shape[:-1], leaves[0].shape[-1], len(leaves)
    if any(leaf.shape != leaves[0].shape for leaf in leaves):
        raise CellCheckError(
            f"{WHERE}: diagonal_jacobian needs a carry of arrays of one shape [*batch, H];"
            f" got {_describe(carry)}"
        )
    stacked = jnp.stack(leaves, axis=-1).reshape(-1, hidden, k)
    xs = x.reshape(-1, x.shape[-1])

    def one_example(s: Array, x_n: Array) -> Array:
        def new_state(s: Array) -> Array:
            old = jax.tree.unflatten(treedef, [s[None, :, j] for j in range(k)])
            new, _ = cell.step(params, old, x_n[None])
            return jnp.stack([leaf[0] for leaf in jax.tree.leaves(new)], axis=-1)

        return jax.jacfwd(new_state)(s)  # [H, k, H, k]

    full = jax.vmap(one_example)(stacked, xs)
    units = jnp.arange(hidden)
    blocks = full[:, units, :, units, :]  # [H, N, k, k]: vmap's advanced indexing first
    blocks = jnp.moveaxis(blocks, 0, 1).reshape(*batch, hidden, k, k)
    (_, _), jacobian = cell.diagonal_jacobian.step(params, carry, x)
    got, want = ((), jacobian), ((), blocks)
    _compare("diagonal_jacobian", got, want, t, "jacobian against jax.jacfwd of step", tolerance)
    off_diagonal = full.at[:, units, :, units, :].set(0)
    largest = float(jnp.max(jnp.abs(off_diagonal))) if off_diagonal.size else 0.0
    if largest > tolerance[1]:
        raise CellCheckError(
            f"{WHERE}: diagonal_jacobian disagrees with step: step's Jacobian is not"
            f" block-diagonal over the hidden units: |d carry'[u] / d carry[v]| up to"
            f" {largest:.3g} for u != v, at time step {t}"
        )
