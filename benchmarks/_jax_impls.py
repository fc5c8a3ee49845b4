"""The JAX implementations and how any JAX callable is timed (the main process and Keras's).

A :class:`Candidate` is ``apply(params, xs [B, T, I]) -> ys [B, T, H]`` with its params. Each
family (``rnnjax``, ``linen``, ``nnx``, ``cudnn``; ``rnnjax-cudnn``, the rnnjax LSTM with
``backend="cudnn"``, which runs wherever ``rnnjax`` is chosen) has a builder ``(kind, case, key) ->
candidates``; :func:`bench_candidates` jits each in both modes, reports the first call and the
compiled memory apart, and times them round-robin.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from _common import (
    KINDS,
    LINEAR_KINDS,
    MIN_KINDS,
    MODES,
    RNNJAX_ONLY_KINDS,
    TITLES,
    Case,
    Reply,
    Row,
    Unavailable,
    make_row,
    round_robin,
    skip_note,
    time_call,
)

import rnnjax
from rnnjax._src.core.matmul import matmul

Apply = Callable[[Any, jax.Array], jax.Array]


class Candidate(NamedTuple):
    """One implementation of one cell kind, ready to time."""

    impl: str  # the family, as ``--impls`` names it
    name: str  # as the table shows it, e.g. "linen OptimizedLSTMCell"
    kind: str  # lstm | gru | simple_rnn | min_gru | min_lstm
    apply: Apply  # (params, xs [B, T, I]) -> ys [B, T, H], every time step
    params: Any


Builder = Callable[[str, Case, jax.Array], list[Candidate]]


def rnnjax_candidates(kind: str, case: Case, key: jax.Array) -> list[Candidate]:
    """``rnnjax.layer`` over ``rnnjax.lstm`` / ``gru`` / ``simple_rnn``, the default call.

    The min kinds (``rnnjax.min_gru`` / ``min_lstm``) instead run
    parallel in time (the default, ``rnnjax``), one token at a time (``parallel=False``,
    ``rnnjax-sequential``), and as a floor (``rnnjax-floor``): the same model with the
    recurrence replaced by the identity, see :func:`_identity_recurrence`.

    bfloat16 rows run rnnjax's mixed precision, ``compute_dtype=jnp.bfloat16``: float32
    params and state, bfloat16 matmuls accumulating in float32 (torch's autocast policy).
    """
    make_cell = {
        "lstm": rnnjax.lstm,
        "gru": rnnjax.gru,
        "simple_rnn": rnnjax.simple_rnn,
        "min_gru": rnnjax.min_gru,
        "min_lstm": rnnjax.min_lstm,
        "indrnn": rnnjax.indrnn,
        "para_gru": rnnjax.para_gru,
        "para_lstm": rnnjax.para_lstm,
        "rg_lru": rnnjax.rg_lru,
        "lru": lambda hidden: rnnjax.lru(hidden // 2),  # H outputs: real and imaginary parts
    }[kind]
    cell = make_cell(case.hidden)
    params = cell.init(key, case.input)
    compute_dtype = None if case.dtype == "float32" else case.dtype

    def candidate(impl: str, title: str, **options: Any) -> Candidate:
        layer = rnnjax.layer(cell, compute_dtype=compute_dtype, **options)

        def apply(params: Any, xs: jax.Array) -> jax.Array:
            return layer.apply(params, xs)[1]

        return Candidate(impl, title, kind, apply, params)

    if kind in LINEAR_KINDS and kind not in MIN_KINDS:
        return [
            candidate("rnnjax", f"rnnjax {TITLES[kind]}"),
            candidate("rnnjax-sequential", f"rnnjax {TITLES[kind]} sequential", parallel=False),
        ]
    if kind in MIN_KINDS:
        floor = _identity_recurrence(cell, compute_dtype)
        return [
            candidate("rnnjax", f"rnnjax {TITLES[kind]}"),
            candidate("rnnjax-sequential", f"rnnjax {TITLES[kind]} sequential", parallel=False),
            Candidate("rnnjax-floor", f"{TITLES[kind]} identity recurrence", kind, floor, params),
        ]
    found = [candidate("rnnjax", f"rnnjax {TITLES[kind]}")]
    if cell.diagonal_jacobian is not None:  # also by Newton's method over all steps at once
        title = f"rnnjax {TITLES[kind]} newton"
        found.append(candidate("rnnjax-newton", title, parallel="newton"))
    return found


def _identity_recurrence(cell: rnnjax.Cell, compute_dtype: Any) -> Apply:
    """A min cell's model with ``h_t = a_t * h_{t-1} + b_t`` replaced by ``h_t = b_t``.

    ``ys = b`` from ``cell.linear_scan.coefficients(params, xs)``: the input projection and the
    gate math, batch-first, with no scan and no move of the time axis. The time of
    ``rnnjax.rnn`` over this floor's is what the recurrence (and its layout) costs. Mixed
    precision as ``rnnjax.layer(compute_dtype=)`` runs it: params and ``xs`` cast to
    ``compute_dtype``, ``ys`` back in the params' dtype.
    """
    assert cell.linear_scan is not None
    coefficients = cell.linear_scan.coefficients

    def apply(params: Any, xs: jax.Array) -> jax.Array:
        dtype = params.kernel.dtype
        if compute_dtype is not None:
            params = jax.tree.map(lambda p: p.astype(compute_dtype), params)
            xs = xs.astype(compute_dtype)
        return coefficients(params, xs)[1].astype(dtype)

    return apply


def no_min_cells(kind: str, family: str) -> None:
    """Raises :class:`Unavailable` for the min kinds, which ``family`` has no cell for."""
    if kind in RNNJAX_ONLY_KINDS:
        raise Unavailable(f"{family} has no {TITLES[kind]} cell (rnnjax-only kind)")


def _orthogonal(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.Array:
    """Flax's recurrent initialiser, drawn in float32: its QR has no bfloat16 kernel."""
    return jax.nn.initializers.orthogonal()(key, shape, jnp.float32).astype(dtype)


def _flax_dtypes(case: Case) -> dict[str, Any]:
    return dict(dtype=case.dtype, param_dtype=case.dtype, recurrent_kernel_init=_orthogonal)


def linen_candidates(kind: str, case: Case, key: jax.Array) -> list[Candidate]:
    """Flax linen ``nn.RNN`` over its cells (two LSTM cells: optimized and plain)."""
    no_min_cells(kind, "Flax linen")
    import flax.linen as nn

    cell_types = {
        "lstm": [nn.OptimizedLSTMCell, nn.LSTMCell],
        "gru": [nn.GRUCell],
        "simple_rnn": [nn.SimpleCell],
    }[kind]
    xs = jnp.zeros((case.batch, case.time, case.input), case.dtype)
    found = []
    for cell_type in cell_types:
        module = nn.RNN(cell_type(case.hidden, **_flax_dtypes(case)))
        name = f"linen {cell_type.__name__}"
        found.append(Candidate("linen", name, kind, module.apply, module.init(key, xs)))
    return found


def nnx_candidates(kind: str, case: Case, key: jax.Array) -> list[Candidate]:
    """Flax NNX ``nnx.RNN``, run the recommended fast way: ``nnx.split`` outside ``jax.jit``,
    ``nnx.merge`` inside."""
    no_min_cells(kind, "Flax NNX")
    from flax import nnx

    cell_type = {
        "lstm": nnx.OptimizedLSTMCell,
        "gru": nnx.GRUCell,
        "simple_rnn": nnx.SimpleCell,
    }[kind]
    cell = cell_type(case.input, case.hidden, **_flax_dtypes(case), rngs=nnx.Rngs(key))
    graphdef, state = nnx.split(nnx.RNN(cell))

    def apply(state: Any, xs: jax.Array) -> jax.Array:
        return nnx.merge(graphdef, state)(xs)

    return [Candidate("nnx", f"nnx {cell_type.__name__}", kind, apply, state)]


def cudnn_candidates(kind: str, case: Case, key: jax.Array) -> list[Candidate]:
    """``jax.experimental.rnn.lstm``: cuDNN's fused LSTM, on NVIDIA (and ROCm) GPUs only."""
    no_min_cells(kind, "jax.experimental.rnn (cuDNN)")
    if kind != "lstm":
        return []
    if jax.default_backend() != "gpu":
        raise Unavailable(f"cuDNN runs on GPU only; JAX's backend is {jax.default_backend()}")
    if case.dtype != "float32":
        raise Unavailable(f"jax.experimental.rnn supports float32 only, not {case.dtype}")
    from jax.experimental import rnn as cudnn_rnn

    sizes = dict(input_size=case.input, hidden_size=case.hidden, num_layers=1)
    weights = cudnn_rnn.init_lstm_weight(key, **sizes, bidirectional=False)

    def apply(weights: jax.Array, xs: jax.Array) -> jax.Array:
        zeros = jnp.zeros((1, xs.shape[0], case.hidden), xs.dtype)
        lengths = jnp.full((xs.shape[0],), xs.shape[1], jnp.int32)
        ys, _, _ = cudnn_rnn.lstm(
            xs, zeros, zeros, weights, lengths, **sizes, dropout=0.0, bidirectional=False
        )
        return ys

    return [Candidate("cudnn", "cudnn LSTM", kind, apply, weights)]


def rnnjax_cudnn_candidates(kind: str, case: Case, key: jax.Array) -> list[Candidate]:
    """``rnnjax.layer(rnnjax.lstm(H), backend="cudnn")``: the rnnjax LSTM row again, through
    cuDNN (``jax.experimental.rnn.lstm``) with rnnjax's own params; float32 on a CUDA GPU."""
    if kind != "lstm":
        return []  # cuDNN serves the plain LSTM only; the other kinds' rnnjax rows are XLA's
    if case.dtype != "float32":
        raise Unavailable(f"rnnjax's cuDNN backend runs float32 only, not {case.dtype}")
    from rnnjax._src.scan.cudnn import cuda_refusal

    reason = cuda_refusal()
    if reason is not None:
        raise Unavailable(f"rnnjax backend='cudnn' needs a CUDA GPU: {reason}")
    cell = rnnjax.lstm(case.hidden)
    layer = rnnjax.layer(cell, backend="cudnn")

    def apply(params: Any, xs: jax.Array) -> jax.Array:
        return layer.apply(params, xs)[1]

    return [Candidate("rnnjax-cudnn", "rnnjax LSTM cudnn", kind, apply, cell.init(key, case.input))]


BUILDERS: dict[str, Builder] = {
    "rnnjax": rnnjax_candidates,
    "rnnjax-cudnn": rnnjax_cudnn_candidates,
    "linen": linen_candidates,
    "nnx": nnx_candidates,
    "cudnn": cudnn_candidates,
}


def build(
    builders: dict[str, Builder], impls: Iterable[str], kinds: Iterable[str], case: Case
) -> tuple[list[Candidate], list[str]]:
    """Candidates of the chosen families and kinds; what cannot be built becomes a note."""
    candidates: list[Candidate] = []
    notes = []
    for impl in impls:
        for kind in (k for k in KINDS if k in kinds):
            try:
                candidates += builders[impl](kind, case, jax.random.key(0))
            except Exception as error:  # an optional peer that cannot run here is skipped
                notes.append(skip_note(f"{impl} {kind}", error))
    return candidates, notes


def mode_function(apply: Apply, mode: str) -> Callable[[Any, jax.Array], Any]:
    """``apply`` itself, or the value and gradient of ``mean(apply)`` w.r.t. params and xs."""
    if mode == "forward":
        return apply

    def loss(params: Any, xs: jax.Array) -> jax.Array:
        return jnp.mean(apply(params, xs))

    # allow_int: NNX's state holds an integer RNG counter, which gets a float0 gradient.
    return jax.value_and_grad(loss, argnums=(0, 1), allow_int=True)


def peak_bytes(function: Any, *args: Any) -> int | None:
    """Temp + argument + output bytes of the compiled ``function`` (None where unreported)."""
    try:
        analysis = function.lower(*args).compile().memory_analysis()
    except (NotImplementedError, RuntimeError):
        return None
    if analysis is None:
        return None
    return int(
        analysis.temp_size_in_bytes
        + analysis.argument_size_in_bytes
        + analysis.output_size_in_bytes
    )


def device_name() -> str:
    """``"cpu"``, ``"gpu NVIDIA H100 80GB HBM3"``, ``"tpu TPU v5 lite"``: JAX's first device."""
    device = jax.devices()[0]
    kind = device.device_kind
    return device.platform if kind.lower() == device.platform else f"{device.platform} {kind}"


def _blocking(function: Callable[..., Any], *args: Any) -> Any:
    return jax.block_until_ready(function(*args))


def bench_candidates(candidates: list[Candidate], case: Case, warmup: int, repeats: int) -> Reply:
    """Times every candidate in both modes: first call apart, then round-robin medians."""
    xs = jax.random.normal(jax.random.key(1), (case.batch, case.time, case.input), case.dtype)
    rows: list[Row] = []
    notes = []
    for mode in MODES:
        ready = []
        for candidate in candidates:
            function = jax.jit(mode_function(candidate.apply, mode))
            call = functools.partial(_blocking, function, candidate.params, xs)
            try:
                first = time_call(call)  # tracing, compilation and one run
            except Exception as error:  # e.g. a dtype a peer does not support: skip it
                notes.append(skip_note(f"{candidate.name} {mode}", error))
                continue
            ready.append((candidate, call, first, peak_bytes(function, candidate.params, xs)))
        samples = round_robin([call for _, call, _, _ in ready], warmup, repeats)
        for (candidate, _, first, peak), taken in zip(ready, samples, strict=True):
            rows.append(
                make_row(
                    case,
                    mode,
                    candidate.impl,
                    candidate.name,
                    candidate.kind,
                    device_name(),
                    first,
                    taken,
                    peak,
                )
            )
    return rows, notes


def matmul_gflops(dtype: str = "float32", size: int = 2048, repeats: int = 20) -> float:
    """The device's own rate for one large square matmul, GFLOP/s (median of ``repeats``).

    Through the cells' ``matmul``, as the recurrences run it: low-precision operands accumulate
    in float32.
    """
    a, b = jax.random.normal(jax.random.key(2), (2, size, size), dtype)
    call = functools.partial(_blocking, jax.jit(matmul), a, b)
    call()
    (samples,) = round_robin([call], warmup=2, repeats=repeats)
    return 2 * size**3 / float(np.median(samples)) / 1e9


def environment() -> dict[str, Any]:
    """The device and the versions of everything in this process."""
    import flax
    import jaxlib
    import optax

    return {
        "device": device_name(),
        "backend": jax.default_backend(),
        "device_count": jax.device_count(),
        "versions": {
            "rnnjax": rnnjax.__version__,
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
            "flax": flax.__version__,
            "optax": optax.__version__,
            "numpy": np.__version__,
            "python": platform.python_version(),
        },
    }
