"""A kind declared once (its registry entry), the modules' settings, and the names that were
removed or moved, each answered with what replaced it."""

import dataclasses
import inspect

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import rnnjax
import rnnjax.linen
import rnnjax.nnx
from rnnjax._src.cells.registry import CELL_KINDS

IN, HIDDEN = 3, 4
XS = jnp.ones((2, 5, IN))
REMOVED = r"fused_backward= was removed; the fast backward pass is automatic"


def _factory_settings(kind):
    """The kind's own settings, read here from the factory's signature independently."""
    parameters = inspect.signature(CELL_KINDS[kind].make).parameters.values()
    return {p.name: p.default for p in parameters if p.name not in ("hidden_size", "initializer")}


@pytest.mark.parametrize("kind", sorted(CELL_KINDS))
def test_the_modules_take_the_kind_settings_from_its_registry_entry(kind):
    name = CELL_KINDS[kind].module_name
    own = _factory_settings(kind)
    for module in (getattr(rnnjax.linen, name), getattr(rnnjax.linen, f"{name}Cell")):
        fields = {f.name: f.default for f in dataclasses.fields(module)}
        assert {key: fields[key] for key in own} == own
    for module in (getattr(rnnjax.nnx, name), getattr(rnnjax.nnx, f"{name}Cell")):
        parameters = inspect.signature(module).parameters
        assert {key: parameters[key].default for key in own} == own
        assert all(parameters[key].kind is inspect.Parameter.KEYWORD_ONLY for key in own)


def test_a_kind_setting_reaches_the_cell_in_both_apis():
    want = rnnjax.lru(HIDDEN, r_min=0.5, r_max=0.9)
    module = rnnjax.nnx.LRU(IN, HIDDEN, r_min=0.5, r_max=0.9, rngs=nnx.Rngs(0))
    assert module.recurrent.cell is want
    assert rnnjax.linen.LRU(HIDDEN, r_min=0.5, r_max=0.9).recurrent().cell is want
    assert rnnjax.linen.SimpleRNN(HIDDEN, jax.nn.relu).activation is jax.nn.relu  # positional


def test_settings_as_one_module_settings_equal_the_same_by_name():
    settings = rnnjax.ModuleSettings(return_sequences=True, go_backwards=True)
    shared = rnnjax.nnx.GRU(IN, HIDDEN, settings=settings, rngs=nnx.Rngs(0))
    named = rnnjax.nnx.GRU(IN, HIDDEN, return_sequences=True, go_backwards=True, rngs=nnx.Rngs(0))
    np.testing.assert_array_equal(shared(XS), named(XS))
    linen = rnnjax.linen.RNN(rnnjax.gru(HIDDEN), settings=settings)
    variables = {"params": {"cell": named.params}}
    np.testing.assert_array_equal(linen.apply(variables, XS), named(XS))


def test_settings_given_twice_or_of_the_wrong_type_are_refused():
    settings = rnnjax.ModuleSettings(return_sequences=True)
    both = r"rnnjax.nnx.GRU: give the settings either as settings=.* or by name, not both"
    with pytest.raises(TypeError, match=both + r".*\['return_state'\]"):
        rnnjax.nnx.GRU(IN, HIDDEN, settings=settings, return_state=True, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"rnnjax.linen.LSTM: give the settings either"):
        rnnjax.linen.LSTM(HIDDEN, settings=settings, unroll=2).init(jax.random.key(0), XS)
    with pytest.raises(TypeError, match=r"rnnjax.nnx.RNN: settings must be a rnnjax.Module"):
        rnnjax.nnx.RNN(rnnjax.gru(HIDDEN), IN, settings={"unroll": 2}, rngs=nnx.Rngs(0))


@pytest.mark.parametrize(
    "where, call",
    [
        ("rnnjax.rnn", lambda: rnnjax.rnn(rnnjax.lstm(HIDDEN), None, XS, fused_backward=True)),
        ("rnnjax.layer", lambda: rnnjax.layer(rnnjax.lstm(HIDDEN), fused_backward=True)),
        ("rnnjax.nnx.LSTM", lambda: rnnjax.nnx.LSTM(IN, HIDDEN, fused_backward=True, rngs=0)),
        ("rnnjax.nnx.RNN", lambda: rnnjax.nnx.RNN(None, IN, fused_backward=False, rngs=0)),
        ("rnnjax.nnx.GRUCell", lambda: rnnjax.nnx.GRUCell(IN, HIDDEN, fused_backward=1, rngs=0)),
        ("rnnjax.linen.LSTM", lambda: rnnjax.linen.LSTM(HIDDEN, fused_backward=True)),
        ("rnnjax.linen.RNN", lambda: rnnjax.linen.RNN(None, fused_backward=True)),
        ("rnnjax.linen.LSTMCell", lambda: rnnjax.linen.LSTMCell(HIDDEN, fused_backward=True)),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
def test_fused_backward_is_refused_by_name_with_what_replaced_it(where, call):
    with pytest.raises(TypeError, match=rf"^{where}: {REMOVED}"):
        call()


def test_removed_names_say_what_replaced_them():
    with pytest.raises(AttributeError, match=r"rnn_with_resets was removed: use rnnjax.rnn\("):
        _ = rnnjax.rnn_with_resets
    with pytest.raises(AttributeError, match=r"hidden_state was removed: use cell.output\(carry"):
        _ = rnnjax.hidden_state
    with pytest.raises(AttributeError, match=r"module 'rnnjax' has no attribute 'nothing'"):
        _ = rnnjax.nothing


def test_the_recurrentgemma_converter_moved_to_interop():
    with pytest.warns(DeprecationWarning, match=r"moved to rnnjax.interop.rg_lru_params_from"):
        old = rnnjax.rg_lru_params_from_recurrentgemma
    assert old is rnnjax.interop.rg_lru_params_from_recurrentgemma
    assert "rg_lru_params_from_recurrentgemma" not in rnnjax.__all__


def test_initial_carry_errors_name_the_module():
    lstm = rnnjax.nnx.LSTM(IN, HIDDEN, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"^rnnjax.nnx.LSTM: initial_carry must have shape"):
        lstm(XS, initial_carry=jnp.zeros((2, HIDDEN)))
    with pytest.raises(TypeError, match=r"^rnnjax.nnx.LSTM: initial_carry must be rnnjax.LSTM"):
        lstm(XS, initial_carry=(jnp.zeros((2, HIDDEN)),) * 2)
    stacked = rnnjax.nnx.GRU(IN, HIDDEN, num_layers=2, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match=r"^rnnjax.nnx.GRU: initial_carry must be a tuple with"):
        stacked(XS, initial_carry=jnp.zeros((2, HIDDEN)))
    with pytest.raises(ValueError, match=r"^rnnjax.nnx.GRU: initial_carry\[1\] must have shape"):
        stacked(XS, initial_carry=(jnp.zeros((2, HIDDEN)), jnp.zeros((2, 7))))
    gru = rnnjax.linen.GRU(HIDDEN)
    with pytest.raises(ValueError, match=r"^rnnjax.linen.GRU: initial_carry must have shape"):
        gru.init(jax.random.key(0), XS, initial_carry=jnp.zeros((2, 7)))
    pair = rnnjax.nnx.Bidirectional(rnnjax.nnx.GRU(IN, HIDDEN, rngs=nnx.Rngs(0)), rngs=nnx.Rngs(1))
    with pytest.raises(ValueError, match=r"^rnnjax.nnx.Bidirectional: initial_carry \(backward"):
        pair(XS, initial_carry=(jnp.zeros((2, HIDDEN)), jnp.zeros((2, 7))))
    with pytest.raises(ValueError, match=r"^rnnjax.linen.Bidirectional: initial_carry must be a"):
        linen_pair = rnnjax.linen.Bidirectional(gru)
        linen_pair.init(jax.random.key(0), XS, initial_carry=jnp.zeros((2, HIDDEN)))


def test_a_bad_rngs_on_an_nnx_call_is_named():
    lstm = rnnjax.nnx.LSTM(IN, HIDDEN, dropout=0.5, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match=r"^rnnjax.nnx.LSTM: rngs \(of the call\) must be an nnx"):
        lstm(XS, rngs=0)
    pair = rnnjax.nnx.Bidirectional(lstm, rngs=nnx.Rngs(1))
    with pytest.raises(TypeError, match=r"^rnnjax.nnx.Bidirectional: rngs \(of the call\)"):
        pair(XS, rngs="key")


@pytest.mark.parametrize("module", [rnnjax.nnx, rnnjax.linen], ids=lambda m: m.__name__)
def test_the_module_docstrings_list_every_kind(module):
    for kind in CELL_KINDS.values():
        name = kind.module_name
        assert f":class:`{name}`, :class:`{name}Cell`: :func:`rnnjax.{kind.make.__name__}`" in (
            module.__doc__
        )
        assert name in module.__all__ and f"{name}Cell" in module.__all__
