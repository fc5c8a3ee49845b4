"""Exact weight conversion between rnnjax cells and Flax's recurrent cells (linen and NNX).

Flax keeps one ``Dense``/``Linear`` per gate and side (``ii``, ``hi``, ...: linen's cells and
``nnx.LSTMCell``) or one per side with the gates concatenated (``dense_i``, ``dense_h``: NNX's
``OptimizedLSTMCell``, ``GRUCell`` and ``SimpleCell``), in the gate orders rnnjax uses (LSTM
i, f, g, o; GRU r, z, n). rnnjax concatenates the kernels per side; the LSTM and the vanilla
RNN keep one bias; the GRU keeps the input bias and the recurrent bias apart, as the candidate
``n = tanh(x W_n + b_n + r * (h U_n + beta_n))`` needs.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from rnnjax._src.cells.elman import SimpleRNNParams, simple_rnn
from rnnjax._src.cells.gru import GRUParams, gru
from rnnjax._src.cells.lstm import LSTMParams, lstm
from rnnjax._src.core.contract import Cell

Array = jax.Array
LSTM_GATES, GRU_GATES = ("i", "f", "g", "o"), ("r", "z", "n")


class _Layout(NamedTuple):
    """Where a Flax cell keeps its weights: the input-side and hidden-side layers (one per gate
    in gate order, or one for all gates), whether the input side has biases, and which
    hidden-side layers have one."""

    kind: str
    inputs: tuple[str, ...]
    hiddens: tuple[str, ...]
    input_bias: bool
    hidden_bias: tuple[str, ...]


_LINEN_LSTM = _Layout(
    "lstm", tuple(f"i{g}" for g in LSTM_GATES), tuple(f"h{g}" for g in LSTM_GATES), False,
    tuple(f"h{g}" for g in LSTM_GATES),
)  # fmt: skip
LAYOUTS: dict[tuple[str, str], _Layout] = {
    ("linen", "LSTMCell"): _LINEN_LSTM,
    ("linen", "OptimizedLSTMCell"): _LINEN_LSTM,
    ("linen", "GRUCell"): _Layout(
        "gru", tuple(f"i{g}" for g in GRU_GATES), tuple(f"h{g}" for g in GRU_GATES), True, ("hn",)
    ),
    ("linen", "SimpleCell"): _Layout("simple_rnn", ("i",), ("h",), True, ()),
    ("nnx", "LSTMCell"): _LINEN_LSTM._replace(inputs=("ii", "if_", "ig", "io")),
    ("nnx", "OptimizedLSTMCell"): _Layout("lstm", ("dense_i",), ("dense_h",), False, ("dense_h",)),
    ("nnx", "GRUCell"): _Layout("gru", ("dense_i",), ("dense_h",), True, ()),
    ("nnx", "SimpleCell"): _Layout("simple_rnn", ("dense_i",), ("dense_h",), True, ()),
}
"""(API, Flax class name) -> its layout."""

PARAMS_TYPES: dict[str, type[Any]] = {
    "lstm": LSTMParams,
    "gru": GRUParams,
    "simple_rnn": SimpleRNNParams,
}


def _api_and_layout(where: str, flax_cell: Any) -> tuple[str, _Layout]:
    """``("linen" | "nnx", layout)`` of a Flax cell instance; a ``TypeError`` for anything else."""
    from flax import linen as nn
    from flax import nnx

    api = "nnx" if isinstance(flax_cell, nnx.Module) else "linen"
    api = api if isinstance(flax_cell, (nnx.Module, nn.Module)) else ""
    layout = LAYOUTS.get((api, type(flax_cell).__name__))
    if layout is None or not type(flax_cell).__module__.startswith(f"flax.{api}"):
        raise TypeError(
            f"{where}: flax_cell must be a flax.linen or flax.nnx LSTMCell, OptimizedLSTMCell,"
            f" GRUCell or SimpleCell instance; got {type(flax_cell).__name__}"
        )
    return api, layout


def _check_functions(where: str, flax_cell: Any, layout: _Layout) -> None:
    """rnnjax's LSTM and GRU use sigmoid gates and tanh; the vanilla RNN takes any activation
    but has no residual connection."""
    name = type(flax_cell).__name__
    if layout.kind == "simple_rnn":
        if getattr(flax_cell, "residual", False):
            raise ValueError(f"{where}: a {name} with residual=True has no rnnjax equivalent")
        return
    for field, expected, spelled in (
        ("gate_fn", jax.nn.sigmoid, "jax.nn.sigmoid"),
        ("activation_fn", jnp.tanh, "jnp.tanh"),
    ):
        given = getattr(flax_cell, field)
        if given is not expected:
            raise ValueError(
                f"{where}: rnnjax's {layout.kind} needs {name}.{field} = {spelled}; got"
                f" {getattr(given, '__name__', given)!r}"
            )


def _make_cell(flax_cell: Any, layout: _Layout, hidden_size: int) -> Cell:
    if layout.kind == "lstm":
        return lstm(hidden_size, initializer="flax")
    if layout.kind == "gru":
        return gru(hidden_size, reset_after=True, initializer="flax")
    return simple_rnn(hidden_size, flax_cell.activation_fn, initializer="flax")


def _pure_dict(where: str, api: str, flax_cell: Any, params: Any) -> dict[str, Any]:
    """The cell's weights as nested dicts of arrays."""
    from flax import nnx

    if params is None and api == "nnx":
        params = nnx.state(flax_cell, nnx.Param)
    if params is None:
        raise TypeError(
            f"{where}: a flax.linen module holds no params: pass the cell's own parameter dict"
            " (variables['params'] of the cell alone, or its entry in a model's params)"
        )
    return nnx.to_pure_dict(params) if isinstance(params, nnx.State) else dict(params)


def _read(where: str, pure: dict[str, Any], layout: _Layout) -> Any:
    """rnnjax params from a Flax cell's pure dict."""
    expected = {*layout.inputs, *layout.hiddens}
    if set(pure) != expected:
        raise ValueError(
            f"{where}: params must have the layers {sorted(expected)}; got {sorted(pure)}"
            + (" (pass variables['params'], not variables)" if "params" in pure else "")
        )

    def concat(names: tuple[str, ...], field: str, present: Any) -> Array:
        parts = [
            jnp.asarray(pure[n][field] if present(n) else jnp.zeros_like(pure[n]["kernel"][0]))
            for n in names
        ]
        return jnp.concatenate(parts, axis=-1)

    kernel = concat(layout.inputs, "kernel", lambda n: True)
    recurrent_kernel = concat(layout.hiddens, "kernel", lambda n: True)
    input_bias = concat(layout.inputs, "bias", lambda n: layout.input_bias)
    hidden_bias = concat(layout.hiddens, "bias", lambda n: n in layout.hidden_bias)
    if layout.kind == "gru":
        return GRUParams(kernel, recurrent_kernel, input_bias, hidden_bias)
    return PARAMS_TYPES[layout.kind](kernel, recurrent_kernel, input_bias + hidden_bias)


def from_flax(flax_cell: Any, params: Any = None) -> tuple[Cell, Any]:
    """Converts a Flax recurrent cell and its params into an rnnjax cell and params.

    ``flax.linen`` and ``flax.nnx`` ``LSTMCell``, ``OptimizedLSTMCell``, ``GRUCell`` and
    ``SimpleCell`` (with the default sigmoid gates and tanh, any ``SimpleCell`` activation,
    no ``residual``). The rnnjax cell computes what the Flax cell computes:
    ``rnnjax.rnn(cell, params, xs)`` gives ``flax.linen.RNN(flax_cell)``'s outputs, to float32
    rounding. The cell is made with ``initializer="flax"``, so a fresh ``cell.init`` draws as
    Flax does. One difference to remember: Flax's LSTM carry is ``(c, h)``; rnnjax's is
    :class:`~rnnjax.LSTMState` ``(h, c)``.

    Args:
      flax_cell: the Flax cell instance (its class and settings are read; its ``features``
        come from the params).
      params: linen: the cell's own parameter dict, ``{"ii": {"kernel": ...}, ...}``, i.e.
        ``variables["params"]`` of the cell alone, or the cell's entry in a model's params
        (``variables["params"]["RNN_0"]["cell"]`` under ``nn.RNN``). NNX: the module's
        parameter state, ``nnx.state(flax_cell, nnx.Param)`` (or its ``to_pure_dict()``);
        ``None`` (the default) reads it from ``flax_cell``.

    Returns:
      ``(cell, params)``: an :func:`~rnnjax.lstm`, :func:`~rnnjax.gru` (``reset_after=True``)
      or :func:`~rnnjax.simple_rnn` cell and its :class:`~rnnjax.LSTMParams`,
      :class:`~rnnjax.GRUParams` or :class:`~rnnjax.SimpleRNNParams`, in the params' dtype.

    Raises:
      TypeError: if ``flax_cell`` is not one of the eight cells, or a linen cell comes
        without params.
      ValueError: for gate or activation functions rnnjax's cell does not have, a residual
        ``SimpleCell``, or params whose layers are not the cell's.

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn, rnnjax, rnnjax.interop
      >>> flax_cell = nn.GRUCell(features=8)
      >>> xs = jnp.ones((2, 5, 3))
      >>> variables = nn.RNN(flax_cell).init(jax.random.key(0), xs)
      >>> cell, params = rnnjax.interop.from_flax(flax_cell, variables["params"]["cell"])
      >>> carry, ys = rnnjax.rnn(cell, params, xs)
      >>> bool(jnp.allclose(ys, nn.RNN(flax_cell).apply(variables, xs), atol=1e-6))
      True
    """
    where = "rnnjax.interop.from_flax"
    api, layout = _api_and_layout(where, flax_cell)
    _check_functions(where, flax_cell, layout)
    params = _read(where, _pure_dict(where, api, flax_cell, params), layout)
    return _make_cell(flax_cell, layout, params.recurrent_kernel.shape[0]), params


def _biases(where: str, flax_cell: Any, layout: _Layout, params: Any) -> tuple[Array, Array]:
    """rnnjax's bias(es) as the Flax cell's ``(input-side, hidden-side)`` biases, each
    ``[gates * H]`` (zeros where that side has no bias)."""
    if layout.kind != "gru":
        zeros = jnp.zeros_like(params.bias)
        return (params.bias, zeros) if layout.input_bias else (zeros, params.bias)
    if params.recurrent_bias is None:
        raise ValueError(
            f"{where}: a Flax GRUCell computes rnnjax's gru(reset_after=True); got GRUParams"
            " with recurrent_bias=None (reset_after=False)"
        )
    hidden = params.recurrent_bias.shape[-1] // 3
    candidate = params.recurrent_bias[2 * hidden :]
    if not layout.hidden_bias and bool(jnp.any(candidate != 0)):
        raise ValueError(
            f"{where}: flax.nnx.GRUCell has no recurrent bias for the candidate n; the"
            " params' recurrent_bias[2 * hidden:] must be zero (the r and z parts fold into"
            f" the input bias); got max |value| {float(jnp.abs(candidate).max())}"
        )
    # r and z add their two biases: both go to the input side, where every gate has one.
    folded = params.bias + params.recurrent_bias.at[2 * hidden :].set(0)
    return folded, jnp.zeros_like(folded).at[2 * hidden :].set(candidate)


def _check_params(where: str, flax_cell: Any, layout: _Layout, params: Any) -> None:
    params_type = PARAMS_TYPES[layout.kind]
    if type(params) is not params_type:
        raise TypeError(
            f"{where}: a {type(flax_cell).__name__} takes {params_type.__name__}; got"
            f" {type(params).__name__}"
        )
    sizes = (params.kernel.shape[0], params.recurrent_kernel.shape[0])
    if hasattr(flax_cell, "features"):  # linen: the input size comes with the inputs
        expected, spelled = (sizes[0], flax_cell.features), f"features={flax_cell.features}"
    else:
        expected = (flax_cell.in_features, flax_cell.hidden_features)
        spelled = f"in_features={expected[0]}, hidden_features={expected[1]}"
    if sizes != expected:
        raise ValueError(
            f"{where}: the {type(flax_cell).__name__} has {spelled}; the params have input size"
            f" {sizes[0]} and hidden size {sizes[1]}"
        )


def _split(array: Array, names: tuple[str, ...]) -> dict[str, Array]:
    return dict(zip(names, jnp.split(array, len(names), axis=-1), strict=True))


def _linen_twin(where: str, cell: Cell, params: Any) -> Any:
    """The ``flax.linen`` cell that computes what the rnnjax ``cell`` computes: ``LSTMCell``,
    ``GRUCell`` or ``SimpleCell`` (tanh), by the params' type; the cell must be the built-in
    one of those params."""
    from flax import linen as nn

    twins: dict[type, tuple[Any, Any]] = {
        LSTMParams: (lstm, nn.LSTMCell),
        GRUParams: (gru, nn.GRUCell),
        SimpleRNNParams: (simple_rnn, nn.SimpleCell),
    }
    factory, twin = twins.get(type(params), (None, None))
    hidden = getattr(getattr(params, "recurrent_kernel", None), "shape", (0,))[0]
    schemes = ("keras", "torch", "flax")
    if factory is None or not any(cell is factory(hidden, initializer=s) for s in schemes):
        raise TypeError(
            f"{where}: given an rnnjax cell, it must be rnnjax.lstm, rnnjax.gru"
            " (reset_after=True) or rnnjax.simple_rnn (tanh) with its own params; pass the"
            f" target Flax cell instead for other layouts; got params {type(params).__name__}"
        )
    return twin(hidden)


def to_flax(flax_cell: Any, params: Any) -> Any:
    """Converts rnnjax params into the params of a Flax recurrent cell: :func:`from_flax`
    backwards.

    Args:
      flax_cell: the target, a ``flax.linen`` or ``flax.nnx`` ``LSTMCell``,
        ``OptimizedLSTMCell``, ``GRUCell`` or ``SimpleCell`` of the params' sizes; or the
        rnnjax cell itself (``rnnjax.lstm(8)``, the form ``from_flax``'s result reads back
        in), which targets the ``flax.linen`` twin: ``LSTMCell``, ``GRUCell``, ``SimpleCell``.
      params: :class:`~rnnjax.LSTMParams`, :class:`~rnnjax.GRUParams` (of
        ``gru(reset_after=True)``) or :class:`~rnnjax.SimpleRNNParams`, as the cell takes.

    Returns:
      linen: the cell's own parameter dict, ``{"ii": {"kernel": ...}, ...}`` (use it as
      ``{"params": ...}`` for the cell, or as the ``cell`` entry under ``nn.RNN``). NNX: an
      ``nnx.State`` of the module's params; ``nnx.update(flax_cell, state)`` loads it. The
      Flax cell then computes what the rnnjax cell computes. The LSTM's single bias goes to
      the hidden-side layers; the GRU's ``r`` and ``z`` biases are summed into the input-side
      layers, which Flax adds the same way.

    Raises:
      TypeError: if ``flax_cell`` is not one of the eight cells, or the params are not the
        kind that cell takes.
      ValueError: for sizes that differ from the Flax cell's; ``GRUParams`` without a
        ``recurrent_bias``; for ``flax.nnx.GRUCell``, which has no recurrent bias for the
        candidate, a nonzero ``recurrent_bias[2 * hidden:]``.

    Example:
      >>> import jax, jax.numpy as jnp, flax.linen as nn, rnnjax, rnnjax.interop
      >>> cell = rnnjax.lstm(8)
      >>> params = cell.init(jax.random.key(0), 3)
      >>> flax_params = rnnjax.interop.to_flax(nn.OptimizedLSTMCell(8), params)
      >>> xs = jnp.ones((2, 5, 3))
      >>> ys = nn.RNN(nn.OptimizedLSTMCell(8)).apply({"params": {"cell": flax_params}}, xs)
      >>> bool(jnp.allclose(ys, rnnjax.rnn(cell, params, xs)[1], atol=1e-6))
      True
    """
    where = "rnnjax.interop.to_flax"
    if isinstance(flax_cell, Cell):
        flax_cell = _linen_twin(where, flax_cell, params)
    api, layout = _api_and_layout(where, flax_cell)
    _check_functions(where, flax_cell, layout)
    _check_params(where, flax_cell, layout, params)
    input_bias, hidden_bias = _biases(where, flax_cell, layout, params)
    pure: dict[str, Any] = {
        name: {"kernel": k} for name, k in _split(params.kernel, layout.inputs).items()
    }
    pure |= {
        name: {"kernel": k} for name, k in _split(params.recurrent_kernel, layout.hiddens).items()
    }
    if layout.input_bias:
        for name, b in _split(input_bias, layout.inputs).items():
            pure[name]["bias"] = b
    for name, b in _split(hidden_bias, layout.hiddens).items():
        if name in layout.hidden_bias:
            pure[name]["bias"] = b
    if api == "linen":
        return pure
    from flax import nnx

    state = nnx.state(flax_cell, nnx.Param)
    nnx.replace_by_pure_dict(state, pure)
    return state
