"""The two backbones built from one ``BackboneConfig``: same interface, (almost) same size.

Continuation, step == forward (eval mode, dropout 0, float64), exact causality, state size,
episode resets, parameter counts (the paper's 3,152,896 vs 3,152,384 at d = 512) and
argument validation.
"""

from __future__ import annotations

import pytest
import torch

from aaren_rl.aaren_policy.backbone import (
    AarenBackbone,
    BackboneConfig,
    TransformerBackbone,
    make_backbone,
)

F64 = torch.float64
TOL = {"rtol": 1e-10, "atol": 1e-12}
KINDS = ("aaren", "transformer")


def backbone(kind: str, dtype=F64, **overrides) -> torch.nn.Module:
    """A small stack in eval mode; chunk 4 so 19 tokens span padded chunks."""
    torch.manual_seed(0)
    kw = {"dim": 16, "num_layers": 2, "num_heads": 2, "dropout": 0.0, "chunk_size": 4}
    model = make_backbone(kind, BackboneConfig(**{**kw, **overrides})).to(dtype).eval()
    if kind == "aaren":
        with torch.no_grad():  # sharper attention than the 0.02-scale initial query
            for block in model.blocks:
                block.mixer.query.normal_(0.0, 3.0)
    return model


def tokens(b: int, t: int, dtype=F64, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, t, 16, generator=torch.Generator().manual_seed(seed), dtype=dtype)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("split", (1, 4, 9, 18))
def test_forward_continuation(kind: str, split: int) -> None:
    """forward(x[:, :t]) then forward(x[:, t:], state) equals forward(x)."""
    model = backbone(kind)
    x = tokens(3, 19)
    y, _ = model(x)
    y1, state = model(x[:, :split])
    y2, _ = model(x[:, split:], state)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y, **TOL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("start", ("none", "init_state"))
def test_step_equals_forward(kind: str, start: str) -> None:
    model = backbone(kind)
    x = tokens(3, 19)
    y, _ = model(x)
    state = None if start == "none" else model.init_state(3, dtype=F64)
    ys = []
    for i in range(19):
        y_t, state = model.step(x[:, i], state)
        ys.append(y_t)
    torch.testing.assert_close(torch.stack(ys, 1), y, **TOL)


@pytest.mark.parametrize("kind", KINDS)
def test_step_after_forward(kind: str) -> None:
    """Prefill with the parallel path, then step (how an agent would warm-start)."""
    model = backbone(kind)
    x = tokens(2, 12)
    y, _ = model(x)
    _, state = model(x[:, :7])
    for i in range(7, 12):
        y_t, state = model.step(x[:, i], state)
        torch.testing.assert_close(y_t, y[:, i], **TOL)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("t_change", (0, 5, 18))
def test_causality_exact(kind: str, t_change: int) -> None:
    """Changing token t leaves all outputs before t bit-for-bit equal (float32, eval)."""
    model = backbone(kind, dtype=torch.float32)
    x = tokens(2, 19, dtype=torch.float32)
    x2 = x.clone()
    x2[:, t_change] = 5 * torch.randn(2, 16)
    with torch.no_grad():
        y, y2 = model(x)[0], model(x2)[0]
    assert torch.equal(y[:, :t_change], y2[:, :t_change])
    assert not torch.equal(y[:, t_change], y2[:, t_change])


def test_state_size_constant_vs_growing() -> None:
    aaren, transformer = backbone("aaren", torch.float32), backbone("transformer", torch.float32)
    x = tokens(2, 40, dtype=torch.float32)
    sizes: dict[str, list[int]] = {"aaren": [], "transformer": []}
    with torch.inference_mode():
        for name, model in (("aaren", aaren), ("transformer", transformer)):
            state = model.init_state(2)
            for i in range(40):
                _, state = model.step(x[:, i], state)
                sizes[name].append(model.state_nbytes(state))
    assert len(set(sizes["aaren"])) == 1  # 2 layers x (m, u (2, 2); w (2, 2, 8)) float32
    assert sizes["aaren"][0] == 2 * (4 + 4 + 32) * 4
    growth = [b - a for a, b in zip(sizes["transformer"], sizes["transformer"][1:])]
    assert set(growth) == {2 * (2 * 2 * 16 * 4 + 2)}  # per layer: k, v rows and valid flags


@pytest.mark.parametrize("kind", KINDS)
def test_reset_state_restarts_only_done_rows(kind: str) -> None:
    """After reset_state(done), a done row continues exactly as a fresh episode."""
    model = backbone(kind)
    x = tokens(2, 10)
    _, state = model(x[:, :6])
    state = model.reset_state(state, torch.tensor([True, False]))
    y_cont, _ = model(x[:, 6:], state)
    fresh, _ = model(x[:1, 6:])
    whole, _ = model(x[1:])
    torch.testing.assert_close(y_cont[:1], fresh, **TOL)
    torch.testing.assert_close(y_cont[1:], whole[:, 6:], **TOL)


# ---------------------------------------------------------------------------------------------
# Parameter counts
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("dim", "heads"), [(128, 1), (512, 8)])
def test_parameter_counts_match(dim: int, heads: int) -> None:
    """Same config: within 1%, and the difference is exactly one d-vector (the query token)
    per layer."""
    config = BackboneConfig(dim=dim, num_layers=3, num_heads=heads)
    with torch.device("meta"):  # counts only: no memory, no init time
        a, t = AarenBackbone(config).num_parameters(), TransformerBackbone(config).num_parameters()
    assert a - t == dim * config.num_layers
    assert abs(a - t) / t < 0.01


def test_parameter_counts_reproduce_the_paper() -> None:
    """One block at d = 512 (FFN 4d) has the paper's counts: 3,152,896 (Aaren) vs 3,152,384."""
    config = BackboneConfig(dim=512, num_layers=1)
    with torch.device("meta"):
        a, t = AarenBackbone(config), TransformerBackbone(config)
    block = {m: sum(p.numel() for p in b.blocks.parameters()) for m, b in (("a", a), ("t", t))}
    assert block == {"a": 3_152_896, "t": 3_152_384}


# ---------------------------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim": 10, "num_heads": 3}, "divisible by num_heads"),
        ({"dim": 0}, "must be positive"),
        ({"num_layers": 0}, "must be positive"),
        ({"dropout": 1.0}, r"dropout must be in \[0, 1\)"),
        ({"scan_method": "blelloch"}, "scan_method must be one of"),
        ({"ffn_dim": 0}, "ffn_dim must be positive"),
    ],
)
def test_bad_config(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        BackboneConfig(**kwargs)


@pytest.mark.parametrize("kind", KINDS)
def test_bad_calls(kind: str) -> None:
    model = backbone(kind, dtype=torch.float32)
    x = tokens(2, 5, dtype=torch.float32)
    _, state = model(x)
    with pytest.raises(ValueError, match="state has 1 layers, the backbone 2"):
        model(x, state[:1])
    with pytest.raises(ValueError, match="state has 1 layers"):
        model.step(x[:, 0], state[:1])
    with pytest.raises(ValueError, match="shapes"):
        model(x[:1], state)  # batch 1 against a state of batch 2
    with pytest.raises(ValueError, match="input dtype"):
        model(x.double())
    with pytest.raises(ValueError, match=r"T = 0"):
        model(x[:, :0])
    with pytest.raises(ValueError, match="unknown backbone"):
        make_backbone("mamba", BackboneConfig())
