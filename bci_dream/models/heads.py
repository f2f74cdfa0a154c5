"""Heads on the encoder's tokens: Stable Diffusion conditioning and CLIP image-embedding alignment."""

from __future__ import annotations

import torch
from torch import nn


class ConditioningHead(nn.Module):
    """Encoder tokens [B, L, D] → cross-attention tokens [B, 77, cross_attention_dim].

    As in DreamDiffusion: 1x1 convolutions over the token axis (L → L/2 → 77), then a linear map to
    the UNet's cross-attention width (1024 for SD 2.x / SD-Turbo, 768 for SD 1.x — read it from the
    UNet's config, never hard-code it).
    """

    def __init__(self, num_tokens: int, embed_dim: int, cross_attention_dim: int, out_tokens: int = 77) -> None:
        super().__init__()
        self.num_tokens, self.embed_dim = num_tokens, embed_dim
        self.cross_attention_dim, self.out_tokens = cross_attention_dim, out_tokens
        self.channel_mapper = nn.Sequential(
            nn.Conv1d(num_tokens, max(num_tokens // 2, 1), 1),
            nn.Conv1d(max(num_tokens // 2, 1), out_tokens, 1),
        )
        self.dim_mapper = nn.Linear(embed_dim, cross_attention_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.dim_mapper(self.channel_mapper(tokens))


class ClipHead(nn.Module):
    """Encoder tokens [B, L, D] → one vector [B, projection_dim] in CLIP image-embedding space."""

    def __init__(self, num_tokens: int, embed_dim: int, projection_dim: int) -> None:
        super().__init__()
        self.num_tokens, self.embed_dim, self.projection_dim = num_tokens, embed_dim, projection_dim
        self.pool = nn.Conv1d(num_tokens, 1, 1)
        self.fc = nn.Linear(embed_dim, projection_dim)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(tokens).squeeze(1))
