"""aaren_policy: attention as an RNN (Aaren), a Transformer baseline, and the decision model."""

from aaren_rl import __version__
from aaren_rl.aaren_policy.aaren import Aaren
from aaren_rl.aaren_policy.backbone import (
    AarenBackbone,
    Backbone,
    BackboneConfig,
    TransformerBackbone,
    make_backbone,
)
from aaren_rl.aaren_policy.decision import DecisionModel, DecisionModelConfig, to_left_padding
from aaren_rl.aaren_policy.scan import (
    AttentionState,
    attention_step,
    combine,
    empty_state,
    naive_prefix_attention,
    prefix_attention,
    sequential_prefix_attention,
)
from aaren_rl.aaren_policy.transformer import CausalSelfAttention, KVCache

__all__ = [
    "Aaren",
    "AarenBackbone",
    "AttentionState",
    "Backbone",
    "BackboneConfig",
    "CausalSelfAttention",
    "DecisionModel",
    "DecisionModelConfig",
    "KVCache",
    "TransformerBackbone",
    "attention_step",
    "combine",
    "empty_state",
    "make_backbone",
    "naive_prefix_attention",
    "prefix_attention",
    "sequential_prefix_attention",
    "to_left_padding",
    "__version__",
]
