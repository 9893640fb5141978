"""The prefix-scan contract of ``aaren_policy.scan`` (docs/design.md §3, §6: exactness).

Every parallel method (chunked, Hillis-Steele) is checked against the two references kept
next to it (sequential RNN form, O(T^2) naive masked softmax) in float64: outputs, final state
and gradients, at awkward lengths and several batch shapes; then continuation, causality,
float32 stability over scores in [-1e4, 1e4], and argument validation.

A final state (m, u, w) is only defined up to a common rescale (any m >= max score gives an
equivalent triple), so states are compared through ``normalised``: both rescaled to the same
m. Gradients are taken of representation-free quantities only (the outputs, the state's
output w/u and its log-normaliser m + log u), so they are the same for every method.
"""

from __future__ import annotations

import math

import pytest
import torch

from aaren_rl.aaren_policy.scan import (
    METHODS,
    AttentionState,
    attention_step,
    combine,
    empty_state,
    naive_prefix_attention,
    prefix_attention,
)

F64 = torch.float64
PARALLEL = ("chunked", "hillis_steele")
LENGTHS = (1, 2, 63, 500, 1000)
BATCHES = ((), (3,), (2, 3))
D = 3  # value width: small, the maths does not depend on it


def make(
    batch: tuple[int, ...], t: int, d: int = D, seed: int = 0, scale: float = 3.0, dtype=F64
) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    scores = (torch.randn(*batch, t, generator=g, dtype=F64) * scale).to(dtype)
    values = torch.randn(*batch, t, d, generator=g, dtype=F64).to(dtype)
    return scores, values


def random_state(batch: tuple[int, ...], d: int = D, seed: int = 1) -> AttentionState:
    """A non-empty earlier state, as if from earlier tokens."""
    s, v = make(batch, 5, d, seed=seed)
    return naive_prefix_attention(s, v)[1]


def normalised(a: AttentionState, b: AttentionState) -> tuple[AttentionState, AttentionState]:
    """Rescale both triples to the common m = max(m_a, m_b) (the same prefix summary)."""
    m = torch.maximum(a.m, b.m)

    def to(s: AttentionState) -> AttentionState:
        f = torch.exp(s.m - m)
        return AttentionState(m, s.u * f, s.w * f.unsqueeze(-1))

    return to(a), to(b)


def assert_state_close(a: AttentionState, b: AttentionState, **tol: float) -> None:
    torch.testing.assert_close(a.output(), b.output(), **tol)
    na, nb = normalised(a, b)
    torch.testing.assert_close(na.u, nb.u, **tol)
    torch.testing.assert_close(na.w, nb.w, **tol)


def invariant_loss(out: torch.Tensor, state: AttentionState, seed: int = 7) -> torch.Tensor:
    """A random linear functional of the outputs, the state's output and its log-normaliser."""
    g = torch.Generator().manual_seed(seed)
    terms = (out, state.output(), state.m + state.u.log())
    return sum((t * torch.randn(t.shape, generator=g, dtype=t.dtype)).sum() for t in terms)


def run(method: str, scores, values, state=None, chunk_size: int = 32):
    return prefix_attention(scores, values, state, method=method, chunk_size=chunk_size)


# ---------------------------------------------------------------------------------------------
# parallel == sequential == naive
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch", BATCHES, ids=str)
@pytest.mark.parametrize("t", LENGTHS)
def test_methods_agree_outputs_state_gradients(t: int, batch: tuple[int, ...]) -> None:
    """Outputs, final state and gradients (w.r.t. scores, values and an initial state) of
    every method equal the naive float64 reference."""
    scores, values = make(batch, t, seed=t)
    init = random_state(batch)
    for with_state in (False, True):
        ref_inputs = [x.clone().requires_grad_() for x in (scores, values, *init)]
        st = AttentionState(*ref_inputs[2:]) if with_state else None
        ref_out, ref_state = naive_prefix_attention(*ref_inputs[:2], st)
        invariant_loss(ref_out, ref_state).backward()
        for method in ("chunked", "hillis_steele", "sequential"):
            inputs = [x.clone().requires_grad_() for x in (scores, values, *init)]
            st = AttentionState(*inputs[2:]) if with_state else None
            out, state = run(method, *inputs[:2], st, chunk_size=16)
            torch.testing.assert_close(out, ref_out, rtol=1e-10, atol=1e-12)
            assert_state_close(state, ref_state, rtol=1e-10, atol=1e-12)
            invariant_loss(out, state).backward()
            for x, ref in zip(inputs, ref_inputs):
                if ref.grad is None:  # the initial state when with_state is False
                    assert x.grad is None
                else:
                    torch.testing.assert_close(x.grad, ref.grad, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t", (1, 2, 5, 9))
def test_gradcheck(method: str, t: int) -> None:
    """torch.autograd.gradcheck in float64 on small sizes, with an initial state; chunk 4
    makes T = 5 and 9 span padded chunks."""
    scores, values = make((2,), t, d=2, seed=t)
    m, u, w = random_state((2,), d=2)

    def f(s, v, m, u, w):
        out, state = prefix_attention(s, v, AttentionState(m, u, w), method=method, chunk_size=4)
        return out, state.output(), state.m + state.u.log()

    inputs = tuple(x.clone().requires_grad_() for x in (scores, values, m, u, w))
    assert torch.autograd.gradcheck(f, inputs)


@pytest.mark.parametrize("chunk", (1, 7, 32))
@pytest.mark.parametrize("t", (1, 31, 33, 63, 500))
def test_chunked_gradients_awkward_lengths(t: int, chunk: int) -> None:
    """Gradients of the chunked scan equal the naive ones when T is not a multiple of the
    chunk (padding) and when T < chunk (a single short chunk)."""
    scores, values = make((2,), t, seed=t + chunk)
    grads = {}
    for method in ("chunked", "naive"):
        s, v = scores.clone().requires_grad_(), values.clone().requires_grad_()
        out, state = run(method, s, v, chunk_size=chunk)
        invariant_loss(out, state).backward()
        grads[method] = (s.grad, v.grad)
    for g, ref in zip(grads["chunked"], grads["naive"]):
        assert torch.isfinite(g).all()
        torch.testing.assert_close(g, ref, rtol=1e-9, atol=1e-11)


# ---------------------------------------------------------------------------------------------
# Continuation and the one-token step
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(("t", "split"), [(2, 1), (63, 1), (63, 31), (63, 32), (63, 62)])
def test_continuation(method: str, t: int, split: int) -> None:
    """prefix_attention(x[:t]) then prefix_attention(x[t:], state) equals the whole."""
    scores, values = make((2, 3), t, seed=split)
    whole, whole_state = run(method, scores, values, chunk_size=8)
    head, st = run(method, scores[..., :split], values[..., :split, :], chunk_size=8)
    tail, st = run(method, scores[..., split:], values[..., split:, :], st, chunk_size=8)
    torch.testing.assert_close(torch.cat([head, tail], dim=-2), whole, rtol=1e-12, atol=1e-12)
    assert_state_close(st, whole_state, rtol=1e-12, atol=1e-12)


def test_continuation_long_many_pieces() -> None:
    """A 500-token sequence fed in uneven pieces through the default (chunked) path."""
    scores, values = make((4,), 500, seed=3)
    whole, _ = prefix_attention(scores, values)
    outs, state = [], None
    for a, b in [(0, 1), (1, 33), (33, 100), (100, 101), (101, 500)]:
        out, state = prefix_attention(scores[..., a:b], values[..., a:b, :], state)
        outs.append(out)
    torch.testing.assert_close(torch.cat(outs, dim=-2), whole, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("start", ("none", "empty"))
def test_attention_step_matches_scan(start: str) -> None:
    """Stepping token by token (from None or from empty_state) equals the parallel scan."""
    scores, values = make((2, 3), 40, seed=5)
    ref, ref_state = prefix_attention(scores, values)
    state = None if start == "none" else empty_state((2, 3), D, F64)
    outs = []
    for i in range(40):
        o, state = attention_step(scores[..., i], values[..., i, :], state)
        outs.append(o)
    torch.testing.assert_close(torch.stack(outs, -2), ref, rtol=1e-12, atol=1e-12)
    assert_state_close(state, ref_state, rtol=1e-12, atol=1e-12)


def test_empty_state_is_identity_of_combine() -> None:
    """combine(empty, s) == combine(s, empty) == s: the m = -inf start contributes nothing."""
    s = random_state((3,))
    e = empty_state((3,), D, F64)
    for c in (combine(e, s), combine(s, e)):
        assert torch.equal(c.m, s.m) and torch.equal(c.u, s.u) and torch.equal(c.w, s.w)


def test_combine_is_associative() -> None:
    a, b, c = (random_state((4,), seed=i) for i in range(3))
    assert_state_close(combine(combine(a, b), c), combine(a, combine(b, c)), rtol=1e-12, atol=0)


# ---------------------------------------------------------------------------------------------
# Causality
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("t_change", (0, 6, 7, 30, 62))
def test_causality_exact(method: str, t_change: int) -> None:
    """Changing token t (score and value) leaves every output before t bit-for-bit equal;
    chunk 7 puts t at chunk starts, middles and ends. float32, as used in training."""
    scores, values = make((2, 3), 63, seed=11, dtype=torch.float32)
    out, _ = run(method, scores, values, chunk_size=7)
    s2, v2 = scores.clone(), values.clone()
    s2[..., t_change] += 50.0  # large enough to dominate every later output
    v2[..., t_change, :] -= 3.0
    out2, _ = run(method, s2, v2, chunk_size=7)
    assert torch.equal(out2[..., :t_change, :], out[..., :t_change, :])
    assert not torch.equal(out2[..., t_change, :], out[..., t_change, :])


# ---------------------------------------------------------------------------------------------
# float32 stability
# ---------------------------------------------------------------------------------------------


def _score_families(t: int, g: torch.Generator) -> dict[str, torch.Tensor]:
    u = torch.rand(4, t, generator=g, dtype=F64)
    extremes = torch.tensor([-1e4, 1e4], dtype=F64)[torch.randint(0, 2, (4, t), generator=g)]
    return {
        "uniform[-1e4,1e4]": u * 2e4 - 1e4,
        "near+1e4": 1e4 - 20 * u,
        "near-1e4": -1e4 + 20 * u,
        "extremes": extremes,
        "extremes+small": torch.where(u < 0.5, extremes, torch.randn(4, t, generator=g)),
        "increasing": torch.linspace(-1e4, 1e4, t, dtype=F64).expand(4, t),
        "decreasing": torch.linspace(1e4, -1e4, t, dtype=F64).expand(4, t),
    }


@pytest.mark.parametrize("method", METHODS)
def test_float32_stability(method: str) -> None:
    """float32 scores anywhere in [-1e4, 1e4] give finite outputs (and gradients) within 1e-4
    relative error of the float64 reference.

    Relative error of a sequence: max over its positions and channels of |out - ref|, divided
    by max |ref| over the same sequence. The reference is the naive float64 computation on the
    *same* float32 inputs (cast up), so the test measures the scan's own rounding only.
    """
    t = 300
    g = torch.Generator().manual_seed(0)
    values = torch.randn(4, t, 8, generator=g).float()
    for name, scores64 in _score_families(t, g).items():
        scores = scores64.float().requires_grad_()
        out, state = run(method, scores, values, chunk_size=32)
        ref, ref_state = naive_prefix_attention(scores.detach().double(), values.double())
        assert torch.isfinite(out).all(), name
        err = (out.double() - ref).abs().amax(dim=(-2, -1)) / ref.abs().amax(dim=(-2, -1))
        assert err.max() < 1e-4, (name, err.max().item())
        st_err = (state.output().double() - ref_state.output()).abs().amax(-1)
        assert (st_err / ref_state.output().abs().amax(-1)).max() < 1e-4, name
        out.sum().backward()
        assert torch.isfinite(scores.grad).all(), name


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("score", (-1e4, 0.0, 1e4))
@pytest.mark.parametrize("start", ("none", "empty"))
def test_equal_scores_exact(method: str, score: float, start: str) -> None:
    """All-equal scores (including all -1e4) give the running mean of the values *exactly*.

    "Exact" means bitwise equal to float32(float64 cumulative mean). It is achievable because
    the values are small integers: every partial sum u_k = k and w_k = sum v_i is an integer
    below 2^24, so exact in float32, and every rescale factor is exp(0) = 1. The only rounding
    is then the final division w/u, correctly rounded once in float32; the float64 mean rounded
    to float32 is the same number (double rounding is innocuous for division since
    53 >= 2 * 24 + 2). A start of m = 0 instead of -inf would make every exp(-1e4 - 0)
    underflow to 0 and the output 0/0: the "empty" start pins that down.
    """
    t = 1000
    g = torch.Generator().manual_seed(1)
    values = torch.randint(-8, 9, (2, t, 4), generator=g).float()
    scores = torch.full((2, t), score)
    state = None if start == "none" else empty_state((2,), 4)
    out, final = run(method, scores, values, state, chunk_size=32)
    k = torch.arange(1, t + 1, dtype=F64).unsqueeze(-1)
    ref = (values.double().cumsum(-2) / k).float()
    assert torch.equal(out, ref)
    assert torch.equal(final.m, torch.full((2,), score))
    assert torch.equal(final.u, torch.full((2,), float(t)))


# ---------------------------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------------------------


def _bad_calls():
    s, v = make((2,), 5, dtype=torch.float32)
    st = empty_state((2,), D)
    return [
        ("shape", lambda m: prefix_attention(s, v[:, :4], method=m), "disagree on"),
        ("rank", lambda m: prefix_attention(s, v[..., 0], method=m), r"expected scores"),
        ("scalar", lambda m: prefix_attention(s[0, 0], v[0, 0], method=m), r"expected scores"),
        ("int", lambda m: prefix_attention(s.long(), v.long(), method=m), "floating point"),
        ("int-values", lambda m: prefix_attention(s, v.long(), method=m), "floating point"),
        ("mixed", lambda m: prefix_attention(s, v.double(), method=m), "share a dtype"),
        ("T=0", lambda m: prefix_attention(s[:, :0], v[:, :0], method=m), r"T = 0"),
        ("numpy", lambda m: prefix_attention(s.numpy(), v, method=m), "torch tensors"),
        (
            "state-batch",
            lambda m: prefix_attention(s, v, empty_state((1,), D), method=m),
            "state shapes",
        ),
        (
            "state-D",
            lambda m: prefix_attention(s, v, empty_state((2,), D + 1), method=m),
            "state shapes",
        ),
        (
            "state-dtype",
            lambda m: prefix_attention(s, v, empty_state((2,), D, F64), method=m),
            "state dtypes",
        ),
        (
            "state-mixed",
            lambda m: prefix_attention(s, v, AttentionState(st.m.double(), st.u, st.w), method=m),
            "state dtypes",
        ),
        ("state-type", lambda m: prefix_attention(s, v, (st.m, st.u), method=m), "AttentionState"),
    ]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("case", range(len(_bad_calls())))
def test_bad_arguments_raise_value_error(method: str, case: int) -> None:
    _, call, match = _bad_calls()[case]
    with pytest.raises(ValueError, match=match):
        call(method)


def test_bad_method_and_chunk_size() -> None:
    s, v = make((2,), 5)
    with pytest.raises(ValueError, match="unknown method"):
        prefix_attention(s, v, method="blelloch")
    with pytest.raises(ValueError, match="chunk_size must be >= 1"):
        prefix_attention(s, v, chunk_size=0)


def test_attention_step_bad_arguments() -> None:
    s, v = make((3,), 1, dtype=torch.float32)
    s, v = s[:, 0], v[:, 0]
    with pytest.raises(ValueError, match="expected score"):
        attention_step(s, v[:2])
    with pytest.raises(ValueError, match="float dtype"):
        attention_step(s.long(), v.long())
    with pytest.raises(ValueError, match="float dtype"):
        attention_step(s, v.double())
    # A batch-1 state would otherwise broadcast silently over the batch of 3.
    with pytest.raises(ValueError, match="state shapes"):
        attention_step(s, v, empty_state((1,), D))
    with pytest.raises(ValueError, match="state dtypes"):
        attention_step(s, v, empty_state((3,), D, F64))


def test_the_empty_state_starts_from_minus_infinity() -> None:
    """m_0 = -inf, not 0 (docs/design.md §3): with m_0 = 0, scores far below 0 lose precision."""
    e = empty_state((1,), 1)
    assert math.isinf(e.m.item()) and e.m.item() < 0
    assert e.u.item() == 0.0 and e.w.abs().sum().item() == 0.0
