"""The linen modules over any cell: :class:`RNN`, :class:`Step`, :class:`Bidirectional`, and
the bases of the named modules (:class:`KindRNN`, :class:`KindStep`), which
:mod:`rnnjax.linen` specialises one line per cell kind.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import TYPE_CHECKING, Any, ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.typing import DTypeLike

from rnnjax._src.cells.registry import CELL_KINDS
from rnnjax._src.core.contract import Carry, Cell, Params
from rnnjax._src.core.removed import refuses_removed
from rnnjax._src.core.settings import ModuleSettings
from rnnjax._src.layers.compose import BidirectionalParams, check_merge
from rnnjax._src.modules.common import (
    Recurrent,
    bidirectional_call,
    check_bidirectional_carry,
    kind_cell,
)

Array = jax.Array


def _settings_fields() -> type[nn.Module]:
    """A linen base class whose keyword-only attributes are :class:`ModuleSettings`' fields
    (same names, types and defaults), ``deterministic`` and ``settings`` (all of them as one
    :class:`ModuleSettings`)."""
    fields = dataclasses.fields(ModuleSettings)
    extra = {"deterministic": "bool | None", "settings": "ModuleSettings | None"}
    namespace: dict[str, Any] = {
        "__module__": __name__,
        "__annotations__": {f.name: f.type for f in fields} | extra,
        "deterministic": dataclasses.field(default=None, kw_only=True),
        "settings": dataclasses.field(default=None, kw_only=True),
    }
    for f in fields:
        namespace[f.name] = dataclasses.field(default=f.default, kw_only=True)
    return type("SettingsFields", (nn.Module,), namespace)


if TYPE_CHECKING:
    SettingsFields = nn.Module
else:
    SettingsFields = _settings_fields()


def add_kind_settings(cls: type) -> None:
    """Declares the kind's own settings (``cls.kind``'s registry entry: names, defaults and
    annotations of its factory's signature) as attributes of the linen module class ``cls``,
    after those it inherits; one it declares itself is kept."""
    kind = cls.__dict__.get("kind")
    if kind is None:
        return
    annotations = dict(inspect.get_annotations(cls))
    for setting in CELL_KINDS[kind].settings:
        if setting.name not in annotations:
            annotations[setting.name] = setting.annotation
            setattr(cls, setting.name, setting.default)
    cls.__annotations__ = annotations


def settings_set_by_name(module: nn.Module) -> dict[str, Any]:
    """The module's setting attributes that differ from their defaults (all of them when no
    ``settings=`` is given), as :meth:`Recurrent.make` takes them."""
    fields = dataclasses.fields(ModuleSettings)
    values = {f.name: getattr(module, f.name) for f in fields}
    if module.settings is None:
        return values
    return {f.name: values[f.name] for f in fields if not _is_default(values[f.name], f.default)}


def _is_default(value: Any, default: Any) -> bool:
    if value is default:
        return True
    try:  # 0.0 written again is another object, but the default all the same
        return type(value) is type(default) and bool(value == default)
    except (TypeError, ValueError):  # an array, say: not the default
        return False


def refuse_removed_arguments(cls: type) -> None:
    """``cls(fused_backward=...)`` answered with what replaced it, under the class's name."""
    cls.__init__ = refuses_removed("rnnjax.linen.{cls}")(cls.__init__)  # type: ignore[misc]


def _deterministic(module: nn.Module, recurrent: Recurrent, deterministic: bool | None) -> bool:
    if not recurrent.settings.uses_dropout:  # nothing random: the flag changes nothing
        return True
    if (module.deterministic is None) == (deterministic is None):
        raise ValueError(
            f"{recurrent.where}: deterministic must be given to the module or to the call"
            " (exactly one of them) when a dropout rate is positive: True evaluates, False"
            f" trains; got {module.deterministic!r} and {deterministic!r}"
        )
    return module.deterministic if deterministic is None else deterministic


def cell_params(module: nn.Module, recurrent: Recurrent, input_size: int) -> Params:
    """The module's ``"cell"`` params: made by ``recurrent.init`` at ``init``, and afterwards
    read as they are, so inputs of the wrong width meet rnnjax's named error (the cell's
    check) rather than Flax's complaint about the initializer's shape."""
    if module.has_variable("params", "cell"):
        return module.get_variable("params", "cell")
    return module.param("cell", lambda key: recurrent.init(key, input_size))


def _input_size(where: str, xs: Any) -> int:
    if not hasattr(xs, "shape") or jnp.ndim(xs) < 2:
        raise ValueError(
            f"{where}: xs must have shape [*batch, time, features] (rank >= 2); got"
            f" {getattr(xs, 'shape', type(xs))}"
        )
    return int(xs.shape[-1])


class _Sequence(SettingsFields):
    """What :class:`RNN` and the named modules share: the call."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        refuse_removed_arguments(cls)

    def recurrent(self) -> Recurrent:
        raise NotImplementedError

    @nn.compact
    def __call__(
        self,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: Carry | None = None,
        deterministic: bool | None = None,
    ) -> Any:
        """Runs over ``xs [*batch, time, features_in]``; returns what Keras returns.

        Args:
          xs: ``[*batch, time, features_in]``, floating (its width sets the params at init).
          seq_lengths: integer ``[*batch]``; steps at and past a length are padding.
          initial_carry: the carry before the first step (one per layer when stacked).
          deterministic: ``False`` turns dropout on (exactly one of this and the attribute,
            when some dropout rate is positive); masks come from the ``'dropout'`` rng.

        Returns:
          The last output ``[*batch, features]``, or with ``return_sequences`` all outputs;
          with ``return_state`` the pair ``(outputs, state)``.
        """
        recurrent = self.recurrent()
        params = cell_params(self, recurrent, _input_size(recurrent.where, xs))
        mode = _deterministic(self, recurrent, deterministic)
        mode = recurrent.check_call(params, xs, seq_lengths, mode, initial_carry)
        key = self.make_rng("dropout") if recurrent.settings.draws_masks(mode) else None
        return recurrent(
            params,
            xs,
            seq_lengths=seq_lengths,
            initial_carry=initial_carry,
            key=key,
            deterministic=mode,
        )


class RNN(_Sequence):
    """Any :class:`~rnnjax.Cell` over a sequence, as a linen module: Keras's recurrent layer.

    The settings of :class:`rnnjax.ModuleSettings` are keyword-only attributes of the same
    names: ``return_sequences``, ``return_state``, ``go_backwards``, ``dropout``,
    ``recurrent_dropout``, ``num_layers``, ``stack_dropout``, ``unroll``, ``remat``,
    ``segment_length``, ``hoist_projection``, ``parallel``, ``dtype``, ``param_dtype``.

    Attributes:
      cell: a :class:`~rnnjax.Cell`: ``rnnjax.lstm(32)``, a cell of your own (any pytrees
        for params and carry), ``rnnjax.attention(...)``, a ``with_compute_dtype`` cell.
      deterministic: ``False`` turns dropout on (or pass it to the call).
      settings: all the settings at once, as a :class:`rnnjax.ModuleSettings` (then none of
        the setting attributes is set by name).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax, rnnjax.linen
      >>> cell = rnnjax.gru(8)
      >>> rnn = rnnjax.linen.RNN(cell, return_sequences=True)
      >>> xs = jnp.ones((2, 5, 3))
      >>> variables = rnn.init(jax.random.key(0), xs)
      >>> _, want = rnnjax.rnn(cell, variables["params"]["cell"], xs)
      >>> bool((rnn.apply(variables, xs) == want).all())
      True
    """

    cell: Cell

    def recurrent(self) -> Recurrent:
        """The cell and the checked settings."""
        where = f"rnnjax.linen.{type(self).__name__}"
        return Recurrent.make(where, self.cell, settings_set_by_name(self), self.settings)


class KindRNN(_Sequence):
    """A module whose cell is built from a kind of the registry: ``kind(features, ...)``."""

    kind: ClassVar[str]
    features: int
    initializer: str | None = dataclasses.field(default=None, kw_only=True)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        add_kind_settings(cls)  # the kind's own settings, as its registry entry has them
        super().__init_subclass__(**kwargs)

    def recurrent(self) -> Recurrent:
        """The kind's cell and the checked settings."""
        where = f"rnnjax.linen.{type(self).__name__}"
        own = {name: getattr(self, name) for name in CELL_KINDS[self.kind].setting_names}
        cell, _ = kind_cell(where, self.kind, self.features, self.initializer, own)
        return Recurrent.make(where, cell, settings_set_by_name(self), self.settings)


class Bidirectional(nn.Module):
    """Keras's ``Bidirectional``: the wrapped layer forward, a copy with its own params backward.

    The backward direction has the wrapped layer's cell and settings with ``go_backwards``
    flipped and runs through :func:`rnnjax.bidirectional`: under ``seq_lengths`` it reads each
    sequence's valid part from its last valid step back to step 0, outputs at their original
    positions. ``return_sequences``, ``return_state``, the dropout rates and ``deterministic``
    are the wrapped layer's. Without ``return_sequences`` the output merges each direction's
    last output (forward: at the last valid step; backward: at step 0); the state is the pair
    ``(forward carry, backward carry)``. Params: ``{"forward": ..., "backward": ...}``.

    Attributes:
      layer: an :class:`RNN` (or ``LSTM``, ``GRU``, ...); its cell and settings only are used.
      merge: ``"concat"`` (default), ``"sum"``, ``"mul"``, ``"ave"`` or ``"none"`` (a pair).

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax.linen
      >>> bi = rnnjax.linen.Bidirectional(rnnjax.linen.GRU(8, return_sequences=True))
      >>> xs = jnp.ones((2, 5, 3))
      >>> bi.apply(bi.init(jax.random.key(0), xs), xs, seq_lengths=jnp.array([5, 3])).shape
      (2, 5, 16)
    """

    layer: _Sequence
    merge: str = "concat"

    @nn.compact
    def __call__(
        self,
        xs: Array,
        *,
        seq_lengths: Array | None = None,
        initial_carry: tuple[Carry, Carry] | None = None,
        deterministic: bool | None = None,
    ) -> Any:
        """Runs both directions over ``xs [*batch, time, features_in]``.

        Args:
          xs: ``[*batch, time, features_in]``, floating (its width sets the params at init).
          seq_lengths: integer ``[*batch]``; steps at and past a length are padding.
          initial_carry: a ``(forward, backward)`` pair of carries (each one per layer when
            the wrapped layer is stacked).
          deterministic: ``False`` turns dropout on (exactly one of this and the wrapped
            layer's attribute, when some dropout rate is positive).

        Returns:
          The merged last outputs ``[*batch, 2 * features]`` (``"concat"``), or with
          ``return_sequences`` the merged outputs ``[*batch, time, ...]``; with
          ``return_state`` the pair ``(outputs, (forward carry, backward carry))``.
        """
        where = "rnnjax.linen.Bidirectional"
        check_merge(where, self.merge)
        if not isinstance(self.layer, _Sequence):
            raise TypeError(
                f"{where}: layer must be a rnnjax.linen RNN (or LSTM, GRU, ...); got"
                f" {type(self.layer).__name__}"
            )
        forward = self.layer.recurrent()
        backward = forward.flipped()
        size = _input_size(where, xs)
        params = BidirectionalParams(
            self.param("forward", lambda key: forward.init(key, size)),
            self.param("backward", lambda key: backward.init(key, size)),
        )
        mode = _deterministic(self.layer, forward, deterministic)
        mode = forward.check_call(params.forward, xs, seq_lengths, mode)
        if initial_carry is not None:
            check_bidirectional_carry(where, (forward, backward), params, xs, initial_carry)
        key = self.make_rng("dropout") if forward.settings.draws_masks(mode) else None
        return bidirectional_call(
            forward,
            backward,
            self.merge,
            params,
            xs,
            seq_lengths=seq_lengths,
            initial_carry=initial_carry,
            key=key,
            deterministic=mode,
        )


# --- Step modules: one time step, Flax's cell protocol -------------------------------------


class _StepBase(nn.RNNCellBase):
    """What :class:`Step` and the named step modules share: the call and the carry."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        refuse_removed_arguments(cls)

    def recurrent(self) -> Recurrent:
        raise NotImplementedError

    def _settings(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "param_dtype": self.param_dtype}

    @nn.compact
    def __call__(self, carry: Carry, x_t: Array) -> tuple[Carry, Array]:
        """One time step: ``x_t [*batch, features_in]`` to ``(carry, y_t [*batch, features])``.

        Args:
          carry: the carry before the step, as :meth:`initialize_carry` makes it (an
            :class:`~rnnjax.LSTMState` ``(h, c)`` for the LSTM, ``h [*batch, features]``
            for most cells).
          x_t: ``[*batch, features_in]``, floating (its width sets the params at init).

        Returns:
          ``(carry, y_t)``: the carry after the step and the output ``[*batch, features]``.
        """
        recurrent = self.recurrent()
        if not hasattr(x_t, "shape") or jnp.ndim(x_t) < 1:
            raise ValueError(
                f"{recurrent.where}: x_t must have shape [*batch, features]; got"
                f" {getattr(x_t, 'shape', type(x_t))}"
            )
        params = cell_params(self, recurrent, int(x_t.shape[-1]))
        return recurrent.step(params, carry, x_t)

    @nn.nowrap
    def initialize_carry(self, rng: Array, input_shape: tuple[int, ...]) -> Carry:
        """The carry before the first step for inputs of shape ``input_shape`` (``[*batch,
        features_in]``): zeros in ``param_dtype`` (an :class:`~rnnjax.LSTMState` for the LSTM).
        ``rng`` is unused (Flax's signature)."""
        return self.recurrent().initial_carry(tuple(input_shape))

    @property
    def num_feature_axes(self) -> int:
        """Flax's cell protocol: ``x_t`` has one feature axis, the last."""
        return 1


class Step(_StepBase):
    """One time step of any :class:`~rnnjax.Cell`, as a linen cell in Flax's protocol.

    Its variables are those of :class:`~rnnjax.linen.RNN` over the same cell
    (``{"params": {"cell": ...}}``) and a call runs ``cell.step``, so a jitted or scanned
    step equals the sequence module's output at that step bit for bit. It follows
    :class:`flax.linen.RNNCellBase`, so :class:`flax.linen.RNN` runs it over a sequence
    (its params then sit one level down, under the ``RNN``'s own ``"cell"``).

    Attributes:
      cell: a :class:`~rnnjax.Cell`.
      dtype: computation dtype (``None``: ``param_dtype``).
      param_dtype: dtype of the params.

    Example:
      >>> import jax, jax.numpy as jnp, rnnjax, rnnjax.linen
      >>> from flax import linen as nn
      >>> rnn = nn.RNN(rnnjax.linen.Step(rnnjax.gru(8)))           # Flax's own driver
      >>> xs = jnp.ones((2, 5, 3))
      >>> rnn.apply(rnn.init(jax.random.key(0), xs), xs).shape
      (2, 5, 8)
    """

    cell: Cell
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def recurrent(self) -> Recurrent:
        """The cell and its checked settings."""
        where = f"rnnjax.linen.{type(self).__name__}"
        return Recurrent.make(where, self.cell, self._settings())


class KindStep(_StepBase):
    """A step module whose cell is built from a kind of the registry."""

    kind: ClassVar[str]
    features: int
    initializer: str | None = None
    dtype: DTypeLike | None = None
    param_dtype: DTypeLike = jnp.float32

    def __init_subclass__(cls, **kwargs: Any) -> None:
        add_kind_settings(cls)  # the kind's own settings, as its registry entry has them
        super().__init_subclass__(**kwargs)

    def recurrent(self) -> Recurrent:
        """The kind's cell and its checked settings."""
        where = f"rnnjax.linen.{type(self).__name__}"
        own = {name: getattr(self, name) for name in CELL_KINDS[self.kind].setting_names}
        cell, _ = kind_cell(where, self.kind, self.features, self.initializer, own)
        return Recurrent.make(where, cell, self._settings())
