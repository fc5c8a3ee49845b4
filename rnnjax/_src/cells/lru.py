"""Linear diagonal recurrences: the LRU (Orvieto et al. 2023) and the RG-LRU of Griffin and
Hawk (De et al. 2024).

Both are ``h_t = a_t * h_{t-1} + b_t`` with ``a_t``, ``b_t`` computed from the inputs alone: the
:class:`~rnnjax.LinearScan` capability, which :func:`rnnjax.rnn` runs through
:func:`rnnjax.linear_recurrence` over all steps at once (``parallel=False`` steps them).

The LRU's state is complex. Its carry holds the real parts, then the imaginary parts,
``[*batch, 2N]`` real (recurrentgemma's "merged" layout), and its coefficients are complex:
the driver runs the recurrence in complex arithmetic and merges the result back. A real carry
keeps everything else in rnnjax as it is: float dtypes and ``compute_dtype`` policies,
masking, resets, dropout masks, initial carries from another layer, Flax modules, decoding.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import DTypeLike

from rnnjax._src.cells.initializers import input_weights
from rnnjax._src.cells.kit import batch_tuple, cell_factory, linear_scan_cell
from rnnjax._src.core.contract import BatchShape, Cell
from rnnjax._src.core.matmul import add_bias, matmul
from rnnjax._src.core.validate import check_choice

Array = jax.Array


class RGLRUParams(NamedTuple):
    """Parameters of :func:`rg_lru`.

    Attributes:
      kernel: ``[input_size, 3 * hidden]``: the recurrence gate, the input gate and the value,
        side by side.
      bias: ``[3 * hidden]``.
      a_param: ``[hidden]``, with ``a = sigmoid(-a_param)`` (the paper's ``Lambda`` is
        ``-a_param``; recurrentgemma's name and sign).
    """

    kernel: Array
    bias: Array
    a_param: Array


class LRUParams(NamedTuple):
    """Parameters of :func:`lru`, as the paper parametrises them (``N`` complex units).

    Attributes:
      nu_log: ``[N]``, ``|Lambda| = exp(-exp(nu_log))``.
      theta_log: ``[N]``, ``arg Lambda = exp(theta_log)``.
      gamma_log: ``[N]``, the input normalisation ``gamma = exp(gamma_log)``, initialised to
        ``sqrt(1 - |Lambda|^2)``.
      b_real: ``[input_size, N]``, the real part of ``B``.
      b_imag: ``[input_size, N]``, its imaginary part.
    """

    nu_log: Array
    theta_log: Array
    gamma_log: Array
    b_real: Array
    b_imag: Array


C = 8.0
"""The RG-LRU's fixed exponent scale ``c``."""


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _sqrt_bounded_derivative(x: Array, max_derivative: float) -> Array:
    """``sqrt(x)`` whose derivative is capped at ``max_derivative`` (recurrentgemma's guard
    for ``sqrt(1 - a^2)`` as ``a -> 1``, where the exact derivative is infinite)."""
    return jnp.sqrt(x)


@_sqrt_bounded_derivative.defjvp
def _sqrt_jvp(max_derivative: float, primals: tuple[Array], tangents: tuple[Array]) -> Any:
    (x,), (dx,) = primals, tangents
    floor = 1 / (4 * max_derivative**2)
    return jnp.sqrt(x), dx * 0.5 / jnp.sqrt(jnp.maximum(x, floor))


def _rg_lru_coefficients(params: RGLRUParams, xs: Array) -> tuple[Array, Array]:
    z = add_bias(matmul(xs, params.kernel), params.bias)
    recurrence_gate, input_gate, value = jnp.split(z, 3, axis=-1)
    softplus = jax.nn.softplus(params.a_param).reshape((1,) * (z.ndim - 1) + (-1,))
    log_a = -C * jax.nn.sigmoid(recurrence_gate) * softplus
    multiplier = _sqrt_bounded_derivative(-jnp.expm1(2 * log_a), 1000.0)
    return jnp.exp(log_a), multiplier * (jax.nn.sigmoid(input_gate) * value)


def _rg_lru_start(params: RGLRUParams, xs: Array) -> Array:
    """recurrentgemma's state at a document start (``segment_pos == 0``): ``a = 0`` and no
    normalisation, ``h = i * v``."""
    z = add_bias(matmul(xs, params.kernel), params.bias)
    _, input_gate, value = jnp.split(z, 3, axis=-1)
    return jax.nn.sigmoid(input_gate) * value


def _check_params(
    name: str, params: Any, params_type: type, expected: dict[str, tuple[Any, ...]]
) -> int:
    """``input_size``: the ``"I"`` entry of ``expected``'s shapes, once the fields match."""
    got = {f: tuple(getattr(getattr(params, f, None), "shape", ())) for f in expected}
    fits = isinstance(params, tuple) and len(params) == len(expected)
    pairs = [(e, s) for f, shape in expected.items() for e, s in zip(shape, got[f], strict=False)]
    sizes = {s for e, s in pairs if e == "I"}
    fits = fits and len(sizes) == 1
    for field, shape in expected.items():
        fits = fits and len(got[field]) == len(shape)
        fits = fits and all(e == "I" or e == s for e, s in zip(shape, got[field], strict=False))
    if not fits:
        want = ", ".join(f"{f}={s}".replace("'I'", "input_size") for f, s in expected.items())
        have = ", ".join(f"{f}={s}" for f, s in got.items())
        raise ValueError(
            f"rnnjax.{name}: params must be {params_type.__name__}({want}); got"
            f" {type(params).__name__} with {have}"
        )
    return int(sizes.pop())


def _linear_cell(
    init: Callable[..., Any],
    width: int,
    input_size: Callable[[Any], int],
    coefficients: Callable[[Any, Array], tuple[Array, Array]],
    dtype_of: Callable[[Any], Any],
    start: Callable[[Any, Array], Array] | None = None,
) -> Cell:
    """The cell ``h_t = a_t * h_{t-1} + b_t``, ``y_t = h_t``, of a carry ``[*batch, width]``
    (complex coefficients: the carry holds real parts, then imaginary parts)."""

    def initial_carry(
        params: Any, batch_shape: BatchShape, dtype: DTypeLike | None = None
    ) -> Array:
        return jnp.zeros((*batch_tuple(batch_shape), width), dtype or dtype_of(params))

    return linear_scan_cell(init, initial_carry, input_size, coefficients, start=start)


DOCUMENT_STARTS = ("scaled", "recurrentgemma")
""":func:`rg_lru`'s rules for the first step of a document."""


@cell_factory
def rg_lru(hidden_size: int, *, initializer: str = "flax", document_starts: str = "scaled") -> Cell:
    r"""The RG-LRU, the real-gated linear recurrent unit of Griffin and Hawk (De et al.,
    "Griffin: Mixing Gated Linear Recurrences with Local Attention for Efficient Language
    Models", 2024).

    With ``[z_r, z_i, v] = x_t W + b`` and ``a = sigma(Lambda)`` (``Lambda = -a_param``):

    .. math::
        r_t = \sigma(z_r), \quad i_t = \sigma(z_i), \quad
        a_t = a^{c r_t} \;(c = 8), \\
        h_t = a_t \odot h_{t-1} + \sqrt{1 - a_t^2} \odot (i_t \odot v_t), \qquad y_t = h_t

    computed as ``log a_t = -c r_t softplus(a_param)``. Griffin feeds the RG-LRU a linear
    projection (and a short convolution) of the block's input and gates that same signal;
    here the value ``v`` has its own projection, so the cell takes any input size, and
    recurrentgemma's layer is the case ``W_v = I``, ``b_v = 0``
    (:func:`rnnjax.interop.rg_lru_params_from_recurrentgemma`). The derivative of
    ``sqrt(1 - a_t^2)`` is capped at 1000 as in recurrentgemma.

    Document starts: recurrentgemma's layer, at ``segment_pos == 0``, uses ``a_t = 0`` and
    multiplier 1, ``h_t = i_t \odot v_t``. ``document_starts="recurrentgemma"`` does the
    same at each document start of :func:`rnnjax.rnn` (each step with ``resets``, and the first
    step processed when no ``initial_carry`` is given), so ``rg_lru(W,
    document_starts="recurrentgemma")`` on the params of
    :func:`rnnjax.interop.rg_lru_params_from_recurrentgemma` with ``resets=(segment_pos ==
    0)`` reproduces the original; the default, ``"scaled"``,
    normalises every step (a reset zeroes the carry only). ``cell.step`` alone is the ordinary
    step in both.

    Args:
      hidden_size: ``H``, the width of the state and of the output.
      initializer: ``"flax"`` (default: LeCun-normal, recurrentgemma's fan-in scaling),
        ``"keras"`` or ``"torch"`` for ``kernel`` and ``bias``. ``a`` starts uniform on
        the ring ``0.9 <= a <= 0.999`` (by area), as in recurrentgemma.
      document_starts: ``"scaled"`` (default) or ``"recurrentgemma"``, the rule at a
        document start (above).

    Returns:
      A :class:`~rnnjax.Cell` with params :class:`~rnnjax.RGLRUParams`, carry ``h`` and the
      ``linear_scan`` capability.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.rg_lru(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> xs = jnp.ones((2, 100, 3))
      >>> _, parallel = rnnjax.rnn(cell, params, xs)
      >>> _, one_by_one = rnnjax.rnn(cell, params, xs, parallel=False)
      >>> bool(jnp.allclose(parallel, one_by_one, atol=1e-6))
      True
      >>> starts = rnnjax.rg_lru(8, document_starts="recurrentgemma")
      >>> _, ys = rnnjax.rnn(starts, params, xs)
      >>> z = xs[:, 0] @ params.kernel + params.bias
      >>> i, v = jax.nn.sigmoid(z[:, 8:16]), z[:, 16:]
      >>> bool(jnp.allclose(ys[:, 0], i * v))            # the first step: a = 0, not scaled
      True
    """
    check_choice("rnnjax.rg_lru", "document_starts", document_starts, DOCUMENT_STARTS)
    hidden = hidden_size

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> RGLRUParams:
        k_weights, k_ring = jax.random.split(key)
        kernel, bias = input_weights(initializer, k_weights, input_size, hidden, 3, dtype)
        squared = jax.random.uniform(k_ring, (hidden,), jnp.float32, 0.9**2, 0.999**2)
        a_param = jnp.log(jnp.expm1(-0.5 * jnp.log(squared)))  # softplus(a_param) = -log a
        return RGLRUParams(kernel, bias, a_param.astype(dtype))

    def input_size(params: RGLRUParams) -> int:
        expected = {"kernel": ("I", 3 * hidden), "bias": (3 * hidden,), "a_param": (hidden,)}
        return _check_params(f"rg_lru({hidden})", params, RGLRUParams, expected)

    start = _rg_lru_start if document_starts == "recurrentgemma" else None
    return _linear_cell(
        init, hidden, input_size, _rg_lru_coefficients, lambda params: params.kernel.dtype, start
    )


def _lru_coefficients(params: LRUParams, xs: Array) -> tuple[Array, Array]:
    real = jnp.promote_types(params.nu_log.dtype, jnp.float32)  # no bfloat16 complex dtype
    magnitude = jnp.exp(-jnp.exp(params.nu_log.astype(real)))
    angle = jnp.exp(params.theta_log.astype(real))
    lam = jax.lax.complex(magnitude * jnp.cos(angle), magnitude * jnp.sin(angle))
    gamma = jnp.exp(params.gamma_log).astype(real)
    bx_real, bx_imag = (matmul(xs, b).astype(real) for b in (params.b_real, params.b_imag))
    bx = jax.lax.complex(bx_real, bx_imag)
    shape = (1,) * (bx.ndim - 1) + (-1,)
    return jnp.broadcast_to(lam.reshape(shape), bx.shape), gamma.reshape(shape) * bx


@cell_factory
def lru(
    hidden_size: int,
    *,
    initializer: str = "flax",
    r_min: float = 0.0,
    r_max: float = 1.0,
    max_phase: float = 2 * math.pi,
) -> Cell:
    r"""The linear recurrent unit (Orvieto et al., "Resurrecting Recurrent Neural Networks for
    Long Sequences", ICML 2023).

    ``N = hidden_size`` complex units, a diagonal complex ``Lambda`` and an input matrix ``B``:

    .. math::
        \Lambda = \exp(-\exp(\nu) + i \exp(\theta)), \qquad
        h_t = \Lambda \odot h_{t-1} + \gamma \odot (x_t B), \qquad
        y_t = [\operatorname{Re} h_t, \operatorname{Im} h_t]

    with ``gamma = exp(gamma_log)``, initialised to ``sqrt(1 - |Lambda|^2)`` (the paper's
    normalisation) and trained. The eigenvalues start uniform on the ring ``r_min <= |Lambda|
    <= r_max`` (uniform by area) with phases ``U(0, max_phase)``.

    The carry and the output are the state's real parts then its imaginary parts,
    ``[*batch, 2N]`` real; the paper's readout ``y = Re(C h) + D x`` is a real linear map of
    this output plus a skip connection, the layer that follows (``Re(C h) = [Re h, Im h]
    [Re C, -Im C]^T``). A real carry, not a complex one, because the rest of rnnjax keeps
    carries in floating dtypes (initial carries, masking, ``compute_dtype``, Flax modules);
    the coefficients are complex and :func:`rnnjax.rnn` runs the recurrence in complex
    arithmetic.

    Args:
      hidden_size: ``N``, the number of complex units (the output has ``2N`` features).
      initializer: how ``B`` is drawn: its real and imaginary parts are the two halves of
        the ``[I, 2N]`` kernel this scheme draws, over ``sqrt(2)``; ``"flax"`` (LeCun normal,
        the default) is the paper's complex normal with variance ``1 / input_size``.
      r_min, r_max: the ring of the initial ``|Lambda|`` (the paper's long-range setting:
        ``r_min=0.9, r_max=0.999``).
      max_phase: the largest initial phase (the paper uses ``pi / 10`` for long ranges).

    Returns:
      A :class:`~rnnjax.Cell` with params :class:`~rnnjax.LRUParams`, a real carry ``[*batch,
      2N]`` and the ``linear_scan`` capability (complex coefficients).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax
      >>> cell = rnnjax.lru(4, r_min=0.9, r_max=0.999)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> carry, ys = rnnjax.rnn(cell, params, jnp.ones((2, 50, 3)))
      >>> ys.shape                        # real parts, then imaginary parts
      (2, 50, 8)
    """
    _check_lru_args(hidden_size, initializer, r_min, r_max, max_phase)
    n = hidden_size

    def init(key: Array, input_size: int, dtype: DTypeLike = jnp.float32) -> LRUParams:
        k_radius, k_phase, k_b = jax.random.split(key, 3)
        u = jax.random.uniform(k_radius, (n,))
        nu_log = jnp.log(-0.5 * jnp.log(u * (r_max**2 - r_min**2) + r_min**2))
        theta_log = jnp.log(max_phase * jax.random.uniform(k_phase, (n,), minval=1e-6))
        gamma_log = 0.5 * jnp.log1p(-jnp.exp(-2 * jnp.exp(nu_log)))
        kernel, _ = input_weights(initializer, k_b, input_size, n, 2, jnp.float32)
        b_real, b_imag = jnp.split(kernel / math.sqrt(2), 2, axis=1)
        leaves = (nu_log, theta_log, gamma_log, b_real, b_imag)
        return LRUParams(*(leaf.astype(dtype) for leaf in leaves))

    def input_size(params: LRUParams) -> int:
        expected: dict[str, tuple[Any, ...]] = dict.fromkeys(
            ("nu_log", "theta_log", "gamma_log"), (n,)
        )
        expected.update(b_real=("I", n), b_imag=("I", n))
        return _check_params(f"lru({n})", params, LRUParams, expected)

    return _linear_cell(init, 2 * n, input_size, _lru_coefficients, lambda p: p.b_real.dtype)


def _check_lru_args(
    hidden_size: int, initializer: str, r_min: float, r_max: float, max_phase: float
) -> None:
    if not 0 <= r_min < r_max <= 1:
        raise ValueError(
            f"rnnjax.lru: need 0 <= r_min < r_max <= 1; got r_min={r_min}, r_max={r_max}"
        )
    if not (np.isfinite(max_phase) and max_phase > 0):
        raise ValueError(f"rnnjax.lru: max_phase must be positive; got {max_phase}")
