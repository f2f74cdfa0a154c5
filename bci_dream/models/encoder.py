"""EEG encoder pretrained by temporal masked signal modeling (DreamDiffusion, after MAE).

A window ``x`` [B, C, T] is cut along time into ``T / patch_size`` patches that each span all
``C`` channels; each patch is embedded by a strided 1-D convolution, given a fixed sine-cosine
position, and encoded by transformer blocks. The channel mask of the canonical montage is embedded
too and added to every token, so headsets with 4 to 128 channels share one encoder. For pretraining,
a random 75 % of the patches is hidden and a light decoder reconstructs them; the loss counts the
hidden patches of the channels that exist.
"""

from __future__ import annotations

import torch
from torch import nn

from bci_dream.models.encoder_config import EncoderConfig
from bci_dream.models.layers import Block, sincos_positions


class EegEncoder(nn.Module):
    """Masked-signal-modeling encoder with its MAE decoder.

    Main entry points:
        ``embed(x, mask)`` → tokens [B, L, D] for the heads (no masking; L = num_patches).
        ``forward(x, mask, mask_ratio)`` → (loss, pred [B, L, C*p], patch_mask [B, L]) for pretraining.
    """

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        if config.n_samples % config.patch_size:
            raise ValueError(f"{config.n_samples} samples cannot be cut into patches of {config.patch_size}")
        self.config = config
        c, d, L = config.n_channels, config.embed_dim, config.num_patches
        self.patch_embed = nn.Conv1d(c, d, kernel_size=config.patch_size, stride=config.patch_size)
        self.channel_embed = nn.Linear(c, d, bias=False)  # which montage channels are present
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        if config.positions not in ("sincos", "stored"):
            raise ValueError(f"positions must be 'sincos' or 'stored', not {config.positions!r}")
        self.register_buffer("pos_embed", sincos_positions(d, L, cls_token=True)[None],
                             persistent=config.positions == "stored")
        self.blocks = nn.ModuleList(Block(d, config.num_heads, config.mlp_ratio) for _ in range(config.depth))
        self.norm = nn.LayerNorm(d)

        dd = config.decoder_embed_dim
        self.decoder_embed = nn.Linear(d, dd)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dd))
        self.register_buffer("decoder_pos_embed", sincos_positions(dd, L, cls_token=True)[None], persistent=False)
        self.decoder_blocks = nn.ModuleList(
            Block(dd, config.decoder_num_heads, config.decoder_mlp_ratio) for _ in range(config.decoder_depth))
        self.decoder_norm = nn.LayerNorm(dd)
        self.decoder_pred = nn.Linear(dd, c * config.patch_size)
        self._init_weights()

    def _init_weights(self) -> None:
        w = self.patch_embed.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        nn.init.zeros_(self.channel_embed.weight)

    # -- input checks --------------------------------------------------------------------------------

    def check_input(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Validate ``x`` [B, C, T] (or [C, T]) and return the channel mask as float [B, C]."""
        cfg = self.config
        if x.ndim == 2:
            x = x[None]
        if x.ndim != 3 or x.shape[1] != cfg.n_channels or x.shape[2] != cfg.n_samples:
            raise ValueError(
                f"the '{cfg.preset}' encoder takes windows of {cfg.n_channels} channels x {cfg.n_samples} samples "
                f"({cfg.window_seconds:g} s at {cfg.sfreq:g} Hz), got shape {tuple(x.shape)}")
        if mask is None:
            return torch.ones(x.shape[0], cfg.n_channels, device=x.device, dtype=x.dtype)
        mask = mask.to(device=x.device, dtype=x.dtype)
        if mask.ndim == 1:
            mask = mask[None].expand(x.shape[0], -1)
        if mask.shape != (x.shape[0], cfg.n_channels):
            raise ValueError(f"channel mask must be [{x.shape[0]}, {cfg.n_channels}], got {tuple(mask.shape)}")
        return mask

    # -- MAE methods ---------------------------------------------------------------------------------

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T] → [B, L, p*C]: patch ``l`` holds samples ``l*p .. l*p+p-1`` of every channel, time-major."""
        b, c, t = x.shape
        p = self.config.patch_size
        return x.reshape(b, c, t // p, p).permute(0, 2, 3, 1).reshape(b, t // p, p * c)

    def unpatchify(self, patches: torch.Tensor) -> torch.Tensor:
        """[B, L, p*C] → [B, C, T]."""
        b, L, _ = patches.shape
        p, c = self.config.patch_size, self.config.n_channels
        return patches.reshape(b, L, p, c).permute(0, 3, 1, 2).reshape(b, c, L * p)

    def _tokens(self, x: torch.Tensor, channel_mask: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x).transpose(1, 2)  # [B, L, D]
        return tokens + self.pos_embed[:, 1:] + self.channel_embed(channel_mask)[:, None, :]

    @staticmethod
    def random_masking(x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None):
        """Keep a random ``1 - mask_ratio`` of the tokens of each sample.

        Returns (kept tokens [B, L_keep, D], patch mask [B, L] with 1 = hidden, ids_restore [B, L]).
        """
        b, L, d = x.shape
        keep = max(1, int(L * (1 - mask_ratio)))
        noise = torch.rand(b, L, device=x.device, generator=generator)
        ids_shuffle = torch.argsort(noise, dim=1)
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        kept = torch.gather(x, 1, ids_shuffle[:, :keep, None].expand(-1, -1, d))
        patch_mask = torch.ones(b, L, device=x.device)
        patch_mask[:, :keep] = 0
        return kept, torch.gather(patch_mask, 1, ids_restore), ids_restore

    def forward_encoder(self, x: torch.Tensor, channel_mask: torch.Tensor, mask_ratio: float,
                        generator: torch.Generator | None = None):
        """Encode the visible patches (with a cls token); returns (latent [B, 1+L_keep, D], patch_mask, ids_restore)."""
        tokens, patch_mask, ids_restore = self.random_masking(self._tokens(x, channel_mask), mask_ratio, generator)
        cls = (self.cls_token + self.pos_embed[:, :1]).expand(tokens.shape[0], -1, -1)
        h = torch.cat([cls, tokens], dim=1)
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h), patch_mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """Predict every patch from the visible ones: [B, L, p*C]."""
        h = self.decoder_embed(latent)
        b, L = ids_restore.shape
        mask_tokens = self.mask_token.expand(b, L + 1 - h.shape[1], -1)
        seq = torch.cat([h[:, 1:], mask_tokens], dim=1)
        seq = torch.gather(seq, 1, ids_restore[:, :, None].expand(-1, -1, h.shape[2]))
        h = torch.cat([h[:, :1], seq], dim=1) + self.decoder_pos_embed
        for blk in self.decoder_blocks:
            h = blk(h)
        return self.decoder_pred(self.decoder_norm(h))[:, 1:]

    def forward_loss(self, x: torch.Tensor, pred: torch.Tensor, patch_mask: torch.Tensor,
                     channel_mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error over hidden patches and present channels."""
        p = self.config.patch_size
        target = self.patchify(x)
        weight = channel_mask.repeat(1, p)[:, None, :]  # [B, 1, p*C], same time-major layout as patchify
        err = ((pred - target) ** 2 * weight).sum(-1) / weight.sum(-1).clamp_min(1)
        return (err * patch_mask).sum() / patch_mask.sum().clamp_min(1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, mask_ratio: float = 0.75,
                generator: torch.Generator | None = None):
        """Pretraining step: returns (loss, pred [B, L, p*C], patch_mask [B, L])."""
        channel_mask = self.check_input(x, mask)
        x = x if x.ndim == 3 else x[None]
        latent, patch_mask, ids_restore = self.forward_encoder(x, channel_mask, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(x, pred, patch_mask, channel_mask), pred, patch_mask

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Tokens for the heads, no masking: x [B, C, T] → [B, L, D] (L = T / patch_size)."""
        channel_mask = self.check_input(x, mask)
        x = x if x.ndim == 3 else x[None]
        h = self._tokens(x, channel_mask)
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h)

    def encoder_parameters(self) -> list[nn.Parameter]:
        """Parameters used by :meth:`embed` (not the decoder)."""
        decoder = {id(p) for name, p in self.named_parameters() if name.startswith(("decoder_", "mask_token"))}
        return [p for p in self.parameters() if id(p) not in decoder]
