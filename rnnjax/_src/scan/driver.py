"""``rnn``: drives a cell over a sequence with ``jax.lax.scan``, with masking, resets and reversal.

The driver knows a cell through the contract alone (:mod:`rnnjax._src.core.contract`): the input
size and the params' check from ``cell.input_size``, the state from ``cell.initial_carry``, its
dtype and the output's from ``cell.output``. Capabilities choose the numerics path: a cell with
a ``projection`` may have its input projection hoisted out of the scan, and one with a
``gate_split`` may take the hand-scheduled backward pass (:mod:`rnnjax._src.scan.fused`).
"""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src.core.checks import check_carry, check_seq_lengths, input_size_of, shape_error
from rnnjax._src.core.contract import Carry, Cell, Params
from rnnjax._src.core.removed import refuses_removed
from rnnjax._src.core.settings import LayerSettings
from rnnjax._src.core.validate import check_bool, check_cell
from rnnjax._src.linear.recurrence import (
    default_method,
    merge_complex,
    scan_time_leading,
    split_complex,
)
from rnnjax._src.newton.entry import check_newton, default_newton, newton_scan, newton_settings
from rnnjax._src.scan.cudnn import check_backend, check_backend_inputs, cudnn_scan, uses_cudnn
from rnnjax._src.scan.fused import fused_scan
from rnnjax._src.scan.updates import advance, reset, select

Array = jax.Array


def check_xs(
    cell: Cell, params: Params, xs: Any, time_major: bool, where: str = "rnnjax.rnn"
) -> tuple[int, tuple[int, ...]]:
    """Returns ``(time, batch_shape)`` after checking the params (floating, and the cell's
    own by ``cell.input_size``) and the rank, dtype and feature size of ``xs``."""
    layout = "[time, *batch, features]" if time_major else "[*batch, time, features]"
    input_size = input_size_of(where, cell, params)
    expected = layout.replace("features", str(input_size))
    if not hasattr(xs, "shape") or not hasattr(xs, "dtype") or jnp.ndim(xs) < 2:
        actual = getattr(xs, "shape", type(xs))
        raise shape_error("xs", f"{expected} (rank >= 2)", actual, where)
    if not jnp.issubdtype(xs.dtype, jnp.floating):
        raise TypeError(
            f"{where}: xs must be real floating point; got dtype {xs.dtype} with shape"
            f" {xs.shape} (embed integer tokens first)"
        )
    if xs.shape[-1] != input_size:
        raise shape_error("xs", f"{expected} (features = the params' input size)", xs.shape, where)
    return time_and_batch(xs, time_major)


def time_and_batch(xs: Array, time_major: bool) -> tuple[int, tuple[int, ...]]:
    """``(time, batch_shape)`` of ``xs`` in its layout."""
    if time_major:
        return xs.shape[0], tuple(xs.shape[1:-1])
    return xs.shape[-2], tuple(xs.shape[:-2])


def _check_resets(resets: Any, xs: Array, time_major: bool) -> Array:
    if getattr(resets, "shape", None) != xs.shape[:-1]:
        layout = "[time, *batch]" if time_major else "[*batch, time]"
        raise shape_error(
            "resets",
            f"{layout} = {xs.shape[:-1]} (xs without features)",
            getattr(resets, "shape", type(resets)),
        )
    if jnp.asarray(resets).dtype != jnp.bool_:
        raise TypeError(f"rnnjax.rnn: resets must be boolean; got dtype {resets.dtype}")
    return jnp.asarray(resets)


def carry_dtype(cell: Cell, params: Params, xs: Array, batch_shape: tuple[int, ...]) -> Any:
    """The default carry's dtype: the cell's state dtype promoted with that of ``xs``."""
    h = jax.eval_shape(lambda: cell.output(cell.initial_carry(params, batch_shape)))
    return jnp.result_type(xs.dtype, h.dtype)


def default_hoist() -> bool:
    """Whether ``rnn`` hoists the input projection out of the scan when not told.

    On XLA's CPU backend the per-step projection measured faster (LSTM, B64 T256 I256 H256,
    forward+backward: 404 ms per-step against 669 ms hoisted; see benchmarks/README.md), so
    the CPU keeps it inside the step; accelerators hoist it into one large matmul.
    """
    return jax.default_backend() != "cpu"


def check_capabilities(where: str, cell: Cell, settings: LayerSettings) -> None:
    """Settings that need a capability the cell lacks, or that its path would ignore; and
    ``backend="cudnn"`` where cuDNN cannot serve the cell, the settings or this machine."""
    check_backend(where, cell, settings)
    if settings.hoist_projection and cell.projection is None:
        raise ValueError(
            f"{where}: hoist_projection=True needs a cell with the `projection` capability;"
            " this cell has none"
        )
    if settings.parallel == "newton":
        check_newton(cell, bool(settings.remat), where)
    if settings.parallel is True and cell.linear_scan is None:
        raise ValueError(
            f"{where}: parallel=True needs a cell with the `linear_scan` capability (the"
            " built-in ones: min_gru, min_lstm, lru, rg_lru); this cell has none"
        )
    unroll = settings.unroll
    unrolled = unroll is True or (not isinstance(unroll, bool) and unroll != 1)
    if cell.linear_scan is not None and settings.parallel is not False and unrolled:
        raise ValueError(
            f"{where}: unroll={unroll!r} applies to a sequential scan, and this cell runs over"
            " all steps at once (its `linear_scan`); pass parallel=False to step it"
        )


def _choose_step(cell: Cell, hoist_projection: bool | None) -> bool:
    if hoist_projection is None:
        return cell.projection is not None and default_hoist()
    return bool(hoist_projection)


@refuses_removed("rnnjax.rnn")
def rnn(
    cell: Cell,
    params: Params,
    xs: Array,
    *,
    initial_carry: Carry | None = None,
    seq_lengths: Array | None = None,
    resets: Array | None = None,
    reverse: bool = False,
    time_major: bool = False,
    unroll: int | bool = 1,
    remat: bool = False,
    hoist_projection: bool | None = None,
    parallel: bool | Literal["newton"] | None = None,
    backend: Literal["auto", "xla", "cudnn"] = "auto",
) -> tuple[Carry, Array]:
    """Runs ``cell`` over the time axis of ``xs``: one ``lax.scan``, any JAX transformation.

    Args:
      cell: a :class:`~rnnjax.Cell`, e.g. ``rnnjax.lstm(128)``, or one of your own.
      params: the cell's params, from ``cell.init``.
      xs: ``[*batch, time, features]``, or ``[time, *batch, features]`` with
        ``time_major=True``; ``*batch`` is any number of axes, none included.
      initial_carry: the carry before the first step processed, ``[*batch, hidden]`` per
        array (an :class:`~rnnjax.LSTMState` for the LSTM: a plain tuple is refused, as its
        order is ambiguous). Default
        ``cell.initial_carry`` (zeros).
      seq_lengths: integer ``[*batch]``. Steps ``t >= seq_lengths[b]`` are padding: they emit
        zeros, leave the carry unchanged, and their values never change any output, carry or
        gradient (even when they are NaN). Default: every step is valid.
      resets: boolean ``[*batch, time]`` (``[time, *batch]`` with ``time_major``). Where
        ``resets[b, t]``, the carry entering step ``t`` is ``cell.initial_carry`` (zeros),
        whatever came before: sequences packed end to end, each starting with a reset, run
        as if alone (Haiku's ``ResetCore``). With ``reverse``, "entering" is in processing
        order. Gradients do not flow across a reset. A cell with a document-start rule
        (``rnnjax.rg_lru(H, document_starts="recurrentgemma")``) applies it at each reset, and
        at the first step processed when ``initial_carry`` is not given.
      reverse: run each sequence's valid part from its last valid step back to step 0 (what
        PyTorch's packed bidirectional does). Outputs stay at their original positions and
        the final carry is the one after step 0.
      time_major: the layout of ``xs`` and ``ys``.
      unroll: passed to ``lax.scan``.
      remat: recompute each step's gate activations in the backward pass
        (``jax.checkpoint``), keeping only the carries: less memory, a little more compute.
      hoist_projection: run the input projection ``xs @ kernel + bias`` for all steps as one
        matmul before the scan (``True``) or inside each step (``False``). Both give the
        same values to float32 rounding. Default ``None``: hoisted on accelerators, per step
        on CPU, where it measured faster; a cell without the ``projection`` capability
        always projects per step.
      parallel: for a cell with the ``linear_scan`` capability (:func:`rnnjax.min_gru`,
        :func:`rnnjax.min_lstm`, :func:`rnnjax.lru`, :func:`rnnjax.rg_lru`): compute every
        step's coefficients at once and run
        :func:`rnnjax.linear_recurrence` over them (``None``, the default, or ``True``), or
        step the cell one token at a time (``False``). Same values and gradients to float32
        rounding. ``"newton"``: for a cell with the ``diagonal_jacobian`` capability, solve
        all steps at once by Newton's method, each iteration one linear recurrence, with the
        default tolerance and cap and the sequential scan as fallback
        (:func:`rnnjax.newton_rnn` gives the options, quasi-Newton for dense cells and the
        iteration count). ``None`` chooses Newton for such cells on accelerators from 2048
        steps on, the sequential scan on CPU (measured faster there).
      backend: ``"xla"`` runs ``lax.scan`` (every device); ``"cudnn"`` runs a plain
        :func:`rnnjax.lstm` through cuDNN's LSTM on an NVIDIA GPU (float32; not with
        ``resets``, ``remat``, ``unroll`` or ``hoist_projection``; gradients by cuDNN's own
        backward pass, no forward mode), and raises a ``ValueError`` naming the reason where
        it cannot serve; ``"auto"`` (default) is ``"xla"`` until a device run measures cuDNN
        faster.

    Returns:
      ``(final_carry, ys)``: the carry after the last valid step of each sequence (the
      initial carry where the length is 0), and the outputs ``[*batch, time, hidden]`` (or
      time-major), zero past each sequence's length. The carry keeps the dtype of the initial
      carry, which by default is that of ``xs`` and ``params`` promoted together.

    Raises:
      ValueError, TypeError: at trace time, naming the argument and the expected and actual
        shapes, for params that are not the cell's, a wrong rank, feature size, carry,
        ``seq_lengths`` or ``resets``; for a capability the cell lacks; and for
        ``backend="cudnn"`` where cuDNN cannot serve (another cell, a setting it lacks, a
        dtype other than float32, no CUDA GPU).

    Differentiation:
      A cell with the ``gate_split`` capability (``cell.gate_split is not None``: most
      built-in kinds with a recurrent matmul or a diagonal recurrence, and a cell of your own
      that declares it) runs under a ``jax.custom_jvp`` whose tangent rule computes
      the weights' and inputs' tangents as large matmuls over all steps and scans only the
      state's tangent. JAX transposes it into a hand-scheduled backward pass (a reverse scan
      of the state's cotangent, then the weight gradients as three large matmuls), faster
      than autodiff of the scan, while ``jax.jvp``, ``jax.jacfwd``, ``jax.hessian`` and
      ``grad`` of ``grad`` work as for any JAX function. Cells without it (``gru(
      reset_after=False)``, whose reset gate acts before its second matmul, and custom cells
      without ``gate_split``) are differentiated by plain autodiff of the scan;
      ``linear_scan`` cells through :func:`rnnjax.linear_recurrence`'s own tangent rule.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.lstm(8)
      >>> params = cell.init(jax.random.key(0), input_size=3)
      >>> xs = jnp.ones((2, 5, 3))                       # [batch, time, features]
      >>> carry, ys = rnnjax.rnn(cell, params, xs, seq_lengths=jnp.array([5, 2]))
      >>> ys.shape, carry.h.shape                        # outputs, final hidden state
      ((2, 5, 8), (2, 8))
      >>> bool((ys[1, 2:] == 0).all())                   # zeros past the length
      True
    """
    where = "rnnjax.rnn"
    settings = LayerSettings(
        reverse=reverse, unroll=unroll, remat=remat, hoist_projection=hoist_projection,
        parallel=parallel, backend=backend,
    ).checked(where)  # fmt: skip
    if settings.remat == "segments":
        raise ValueError(
            f"{where}: remat='segments' is a layer's setting: rnnjax.layer(cell, remat='segments')"
        )
    time_major = check_bool(where, "time_major", time_major)
    check_capabilities(where, check_cell(where, cell), settings)
    check_xs(cell, params, xs, time_major)
    check_backend_inputs(where, settings, params, xs, initial_carry, resets)
    return run(
        cell, params, jnp.asarray(xs), settings, time_major=time_major,
        initial_carry=initial_carry, seq_lengths=seq_lengths, resets=resets,
    )  # fmt: skip


def run(
    cell: Cell,
    params: Params,
    xs: Array,
    settings: LayerSettings,
    *,
    time_major: bool = False,
    initial_carry: Carry | None = None,
    seq_lengths: Array | None = None,
    resets: Array | None = None,
) -> tuple[Carry, Array]:
    """:func:`rnn` after its checks of the cell, the settings and ``xs`` (layers call it
    with their own checked settings); the carry, lengths and resets are checked here."""
    scan = time_leading(cell, params, xs, time_major, initial_carry, seq_lengths, resets)
    inputs, valid, flags, fresh, carry, time_axis = scan
    time = inputs.shape[0]
    reverse, unroll, remat = settings.reverse, settings.unroll, bool(settings.remat)
    parallel = settings.parallel
    if cell.linear_scan is not None and cell.linear_scan.start is not None:
        flags = _document_starts(flags, valid, inputs.shape[:-1], initial_carry is None, reverse)
    initial_carry = carry
    if uses_cudnn(cell, settings):
        lengths = None if seq_lengths is None else jnp.asarray(seq_lengths)
        final_carry, ys = cudnn_scan(params, inputs, initial_carry, lengths, reverse)
    elif parallel == "newton" or (parallel is None and default_newton(cell, time, remat)):
        newton = newton_settings(cell, initial_carry, remat, unroll)
        final_carry, ys, _ = newton_scan(
            cell, newton, params, initial_carry, inputs, valid, flags, fresh, reverse
        )
    elif _choose_parallel(cell, parallel):
        final_carry, ys = _run_linear(
            cell, params, inputs, initial_carry, fresh, valid, flags, reverse, remat
        )
    elif cell.projection is not None and cell.gate_split is not None:
        hoist = _choose_step(cell, settings.hoist_projection)
        final_carry, ys = fused_scan(
            cell, reverse, unroll, remat, hoist, params, initial_carry, inputs, valid, flags, fresh
        )
    else:
        step, inputs = _step_and_inputs(cell, params, inputs, settings.hoist_projection, remat)
        final_carry, ys = _run_steps(
            cell, step, params, TimeLeading(inputs, valid, flags, fresh, initial_carry, 0),
            reverse, unroll,
        )  # fmt: skip
    return final_carry, jnp.moveaxis(ys, 0, time_axis)


def _run_steps(
    cell: Cell, step: Any, params: Params, scan: TimeLeading, reverse: bool, unroll: int | bool
) -> tuple[Carry, Array]:
    """``step`` over ``scan.inputs`` in one ``lax.scan``: a reset (or, for a cell with a
    ``start`` rule, a document start) before a step, padding after it."""
    start = None if cell.linear_scan is None else cell.linear_scan.start
    output_dtype = cell.output(scan.initial_carry).dtype

    def body(carry: Carry, inputs_t: tuple[Array, Any, Any]) -> tuple[Carry, Array]:
        x_t, valid_t, reset_t = inputs_t
        new_carry, y = step(params, reset(carry, scan.fresh, reset_t), x_t)
        if start is not None and reset_t is not None:  # a document start: h = start(x)
            new_carry = y = select(reset_t, start(params, x_t).astype(y.dtype), y)
        return advance(carry, new_carry, y, valid_t, output_dtype)

    inputs = (scan.inputs, scan.valid, scan.flags)
    return jax.lax.scan(body, scan.initial_carry, inputs, reverse=reverse, unroll=unroll)


def _document_starts(
    resets: Array | None,
    valid: Array | None,
    shape: tuple[int, ...],
    from_fresh: bool,
    reverse: bool,
) -> Array | None:
    """The steps ``[time, *batch]`` where a cell with a ``start`` rule starts a document: the
    resets, and with ``from_fresh`` the first step processed (step 0, or with ``reverse`` the
    last valid step)."""
    if not from_fresh:
        return resets
    steps = jnp.arange(shape[0]).reshape((shape[0],) + (1,) * (len(shape) - 1))
    first = jnp.broadcast_to(steps == (shape[0] - 1 if reverse else 0), shape)
    if reverse and valid is not None:  # valid here, not at the next step
        first = valid & ~jnp.concatenate([valid[1:], jnp.zeros_like(valid[:1])])
    return first if resets is None else first | resets


class TimeLeading(NamedTuple):
    """What a scan over time reads, time on the leading axis: ``inputs [time, *batch,
    features]`` (padding zeroed), ``valid`` and ``flags`` (resets) ``[time, *batch]`` or
    ``None``, the cell's ``fresh`` carry, the checked ``initial_carry`` and where time sits in
    the caller's layout."""

    inputs: Array
    valid: Array | None
    flags: Array | None
    fresh: Carry
    initial_carry: Carry
    time_axis: int


def time_leading(
    cell: Cell,
    params: Params,
    xs: Array,
    time_major: bool,
    initial_carry: Carry | None,
    seq_lengths: Any,
    resets: Any,
    where: str = "rnnjax.rnn",
) -> TimeLeading:
    """``xs`` and its lengths, resets and carry as a scan over time reads them; the carry,
    lengths and resets are checked here (``xs`` was, by :func:`check_xs`)."""
    time, batch_shape = time_and_batch(xs, time_major)
    fresh = cell.initial_carry(params, batch_shape, carry_dtype(cell, params, xs, batch_shape))
    if initial_carry is None:
        initial_carry = fresh
    else:
        initial_carry = check_carry(initial_carry, jax.eval_shape(lambda: fresh), where)
    time_axis = 0 if time_major else len(batch_shape)
    inputs, valid = _time_leading(xs, seq_lengths, time_axis, time, batch_shape)
    flags = None
    if resets is not None:
        flags = jnp.moveaxis(_check_resets(resets, xs, time_major), time_axis, 0)
    return TimeLeading(inputs, valid, flags, fresh, initial_carry, time_axis)


def _choose_parallel(cell: Cell, parallel: bool | str | None) -> bool:
    return cell.linear_scan is not None and parallel is not False


def _run_linear(
    cell: Cell,
    params: Params,
    inputs: Array,
    initial: Array,
    fresh: Array,
    valid: Array | None,
    flags: Array | None,
    reverse: bool,
    remat: bool,
) -> tuple[Array, Array]:
    """A ``linear_scan`` cell over all steps: its coefficients at once, then the recurrence."""
    assert cell.linear_scan is not None
    coefficients = cell.linear_scan.coefficients
    if remat:
        coefficients = jax.checkpoint(coefficients, prevent_cse=False)
    a, b = coefficients(params, inputs)
    state, start = initial, fresh
    if jnp.iscomplexobj(a):  # the carry holds real parts, then imaginary parts (the LRU)
        state, start = split_complex(initial), split_complex(fresh)
    if flags is not None:  # a reset step starts from ``fresh``: h = a * fresh + b
        flag = flags[..., None]
        b = jnp.where(flag, a * start[None] + b, b)
        if cell.linear_scan.start is not None:  # or, with a start rule, h = start(x)
            b = jnp.where(flag, cell.linear_scan.start(params, inputs).astype(b.dtype), b)
        a = jnp.where(flag, jnp.zeros_like(a), a)
    method = default_method()
    final, hs = scan_time_leading(a, b, state, valid, reverse=reverse, method=method)
    if jnp.iscomplexobj(a):
        final, hs = merge_complex(final), merge_complex(hs)
    return final.astype(initial.dtype), hs.astype(initial.dtype)


def _time_leading(
    xs: Array, seq_lengths: Any, time_axis: int, time: int, batch_shape: tuple[int, ...]
) -> tuple[Array, Array | None]:
    """``xs`` as the scan reads it, ``[time, *batch, features]`` with padding zeroed, and the
    validity mask ``[time, *batch]`` (``None`` without ``seq_lengths``)."""
    inputs = jnp.moveaxis(xs, time_axis, 0)
    if seq_lengths is None:
        return inputs, None
    lengths = check_seq_lengths(seq_lengths, batch_shape, time)
    valid = jnp.arange(time).reshape((time,) + (1,) * len(batch_shape)) < lengths[None]
    # Zero the padding first, so no value there (not even NaN) reaches an output or a
    # gradient; padded steps then compute on finite inputs and are discarded.
    return jnp.where(valid[..., None], inputs, 0), valid


def _step_and_inputs(
    cell: Cell, params: Params, inputs: Array, hoist_projection: bool | None, remat: bool
) -> tuple[Any, Array]:
    """The step the scan runs and what it reads: ``cell.step`` over ``inputs``, or the
    projection's step over ``project(inputs)`` computed for all steps at once."""
    step: Any = cell.step
    if _choose_step(cell, hoist_projection):
        assert cell.projection is not None
        projection = cell.projection
        inputs = projection.project(params, inputs)

        def step(params: Params, carry: Carry, projected: Array) -> tuple[Carry, Array]:
            return projection.step(params, carry, projected, None)

    if remat:
        step = jax.checkpoint(step, prevent_cse=False)
    return step, inputs
