"""Bad input to ``rnnjax.decode`` and ``rnnjax.attention`` (issue 24): every reproduction of the
issue pinned, then a seeded fuzz test per entry point (``decode``; ``attention`` construction
and ``init``; the attention step), eager and under ``jax.jit``.

Each malformed call must raise a ``TypeError``/``ValueError`` whose message names the entry
point and the argument; each valid edge input (zero batch, float16/bfloat16, NaN in padded
memory, per-row temperatures, ...) and each documented jit-time choice (NaN scores, clamped
memory lengths) must give the result of a reference call. One set of tiny shapes throughout:
most malformed calls fail at trace time and compile nothing, the valid ones reuse a few
compiled functions.
"""

import collections
import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import rnnjax

BATCH, VOCAB, EMBED, HIDDEN, LENGTH = 2, 5, 3, 4, 3
SOURCE, FEATURES, INPUT, TIME = 4, 3, 3, 2
CELL = rnnjax.gru(HIDDEN)
KEY = jax.random.key(0)
CALLS = 240  # generated calls per entry point (>= 200)


@functools.cache
def _model():
    k_embed, k_cell, k_dense = jax.random.split(jax.random.key(1), 3)
    return {
        "embed": jax.random.normal(k_embed, (VOCAB, EMBED)),
        "cell": CELL.init(k_cell, EMBED),
        "dense": 2.0 * jax.random.normal(k_dense, (HIDDEN, VOCAB)),
    }


def step_fn(params, carry, tokens):
    carry, h = CELL.step(params["cell"], carry, params["embed"][tokens])
    return carry, h @ params["dense"]


@functools.cache
def _carry(batch=BATCH):
    return jax.random.normal(jax.random.key(2), (batch, HIDDEN))


START = jnp.array([0, 3], jnp.int32)


@functools.cache
def _memory(batch=BATCH, dtype=jnp.float32):
    return jax.random.normal(jax.random.key(3), (batch, SOURCE, FEATURES)).astype(dtype)


LENGTHS = jnp.array([SOURCE, 1], jnp.int32)


@functools.cache
def _attention_params(kind="bahdanau", attention_size=None):
    att = rnnjax.attention(rnnjax.lstm(HIDDEN), _memory(), kind=kind, attention_size=attention_size)
    return att.init(jax.random.key(4), INPUT)


def _zero_params(kind, attention_size):
    """Params of the right structure and shapes, zeros: traced only, nothing compiled."""
    att = rnnjax.attention(rnnjax.lstm(HIDDEN), _memory(), kind=kind, attention_size=attention_size)
    shapes = jax.eval_shape(lambda: att.init(KEY, INPUT))
    return jax.tree.map(lambda leaf: np.zeros(leaf.shape, leaf.dtype), shapes)


@functools.cache
def _step_inputs(kind="bahdanau"):
    att = rnnjax.attention(rnnjax.lstm(HIDDEN), _memory(), LENGTHS, kind=kind)
    params = _attention_params(kind)
    return att, params, att.initial_carry(params, BATCH), jnp.ones((BATCH, INPUT))


# --- The reproductions, pinned ---------------------------------------------------------


@pytest.mark.parametrize("dtype", [jnp.int32, jnp.bool_, jnp.uint8])
def test_attention_step_refuses_integer_bool_and_uint8_x(dtype):
    att, params, carry, x = _step_inputs()
    for step in (att.step, jax.jit(att.step)):
        with pytest.raises(
            TypeError,
            match=rf"rnnjax.attention\('bahdanau'\).step: x must be a real floating array"
            rf" .*got .* dtype {jnp.dtype(dtype).name} and shape \(2, 3\)",
        ):
            step(params, carry, x.astype(dtype))


def test_attention_step_refuses_an_integer_carry_attention():
    att, params, carry, x = _step_inputs()
    for step in (att.step, jax.jit(att.step)):
        with pytest.raises(
            TypeError,
            match=r"rnnjax.attention\('bahdanau'\).step: carry.attention must be a real floating"
            r" array .*int32 and shape \(2, 4\)",
        ):
            step(params, carry._replace(attention=carry.attention.astype(jnp.int32)), x)


@pytest.mark.parametrize(
    ("input_size", "error"),
    [(0, ValueError), (-1, ValueError), (2.5, TypeError), (None, TypeError), ("3", TypeError)],
)
def test_attention_init_refuses_bad_input_sizes(input_size, error):
    att = rnnjax.attention(rnnjax.lstm(HIDDEN), _memory())
    with pytest.raises(
        error, match=r"rnnjax.attention\('bahdanau'\).init: input_size must be an int >= 1"
    ):
        att.init(KEY, input_size)


def test_attention_refuses_params_made_with_another_attention_size():
    att, _, carry, x = _step_inputs()  # the default attention_size: the hidden size, 4
    other = _zero_params("bahdanau", attention_size=6)
    match = (
        r"rnnjax.attention\('bahdanau'\): params must be made for attention_size 4 \(the inner"
        r" cell's hidden size\); got params with attention_size 6 .* build the cell with"
        r" attention_size=6"
    )
    with pytest.raises(ValueError, match=match):
        att.step(other, carry, x)
    with pytest.raises(ValueError, match=match):
        rnnjax.rnn(att, other, jnp.ones((BATCH, TIME, INPUT)))


def test_attention_refuses_a_factory_for_a_cell():
    with pytest.raises(
        TypeError,
        match=r"rnnjax.attention: cell must be an rnnjax.Cell.*call the factory first:"
        r" rnnjax.lstm\(hidden_size\)",
    ):
        rnnjax.attention(rnnjax.lstm, _memory())


def test_memory_lengths_out_of_range_raise_eagerly_and_clamp_under_jit():
    params, xs = _attention_params(), jnp.ones((BATCH, TIME, INPUT))

    def run(lengths):
        att = rnnjax.attention(rnnjax.lstm(HIDDEN), _memory(), lengths)
        return rnnjax.rnn(att, params, xs)

    with pytest.raises(
        ValueError, match=r"rnnjax.attention: memory_lengths must lie in \[0, 4\].*-3 to 9"
    ):
        run(jnp.array([9, -3]))
    jitted = jax.jit(run)  # the same compiled function: equal bit for bit
    clamped, expected = jitted(jnp.array([9, -3])), jitted(jnp.array([SOURCE, 0]))
    jax.tree.map(np.testing.assert_array_equal, clamped, expected)


def _decode(start=START, carry=None, fn=step_fn, **options):
    carry = _carry(start.shape[0]) if carry is None else carry
    return rnnjax.decode(fn, _model(), carry, start, max_length=LENGTH, **options)


SAMPLE = dict(method="sample", key=KEY)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        (dict(temperature=jnp.array(0.0), **SAMPLE), r"temperature must be positive; got Array"),
        (dict(temperature=np.float32(-1.0), **SAMPLE), r"temperature must be positive; got np"),
        (dict(method="beam", length_penalty=jnp.array(-1.0)), r"length_penalty must be >= 0"),
    ],
)
def test_decode_checks_array_temperature_and_length_penalty_values(options, match):
    with pytest.raises(ValueError, match=r"rnnjax.decode: " + match):
        _decode(**options)


def test_decode_refuses_start_tokens_outside_the_vocabulary():
    for start in ([0, VOCAB], [-1, 2]):
        with pytest.raises(
            ValueError,
            match=r"rnnjax.decode: start_tokens must lie in \[0, 5\) \(the vocabulary of"
            r" step_fn's logits\); got values from",
        ):
            _decode(jnp.array(start))


def test_decode_refuses_complex_logits():
    def complex_step(params, carry, tokens):
        carry, logits = step_fn(params, carry, tokens)
        return carry, logits.astype(jnp.complex64)

    with pytest.raises(
        TypeError,
        match=r"rnnjax.decode: step_fn must return real floating logits .*; got complex64\[2, 5\]",
    ):
        _decode(fn=complex_step)


def test_decode_refuses_temperature_hot_and_pad_id_none():
    with pytest.raises(
        TypeError,
        match=r"rnnjax.decode: temperature must be a real number or a real array of shape \[\]"
        r" or \[2\]; got 'hot' of type str",
    ):
        _decode(temperature="hot", **SAMPLE)
    with pytest.raises(TypeError, match=r"rnnjax.decode: pad_id must be an int >= 0; got None"):
        _decode(pad_id=None)
    with pytest.raises(
        ValueError, match=r"rnnjax.decode: temperature must have shape \[\] or \[2\]; got shape"
    ):
        _decode(temperature=jnp.ones(3), **SAMPLE)


def _three_values(params, carry, tokens):
    return (carry, *step_fn(params, carry, tokens))


def _bare_logits(params, carry, tokens):
    return step_fn(params, carry, tokens)[1]


def _swapped(params, carry, tokens):
    return step_fn(params, carry, tokens)[::-1]


def _lstm_swapped(params, carry, tokens):
    carry, h = rnnjax.lstm(HIDDEN).step(params["cell"], carry, params["embed"][tokens])
    return h @ params["dense"], carry


@pytest.mark.parametrize(
    ("fn", "error", "got"),
    [
        (_three_values, TypeError, r"got a tuple of 3"),
        (_bare_logits, TypeError, r"got one value: float32\[2, 5\]"),
        (_lstm_swapped, TypeError, r"got LSTMState in the logits' place.*it looks like"),
        (_swapped, ValueError, r"got float32\[2, 5\] \(it looks like \(logits, carry\)"),
    ],
)
def test_decode_names_the_carry_logits_order(fn, error, got):
    params, carry = _model(), _carry()
    if fn is _lstm_swapped:
        lstm = rnnjax.lstm(HIDDEN)
        params = {**params, "cell": lstm.init(KEY, EMBED)}
        carry = lstm.initial_carry(params["cell"], BATCH)
    with pytest.raises(error, match=r"rnnjax.decode: step_fn must return .*" + got):
        rnnjax.decode(fn, params, carry, START, max_length=LENGTH)


# --- Seeded fuzz: the harness ------------------------------------------------------------------


class Case(NamedTuple):
    """One generated call: ``check is None``: it must raise a ``TypeError``/``ValueError``
    naming the entry point and ``argument``; otherwise ``check(result)`` must pass."""

    label: str
    argument: str
    call: Callable[[], Any]
    check: Callable[[Any], None] | None = None


def _run(entry, cases):
    """Runs every case; the counts per outcome, after asserting nothing else happened."""
    counts, failures = collections.Counter(), []
    for case in cases:
        counts["calls"] += 1
        try:
            result = case.call()
        except (TypeError, ValueError) as error:
            named = entry in str(error) and case.argument in str(error)
            if case.check is None and named:
                counts["named errors"] += 1
            else:
                failures.append((case.label, f"{type(error).__name__}: {error}"))
            continue
        except Exception as error:  # anything else: a failure
            failures.append((case.label, f"{type(error).__name__}: {error}"))
            continue
        if case.check is None:
            failures.append((case.label, "no error"))
            continue
        try:
            case.check(result)
            counts["valid results"] += 1
        except AssertionError as error:
            failures.append((case.label, f"wrong result: {error}"))
    counts["anything else"] = len(failures)
    assert not failures, failures[:5]
    return counts


def _traceable(value):
    leaves = jax.tree.leaves(value)
    return bool(leaves) and all(isinstance(leaf, (jax.Array, np.ndarray)) for leaf in leaves)


def _call(fn, mode, args, cache=False):
    """``fn(**args)`` eagerly, or under ``jax.jit`` with the array arguments traced and the
    others (Python values, strings, None, functions) closed over. ``cache``: keep the jitted
    function (one compilation per shapes and static values), for the valid calls."""
    if mode == "eager":
        return fn(**args)
    traced = {name: value for name, value in args.items() if _traceable(value)}
    static = {name: value for name, value in args.items() if name not in traced}
    if not cache:
        return jax.jit(lambda traced: fn(**traced, **static))(traced)
    return _jitted(fn)(traced, tuple(sorted(static.items(), key=lambda item: item[0])))


@functools.cache
def _jitted(fn):
    return jax.jit(lambda traced, static: fn(**traced, **dict(static)), static_argnums=1)


def _draw(rng, pool):
    return pool[rng.integers(len(pool))](rng)


def _same(actual, expected):
    jax.tree.map(np.testing.assert_array_equal, actual, expected)


# --- Fuzz: rnnjax.decode -----------------------------------------------------------------------


def _decode_args(**changes):
    args = dict(
        step_fn=step_fn,
        params=_model(),
        carry=_carry(),
        start_tokens=START,
        max_length=LENGTH,
        method="greedy",
        key=KEY,
    )
    return {**args, **changes}


def _decode_kw(step_fn, params, carry, start_tokens, **options):
    return rnnjax.decode(step_fn, params, carry, start_tokens, **options)


def _with_logits(transform):
    def bad_step(params, carry, tokens):
        return transform(*step_fn(params, carry, tokens))

    return bad_step


_BAD_STEPS = [
    _three_values,
    _bare_logits,
    _swapped,
    _with_logits(lambda c, logits: (c, logits.astype(jnp.complex64))),
    _with_logits(lambda c, logits: (c, logits.astype(jnp.int32))),
    _with_logits(lambda c, logits: (c, logits > 0)),
    _with_logits(lambda c, logits: (c, logits[:, None])),
    _with_logits(lambda c, logits: (c, logits[:1])),
    _with_logits(lambda c, logits: (c, None)),
    _with_logits(lambda c, logits: (c[:, :2], logits)),
    _with_logits(lambda c, logits: (c.astype(jnp.float16), logits)),
    _with_logits(lambda c, logits: [c, logits, c]),
]

METHODS = ("greedy", "sample", "beam")
_NEGATIVE = lambda r: -int(r.integers(1, 9))  # noqa: E731
_FLOAT = lambda r: float(r.uniform(0.5, 4.0))  # noqa: E731
_BAD_DECODE = {  # argument -> draws of a malformed value (method, when it matters)
    "step_fn": [lambda r: None, lambda r: 3, lambda r: "f", lambda r: {}]
    + [lambda r, fn=fn: ("step_fn", fn) for fn in _BAD_STEPS],
    "max_length": [lambda r: 0, _NEGATIVE, _FLOAT, lambda r: "3", lambda r: None, lambda r: True],
    "method": [lambda r: "topk", lambda r: None, lambda r: 1, lambda r: "Greedy", lambda r: ""],
    "eos_id": [_NEGATIVE, _FLOAT, lambda r: "1", lambda r: True, lambda r: VOCAB + r.integers(3)],
    "pad_id": [lambda r: None, _NEGATIVE, _FLOAT, lambda r: VOCAB + r.integers(3), lambda r: "0"],
    "top_k": [lambda r: 0, _NEGATIVE, _FLOAT, lambda r: VOCAB + 1 + r.integers(3), lambda r: "2"],
    "beam_width": [lambda r: 0, _NEGATIVE, _FLOAT, lambda r: None, lambda r: "4"],
    "key": [
        lambda r: ("sample", None),
        lambda r: ("sample", int(r.integers(9))),
        lambda r: ("sample", "k"),
        lambda r: ("sample", np.zeros(3, np.uint32)),
        lambda r: ("sample", np.zeros(2, np.float32)),
        lambda r: ("sample", jax.random.split(KEY)),
        lambda r: ("greedy", 1.5),
    ],
    "temperature": [
        lambda r: -float(r.uniform(0, 3)),
        lambda r: 0,
        lambda r: float("nan"),
        lambda r: "hot",
        lambda r: True,
        lambda r: 1j,
        lambda r: np.float32(-r.uniform(0.1, 3)),
        lambda r: np.ones(BATCH + 1, np.float32),
        lambda r: np.ones((BATCH, 1), np.float32),
        lambda r: np.array([True, False]),
        lambda r: [1.0, 2.0],
        lambda r: None,
    ],
    "length_penalty": [
        lambda r: -float(r.uniform(0.1, 3)),
        lambda r: float("nan"),
        lambda r: float("inf"),
        lambda r: "x",
        lambda r: np.float32(-1.0),
        lambda r: np.ones(BATCH, np.float32),
        lambda r: None,
        lambda r: 1j,
    ],
    "start_tokens": [
        lambda r: np.asarray(START, np.float32),
        lambda r: np.asarray(START)[:, None],
        lambda r: [0, 1],
        lambda r: None,
        lambda r: "ab",
        lambda r: np.array(1),
    ],
    "carry": [
        lambda r: np.asarray(_carry())[:1],
        lambda r: np.asarray(_carry())[0],
        lambda r: {"h": "s"},
        lambda r: 3.0,
        lambda r: np.zeros((BATCH + 1, HIDDEN), np.float32),
    ],
    "params": [lambda r: {**_model(), "name": "decoder"}, lambda r: object()],
}


def _malformed_decode(rng, mode):
    argument = list(_BAD_DECODE)[rng.integers(len(_BAD_DECODE))]
    value = _draw(rng, _BAD_DECODE[argument])
    method = str(rng.choice(["greedy", "sample", "beam"]))
    if isinstance(value, tuple) and len(value) == 2 and value[0] in ("step_fn", *METHODS):
        method, value = (method, value[1]) if value[0] == "step_fn" else value
    args = _decode_args(**{"method": method, argument: value})
    label = f"decode {mode} {argument}={value!r} method={method}"
    return Case(label, argument, lambda: _call(_decode_kw, mode, args))


def _half_step(dtype):
    """``step_fn`` with logits in ``dtype`` (valid), and its float32 twin (the reference)."""

    def half(params, carry, tokens):
        carry, logits = step_fn(params, carry, tokens)
        return carry, logits.astype(dtype)

    def reference(params, carry, tokens):
        carry, logits = half(params, carry, tokens)
        return carry, logits.astype(jnp.float32)

    return half, reference


_HALF_STEPS = {dtype: _half_step(dtype) for dtype in (jnp.float16, jnp.bfloat16)}


def _valid_decode(rng):
    """A valid edge input (eager) or a documented jit-time choice, and its reference."""
    start = jnp.asarray(rng.integers(0, VOCAB, BATCH), jnp.int32)
    family = [
        "zero batch",
        "half logits",
        "per-row temperature",
        "int temperature",
        "start dtype",
        "raw key",
        "jit: start",
        "jit: temperature",
        "jit: length_penalty",
    ]
    family = family[rng.integers(len(family))]
    if family == "zero batch":
        method = str(rng.choice(METHODS))
        args = _decode_args(carry=_carry(0), start_tokens=START[:0], method=method)
        shape = (0, 4, LENGTH) if method == "beam" else (0, LENGTH)
        expected = rnnjax.Decoded(np.zeros(shape), np.zeros(shape[:-1]), np.zeros(shape[:-1]))
        return Case(family, "", lambda: _call(_decode_kw, "eager", args), _equal(expected))
    if family == "half logits":
        dtype = (jnp.float16, jnp.bfloat16)[rng.integers(2)]
        half, reference = _HALF_STEPS[dtype]
        args = _decode_args(step_fn=half, start_tokens=start, method="beam")
        expected = _decode_kw(**{**args, "step_fn": reference})
        return Case(
            family, "", lambda: _call(_decode_kw, "jit", args, cache=True), _equal(expected)
        )
    if family in ("per-row temperature", "int temperature", "raw key"):
        temperatures = rng.uniform(0.2, 3.0, BATCH).astype(np.float32)
        if family == "int temperature":
            temperatures = rng.integers(1, 4, BATCH)
        args = _decode_args(
            start_tokens=start, method="sample", key=jax.random.key(int(rng.integers(9)))
        )
        if family == "raw key":
            seed = int(rng.integers(9))
            args.update(key=jax.random.PRNGKey(seed))
            return Case(
                family,
                "",
                lambda: _decode_kw(**args),
                _equal(_decode_kw(**{**args, "key": jax.random.key(seed)})),
            )
        rows = [_decode_kw(**args, temperature=float(t)) for t in temperatures]
        expected = jax.tree.map(
            lambda *rows: np.stack([row[b] for b, row in enumerate(rows)]), *rows
        )
        return Case(
            family,
            "",
            lambda: _decode_kw(**args, temperature=jnp.asarray(temperatures)),
            _close(expected),
        )
    if family == "start dtype":
        dtype = (np.uint8, np.int64, np.int16)[rng.integers(3)]
        args = _decode_args(start_tokens=np.asarray(start, dtype))
        return Case(
            family,
            "",
            lambda: _decode_kw(**args),
            _equal(_decode_kw(**{**args, "start_tokens": start})),
        )
    return _jit_choice(rng, family, start)


def _equal(expected):
    return lambda result: _same(result, expected)


def _close(expected):
    def check(result):
        np.testing.assert_array_equal(result.tokens, expected.tokens)
        np.testing.assert_array_equal(result.lengths, expected.lengths)
        np.testing.assert_allclose(result.scores, expected.scores, rtol=1e-5)

    return check


def _nan_rows(bad, expected):
    """The documented jit-time choice: rows ``bad`` score NaN, the others are ``expected``."""

    def check(result):
        assert np.isnan(np.asarray(result.scores)[bad]).all()
        for got, want in zip(result, expected, strict=True):
            np.testing.assert_array_equal(np.asarray(got)[~bad], np.asarray(want)[~bad])

    return check


def _jit_choice(rng, family, start):
    """A value that only a traced call can carry, against the same compiled call on valid
    values."""
    bad = np.zeros(BATCH, bool)
    bad[rng.integers(BATCH)] = True
    if family == "jit: start":
        token = int(rng.choice([-1 - rng.integers(3), VOCAB + rng.integers(3)]))
        args = _decode_args(start_tokens=start)
        invalid = {**args, "start_tokens": jnp.where(bad, token, start)}
    elif family == "jit: temperature":
        temperatures = rng.uniform(0.2, 3.0, BATCH).astype(np.float32)
        args = _decode_args(start_tokens=start, method="sample", temperature=temperatures)
        wrong = rng.choice([0.0, -rng.uniform(0.1, 3.0), np.nan])
        invalid = {**args, "temperature": np.where(bad, wrong, temperatures).astype(np.float32)}
    else:
        bad[:] = True  # one length penalty for every row
        args = _decode_args(start_tokens=start, method="beam", length_penalty=np.float32(0.5))
        wrong = rng.choice([-rng.uniform(0.1, 3.0), np.nan, np.inf])
        invalid = {**args, "length_penalty": np.asarray(wrong, np.float32)}
        args["length_penalty"] = np.asarray(0.5, np.float32)
    expected = _call(_decode_kw, "jit", args, cache=True)
    return Case(
        family, "", lambda: _call(_decode_kw, "jit", invalid, cache=True), _nan_rows(bad, expected)
    )


_BAD_VALUES = {  # concrete values refused eagerly; traced, they are the jit-time choices above
    "start_tokens": lambda r: START.at[r.integers(BATCH)].set(VOCAB + r.integers(3)),
    "temperature": lambda r: jnp.array([1.0, -r.uniform(0.0, 2.0)], jnp.float32),
    "length_penalty": lambda r: jnp.array(-r.uniform(0.1, 2.0), jnp.float32),
}


def test_fuzz_decode():
    rng, cases = np.random.default_rng(24), []
    for i in range(CALLS):
        mode = ("eager", "jit")[i % 2]
        draw = rng.random()
        if draw < 0.12:
            cases.append(_valid_decode(rng))
        elif draw < 0.2:  # a concrete value out of range: eager only
            argument = list(_BAD_VALUES)[rng.integers(len(_BAD_VALUES))]
            args = _decode_args(method="sample", **{argument: _BAD_VALUES[argument](rng)})
            cases.append(Case(f"decode {argument}", argument, lambda a=args: _decode_kw(**a)))
        else:
            cases.append(_malformed_decode(rng, mode))
    COUNTS["rnnjax.decode"] = _run("rnnjax.decode", cases)
    assert COUNTS["rnnjax.decode"]["calls"] >= 200


COUNTS = {}


# --- Fuzz: rnnjax.attention, construction and init ---------------------------------------------


def _attention_init(cell, memory, memory_lengths, kind, attention_size, key, input_size, dtype):
    att = rnnjax.attention(cell, memory, memory_lengths, kind=kind, attention_size=attention_size)
    return att.init(key, input_size, dtype)


def _attention_apply(memory, memory_lengths, kind, attention_size, params, xs):
    att = rnnjax.attention(
        rnnjax.lstm(HIDDEN), memory, memory_lengths, kind=kind, attention_size=attention_size
    )
    return rnnjax.rnn(att, params, xs)


def _init_args(rng, **changes):
    args = dict(
        cell=rnnjax.lstm(HIDDEN),
        memory=_memory(),
        memory_lengths=LENGTHS,
        kind=str(rng.choice(["bahdanau", "luong"])),
        attention_size=(None, 5)[rng.integers(2)],
        key=KEY,
        input_size=INPUT,
        dtype=jnp.float32,
    )
    return {**args, **changes}


_BAD_ATTENTION = {
    "cell": [
        lambda r: rnnjax.lstm,
        lambda r: None,
        lambda r: "lstm",
        lambda r: {},
        lambda r: rnnjax.layer(rnnjax.lstm(HIDDEN)),
        lambda r: CELL.step,
    ],
    "memory": [
        lambda r: _memory()[0, 0],
        lambda r: _memory().astype(jnp.int32),
        lambda r: _memory() > 0,
        lambda r: _memory().astype(jnp.complex64),
        lambda r: [1.0, 2.0],
        lambda r: None,
        lambda r: "m",
        lambda r: 3.0,
    ],
    "memory_lengths": [
        lambda r: LENGTHS.astype(jnp.float32),
        lambda r: jnp.arange(BATCH + 1 + r.integers(3)),
        lambda r: [1, 2],
        lambda r: jnp.array(2),
        lambda r: LENGTHS > 1,
        lambda r: "2",
    ],
    "kind": [lambda r: "dot", lambda r: None, lambda r: 1, lambda r: "Luong", lambda r: ""],
    "attention_size": [
        lambda r: 0,
        _NEGATIVE,
        _FLOAT,
        lambda r: "3",
        lambda r: True,
        lambda r: np.float32(4),
    ],
    "input_size": [
        lambda r: 0,
        _NEGATIVE,
        _FLOAT,
        lambda r: None,
        lambda r: "3",
        lambda r: True,
        lambda r: [3],
    ],
    "dtype": [
        lambda r: jnp.int32,
        lambda r: "float99",
        lambda r: bool,
        lambda r: jnp.complex64,
        lambda r: "int8",
    ],
    "key": [
        lambda r: None,
        lambda r: int(r.integers(9)),
        lambda r: "k",
        lambda r: np.zeros(2, np.float32),
        lambda r: jax.random.split(KEY),
        lambda r: jnp.zeros(3, jnp.uint32),
    ],
}


def _malformed_attention(rng, mode):
    argument = list(_BAD_ATTENTION)[rng.integers(len(_BAD_ATTENTION))]
    value = _draw(rng, _BAD_ATTENTION[argument])
    args = _init_args(rng, **{argument: value})
    label = f"attention {mode} {argument}={value!r}"
    return Case(label, argument, lambda: _call(_attention_init, mode, args))


def _valid_attention(rng):
    """A valid edge input or the jit-time clamp of ``memory_lengths``, against a reference."""
    kind = str(rng.choice(["bahdanau", "luong"]))
    params = _attention_params(kind)
    xs = jnp.asarray(rng.normal(size=(BATCH, TIME, INPUT)), jnp.float32)
    lengths = jnp.asarray(rng.integers(0, SOURCE + 1, BATCH), jnp.int32)
    args = dict(memory=_memory(), memory_lengths=lengths, kind=kind, attention_size=None)
    args.update(params=params, xs=xs)
    family = ("zero batch", "bfloat16", "NaN padding", "jit: memory_lengths", "numpy")
    family = family[rng.integers(len(family))]
    if family == "zero batch":
        zero = {**args, "memory": _memory(0), "memory_lengths": LENGTHS[:0], "xs": xs[:0]}
        expected = jax.tree.map(lambda a: np.zeros((0, *a.shape[1:])), _call_apply(args))
        return Case(family, "", lambda: _call_apply(zero), _equal(expected))
    if family == "bfloat16":
        arrays = {name: args[name] for name in ("memory", "params", "xs")}
        half = {**args, **jax.tree.map(lambda a: a.astype(jnp.bfloat16), arrays)}
        upcast = {
            **half,
            **jax.tree.map(lambda a: a.astype(jnp.float32), {n: half[n] for n in arrays}),
        }
        return Case(family, "", lambda: _call_apply(half), _bfloat16_close(_call_apply(upcast)))
    if family == "NaN padding":
        padding = jnp.arange(SOURCE)[None, :, None] >= lengths[:, None, None]
        nan = {**args, "memory": jnp.where(padding, jnp.nan, args["memory"])}
        zero = {**args, "memory": jnp.where(padding, 0.0, args["memory"])}
        return Case(family, "", lambda: _call_apply(nan), _equal(_call_apply(zero)))
    if family == "numpy":  # NumPy memory and int64 lengths, an int64 input size at init
        init = _init_args(rng, kind=kind, attention_size=None, input_size=np.int64(INPUT))
        reference = _attention_init(**{**init, "input_size": INPUT})
        return Case(family, "", lambda: _attention_init(**init), _equal(reference))
    wrong = jnp.asarray(rng.choice([-3, -1, SOURCE + 1, SOURCE + 7], BATCH), jnp.int32)
    clamped = {**args, "memory_lengths": jnp.clip(wrong, 0, SOURCE)}
    expected = _call_apply(clamped)
    return Case(
        family, "", lambda: _call_apply({**args, "memory_lengths": wrong}), _equal(expected)
    )


def _call_apply(args):
    return _call(_attention_apply, "jit", args, cache=True)


def _bfloat16_close(expected):
    """Equal to the float32 call on the same values to bfloat16's precision; the output
    (``ys`` or ``y``) in bfloat16 (the inner LSTM keeps its state in float32)."""

    def check(result):
        assert result[1].dtype == jnp.bfloat16
        for got, want in zip(jax.tree.leaves(result), jax.tree.leaves(expected), strict=True):
            np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=0.05, atol=0.05)

    return check


def test_fuzz_attention_construction_and_init():
    rng, cases = np.random.default_rng(23), []
    for i in range(CALLS):
        mode = ("eager", "jit")[i % 2]
        if rng.random() < 0.12:
            cases.append(_valid_attention(rng))
        elif rng.random() < 0.08 and mode == "eager":  # out of range: refused when concrete
            wrong = LENGTHS.at[rng.integers(BATCH)].set(int(rng.choice([-1, SOURCE + 1])))
            args = _init_args(rng, memory_lengths=wrong)
            cases.append(Case("lengths", "memory_lengths", lambda a=args: _attention_init(**a)))
        else:
            cases.append(_malformed_attention(rng, mode))
    COUNTS["rnnjax.attention"] = _run("rnnjax.attention", cases)
    assert COUNTS["rnnjax.attention"]["calls"] >= 200


# --- Fuzz: the attention step ------------------------------------------------------------------


def _step_kw(att, params, carry, x):
    return att.step(params, carry, x)


def _cast_carry(carry, field, dtype):
    return carry._replace(**{field: jax.tree.map(lambda a: a.astype(dtype), getattr(carry, field))})


@functools.cache
def _bad_step_values(kind):
    """argument -> malformed values, built once per kind, in NumPy (no XLA op to compile)."""
    params, carry, x = jax.tree.map(np.asarray, _step_inputs(kind)[1:])
    cast = functools.partial(_cast_carry, carry)
    return {
        "x": [
            *(x.astype(dtype) for dtype in (np.int32, np.bool_, np.uint8, np.complex64)),
            x[:, :1],
            x[:, :2],
            np.ones((BATCH + 1, INPUT), np.float32),
            x[0],
            [1.0, 2.0, 3.0],
            None,
        ],
        "carry": [
            cast("attention", np.int32),
            cast("attention", np.bool_),
            cast("attention", np.complex64),
            cast("weights", np.uint8),
            cast("cell", np.int32),
            tuple(carry),
            carry._replace(cell=tuple(carry.cell)),
            carry._replace(weights=np.zeros((BATCH, SOURCE + 1), np.float32)),
            carry._replace(attention=carry.attention[:, :2]),
            None,
        ],
        "params": [
            params.cell,
            jax.tree.map(lambda p: p.astype(np.int32), params),
            jax.tree.map(lambda p: p.astype(np.complex64), params),
            params._replace(output_kernel=params.output_kernel[:-1]),
            None,
            {"cell": params.cell},
        ],
        "attention_size": [_zero_params(kind, size) for size in (5, 6)],
    }


def _malformed_step(rng, mode):
    kind = str(rng.choice(["bahdanau", "luong"]))
    att, params, carry, x = _step_inputs(kind)
    args = dict(att=att, params=params, carry=carry, x=x)
    bad = _bad_step_values(kind)
    argument = list(bad)[rng.integers(len(bad))]
    value = bad[argument][rng.integers(len(bad[argument]))]
    args["params" if argument == "attention_size" else argument] = value
    label = f"step {mode} {kind} {argument}={value!r}"[:300]
    return Case(label, argument, lambda: _call(_step_kw, mode, args))


def _valid_step(rng):
    """A valid edge input to the step, against a reference step."""
    kind = str(rng.choice(["bahdanau", "luong"]))
    att, params, carry, _ = _step_inputs(kind)
    x = jnp.asarray(rng.normal(size=(BATCH, INPUT)), jnp.float32)
    lengths = jnp.asarray(rng.integers(0, SOURCE + 1, BATCH), jnp.int32)
    family = ("zero batch", "bfloat16", "NaN padding")[rng.integers(3)]
    if family == "zero batch":
        zero = rnnjax.attention(rnnjax.lstm(HIDDEN), _memory(0), LENGTHS[:0], kind=kind)
        empty = zero.initial_carry(params, 0)
        expected = jax.tree.map(lambda a: np.zeros((0, *a.shape[1:])), att.step(params, carry, x))
        return Case(family, "", lambda: zero.step(params, empty, x[:0]), _equal(expected))
    if family == "bfloat16":
        half = jax.tree.map(lambda a: a.astype(jnp.bfloat16), (_memory(), params, carry, x))
        upcast = jax.tree.map(lambda a: a.astype(jnp.float32), half)

        def step(memory, params, carry, x):
            return rnnjax.attention(rnnjax.lstm(HIDDEN), memory, lengths, kind=kind).step(
                params, carry, x
            )

        return Case(family, "", lambda: step(*half), _bfloat16_close(step(*upcast)))
    padding = jnp.arange(SOURCE)[None, :, None] >= lengths[:, None, None]

    def padded(value):
        memory = jnp.where(padding, value, _memory())
        att = rnnjax.attention(rnnjax.lstm(HIDDEN), memory, lengths, kind=kind)
        return att.step(params, carry, x)

    return Case(family, "", lambda: padded(jnp.nan), _equal(padded(0.0)))


def test_fuzz_attention_step():
    rng, cases = np.random.default_rng(26), []
    for i in range(CALLS):
        mode = ("eager", "jit")[i % 2]
        cases.append(_valid_step(rng) if rng.random() < 0.12 else _malformed_step(rng, mode))
    COUNTS["rnnjax.attention step"] = _run("rnnjax.attention", cases)
    assert COUNTS["rnnjax.attention step"]["calls"] >= 200
