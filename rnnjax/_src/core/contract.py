"""The cell contract: what :func:`rnnjax.rnn`, the layers and the modules ask of a cell.

A :class:`Cell` is an immutable bundle of pure functions (the optax pattern). Five are
required and describe any recurrent cell, whatever pytrees its params and carry are:
``init``, ``initial_carry``, ``step``, ``input_size`` and ``output``. The driver and the layers
read params and carries through these functions only, so a cell with a plain dict for its
params and another for its carry runs everywhere a built-in cell runs.

Optional capabilities are one field each, ``None`` when the cell lacks them:

* ``projection`` (:class:`Projection`): the step split at its input projection, so the
  projection of every time step can run as one large matmul before the scan; the same split
  takes a recurrent dropout mask. :func:`rnnjax.layer`'s ``recurrent_dropout`` needs it.
* ``gate_split`` (:class:`GateSplit`): the recurrent part split once more into its matmul and
  its elementwise gates: :func:`rnnjax.rnn` then differentiates the cell with a tangent rule
  that JAX transposes into a hand-scheduled backward pass (weight gradients as large matmuls
  after the reverse scan). Needs ``projection``.
* ``linear_scan`` (:class:`LinearScan`): a recurrence linear in the state, which
  :func:`rnnjax.rnn` runs as :func:`rnnjax.linear_recurrence` over all steps at once.
* ``diagonal_jacobian`` (:class:`DiagonalJacobian`): a step that also returns its Jacobian
  with respect to the carry, block-diagonal over the hidden units, with which
  ``rnnjax.rnn(..., parallel="newton")`` solves the whole sequence by Newton's method.

The field types are :class:`~typing.Protocol` classes, so a type checker checks a custom
cell's functions against them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, Protocol

import jax
from jax.typing import DTypeLike

Array = jax.Array
Params = Any
"""A cell's parameters: any pytree of arrays (the built-in cells use NamedTuples)."""
Carry = Any
"""A cell's recurrent state: any pytree of ``[*batch, ...]`` arrays (:class:`LSTMState` for the
LSTM, one array for the GRU and the vanilla RNN)."""
BatchShape = int | Sequence[int]


class InitFn(Protocol):
    """``init(key, input_size, dtype=float32) -> params``.

    ``input_size`` and ``dtype`` may be passed by keyword (``cell.init(key, input_size=8)``),
    so a cell's ``init`` gives its parameters those names.
    """

    def __call__(self, key: Array, /, input_size: int, dtype: DTypeLike = ...) -> Params: ...


class InitialCarryFn(Protocol):
    """``initial_carry(params, batch_shape, dtype=None) -> carry``, the state before step 0.

    ``dtype`` is the floating dtype of the state; ``None`` means the params' own.
    """

    def __call__(
        self, params: Params, batch_shape: BatchShape, dtype: DTypeLike | None = ..., /
    ) -> Carry: ...


class StepFn(Protocol):
    """``step(params, carry, x_t) -> (carry, y_t)``: one time step, ``x_t [*batch, input]``."""

    def __call__(self, params: Params, carry: Carry, x: Array, /) -> tuple[Carry, Array]: ...


class InputSizeFn(Protocol):
    """``input_size(params) -> int``: the feature size ``x_t`` must have.

    It is also where a cell checks that ``params`` are its own: a built-in cell raises a
    ``ValueError`` naming the shapes it expected and those it got.
    """

    def __call__(self, params: Params, /) -> int: ...


class OutputFn(Protocol):
    """``output(carry) -> h [*batch, hidden]``: the part of the carry a step emits as ``y_t``
    and feeds back into the recurrent matmul (the LSTM's ``carry.h``)."""

    def __call__(self, carry: Carry, /) -> Array: ...


class ProjectFn(Protocol):
    """``project(params, xs) -> projected``: the input projection, any number of leading axes."""

    def __call__(self, params: Params, xs: Array, /) -> Array: ...


class ProjectedStepFn(Protocol):
    """``step(params, carry, projected_t, recurrent_mask) -> (carry, y_t)``.

    ``recurrent_mask`` is ``None`` or a ``[*batch, hidden]`` array that multiplies ``h`` where
    it enters the recurrent matmuls only (Keras's recurrent dropout).
    """

    def __call__(
        self, params: Params, carry: Carry, projected: Array, recurrent_mask: Array | None, /
    ) -> tuple[Carry, Array]: ...


class RecurrentFn(Protocol):
    """``recurrent(params, h) -> [..., width]``: the recurrent matmul, any leading axes."""

    def __call__(self, params: Params, h: Array, /) -> Array: ...


class CombineFn(Protocol):
    """``combine(projected, recurrent) -> z``: linear in both; the pre-activations, an array
    or any pytree of ``[*batch, ...]`` arrays (the GRU's is a tuple of three, so that no step
    concatenates them)."""

    def __call__(self, projected: Array, recurrent: Array, /) -> Any: ...


class GatesFn(Protocol):
    """``gates(params, carry, z) -> (carry, y_t)``: the elementwise rest of a step.

    ``params`` are the cell's, for gates with weights of their own (a peephole LSTM's
    peephole vectors, a layer-normalised LSTM's gain and bias); most gates ignore them.
    """

    def __call__(self, params: Params, carry: Carry, z: Any, /) -> tuple[Carry, Array]: ...


class Projection(NamedTuple):
    """Capability: a step split at its input projection.

    ``cell.step(p, c, x) == projection.step(p, c, projection.project(p, x), None)``, so the
    driver may run ``project`` over all time steps at once (one large matmul) and scan
    ``projection.step`` alone.

    Attributes:
      project: :class:`ProjectFn`, e.g. ``xs @ kernel + bias``.
      step: :class:`ProjectedStepFn`, the recurrent part of the step.
    """

    project: ProjectFn
    step: ProjectedStepFn


class GateSplit(NamedTuple):
    """Capability: the recurrent part split into a matmul and elementwise gates.

    ``projection.step(p, c, u, m) == gates(p, c, combine(u, recurrent(p, output(c) * m)))``, and
    ``combine`` is linear. :func:`rnnjax.rnn`'s tangent rule scans the tangent of ``gates``
    and runs ``project`` and ``recurrent`` over all steps at once; its transpose, reverse
    mode, is the hand-scheduled backward pass.

    Attributes:
      recurrent: :class:`RecurrentFn`, ``h @ recurrent_kernel`` (plus any recurrent bias).
      combine: :class:`CombineFn`; ``z`` may be an array or a pytree of arrays.
      gates: :class:`GatesFn`, the elementwise rest of the step: ``(params, carry, z) ->
        (carry, y)``.
    """

    recurrent: RecurrentFn
    combine: CombineFn
    gates: GatesFn


class CoefficientsFn(Protocol):
    """``coefficients(params, xs) -> (a, b)``: ``xs [..., input]`` to ``a, b [..., hidden]``."""

    def __call__(self, params: Params, xs: Array, /) -> tuple[Array, Array]: ...


class StartFn(Protocol):
    """``start(params, xs) -> h``: the state at a document start, ``xs [..., input]`` to ``h
    [..., hidden]`` (the carry before it is ignored)."""

    def __call__(self, params: Params, xs: Array, /) -> Array: ...


class LinearScan(NamedTuple):
    """Capability: a recurrence linear in the state, ``h_t = a_t * h_{t-1} + b_t``, with ``a_t``
    and ``b_t`` computed from the inputs alone (minGRU, minLSTM).

    The carry is ``h`` itself and ``step(p, h, x) == (a * h + b, a * h + b)`` with ``(a, b) =
    coefficients(p, x)``, so the driver may compute every step's coefficients at once and run
    :func:`rnnjax.linear_recurrence` over them. ``a`` and ``b`` may be complex ``[..., N]``
    for a real carry ``[*batch, 2N]`` holding the real parts, then the imaginary parts
    (:func:`rnnjax.lru`): the driver runs the recurrence in complex arithmetic.

    Attributes:
      coefficients: :class:`CoefficientsFn`, ``(params, xs) -> (a, b)`` for any number of
        steps at once.
      start: optional :class:`StartFn`. Given, :func:`rnnjax.rnn` sets ``h_t = start(p, x_t)``
        at each document start: each step with ``resets``, and the first step processed when
        it starts from the cell's own initial carry (``initial_carry=None``), where ``step``
        is ``h_t = a_t * 0 + b_t`` otherwise (:func:`rnnjax.rg_lru`'s
        ``document_starts="recurrentgemma"``). ``cell.step`` alone is the ordinary step.
    """

    coefficients: CoefficientsFn
    start: StartFn | None = None


class JacobianStepFn(Protocol):
    """``step(params, carry, x_t) -> ((carry, y_t), jacobian)``.

    With the carry's ``k`` leaves (each ``[*batch, H]``, in ``jax.tree.leaves`` order) stacked
    as ``s [*batch, H, k]``, ``jacobian [*batch, H, k, k]`` holds ``d s'[..., u, i] / d s[...,
    u, j]`` per hidden unit ``u``: the derivative of the new carry with respect to the old one,
    which is zero between different units. For a one-array carry (``k = 1``) it is the
    diagonal of the Jacobian.
    """

    def __call__(
        self, params: Params, carry: Carry, x: Array, /
    ) -> tuple[tuple[Carry, Array], Array]: ...


class DiagonalJacobian(NamedTuple):
    """Capability: a recurrence whose Jacobian with respect to the carry is block-diagonal over
    the hidden units (IndRNN, ParaGRU, ParaLSTM), so Newton's method for the whole sequence
    needs only linear recurrences of ``[k, k]`` blocks.

    ``step(p, c, x)[0] == cell.step(p, c, x)``.

    Attributes:
      step: :class:`JacobianStepFn`, the step that also returns the Jacobian's diagonal blocks.
    """

    step: JacobianStepFn


class _CellFields(NamedTuple):
    """The fields of :class:`Cell`, which checks them when it is made."""

    init: InitFn
    initial_carry: InitialCarryFn
    step: StepFn
    input_size: InputSizeFn
    output: OutputFn
    projection: Projection | None = None
    gate_split: GateSplit | None = None
    linear_scan: LinearScan | None = None
    diagonal_jacobian: DiagonalJacobian | None = None


class Cell(_CellFields):
    """A recurrent cell: an immutable bundle of pure functions (the optax pattern).

    Attributes:
      init: :class:`InitFn`, ``(key, input_size, dtype=jnp.float32) -> params``.
      initial_carry: :class:`InitialCarryFn`, ``(params, batch_shape, dtype=None) -> carry``.
      step: :class:`StepFn`, ``(params, carry, x_t) -> (carry, y_t)``; ``x_t [*batch,
        input_size]``, ``y_t [*batch, hidden]``.
      input_size: :class:`InputSizeFn`, ``(params) -> int``, checking the params.
      output: :class:`OutputFn`, ``(carry) -> h``, what a ``Dense`` head reads from a final carry.
      projection: optional :class:`Projection`, the input projection apart from the step
        (what ``hoist_projection`` runs over all steps at once).
      gate_split: optional :class:`GateSplit`, the split the fast backward pass needs; it
        needs ``projection``, and a cell made with ``gate_split`` and no ``projection`` is
        refused (a ``ValueError``).
      linear_scan: optional :class:`LinearScan`, the linear recurrence ``parallel`` runs.
      diagonal_jacobian: optional :class:`DiagonalJacobian`, what Newton's method needs.

    The kit builds cells with their capabilities from their parts
    (:func:`rnnjax.gated_cell`, :func:`rnnjax.linear_scan_cell`, :func:`rnnjax.diagonal_cell`,
    :func:`rnnjax.cell_factory`), and :func:`rnnjax.check_cell` checks that every
    capability agrees with ``step``.

    Example: a cell the library does not ship, params and carry plain dicts
    (an IndRNN, ``h' = relu(x W + u * h + b)``):

      >>> import jax, jax.numpy as jnp, rnnjax
      >>> def init(key, input_size, dtype=jnp.float32):
      ...     return {"w": jax.random.normal(key, (input_size, 4), dtype) / 2,
      ...             "u": jnp.full((4,), 0.5, dtype), "b": jnp.zeros((4,), dtype)}
      >>> def initial_carry(params, batch_shape, dtype=None):
      ...     shape = (batch_shape,) if isinstance(batch_shape, int) else tuple(batch_shape)
      ...     return {"h": jnp.zeros((*shape, 4), dtype or params["u"].dtype)}
      >>> def step(params, carry, x):
      ...     h = jax.nn.relu(x @ params["w"] + params["u"] * carry["h"] + params["b"])
      ...     return {"h": h}, h
      >>> indrnn = rnnjax.Cell(init, initial_carry, step,
      ...                      input_size=lambda params: params["w"].shape[0],
      ...                      output=lambda carry: carry["h"])
      >>> params = indrnn.init(jax.random.key(0), 3)
      >>> carry, ys = rnnjax.rnn(indrnn, params, jnp.ones((2, 5, 3)), seq_lengths=jnp.array([5, 2]))
      >>> ys.shape, carry["h"].shape
      ((2, 5, 4), (2, 4))
    """

    __slots__ = ()

    def __new__(
        cls,
        init: InitFn,
        initial_carry: InitialCarryFn,
        step: StepFn,
        input_size: InputSizeFn,
        output: OutputFn,
        projection: Projection | None = None,
        gate_split: GateSplit | None = None,
        linear_scan: LinearScan | None = None,
        diagonal_jacobian: DiagonalJacobian | None = None,
    ) -> Cell:
        if gate_split is not None and projection is None:
            raise ValueError(
                "rnnjax.Cell: gate_split needs projection (its gates take the step's projected"
                " input, projection.project(params, x)); got gate_split and projection=None:"
                " give the cell a Projection too, or build it with rnnjax.gated_cell"
            )
        fields = (projection, gate_split, linear_scan, diagonal_jacobian)
        return super().__new__(cls, init, initial_carry, step, input_size, output, *fields)

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> Cell:  # type: ignore[override]
        """A cell from its fields, checked as :class:`Cell` checks them (``_replace`` too)."""
        return cls(*iterable)


class Layer(NamedTuple):
    """A sequence layer: an immutable bundle of pure functions (the optax pattern).

    Attributes:
      init: ``(key, input_size) -> params``, a pytree of arrays.
      apply: ``(params, xs, *, seq_lengths=None, initial_carry=None, key=None,
        deterministic=True) -> (final_carry, ys)`` with ``xs [*batch, time, input_size]``,
        ``seq_lengths`` integer ``[*batch]`` and ``ys [*batch, time, output_size]``, zero past
        each sequence's length. ``key`` draws the dropout masks; it is needed only when
        ``deterministic=False`` and some dropout rate is positive.
      flip: ``() -> Layer``, the same layer running the other way in time, which
        :func:`rnnjax.bidirectional` uses as its default backward layer; ``None`` where there
        is no such layer.
    """

    init: Callable[[Array, int], Params]
    apply: Callable[..., tuple[Carry, Any]]
    flip: Callable[[], Layer] | None = None
