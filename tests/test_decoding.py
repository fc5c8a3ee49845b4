"""``rnnjax.decode``: greedy against a Python loop, beam search against brute-force enumeration
and against greedy (width 1), sampling against greedy (top_k=1) and against the softmax it
samples from, EOS and padding, one compilation per step function, and the named errors.
"""

import functools
import itertools

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import rnnjax

BATCH, VOCAB, EMBED, HIDDEN, LENGTH, EOS = 3, 5, 4, 8, 6, 1
CELL = rnnjax.gru(HIDDEN)


def _model(seed=0):
    k_embed, k_cell, k_dense = jax.random.split(jax.random.key(seed), 3)
    return {
        "embed": jax.random.normal(k_embed, (VOCAB, EMBED)),
        "cell": CELL.init(k_cell, EMBED),
        "dense": 2.0 * jax.random.normal(k_dense, (HIDDEN, VOCAB)),
    }


def gru_step(params, carry, tokens):
    """A decoder as users write it: embedding, ``cell.step``, dense."""
    carry, h = CELL.step(params["cell"], carry, params["embed"][tokens])
    return carry, h @ params["dense"]


def _inputs(seed=0):
    params = _model(seed)
    carry = jax.random.normal(jax.random.key(seed + 10), (BATCH, HIDDEN))
    start = jnp.array([0, 2, 4], jnp.int32)
    return params, carry, start


def _python_greedy(step_fn, params, carry, start, eos_id, pad_id=0):
    """A plain loop over ``step_fn`` with argmax, float64 log-probabilities."""
    tokens = np.full((BATCH, LENGTH), pad_id)
    lengths, scores = np.zeros(BATCH, int), np.zeros(BATCH)
    finished = np.zeros(BATCH, bool)
    previous, step_fn = start, jax.jit(step_fn)  # one compilation, then a plain loop
    for t in range(LENGTH):
        carry, logits = step_fn(params, carry, previous)
        logits = np.asarray(logits, np.float64)
        log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        chosen = logits.argmax(-1)
        for b in range(BATCH):
            if not finished[b]:
                tokens[b, t] = chosen[b]
                scores[b] += log_probs[b, chosen[b]]
                lengths[b] += 1
                finished[b] = chosen[b] == eos_id
        previous = jnp.asarray(chosen, jnp.int32)
    return tokens, lengths, scores


@pytest.mark.parametrize("pad_id", [0, 3])
def test_greedy_equals_a_python_loop(pad_id):
    params, carry, start = _inputs()
    out = rnnjax.decode(
        gru_step, params, carry, start, max_length=LENGTH, eos_id=EOS, pad_id=pad_id
    )
    tokens, lengths, scores = _python_greedy(gru_step, params, carry, start, EOS, pad_id)
    assert out.tokens.dtype == jnp.int32 and out.lengths.dtype == jnp.int32
    np.testing.assert_array_equal(out.tokens, tokens)
    np.testing.assert_array_equal(out.lengths, lengths)
    np.testing.assert_allclose(out.scores, scores, rtol=1e-5)
    assert 0 < lengths.min() < LENGTH == lengths.max()  # EOS ends some sequences, not all
    for b, length in enumerate(lengths):
        assert (np.asarray(out.tokens[b, length:]) == pad_id).all()
        if length < LENGTH:
            assert out.tokens[b, length - 1] == EOS


def test_beam_width_one_and_sampling_top_k_one_equal_greedy():
    params, carry, start = _inputs(1)
    options = dict(max_length=LENGTH, eos_id=EOS)
    greedy = rnnjax.decode(gru_step, params, carry, start, **options)
    beam = rnnjax.decode(gru_step, params, carry, start, method="beam", beam_width=1, **options)
    sample = rnnjax.decode(
        gru_step, params, carry, start, method="sample", key=jax.random.key(0), top_k=1, **options
    )
    np.testing.assert_array_equal(beam.tokens[:, 0], greedy.tokens)
    np.testing.assert_array_equal(beam.lengths[:, 0], greedy.lengths)
    np.testing.assert_allclose(beam.scores[:, 0], greedy.scores, rtol=1e-6)
    jax.tree.map(np.testing.assert_array_equal, sample, greedy)
    # Without EOS every sequence runs max_length steps.
    no_eos = rnnjax.decode(gru_step, params, carry, start, max_length=LENGTH)
    np.testing.assert_array_equal(no_eos.lengths, LENGTH)


# --- Beam search against brute force -------------------------------------------------------

TOY_VOCAB, TOY_EOS, TOY_LENGTH = 3, 2, 3
# p(token at step t | previous token) as table[t, previous]. Greedy takes 0 (0.5) and then
# wanders; the best sequence is 1 (0.4) then EOS (0.9).
_AFTER = [[0.36, 0.34, 0.30], [0.06, 0.04, 0.90], [0.3, 0.3, 0.4]]
GREEDY_TRAP = np.log(np.array([[[0.5, 0.4, 0.1]] * 3, _AFTER, [[0.37, 0.33, 0.30], *_AFTER[1:]]]))


def table_step(table, carry, tokens):
    """Logits that depend on the step and the previous token: ``table[t, previous]``; the
    carry counts the steps."""
    return carry + 1, table[carry, tokens]


def _brute_force(table, start, alpha):
    """Every complete sequence of length <= 3 (ended by EOS, or by the length), ranked."""
    log_probs = table - np.log(np.exp(table).sum(-1, keepdims=True))
    found = []
    for length in range(1, TOY_LENGTH + 1):
        for sequence in itertools.product(range(TOY_VOCAB), repeat=length):
            if TOY_EOS in sequence[:-1] or (length < TOY_LENGTH and sequence[-1] != TOY_EOS):
                continue
            previous = (start, *sequence[:-1])
            score = sum(
                log_probs[t, p, s] for t, (p, s) in enumerate(zip(previous, sequence, strict=True))
            )
            score /= ((5 + length) / 6) ** alpha
            found.append((score, sequence))
    return sorted(found, key=lambda item: -item[0])


@pytest.mark.parametrize("alpha", [0.0, 0.8])
def test_beam_search_finds_the_best_sequences_where_greedy_does_not(alpha):
    rng = np.random.default_rng(0)
    tables = [GREEDY_TRAP, rng.normal(scale=2.0, size=(TOY_LENGTH, TOY_VOCAB, TOY_VOCAB))]
    start = jnp.array([0, 1], jnp.int32)
    for table in tables:
        args = (jnp.asarray(table, jnp.float32), jnp.zeros(2, jnp.int32), start)
        options = dict(max_length=TOY_LENGTH, eos_id=TOY_EOS, pad_id=0)
        # width 9 = vocab ** (length - 1) keeps every prefix: the search is exhaustive.
        beam = rnnjax.decode(
            table_step, *args, method="beam", beam_width=9, length_penalty=alpha, **options
        )
        for b in range(2):
            expected = _brute_force(table, int(start[b]), alpha)[:9]
            for k, (score, sequence) in enumerate(expected):
                padded = list(sequence) + [0] * (TOY_LENGTH - len(sequence))
                np.testing.assert_array_equal(beam.tokens[b, k], padded)
                assert beam.lengths[b, k] == len(sequence)
                np.testing.assert_allclose(beam.scores[b, k], score, rtol=1e-5)
    # On the trap, greedy misses the best sequence and a beam of 2 finds it.
    args = (jnp.asarray(GREEDY_TRAP, jnp.float32), jnp.zeros(2, jnp.int32), jnp.array([0, 0]))
    greedy = rnnjax.decode(table_step, *args, **options)
    narrow = rnnjax.decode(
        table_step, *args, method="beam", beam_width=2, length_penalty=alpha, **options
    )
    best_score, best = _brute_force(GREEDY_TRAP, 0, alpha)[0]
    np.testing.assert_array_equal(narrow.tokens[0, 0], [*best, 0])
    assert best == (1, TOY_EOS) and list(greedy.tokens[0]) != [*best, 0]
    np.testing.assert_allclose(narrow.scores[0, 0], best_score, rtol=1e-5)


@given(
    table=hnp.arrays(
        np.float32,
        (TOY_LENGTH, TOY_VOCAB, TOY_VOCAB),
        elements=st.integers(-12, 12).map(lambda n: n / 4),  # ties included, none by rounding
    ),
    start=hnp.arrays(np.int32, (2,), elements=st.integers(0, TOY_VOCAB - 1)),
)
def test_width_one_beam_and_top_k_one_sampling_are_greedy_on_any_table(table, start):
    args = (jnp.asarray(table), jnp.zeros(2, jnp.int32), jnp.asarray(start))
    options = dict(max_length=TOY_LENGTH, eos_id=TOY_EOS)
    greedy = rnnjax.decode(table_step, *args, **options)
    beam = rnnjax.decode(table_step, *args, method="beam", beam_width=1, **options)
    sample = rnnjax.decode(
        table_step, *args, method="sample", key=jax.random.key(0), top_k=1, **options
    )
    for other in (sample, jax.tree.map(lambda x: x[:, 0], beam)):
        np.testing.assert_array_equal(other.tokens, greedy.tokens)
        np.testing.assert_array_equal(other.lengths, greedy.lengths)
        np.testing.assert_allclose(other.scores, greedy.scores, rtol=1e-6)


def test_jit_and_vmap_over_batches():
    rng = np.random.default_rng(1)
    table = jnp.asarray(rng.normal(size=(TOY_LENGTH, TOY_VOCAB, TOY_VOCAB)), jnp.float32)
    starts = jnp.array([[0, 1], [2, 0]], jnp.int32)  # two batches of two
    options = dict(max_length=TOY_LENGTH, eos_id=TOY_EOS)

    @jax.jit
    def decode_all(table, starts):
        def one(start):
            greedy = rnnjax.decode(table_step, table, jnp.zeros(2, jnp.int32), start, **options)
            beam = rnnjax.decode(
                table_step,
                table,
                jnp.zeros(2, jnp.int32),
                start,
                method="beam",
                beam_width=2,
                **options,
            )
            return greedy, beam

        return jax.vmap(one)(starts)

    mapped = decode_all(table, starts)
    for i in range(2):
        alone = (
            rnnjax.decode(table_step, table, jnp.zeros(2, jnp.int32), starts[i], **options),
            rnnjax.decode(
                table_step,
                table,
                jnp.zeros(2, jnp.int32),
                starts[i],
                method="beam",
                beam_width=2,
                **options,
            ),
        )
        jax.tree.map(
            lambda m, a, i=i: np.testing.assert_allclose(m[i], a, rtol=1e-6), mapped, alone
        )


# --- Sampling ----------------------------------------------------------------------------------


def test_sampling_frequencies_match_the_tempered_softmax():
    logits = jnp.array([1.0, 0.0, -0.5, 2.0, 0.5])
    temperature, samples = 0.7, 4000

    def fixed_step(logits, carry, tokens):
        return carry, jnp.broadcast_to(logits, (tokens.shape[0], VOCAB))

    def draw(key, top_k):
        return rnnjax.decode(
            fixed_step,
            logits,
            jnp.zeros((samples, 1)),
            jnp.zeros((samples,), jnp.int32),
            max_length=2,
            method="sample",
            key=key,
            temperature=temperature,
            top_k=top_k,
        )

    p = np.exp(np.asarray(logits, np.float64) / temperature)
    p /= p.sum()
    for top_k, key in ((None, 0), (3, 1)):
        out = draw(jax.random.key(key), top_k)
        expected = p.copy()
        if top_k is not None:
            expected[np.argsort(-p)[top_k:]] = 0
            expected /= expected.sum()
        tokens = np.asarray(out.tokens)
        for step in range(2):
            frequencies = np.bincount(tokens[:, step], minlength=VOCAB) / samples
            bound = 4.5 * np.sqrt(expected * (1 - expected) / samples) + 1e-12
            assert (np.abs(frequencies - expected) <= bound).all(), (frequencies, expected)
        # Scores: the log-probabilities under softmax(logits / temperature), before top-k.
        np.testing.assert_allclose(out.scores, np.log(p)[tokens].sum(-1), rtol=1e-5)


# --- One compilation, attention decoders --------------------------------------------------------


def test_compiled_once_for_other_params_carry_and_start_tokens():
    traces = []

    def counting_step(params, carry, tokens):
        traces.append(None)
        return gru_step(params, carry, tokens)

    options = dict(max_length=LENGTH, eos_id=EOS)
    for method in ("greedy", "beam", "sample"):
        for seed in range(2):
            params, carry, start = _inputs(seed)
            rnnjax.decode(
                counting_step,
                params,
                carry,
                (start + seed) % VOCAB,  # in range: start + 1 reaches VOCAB
                method=method,
                key=jax.random.key(seed),
                temperature=1.0 + seed,
                length_penalty=0.5 * seed,
                beam_width=2,
                **options,
            )
            if seed == 0:
                traced = len(traces)
        assert len(traces) == traced, method


def attention_step(params, carry, tokens):
    """A decoder with attention; the encoder's outputs come in through ``params``."""
    model, memory, memory_lengths = params
    att = rnnjax.attention(CELL, memory, memory_lengths, kind="bahdanau")
    carry, y = att.step(model["cell"], carry, model["embed"][tokens])
    return carry, y @ model["dense"]


def test_attention_decoder_beam_width_one_equals_greedy():
    memory = jax.random.normal(jax.random.key(3), (BATCH, 4, 2))
    lengths = jnp.array([4, 1, 0])
    att = rnnjax.attention(CELL, memory, lengths)
    model = _model()
    model["cell"] = att.init(jax.random.key(4), EMBED)
    params = (model, memory, lengths)
    carry = att.initial_carry(model["cell"], BATCH)._replace(cell=_inputs()[1])
    start = _inputs()[2]
    options = dict(max_length=LENGTH, eos_id=EOS)
    greedy = rnnjax.decode(attention_step, params, carry, start, **options)
    tokens, lengths_, scores = _python_greedy(attention_step, params, carry, start, EOS)
    np.testing.assert_array_equal(greedy.tokens, tokens)
    np.testing.assert_array_equal(greedy.lengths, lengths_)
    np.testing.assert_allclose(greedy.scores, scores, rtol=1e-5)
    beam = rnnjax.decode(
        attention_step, params, carry, start, method="beam", beam_width=1, **options
    )

    # The other route: inside the user's jit, a step function closing over the memory.
    @jax.jit
    def closing_over(model, memory, lengths, carry, start):
        def step_fn(model, carry, tokens):
            return attention_step((model, memory, lengths), carry, tokens)

        return rnnjax.decode(step_fn, model, carry, start, **options)

    closed = closing_over(model, memory, lengths, carry, start)
    np.testing.assert_array_equal(closed.tokens, greedy.tokens)
    np.testing.assert_allclose(closed.scores, greedy.scores, rtol=1e-6)
    np.testing.assert_array_equal(beam.tokens[:, 0], greedy.tokens)
    np.testing.assert_allclose(beam.scores[:, 0], greedy.scores, rtol=1e-6)


# --- Errors --------------------------------------------------------------------------------------


@functools.cache
def _bad_steps():
    def wide_logits(params, carry, tokens):
        return carry, jnp.zeros((tokens.shape[0], 2, VOCAB))

    def new_carry(params, carry, tokens):
        return carry[:, :2], jnp.zeros((tokens.shape[0], VOCAB))

    return wide_logits, new_carry


def test_errors():
    params, carry, start = _inputs()
    decode = functools.partial(rnnjax.decode, gru_step, params, carry)
    with pytest.raises(
        ValueError,
        match=r"rnnjax.decode: method must be one of \('greedy', 'sample', 'beam'\); got 'topk'",
    ):
        decode(start, max_length=3, method="topk")
    with pytest.raises(ValueError, match=r"rnnjax.decode: method='sample' needs a key"):
        decode(start, max_length=3, method="sample")
    with pytest.raises(ValueError, match=r"rnnjax.decode: max_length must be an int >= 1; got 0"):
        decode(start, max_length=0)
    with pytest.raises(ValueError, match=r"rnnjax.decode: temperature must be positive; got 0.0"):
        decode(start, max_length=3, method="sample", key=jax.random.key(0), temperature=0.0)
    with pytest.raises(ValueError, match=r"rnnjax.decode: beam_width must be an int >= 1; got 0"):
        decode(start, max_length=3, method="beam", beam_width=0)
    with pytest.raises(
        TypeError, match=r"rnnjax.decode: start_tokens must be \[batch\] integers; got float32\[3\]"
    ):
        decode(start.astype(jnp.float32), max_length=3)
    with pytest.raises(
        TypeError,
        match=r"rnnjax.decode: start_tokens must be \[batch\] integers; got int32\[3, 1\]",
    ):
        decode(start[:, None], max_length=3)
    with pytest.raises(
        ValueError,
        match=r"rnnjax.decode: every carry leaf must have the leading batch axis \[2, ...\]"
        r" \(start_tokens' batch\); got carry with shape \(3, 8\)",
    ):
        decode(start[:2], max_length=3)
    with pytest.raises(
        ValueError, match=r"rnnjax.decode: top_k must be at most the vocabulary size 5; got 6"
    ):
        decode(start, max_length=3, method="sample", key=jax.random.key(0), top_k=6)
    with pytest.raises(
        ValueError, match=r"rnnjax.decode: eos_id must be below the vocabulary size 5; got 5"
    ):
        decode(start, max_length=3, eos_id=5)
    wide_logits, new_carry = _bad_steps()
    with pytest.raises(
        ValueError,
        match=r"rnnjax.decode: step_fn must return logits \[batch, vocab\] with batch 3;"
        r" got float32\[3, 2, 5\]",
    ):
        rnnjax.decode(wide_logits, params, carry, start, max_length=3)
    with pytest.raises(
        ValueError,
        match=r"rnnjax.decode: step_fn must return a carry of the structure, shapes and"
        r" dtypes it takes, float32\[3, 8\]; got float32\[3, 2\]",
    ):
        rnnjax.decode(new_carry, params, carry, start, max_length=3)


# --- Per-row temperature, and what jit does with values it cannot check -------------------------


def test_per_row_temperature_matches_a_reference_per_row():
    params, carry, start = _inputs()
    temperatures = np.array([0.5, 1.0, 3.0], np.float32)
    options = dict(max_length=LENGTH, method="sample", key=jax.random.key(7))
    out = rnnjax.decode(
        gru_step, params, carry, start, temperature=jnp.asarray(temperatures), **options
    )
    # Scores: float64 log_softmax(logits / T_b) of the chosen tokens, along the decoded path.
    step, expected, state, previous = jax.jit(gru_step), np.zeros(BATCH), carry, start
    for t in range(LENGTH):
        state, logits = step(params, state, previous)
        scaled = np.asarray(logits, np.float64) / temperatures[:, None]
        log_probs = scaled - np.log(np.exp(scaled).sum(-1, keepdims=True))
        previous = out.tokens[:, t]
        expected += log_probs[np.arange(BATCH), np.asarray(previous)]
    np.testing.assert_allclose(out.scores, expected, rtol=1e-5)
    # Tokens: row b is what one scalar temperature T_b draws there (the same noise).
    for b, temperature in enumerate(temperatures):
        alone = rnnjax.decode(
            gru_step, params, carry, start, temperature=float(temperature), **options
        )
        np.testing.assert_array_equal(out.tokens[b], alone.tokens[b])
        np.testing.assert_allclose(out.scores[b], alone.scores[b], rtol=1e-6)


def test_under_jit_rows_with_invalid_values_score_nan():
    params, carry, start = _inputs()
    options, rows = dict(max_length=LENGTH, eos_id=EOS), np.array([0, 2])
    greedy = rnnjax.decode(gru_step, params, carry, start, **options)
    jitted = jax.jit(lambda start: rnnjax.decode(gru_step, params, carry, start, **options))
    out = jitted(start.at[1].set(VOCAB))  # cannot be checked: traced
    assert np.isnan(out.scores[1]) and not np.isnan(out.scores[rows]).any()
    np.testing.assert_array_equal(out.tokens[rows], greedy.tokens[rows])

    sample = dict(method="sample", key=jax.random.key(1), **options)
    valid = rnnjax.decode(gru_step, params, carry, start, temperature=jnp.ones(3), **sample)

    @jax.jit
    def sampled(temperature):
        return rnnjax.decode(gru_step, params, carry, start, temperature=temperature, **sample)

    out = sampled(jnp.array([1.0, -1.0, 1.0]))
    assert np.isnan(out.scores[1])
    np.testing.assert_array_equal(out.scores[rows], valid.scores[rows])

    @jax.jit
    def beam(alpha):
        return rnnjax.decode(
            gru_step,
            params,
            carry,
            start,
            method="beam",
            beam_width=2,
            length_penalty=alpha,
            **options,
        )

    assert np.isnan(beam(jnp.array(-1.0)).scores).all()
    assert not np.isnan(beam(jnp.array(0.5)).scores).any()
