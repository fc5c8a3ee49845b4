"""Flax NNX modules over rnnjax's layers (``SimpleRNN``, ``LSTM``, ``GRU``, ...) and cells.

Thin shells: a module owns its parameters, the same NamedTuples the cells' ``init`` returns
(:class:`~rnnjax.LSTMParams` etc.), one :class:`flax.nnx.Param` per array, and calls
:func:`rnnjax.layer` (:func:`rnnjax.stack` for ``num_layers > 1``, :func:`rnnjax.bidirectional`)
on them, so its output equals the functional call on ``module.params``, bit for bit.

What a call returns is what Keras returns:

* ``return_sequences=False`` (default): the last output ``[*batch, features]``: the top
  layer's final ``h``, which under ``seq_lengths`` is each sequence's output at its last valid
  step (and the initial ``h`` for a sequence of length 0). With ``go_backwards=True`` it is
  the output after reading step 0.
* ``return_sequences=True``: all outputs ``[*batch, time, features]``. With
  ``go_backwards=True`` they come in processing order (Keras's order): entry ``k`` of sequence
  ``b`` is the output computed at position ``len[b] - 1 - k``, zeros for ``k >= len[b]``;
  without ``seq_lengths`` that is the reversed layer's outputs flipped in time, which equals
  a forward run over the flipped sequence (``rnnjax.interop.from_keras``).
* ``return_state=True``: the pair ``(outputs, state)`` with ``state`` the final carry
  (:class:`~rnnjax.LSTMState` ``(h, c)`` for the LSTM, ``h`` otherwise; a tuple with one per
  layer for ``num_layers > 1``; a ``(forward, backward)`` pair for ``Bidirectional``), which
  a later call takes back as ``initial_carry``.

Training mode follows NNX: dropout is on while ``deterministic`` is False (the default, as
for :class:`flax.nnx.Dropout`); ``model.eval()`` turns it off and ``model.train()`` back on,
and a call's ``deterministic=`` overrides both. Masks are drawn from the ``dropout`` stream
of the ``rngs`` given at construction (or from ``rngs=`` of the call: an
:class:`~flax.nnx.Rngs`, a stream, or a key).

Functional and converted params load with :meth:`load_params`, e.g. the params of
``rnnjax.interop.from_torch`` or ``from_keras``.

Step modules, for decoding one token at a time: :class:`SimpleRNNCell`, :class:`LSTMCell`,
:class:`GRUCell`, :class:`MinGRUCell`, :class:`MinLSTMCell`, each ``cell(carry, x_t) ->
(carry, y_t)`` with ``initialize_carry(input_shape)``. They hold the same params as the
sequence modules (``load_params`` takes either's) and run the cell's own ``step``, so a jitted
or scanned step equals the sequence module's output at that step, bit for bit on CPU. They
follow Flax's cell protocol (:class:`flax.nnx.RNNCellBase`), so :class:`flax.nnx.RNN` runs
them too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, ClassVar, Literal

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from rnnjax._src.compose import BidirectionalParams, check_merge
from rnnjax._src.contract import Carry, Params
from rnnjax._src.modules_common import RecurrentOptions, bidirectional_call

Array = jax.Array
KeySource = nnx.Rngs | nnx.RngStream | Array | None

__all__ = (
    "GRU",
    "LSTM",
    "Bidirectional",
    "GRUCell",
    "LSTMCell",
    "MinGRU",
    "MinGRUCell",
    "MinLSTM",
    "MinLSTMCell",
    "SimpleRNN",
    "SimpleRNNCell",
)


def _is_variable(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def _draw_key(where: str, rngs: KeySource) -> Array:
    if isinstance(rngs, nnx.Rngs):
        return rngs.dropout()
    if isinstance(rngs, nnx.RngStream):
        return rngs()
    if isinstance(rngs, jax.Array):
        return rngs
    raise ValueError(
        f"{where}: dropout is on (deterministic=False) but the module has no rngs; pass"
        " rngs=nnx.Rngs(...) at construction or rngs= to the call, or call .eval()"
    )


def _check_like(where: str, new: Params, old: Params) -> None:
    new_shapes = jax.tree.map(jnp.shape, new)
    old_shapes = jax.tree.map(jnp.shape, old)
    if str(jax.tree.structure(new)) != str(jax.tree.structure(old)) or new_shapes != old_shapes:
        raise ValueError(
            f"{where}: params must match the module's: expected {old_shapes}; got {new_shapes}"
        )


class _HoldsParams(nnx.Module):
    """A module holding one cell's params (one :class:`flax.nnx.Param` per array, in
    ``self.cell``) made from its :class:`RecurrentOptions`: sequence and step modules alike,
    so their params load into each other."""

    def _hold(self, options: RecurrentOptions, in_features: int, rngs: nnx.Rngs) -> None:
        self.in_features = in_features
        self.options = options
        self.cell = nnx.data(jax.tree.map(nnx.Param, options.init(rngs.params(), in_features)))

    @property
    def params(self) -> Params:
        """The params as the functional layer takes them: the cell's NamedTuple (a tuple of
        them for ``num_layers > 1``)."""
        return jax.tree.map(lambda v: v[...], self.cell, is_leaf=_is_variable)

    def load_params(self, params: Params) -> None:
        """Replaces the params in place with ``params`` of the same structure and shapes,
        e.g. from ``cell.init``, ``rnnjax.interop.from_torch`` or ``from_keras``; arrays are
        cast to the module's ``param_dtype``."""
        _check_like(f"{type(self).__name__}.load_params", params, self.params)
        dtype = self.options.param_dtype
        jax.tree.map(
            lambda v, new: v.set_value(jnp.asarray(new, dtype)),
            self.cell,
            params,
            is_leaf=_is_variable,
        )


class _Recurrent(_HoldsParams):
    """What SimpleRNN, LSTM and GRU share, their settings listed once; see :class:`LSTM`."""

    kind: ClassVar[str]

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        return_sequences: bool = False,
        return_state: bool = False,
        go_backwards: bool = False,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        num_layers: int = 1,
        stack_dropout: float = 0.0,
        unroll: int | bool = 1,
        remat: bool | Literal["segments"] = False,
        initializer: str = "keras",
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        fused_backward: bool | None = None,
        hoist_projection: bool | None = None,
        deterministic: bool = False,
        rngs: nnx.Rngs,
        **cell_settings: Any,
    ) -> None:
        options = RecurrentOptions(
            self.kind,
            features,
            return_sequences=return_sequences,
            return_state=return_state,
            go_backwards=go_backwards,
            dropout=dropout,
            recurrent_dropout=recurrent_dropout,
            num_layers=num_layers,
            stack_dropout=stack_dropout,
            unroll=unroll,
            remat=remat,
            initializer=initializer,
            dtype=dtype,
            param_dtype=param_dtype,
            fused_backward=fused_backward,
            hoist_projection=hoist_projection,
            cell_settings=tuple(sorted(cell_settings.items())),
        )
        self._hold(options, in_features, rngs)
        self.deterministic = deterministic
        self.rngs = rngs.dropout.fork() if options.uses_key else nnx.data(None)

    def __call__(
        self,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: Carry | None = None,
        deterministic: bool | None = None,
        rngs: KeySource = None,
    ) -> Any:
        """Runs over ``xs [*batch, time, in_features]``; returns what Keras returns (above)."""
        deterministic = self.deterministic if deterministic is None else deterministic
        key = None
        if not deterministic and self.options.uses_key:
            key = _draw_key(type(self).__name__, rngs if rngs is not None else self.rngs)
        return self.options(
            self.params,
            xs,
            seq_lengths=seq_lengths,
            initial_carry=initial_carry,
            key=key,
            deterministic=deterministic,
        )


class SimpleRNN(_Recurrent):
    """Keras's ``SimpleRNN`` as an NNX module: ``h' = activation(x W + h U + b)``.

    Args:
      in_features: input size.
      features: hidden size ``H``.
      activation: default ``jnp.tanh``.
      return_sequences, return_state, go_backwards: as Keras (module docstring).
      dropout: Keras's input dropout rate, one mask per sequence fixed over time.
      recurrent_dropout: Keras's recurrent dropout rate, on ``h`` where it enters ``U``.
      num_layers: layers stacked (PyTorch's ``num_layers``), each ``features`` wide.
      stack_dropout: dropout between stacked layers (PyTorch's ``dropout``).
      unroll, remat, fused_backward, hoist_projection: as :func:`rnnjax.layer`.
      initializer: ``"keras"``, ``"torch"`` or ``"flax"`` (see docs/guides/cells.md).
      dtype: computation dtype (``rnnjax.layer``'s ``compute_dtype``); ``None`` computes in
        ``param_dtype``.
      param_dtype: dtype of the params.
      deterministic: initial mode; ``False`` is training (dropout on).
      rngs: ``params`` and ``dropout`` streams (``nnx.Rngs(0)`` serves both).

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> rnn = rnnjax.nnx.SimpleRNN(3, 8, rngs=nnx.Rngs(0))
      >>> rnn(jnp.ones((2, 5, 3))).shape                  # the last output
      (2, 8)
    """

    kind: ClassVar[str] = "simple_rnn"

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        activation: Callable[[Array], Array] = jnp.tanh,
        rngs: nnx.Rngs,
        **options: Any,
    ) -> None:
        super().__init__(in_features, features, activation=activation, rngs=rngs, **options)


class LSTM(_Recurrent):
    """Keras's ``LSTM`` as an NNX module (gates i, f, g, o; params :class:`~rnnjax.LSTMParams`).

    Args:
      in_features: input size.
      features: hidden size ``H``.
      return_sequences, return_state, go_backwards: as Keras (module docstring).
      dropout, recurrent_dropout, num_layers, stack_dropout, unroll, remat, initializer,
      dtype, param_dtype, deterministic, fused_backward, hoist_projection, rngs: as
      :class:`SimpleRNN`.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax, rnnjax.nnx
      >>> from flax import nnx
      >>> lstm = rnnjax.nnx.LSTM(3, 8, return_sequences=True, rngs=nnx.Rngs(0))
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 2])
      >>> lstm(xs, seq_lengths=lengths).shape
      (2, 5, 8)
      >>> _, ys = rnnjax.rnn(rnnjax.lstm(8), lstm.params, xs, seq_lengths=lengths)
      >>> bool((lstm(xs, seq_lengths=lengths) == ys).all())   # the functional call
      True
    """

    kind: ClassVar[str] = "lstm"


class GRU(_Recurrent):
    """Keras's ``GRU`` as an NNX module (gates r, z, n; params :class:`~rnnjax.GRUParams`).

    Args:
      in_features: input size.
      features: hidden size ``H``.
      reset_after: ``True`` (Keras's default, PyTorch's and cuDNN's form) or ``False``.
      return_sequences, return_state, go_backwards, dropout, recurrent_dropout, num_layers,
      stack_dropout, unroll, remat, initializer, dtype, param_dtype, deterministic,
      fused_backward, hoist_projection, rngs: as :class:`SimpleRNN`.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> gru = rnnjax.nnx.GRU(3, 8, return_state=True, rngs=nnx.Rngs(0))
      >>> last, h = gru(jnp.ones((2, 5, 3)))
      >>> bool((last == h).all())
      True
    """

    kind: ClassVar[str] = "gru"

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        reset_after: bool = True,
        rngs: nnx.Rngs,
        **options: Any,
    ) -> None:
        super().__init__(in_features, features, reset_after=reset_after, rngs=rngs, **options)


class MinGRU(_Recurrent):
    """:func:`rnnjax.min_gru` as an NNX module, run in parallel over time.

    Args: as :class:`LSTM`; ``recurrent_dropout`` is refused (its gates never read ``h``).

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> deep = rnnjax.nnx.MinGRU(3, 8, num_layers=3, return_sequences=True, rngs=nnx.Rngs(0))
      >>> deep(jnp.ones((2, 50, 3))).shape
      (2, 50, 8)
    """

    kind: ClassVar[str] = "min_gru"


class MinLSTM(_Recurrent):
    """:func:`rnnjax.min_lstm` as an NNX module, run in parallel over time; as :class:`MinGRU`."""

    kind: ClassVar[str] = "min_lstm"


class Bidirectional(nnx.Module):
    """Keras's ``Bidirectional``: the given layer forward, a fresh copy of it backward.

    The backward layer has the same settings with ``go_backwards`` flipped and its own params
    drawn from ``rngs``; it runs through :func:`rnnjax.bidirectional`, so under
    ``seq_lengths`` it reads each sequence's valid part from its last valid step back to
    step 0, and its outputs sit at their original positions. ``return_sequences`` and
    ``return_state`` are the wrapped layer's. Without ``return_sequences`` the output merges
    each direction's last output (forward: at the last valid step; backward: at step 0). The
    state is the pair ``(forward carry, backward carry)``.

    Args:
      layer: a :class:`SimpleRNN`, :class:`LSTM` or :class:`GRU`, the forward direction.
      merge: ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"`` or ``"none"`` (a pair).
      deterministic: initial mode; ``False`` is training (dropout on).
      rngs: ``params`` (backward layer) and ``dropout`` streams.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> rngs = nnx.Rngs(0)
      >>> bi = rnnjax.nnx.Bidirectional(rnnjax.nnx.GRU(3, 8, rngs=rngs), rngs=rngs)
      >>> bi(jnp.ones((2, 5, 3)), seq_lengths=jnp.array([5, 3])).shape
      (2, 16)
    """

    def __init__(
        self,
        layer: _Recurrent,
        *,
        merge: str = "concat",
        deterministic: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        check_merge("Bidirectional", merge)
        if not isinstance(layer, _Recurrent):
            raise TypeError(
                "Bidirectional: layer must be a rnnjax.nnx SimpleRNN, LSTM or GRU; got"
                f" {type(layer).__name__}"
            )
        self.merge = merge
        self.deterministic = deterministic
        self.forward = layer
        backward = nnx.clone(layer)
        backward.options = dataclasses.replace(
            layer.options, go_backwards=not layer.options.go_backwards
        )
        backward.load_params(backward.options.init(rngs.params(), layer.in_features))
        self.backward = backward
        uses_key = layer.options.uses_key
        self.rngs = rngs.dropout.fork() if uses_key else nnx.data(None)

    @property
    def params(self) -> BidirectionalParams:
        """``BidirectionalParams(forward, backward)``, as :func:`rnnjax.bidirectional` takes."""
        return BidirectionalParams(self.forward.params, self.backward.params)

    def load_params(self, params: tuple[Params, Params]) -> None:
        """Loads a ``(forward, backward)`` pair (e.g. ``rnnjax.interop.from_keras``'s)."""
        forward, backward = params
        self.forward.load_params(forward)
        self.backward.load_params(backward)

    def __call__(
        self,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: tuple[Carry, Carry] | None = None,
        deterministic: bool | None = None,
        rngs: KeySource = None,
    ) -> Any:
        """Runs both directions over ``xs [*batch, time, in_features]``."""
        deterministic = self.deterministic if deterministic is None else deterministic
        key = None
        if not deterministic and self.forward.options.uses_key:
            key = _draw_key("Bidirectional", rngs if rngs is not None else self.rngs)
        return bidirectional_call(
            self.forward.options,
            self.backward.options,
            self.merge,
            self.params,
            xs,
            seq_lengths=seq_lengths,
            initial_carry=initial_carry,
            key=key,
            deterministic=deterministic,
        )


# --- Step modules: one time step, Flax's cell protocol -------------------------------------


class _Step(_HoldsParams, nnx.RNNCellBase):
    """What the step modules share; see :class:`LSTMCell`."""

    kind: ClassVar[str]

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        initializer: str = "keras",
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
        **cell_settings: Any,
    ) -> None:
        options = RecurrentOptions(
            self.kind,
            features,
            initializer=initializer,
            dtype=dtype,
            param_dtype=param_dtype,
            cell_settings=tuple(sorted(cell_settings.items())),
        )
        self._hold(options, in_features, rngs)

    def __call__(self, carry: Carry, x_t: Array) -> tuple[Carry, Array]:
        """One time step: ``x_t [*batch, in_features]`` to ``(carry, y_t [*batch, features])``."""
        return self.options.step(self.params, carry, x_t, where=f"rnnjax.nnx.{type(self).__name__}")

    def initialize_carry(
        self,
        input_shape: tuple[int, ...],
        rngs: nnx.Rngs | nnx.RngStream | None = None,
        carry_init: Callable[..., Array] | None = None,
    ) -> Carry:
        """The carry before the first step for inputs of shape ``input_shape`` (``[*batch,
        in_features]``): zeros in ``param_dtype`` (an :class:`~rnnjax.LSTMState` for the LSTM).

        Flax's signature: ``rngs`` is read only with ``carry_init``, a
        ``jax.nn.initializers`` function ``(key, shape, dtype)`` drawn once per carry array
        from ``rngs`` (an :class:`~flax.nnx.Rngs`' ``carry`` stream, or a stream).
        """
        zeros = self.options.initial_carry(tuple(input_shape), self.params)
        if carry_init is None:
            return zeros
        stream = rngs.carry if isinstance(rngs, nnx.Rngs) else rngs
        if stream is None:
            raise ValueError(
                f"rnnjax.nnx.{type(self).__name__}.initialize_carry: carry_init needs rngs"
                " (an nnx.Rngs with a 'carry' stream, or a stream); got rngs=None"
            )
        return jax.tree.map(lambda leaf: carry_init(stream(), leaf.shape, leaf.dtype), zeros)

    @property
    def num_feature_axes(self) -> int:
        """Flax's cell protocol: ``x_t`` has one feature axis, the last."""
        return 1


class SimpleRNNCell(_Step):
    """One step of :class:`SimpleRNN`, ``h' = activation(x W + h U + b)``: a Flax NNX cell.

    Holds the same params as :class:`SimpleRNN` (:class:`~rnnjax.SimpleRNNParams`, same
    initializers), so :meth:`load_params` takes either's; a call runs
    ``rnnjax.simple_rnn(features).step``. Follows Flax's cell protocol
    (:class:`flax.nnx.RNNCellBase`), so it runs inside :class:`flax.nnx.RNN`.

    Args:
      in_features: input size.
      features: hidden size ``H``.
      activation: default ``jnp.tanh``.
      initializer, dtype, param_dtype: as :class:`SimpleRNN`.
      rngs: the ``params`` stream.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> cell = rnnjax.nnx.SimpleRNNCell(3, 8, rngs=nnx.Rngs(0))
      >>> carry = cell.initialize_carry((2, 3))                   # [batch, in_features]
      >>> carry, y = cell(carry, jnp.ones((2, 3)))
      >>> y.shape
      (2, 8)
    """

    kind: ClassVar[str] = "simple_rnn"

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        activation: Callable[[Array], Array] = jnp.tanh,
        rngs: nnx.Rngs,
        **options: Any,
    ) -> None:
        super().__init__(in_features, features, activation=activation, rngs=rngs, **options)


class LSTMCell(_Step):
    """One step of :class:`LSTM`: a Flax NNX cell, carry :class:`~rnnjax.LSTMState` ``(h, c)``.

    Holds the same params as :class:`LSTM` (:class:`~rnnjax.LSTMParams`, gates i, f, g, o,
    same initializers), so :meth:`load_params` takes an ``LSTM``'s params and
    ``rnnjax.interop.from_torch``'s or ``from_keras``'s (one layer, one direction); a call
    runs ``rnnjax.lstm(features).step``, so a jitted or scanned step equals the ``LSTM``'s
    output at that step bit for bit. It follows Flax's cell protocol
    (:class:`flax.nnx.RNNCellBase`: ``__call__(carry, x_t)``, ``initialize_carry``,
    ``num_feature_axes``), so :class:`flax.nnx.RNN` runs it over a sequence. The carry is
    an :class:`~rnnjax.LSTMState`: a plain tuple is refused (Flax's own ``LSTMCell`` orders
    it ``(c, h)``).

    Args:
      in_features: input size.
      features: hidden size ``H``.
      initializer, dtype, param_dtype: as :class:`LSTM`.
      rngs: the ``params`` stream.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax, rnnjax.nnx
      >>> from flax import nnx
      >>> cell = rnnjax.nnx.LSTMCell(3, 32, rngs=nnx.Rngs(0))
      >>> xs = jnp.ones((2, 5, 3))                                # [batch, time, features]
      >>> nnx.RNN(cell)(xs).shape                                 # Flax's own driver
      (2, 5, 32)
      >>> lstm = rnnjax.nnx.LSTM(3, 32, return_sequences=True, rngs=nnx.Rngs(1))
      >>> cell.load_params(lstm.params)                           # interchangeable params
      >>> bool(jnp.allclose(nnx.RNN(cell)(xs), lstm(xs), atol=1e-6))
      True

      Decoding, one token at a time (carry in, one token's embedding in, carry out):

      >>> embed = nnx.Embed(10, 3, rngs=nnx.Rngs(2))
      >>> @nnx.jit
      ... def step(cell, embed, carry, token):
      ...     return cell(carry, embed(token))
      >>> carry, token = cell.initialize_carry((2, 3)), jnp.array([1, 4])
      >>> for _ in range(3):
      ...     carry, y = step(cell, embed, carry, token)
      ...     token = jnp.argmax(y[:, :10], axis=-1)              # a real model: a Dense head
      >>> carry.h.shape, carry.c.shape
      ((2, 32), (2, 32))
    """

    kind: ClassVar[str] = "lstm"


class GRUCell(_Step):
    """One step of :class:`GRU` (gates r, z, n; params :class:`~rnnjax.GRUParams`): a Flax
    NNX cell; as :class:`LSTMCell`, with carry ``h``.

    Args:
      in_features: input size.
      features: hidden size ``H``.
      reset_after: ``True`` (Keras's default, PyTorch's and cuDNN's form) or ``False``.
      initializer, dtype, param_dtype: as :class:`GRU`.
      rngs: the ``params`` stream.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> cell = rnnjax.nnx.GRUCell(3, 8, reset_after=False, rngs=nnx.Rngs(0))
      >>> carry, ys = nnx.RNN(cell, return_carry=True)(jnp.ones((2, 5, 3)))
      >>> carry.shape, ys.shape
      ((2, 8), (2, 5, 8))
    """

    kind: ClassVar[str] = "gru"

    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        reset_after: bool = True,
        rngs: nnx.Rngs,
        **options: Any,
    ) -> None:
        super().__init__(in_features, features, reset_after=reset_after, rngs=rngs, **options)


class MinGRUCell(_Step):
    """One step of :class:`MinGRU` (params :class:`~rnnjax.MinRNNParams`, carry ``h``): a Flax
    NNX cell for decoding; as :class:`LSTMCell`.

    Args:
      in_features, features, initializer, dtype, param_dtype, rngs: as :class:`LSTMCell`.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> cell = rnnjax.nnx.MinGRUCell(3, 8, rngs=nnx.Rngs(0))
      >>> carry, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 8)
    """

    kind: ClassVar[str] = "min_gru"


class MinLSTMCell(_Step):
    """One step of :class:`MinLSTM` (params :class:`~rnnjax.MinRNNParams`, carry ``h``); as
    :class:`MinGRUCell`.

    Example:
      >>> import jax.numpy as jnp, rnnjax.nnx
      >>> from flax import nnx
      >>> cell = rnnjax.nnx.MinLSTMCell(3, 8, rngs=nnx.Rngs(0))
      >>> carry, y = cell(cell.initialize_carry((2, 3)), jnp.ones((2, 3)))
      >>> y.shape
      (2, 8)
    """

    kind: ClassVar[str] = "min_lstm"
