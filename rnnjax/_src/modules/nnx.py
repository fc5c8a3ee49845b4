"""The NNX modules over any cell: :class:`RNN`, :class:`Step`, :class:`Bidirectional`, and
the bases of the named modules (:class:`KindRNN`, :class:`KindStep`), which
:mod:`rnnjax.nnx` specialises one line per cell kind.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import nnx
from jax.typing import DTypeLike

from rnnjax._src.core.contract import Carry, Cell, Params
from rnnjax._src.core.removed import refuses_removed
from rnnjax._src.core.settings import ModuleSettings
from rnnjax._src.core.validate import check_bool, check_int
from rnnjax._src.layers.compose import BidirectionalParams, check_merge
from rnnjax._src.modules.common import (
    Recurrent,
    bidirectional_call,
    check_bidirectional_carry,
    kind_cell,
    kind_signature,
)

Array = jax.Array
KeySource = nnx.Rngs | nnx.RngStream | Array | None


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


def _check_call_rngs(where: str, rngs: Any) -> KeySource:
    if rngs is None or isinstance(rngs, (nnx.Rngs, nnx.RngStream, jax.Array)):
        return rngs
    raise TypeError(
        f"{where}: rngs (of the call) must be an nnx.Rngs, an nnx.RngStream or a key"
        f" (jax.random.key(0)); got {rngs!r} of type {type(rngs).__name__}"
    )


def _check_rngs(where: str, rngs: Any) -> nnx.Rngs:
    if not isinstance(rngs, nnx.Rngs):
        raise TypeError(
            f"{where}: rngs must be an nnx.Rngs (e.g. nnx.Rngs(0)); got {type(rngs).__name__}"
        )
    return rngs


def _check_like(where: str, new: Params, old: Params) -> None:
    new_shapes = jax.tree.map(jnp.shape, new)
    old_shapes = jax.tree.map(jnp.shape, old)
    if str(jax.tree.structure(new)) != str(jax.tree.structure(old)) or new_shapes != old_shapes:
        raise ValueError(
            f"{where}: params must match the module's: expected {old_shapes}; got {new_shapes}"
        )


class _HoldsParams(nnx.Module):
    """A module holding one cell's params (one :class:`flax.nnx.Param` per array, under the
    attribute ``cell``, the path checkpoints have) made by its :class:`Recurrent`: sequence
    and step modules alike, so their params load into each other."""

    def _hold(self, recurrent: Recurrent, in_features: Any, rngs: Any) -> None:
        rngs = _check_rngs(recurrent.where, rngs)
        self.in_features = check_int(recurrent.where, "in_features", in_features)
        self.recurrent = recurrent
        params = recurrent.init(rngs.params(), self.in_features)
        self.cell = nnx.data(jax.tree.map(nnx.Param, params))

    @property
    def params(self) -> Params:
        """The params as the functional layer takes them: the cell's pytree (a tuple of them
        for ``num_layers > 1``)."""
        return jax.tree.map(lambda v: v[...], self.cell, is_leaf=_is_variable)

    def load_params(self, params: Params) -> None:
        """Replaces the params in place with ``params`` of the same structure and shapes,
        e.g. from ``cell.init``, ``rnnjax.interop.from_torch`` or ``from_keras``; arrays are
        cast to the module's ``param_dtype``."""
        _check_like(f"{self.recurrent.where}.load_params", params, self.params)
        dtype = self.recurrent.settings.param_dtype
        jax.tree.map(
            lambda v, new: v.set_value(jnp.asarray(new, dtype)),
            self.cell,
            params,
            is_leaf=_is_variable,
        )


class RNN(_HoldsParams):
    """Any :class:`~rnnjax.Cell` over a sequence, as an NNX module: Keras's recurrent layer.

    Args:
      cell: a :class:`~rnnjax.Cell`: ``rnnjax.lstm(32)``, a cell of your own (any pytrees
        for params and carry), ``rnnjax.attention(...)``, a ``with_compute_dtype`` cell.
      in_features: input size.
      rngs: ``params`` and ``dropout`` streams (``nnx.Rngs(0)`` serves both).
      deterministic: the initial mode; ``False`` is training (dropout on).
      settings: all the settings at once, as a :class:`rnnjax.ModuleSettings` (then none
        by name), e.g. one shared by several modules.
      **by_name: the settings of :class:`rnnjax.ModuleSettings`, each by keyword:
        ``return_sequences``, ``return_state``, ``go_backwards``, ``dropout``,
        ``recurrent_dropout`` (for a cell with the ``projection`` capability),
        ``num_layers``, ``stack_dropout``, ``unroll``, ``remat``, ``segment_length``,
        ``hoist_projection``, ``parallel``, ``dtype``, ``param_dtype``.

    Raises:
      TypeError, ValueError: naming the module, for a ``cell`` that is not a ``Cell``, an
        unknown or ill-typed setting, a bad ``in_features`` or ``rngs``.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax, rnnjax.nnx
      >>> from flax import nnx
      >>> cell = rnnjax.gru(8)
      >>> rnn = rnnjax.nnx.RNN(cell, 3, return_sequences=True, rngs=nnx.Rngs(0))
      >>> xs, lengths = jnp.ones((2, 5, 3)), jnp.array([5, 2])
      >>> ys = rnn(xs, seq_lengths=lengths)
      >>> _, want = rnnjax.rnn(cell, rnn.params, xs, seq_lengths=lengths)
      >>> bool((ys == want).all())
      True
    """

    @refuses_removed("rnnjax.nnx.{cls}")
    def __init__(
        self,
        cell: Cell,
        in_features: int,
        *,
        rngs: nnx.Rngs,
        deterministic: bool = False,
        settings: ModuleSettings | None = None,
        **by_name: Any,
    ) -> None:
        where = f"rnnjax.nnx.{type(self).__name__}"
        self._hold(Recurrent.make(where, cell, by_name, settings), in_features, rngs)
        self.deterministic = check_bool(where, "deterministic", deterministic)
        uses_key = self.recurrent.settings.uses_dropout
        self.rngs = rngs.dropout.fork() if uses_key else nnx.data(None)

    def __call__(
        self,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: Carry | None = None,
        deterministic: bool | None = None,
        rngs: KeySource = None,
    ) -> Any:
        """Runs over ``xs [*batch, time, in_features]``; returns what Keras returns.

        Args:
          xs: ``[*batch, time, in_features]``, floating.
          seq_lengths: integer ``[*batch]``; steps at and past a length are padding.
          initial_carry: the carry before the first step (one per layer when stacked).
          deterministic: overrides the module's mode for this call (``True``: no dropout).
          rngs: where dropout masks come from for this call (an ``nnx.Rngs``, a stream or a
            key); default the module's own ``dropout`` stream.

        Returns:
          The last output ``[*batch, features]``, or with ``return_sequences`` all outputs
          ``[*batch, time, features]``; with ``return_state`` the pair ``(outputs, state)``.
        """
        recurrent = self.recurrent
        rngs = _check_call_rngs(recurrent.where, rngs)
        mode = self.deterministic if deterministic is None else deterministic
        mode = recurrent.check_call(self.params, xs, seq_lengths, mode, initial_carry)
        key = None
        if recurrent.settings.draws_masks(mode):
            key = _draw_key(recurrent.where, rngs if rngs is not None else self.rngs)
        return recurrent(
            self.params,
            xs,
            seq_lengths=seq_lengths,
            initial_carry=initial_carry,
            key=key,
            deterministic=mode,
        )


class KindRNN(RNN):
    """A module whose cell is built from a kind of the registry: ``kind(features, ...)``;
    the kind's own settings (``reset_after``, ``r_min``, ...) are keyword arguments, with
    the defaults of its factory."""

    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = kind_signature(KindRNN.__init__, cls.kind)  # type: ignore[attr-defined]

    @refuses_removed("rnnjax.nnx.{cls}")
    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        initializer: str | None = None,
        rngs: nnx.Rngs,
        deterministic: bool = False,
        settings: ModuleSettings | None = None,
        **by_name: Any,
    ) -> None:
        where = f"rnnjax.nnx.{type(self).__name__}"
        cell, rest = kind_cell(where, self.kind, features, initializer, by_name)
        super().__init__(
            cell, in_features, rngs=rngs, deterministic=deterministic, settings=settings, **rest
        )


class Bidirectional(nnx.Module):
    """Keras's ``Bidirectional``: the given layer forward, a fresh copy of it backward.

    The backward layer has the same cell and settings with ``go_backwards`` flipped and its
    own params drawn from ``rngs``; it runs through :func:`rnnjax.bidirectional`, so under
    ``seq_lengths`` it reads each sequence's valid part from its last valid step back to
    step 0, and its outputs sit at their original positions. ``return_sequences`` and
    ``return_state`` are the wrapped layer's. Without ``return_sequences`` the output merges
    each direction's last output (forward: at the last valid step; backward: at step 0). The
    state is the pair ``(forward carry, backward carry)``.

    Args:
      layer: an :class:`RNN` (or ``LSTM``, ``GRU``, ...), the forward direction.
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

    @refuses_removed("rnnjax.nnx.{cls}")
    def __init__(
        self,
        layer: RNN,
        *,
        merge: str = "concat",
        deterministic: bool = False,
        rngs: nnx.Rngs,
    ) -> None:
        where = "rnnjax.nnx.Bidirectional"
        check_merge(where, merge)
        if not isinstance(layer, RNN):
            raise TypeError(
                f"{where}: layer must be a rnnjax.nnx RNN (or LSTM, GRU, ...); got"
                f" {type(layer).__name__}"
            )
        rngs = _check_rngs(where, rngs)
        self.merge = merge
        self.deterministic = check_bool(where, "deterministic", deterministic)
        self.forward = layer
        backward = nnx.clone(layer)
        backward.recurrent = layer.recurrent.flipped()
        backward.load_params(backward.recurrent.init(rngs.params(), layer.in_features))
        self.backward = backward
        uses_key = layer.recurrent.settings.uses_dropout
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
        """Runs both directions over ``xs [*batch, time, in_features]``.

        Args:
          xs: ``[*batch, time, in_features]``, floating.
          seq_lengths: integer ``[*batch]``; steps at and past a length are padding.
          initial_carry: a ``(forward, backward)`` pair of carries (each one per layer when
            the wrapped layer is stacked).
          deterministic: overrides the module's mode for this call (``True``: no dropout).
          rngs: where dropout masks come from for this call (an ``nnx.Rngs``, a stream or a
            key); default the module's own ``dropout`` stream.

        Returns:
          The merged last outputs ``[*batch, 2 * features]`` (``"concat"``), or with
          ``return_sequences`` the merged outputs ``[*batch, time, ...]``; with
          ``return_state`` the pair ``(outputs, (forward carry, backward carry))``.
        """
        where, forward = "rnnjax.nnx.Bidirectional", self.forward.recurrent
        rngs = _check_call_rngs(where, rngs)
        mode = self.deterministic if deterministic is None else deterministic
        mode = forward.check_call(self.forward.params, xs, seq_lengths, mode)
        if initial_carry is not None:
            pair = (forward, self.backward.recurrent)
            check_bidirectional_carry(where, pair, self.params, xs, initial_carry)
        key = None
        if forward.settings.draws_masks(mode):
            key = _draw_key(where, rngs if rngs is not None else self.rngs)
        return bidirectional_call(
            forward,
            self.backward.recurrent,
            self.merge,
            self.params,
            xs,
            seq_lengths=seq_lengths,
            initial_carry=initial_carry,
            key=key,
            deterministic=mode,
        )


# --- Step modules: one time step, Flax's cell protocol -------------------------------------


class Step(_HoldsParams, nnx.RNNCellBase):
    """One time step of any :class:`~rnnjax.Cell`, as an NNX cell in Flax's protocol.

    Holds the params :class:`RNN` over the same cell holds (:meth:`load_params` takes
    either's) and runs ``cell.step``, so a jitted or scanned step equals the sequence
    module's output at that step bit for bit. It follows :class:`flax.nnx.RNNCellBase`
    (``__call__(carry, x_t)``, ``initialize_carry``, ``num_feature_axes``), so
    :class:`flax.nnx.RNN` runs it over a sequence.

    Args:
      cell: a :class:`~rnnjax.Cell`.
      in_features: input size.
      rngs: the ``params`` stream.
      dtype: computation dtype (``None``: ``param_dtype``).
      param_dtype: dtype of the params.

    Example:
      >>> import jax.numpy as jnp, rnnjax, rnnjax.nnx
      >>> from flax import nnx
      >>> step = rnnjax.nnx.Step(rnnjax.gru(8), 3, rngs=nnx.Rngs(0))
      >>> nnx.RNN(step)(jnp.ones((2, 5, 3))).shape                 # Flax's own driver
      (2, 5, 8)
    """

    @refuses_removed("rnnjax.nnx.{cls}")
    def __init__(
        self,
        cell: Cell,
        in_features: int,
        *,
        rngs: nnx.Rngs,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
    ) -> None:
        where = f"rnnjax.nnx.{type(self).__name__}"
        settings = {"dtype": dtype, "param_dtype": param_dtype}
        self._hold(Recurrent.make(where, cell, settings), in_features, rngs)

    def __call__(self, carry: Carry, x_t: Array) -> tuple[Carry, Array]:
        """One time step: ``x_t [*batch, in_features]`` to ``(carry, y_t [*batch, features])``.

        Args:
          carry: the carry before the step, as :meth:`initialize_carry` makes it (an
            :class:`~rnnjax.LSTMState` ``(h, c)`` for the LSTM, ``h [*batch, features]``
            for most cells).
          x_t: ``[*batch, in_features]``, floating.

        Returns:
          ``(carry, y_t)``: the carry after the step and the output ``[*batch, features]``.
        """
        return self.recurrent.step(self.params, carry, x_t)

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
        zeros = self.recurrent.initial_carry(tuple(input_shape), self.params)
        if carry_init is None:
            return zeros
        stream = rngs.carry if isinstance(rngs, nnx.Rngs) else rngs
        if stream is None:
            raise ValueError(
                f"{self.recurrent.where}.initialize_carry: carry_init needs rngs"
                " (an nnx.Rngs with a 'carry' stream, or a stream); got rngs=None"
            )
        return jax.tree.map(lambda leaf: carry_init(stream(), leaf.shape, leaf.dtype), zeros)

    @property
    def num_feature_axes(self) -> int:
        """Flax's cell protocol: ``x_t`` has one feature axis, the last."""
        return 1


class KindStep(Step):
    """A step module whose cell is built from a kind of the registry (its own settings as
    :class:`KindRNN`'s)."""

    kind: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.__signature__ = kind_signature(KindStep.__init__, cls.kind)  # type: ignore[attr-defined]

    @refuses_removed("rnnjax.nnx.{cls}")
    def __init__(
        self,
        in_features: int,
        features: int,
        *,
        initializer: str | None = None,
        dtype: DTypeLike | None = None,
        param_dtype: DTypeLike = jnp.float32,
        rngs: nnx.Rngs,
        **cell_settings: Any,
    ) -> None:
        where = f"rnnjax.nnx.{type(self).__name__}"
        cell, rest = kind_cell(where, self.kind, features, initializer, cell_settings)
        if rest:
            raise TypeError(f"{where}: unknown setting(s) {sorted(rest)}")
        super().__init__(cell, in_features, rngs=rngs, dtype=dtype, param_dtype=param_dtype)
