"""Import of DreamDiffusion's generation checkpoint (cond_stage_model.*) into a bci-dream checkpoint.

The test builds state dicts with DreamDiffusion's key names and shapes (128 channels x 512 samples,
patch 4, 77 x 768 conditioning, 768 CLIP) at a reduced width and depth, and checks the imported
model against a re-implementation of DreamDiffusion's cond_stage_model forward written here with
plain torch ops on the original tensors.
"""

from __future__ import annotations

import json
import math
import sys
import types

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from bci_dream.cli import main
from bci_dream.core.errors import CheckpointError
from bci_dream.models.checkpoint import load_checkpoint
from bci_dream.models.dreamdiffusion_import import (
    DEFAULT_SFREQ,
    KEY_MAP,
    convert,
    derive_config,
    import_dreamdiffusion,
    map_key,
)

C, T, P = 128, 512, 4          # DreamDiffusion's channels, samples, patch
L = T // P                      # 128 tokens
D, DEPTH, HEADS = 64, 2, 16     # reduced width and depth (theirs: 1024, 24, 16)
COND, CLIP = 768, 768           # SD 1.5 cross-attention width, CLIP ViT-L/14 projection
LN_EPS = 1e-5                   # nn.LayerNorm's default, which DreamDiffusion's timm blocks use


def sincos(dim: int, length: int) -> np.ndarray:
    """MAE's get_1d_sincos_pos_embed(dim, length, cls_token=True), written independently."""
    omega = 1.0 / 10000 ** (np.arange(dim // 2) / (dim / 2.0))
    out = np.outer(np.arange(length), omega)
    return np.concatenate([np.zeros((1, dim)), np.concatenate([np.sin(out), np.cos(out)], 1)], 0)


def dreamdiffusion_cond_state(seed: int = 0, depth: int = DEPTH, d: int = D) -> dict[str, torch.Tensor]:
    """cond_stage_model.* tensors as DreamDiffusion's eeg_ldm.py saves them (random values)."""
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=None):
        fan_in = shape[-1] if len(shape) > 1 else 1
        return torch.randn(*shape, generator=g) * (scale if scale is not None else 1 / math.sqrt(fan_in))

    s = {
        "mae.pos_embed": torch.from_numpy(sincos(d, L)).float()[None],
        "mae.cls_token": rnd(1, 1, d, scale=0.02),
        "mae.mask_token": rnd(1, 1, d, scale=0.02),
        "mae.patch_embed.proj.weight": rnd(d, C, P, scale=1 / math.sqrt(C * P)),
        "mae.patch_embed.proj.bias": rnd(d, scale=0.1),
        "mae.norm.weight": 1 + rnd(d, scale=0.1),
        "mae.norm.bias": rnd(d, scale=0.1),
        "channel_mapper.0.weight": rnd(L // 2, L, 1, scale=1 / math.sqrt(L)),
        "channel_mapper.0.bias": rnd(L // 2, scale=0.1),
        "channel_mapper.1.weight": rnd(77, L // 2, 1, scale=1 / math.sqrt(L // 2)),
        "channel_mapper.1.bias": rnd(77, scale=0.1),
        "dim_mapper.weight": rnd(COND, d),
        "dim_mapper.bias": rnd(COND, scale=0.1),
        "mapping.maxpool.weight": rnd(1, L, 1, scale=1 / math.sqrt(L)),
        "mapping.maxpool.bias": rnd(1, scale=0.1),
        "mapping.fc.weight": rnd(CLIP, d),
        "mapping.fc.bias": rnd(CLIP, scale=0.1),
    }
    for i in range(depth):
        b = f"mae.blocks.{i}."
        s.update({
            b + "norm1.weight": 1 + rnd(d, scale=0.1), b + "norm1.bias": rnd(d, scale=0.1),
            b + "attn.qkv.weight": rnd(3 * d, d), b + "attn.qkv.bias": rnd(3 * d, scale=0.1),
            b + "attn.proj.weight": rnd(d, d), b + "attn.proj.bias": rnd(d, scale=0.1),
            b + "norm2.weight": 1 + rnd(d, scale=0.1), b + "norm2.bias": rnd(d, scale=0.1),
            b + "mlp.fc1.weight": rnd(d, d), b + "mlp.fc1.bias": rnd(d, scale=0.1),  # MLP ratio 1
            b + "mlp.fc2.weight": rnd(d, d), b + "mlp.fc2.bias": rnd(d, scale=0.1),
        })
    return s


def ldm_state(cond: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The whole LDM's state dict: the EEG side under cond_stage_model. plus some UNet/VAE keys."""
    state = {"model.diffusion_model.input_blocks.0.0.weight": torch.zeros(8, 4, 3, 3),
             "model.diffusion_model.out.2.bias": torch.zeros(4),
             "first_stage_model.decoder.conv_out.weight": torch.zeros(3, 8, 3, 3),
             "betas": torch.linspace(0, 1, 10)}
    state.update({"cond_stage_model." + k: v for k, v in cond.items()})
    return state


def reference_forward(s: dict[str, torch.Tensor], x: torch.Tensor, heads: int = HEADS, eps: float = LN_EPS):
    """DreamDiffusion's cond_stage_model.forward and mapping, with torch ops on the original tensors.

    eeg_encoder.forward_encoder: patch conv → + pos_embed[:, 1:] → timm Blocks → norm (no cls
    token, no masking, global_pool=False); then channel_mapper → dim_mapper; mapping: maxpool → fc.
    """
    h = F.conv1d(x, s["mae.patch_embed.proj.weight"], s["mae.patch_embed.proj.bias"], stride=P).transpose(1, 2)
    h = h + s["mae.pos_embed"][:, 1:]
    depth = 1 + max(int(k.split(".")[2]) for k in s if k.startswith("mae.blocks."))
    for i in range(depth):
        b = f"mae.blocks.{i}."
        n, l, d = h.shape
        y = F.layer_norm(h, (d,), s[b + "norm1.weight"], s[b + "norm1.bias"], eps)
        q, k, v = F.linear(y, s[b + "attn.qkv.weight"], s[b + "attn.qkv.bias"]) \
            .reshape(n, l, 3, heads, d // heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * (d // heads) ** -0.5).softmax(-1)
        h = h + F.linear((attn @ v).transpose(1, 2).reshape(n, l, d), s[b + "attn.proj.weight"], s[b + "attn.proj.bias"])
        y = F.layer_norm(h, (d,), s[b + "norm2.weight"], s[b + "norm2.bias"], eps)
        y = F.linear(F.gelu(F.linear(y, s[b + "mlp.fc1.weight"], s[b + "mlp.fc1.bias"])),
                     s[b + "mlp.fc2.weight"], s[b + "mlp.fc2.bias"])
        h = h + y
    latent = F.layer_norm(h, (h.shape[-1],), s["mae.norm.weight"], s["mae.norm.bias"], eps)
    c = F.conv1d(latent, s["channel_mapper.0.weight"], s["channel_mapper.0.bias"])
    c = F.conv1d(c, s["channel_mapper.1.weight"], s["channel_mapper.1.bias"])
    cond = F.linear(c, s["dim_mapper.weight"], s["dim_mapper.bias"])
    pooled = F.conv1d(latent, s["mapping.maxpool.weight"], s["mapping.maxpool.bias"]).squeeze(1)
    clip = F.linear(pooled, s["mapping.fc.weight"], s["mapping.fc.bias"])
    return cond, clip


@pytest.fixture(scope="module")
def cond_state():
    return dreamdiffusion_cond_state()


@pytest.fixture(scope="module")
def eeg():
    return torch.randn(3, C, T, generator=torch.Generator().manual_seed(1))


def check_against_reference(model, cond_state, eeg, eps: float | None = None, atol: float = 1e-5):
    """prompt_embeds and clip_embeds equal the reference; ``eps`` defaults to the model's LayerNorm eps."""
    eps = model.encoder.norm.eps if eps is None else eps
    with torch.no_grad():
        want_cond, want_clip = reference_forward(cond_state, eeg, eps=eps)
        got_cond, got_clip = model.prompt_embeds(eeg), model.clip_embeds(eeg)
    assert got_cond.shape == (3, 77, COND) and got_clip.shape == (3, CLIP)
    assert torch.allclose(got_cond, want_cond, atol=atol, rtol=0), float((got_cond - want_cond).abs().max())
    assert torch.allclose(got_clip, want_clip, atol=atol, rtol=0), float((got_clip - want_clip).abs().max())


def test_same_layer_norm_eps_as_dreamdiffusion(cond_state, eeg):
    """Our LayerNorms use nn.LayerNorm's eps (1e-5) like DreamDiffusion's, so outputs agree to float precision."""
    model = convert(cond_state).model
    assert model.encoder.norm.eps == LN_EPS
    check_against_reference(model, cond_state, eeg, eps=LN_EPS, atol=1e-5)


def test_safe_path_end_to_end(tmp_path, cond_state, eeg, capsys):
    ckpt = tmp_path / "checkpoint.pth"
    torch.save({"model_state_dict": ldm_state(cond_state), "state": torch.random.get_rng_state()}, ckpt)
    out = tmp_path / "imported"
    assert main(["import-dreamdiffusion", str(ckpt), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "imported" in printed and "wrote" in printed

    model, raw = load_checkpoint(out)
    enc = model.config.encoder
    assert (enc.n_channels, enc.n_samples, enc.patch_size, enc.embed_dim, enc.depth, enc.num_heads) == \
        (C, T, P, D, DEPTH, HEADS)
    assert enc.mlp_ratio == 1.0 and enc.sfreq == pytest.approx(DEFAULT_SFREQ)
    assert (model.config.cross_attention_dim, model.config.clip_projection_dim, model.config.out_tokens) == \
        (COND, CLIP, 77)
    model.eval()
    check_against_reference(model, cond_state, eeg)
    assert torch.count_nonzero(model.encoder.channel_embed.weight) == 0

    meta = raw["meta"]
    assert meta["source_file"] == str(ckpt.resolve())
    assert meta["imported_keys"]["encoder.patch_embed.weight"] == "cond_stage_model.mae.patch_embed.proj.weight"
    assert meta["imported_keys"]["clip.pool.weight"] == "cond_stage_model.mapping.maxpool.weight"
    assert meta["dropped_keys"] == ["cond_stage_model.mae.mask_token"]
    assert "cond_stage_model.mae.pos_embed" in meta["checked_keys"]
    assert meta["unknown_keys"] == [] and meta["ignored_other_keys"] == 4
    assert "channel order" in meta["input"] and "fine-tune" in meta["warning"]
    assert any("decoder" in k for k in meta["not_imported"])
    json.dumps(meta)


class _Config:
    """Stands in for DreamDiffusion's config.Config_Generative_Model (pickled with the checkpoint)."""

    def __init__(self):
        self.lr = 5.3e-5
        self.global_pool = False


def _save_with_config(path, state, module_name="config"):
    """Save like DreamDiffusion: the config object's class lives in a module that will not be
    importable when loading (as DreamDiffusion's code/config.py is not on our path)."""
    module = types.ModuleType(module_name)
    cls = type("Config_Generative_Model", (_Config,), {"__module__": module_name})
    module.Config_Generative_Model = cls
    assert module_name not in sys.modules
    sys.modules[module_name] = module
    try:
        torch.save({"model_state_dict": state, "config": cls(), "state": torch.random.get_rng_state()}, path)
    finally:
        del sys.modules[module_name]


def test_unsafe_load_path(tmp_path, cond_state, eeg, capsys, caplog):
    ckpt = tmp_path / "checkpoint.pth"
    _save_with_config(ckpt, ldm_state(cond_state), module_name="dd_config_not_installed")
    out = tmp_path / "imported"

    assert main(["import-dreamdiffusion", str(ckpt), "-o", str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--unsafe-load" in err and "Config_Generative_Model" in err
    assert not out.exists()

    with caplog.at_level("WARNING"):
        assert main(["import-dreamdiffusion", str(ckpt), "-o", str(out), "--unsafe-load"]) == 0
    assert any("runs code from the file" in r.getMessage() for r in caplog.records)
    model, _ = load_checkpoint(out)
    check_against_reference(model.eval(), cond_state, eeg)


def test_unsafe_load_with_importable_class(tmp_path, cond_state):
    ckpt = tmp_path / "checkpoint.pth"
    torch.save({"model_state_dict": ldm_state(cond_state), "config": _Config()}, ckpt)
    with pytest.raises(CheckpointError, match="--unsafe-load"):
        import_dreamdiffusion(ckpt)
    report = import_dreamdiffusion(ckpt, unsafe_load=True)
    assert report.output is None and len(report.mapped) == len(cond_state) - 2


def test_bare_state_dicts(tmp_path, cond_state, eeg):
    for name, state in (("ldm.pth", ldm_state(cond_state)), ("cond.pth", dict(cond_state))):
        path = tmp_path / name
        torch.save(state, path)
        report = import_dreamdiffusion(path, tmp_path / (name + ".out"))
        check_against_reference(report.model, cond_state, eeg)


def test_reports_odd_keys_and_positions(tmp_path, cond_state, caplog):
    state = dict(cond_state)
    state["cls_net.fc.weight"] = torch.zeros(40, D)
    state["mae.pos_embed"] = state["mae.pos_embed"] + 0.01
    path = tmp_path / "odd.pth"
    torch.save(ldm_state(state), path)
    with caplog.at_level("WARNING"):
        report = import_dreamdiffusion(path, tmp_path / "out")
    assert report.unknown == ["cls_net.fc.weight"]
    assert report.pos_embed_max_diff == pytest.approx(0.01, abs=1e-6)
    text = " ".join(r.getMessage() for r in caplog.records)
    assert "cls_net.fc.weight" in text and "theirs are loaded" in report.checked["mae.pos_embed"]
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["meta"]["unknown_keys"] == ["cond_stage_model.cls_net.fc.weight"]
    # their positions travel with the checkpoint, and their 5-95 Hz band is recorded as its preprocessing
    assert config["encoder"]["positions"] == "stored" and config["preprocessing"]["bandpass"] == [5.0, 95.0]
    from bci_dream.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(tmp_path / "out")
    torch.testing.assert_close(model.encoder.pos_embed, state["mae.pos_embed"].reshape(model.encoder.pos_embed.shape))


def test_bad_files(tmp_path, cond_state, capsys):
    missing = tmp_path / "nope.pth"
    assert main(["import-dreamdiffusion", str(missing), "-o", str(tmp_path / "o1")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no such file" in err

    unet_only = tmp_path / "unet.pth"
    torch.save({"model_state_dict": {"model.diffusion_model.out.2.bias": torch.zeros(4)}}, unet_only)
    assert main(["import-dreamdiffusion", str(unet_only), "-o", str(tmp_path / "o2")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cond_stage_model.mae" in err

    good = tmp_path / "good.pth"
    torch.save({"model_state_dict": ldm_state(cond_state)}, good)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert main(["import-dreamdiffusion", str(truncated), "-o", str(tmp_path / "o3")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "truncated" in err

    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint at all")
    assert main(["import-dreamdiffusion", str(garbage), "-o", str(tmp_path / "o4")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot read" in err

    for name, content in (("empty.safetensors", b""), ("random.safetensors", bytes(range(256)) * 8)):
        (tmp_path / name).write_bytes(content)  # (torch.load hands .safetensors files to safetensors)
        assert main(["import-dreamdiffusion", str(tmp_path / name), "-o", str(tmp_path / "o5")]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "damaged or not a PyTorch checkpoint" in err and "internal" not in err
    assert main(["import-dreamdiffusion", str(tmp_path), "-o", str(tmp_path / "o6")]) == 1
    assert "is a folder; give the path of DreamDiffusion's checkpoint.pth" in capsys.readouterr().err

    no_mapper = {k: v for k, v in cond_state.items() if not k.startswith("channel_mapper.")}
    path = tmp_path / "pooled.pth"
    torch.save(ldm_state(no_mapper), path)
    with pytest.raises(CheckpointError, match="global_pool"):
        import_dreamdiffusion(path)


def test_full_size_shapes_give_the_dreamdiffusion_preset():
    """The real checkpoint's shapes (on the meta device: no memory) derive the paper's preset."""
    d = 1024
    shapes = {"mae.patch_embed.proj.weight": (d, 128, 4), "mae.pos_embed": (1, 129, d),
              "channel_mapper.0.weight": (64, 128, 1), "channel_mapper.1.weight": (77, 64, 1),
              "dim_mapper.weight": (768, d), "mapping.fc.weight": (768, d)}
    for i in range(24):
        shapes[f"mae.blocks.{i}.mlp.fc1.weight"] = (d, d)
    cfg = derive_config({k: torch.empty(s, device="meta") for k, s in shapes.items()})
    assert cfg.encoder.preset == "dreamdiffusion"
    assert (cfg.encoder.embed_dim, cfg.encoder.depth, cfg.encoder.num_heads, cfg.encoder.mlp_ratio) == (d, 24, 16, 1.0)
    assert (cfg.cross_attention_dim, cfg.clip_projection_dim, cfg.out_tokens) == (768, 768, 77)


def test_key_map_is_explicit():
    assert map_key("mae.patch_embed.proj.bias") == "encoder.patch_embed.bias"
    assert map_key("mae.blocks.23.attn.qkv.weight") == "encoder.blocks.23.attn.qkv.weight"
    assert map_key("mae.norm.weight") == "encoder.norm.weight"
    assert map_key("mapping.fc.weight") == "clip.fc.weight"
    assert map_key("mae.pos_embed") is None and map_key("mae.mask_token") is None
    assert map_key("mae.cls_token") == "encoder.cls_token"
    assert len(KEY_MAP) == 8


def test_full_width_blocks(eeg):
    """Two blocks at DreamDiffusion's real width (1024, 16 heads of 64) map exactly too."""
    state = dreamdiffusion_cond_state(seed=3, depth=2, d=1024)
    model = convert(state).model
    assert model.config.encoder.preset == "custom"  # depth 2 is not the paper's 24
    check_against_reference(model, state, eeg)


# -- DreamDiffusion's modules, rebuilt from their definitions ------------------------------------
# (github bbaaii/DreamDiffusion: code/sc_mbm/mae_for_eeg.py eeg_encoder, PatchEmbed1D and mapping; code/dc_ldm/
# ldm_for_eeg.py cond_stage_model with global_pool=False; timm 0.5.4's vision_transformer Block, Attention and
# Mlp, the version they pin). No pickles: the classes are written out here with their attribute names, so that
# load_state_dict(strict=True) checks every key and shape of the state dict against their structure.

class _TimmMlp(torch.nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.fc1, self.act, self.fc2 = torch.nn.Linear(d, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, d)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class _TimmAttention(torch.nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.num_heads, self.scale = heads, (d // heads) ** -0.5
        self.qkv, self.proj = torch.nn.Linear(d, 3 * d, bias=True), torch.nn.Linear(d, d)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(b, n, c))


class _TimmBlock(torch.nn.Module):
    def __init__(self, d, heads, mlp_ratio):
        super().__init__()
        self.norm1, self.attn = torch.nn.LayerNorm(d), _TimmAttention(d, heads)
        self.norm2, self.mlp = torch.nn.LayerNorm(d), _TimmMlp(d, int(d * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class _PatchEmbed1D(torch.nn.Module):
    def __init__(self, time_len, patch_size, in_chans, embed_dim):
        super().__init__()
        self.proj = torch.nn.Conv1d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).transpose(1, 2).contiguous()


class _EegEncoder(torch.nn.Module):
    def __init__(self, time_len, patch_size, embed_dim, in_chans, depth, num_heads, mlp_ratio):
        super().__init__()
        self.patch_embed = _PatchEmbed1D(time_len, patch_size, in_chans, embed_dim)
        num_patches = time_len // patch_size
        self.cls_token = torch.nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = torch.nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim), requires_grad=False)
        self.blocks = torch.nn.ModuleList(_TimmBlock(embed_dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = torch.nn.LayerNorm(embed_dim)
        self.mask_token = torch.nn.Parameter(torch.zeros(1, 1, embed_dim))

    def forward(self, x):  # forward_encoder, global_pool=False
        x = self.patch_embed(x) + self.pos_embed[:, 1:, :]
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)


class _Mapping(torch.nn.Module):
    def __init__(self, num_patches, d, clip):
        super().__init__()
        self.maxpool, self.fc = torch.nn.Conv1d(num_patches, 1, 1, stride=1), torch.nn.Linear(d, clip)

    def forward(self, x):
        return self.fc(self.maxpool(x).squeeze(1))


class _CondStageModel(torch.nn.Module):
    def __init__(self, d=D, depth=DEPTH):
        super().__init__()
        self.mae = _EegEncoder(T, P, d, C, depth, HEADS, 1.0)
        self.mapping = _Mapping(L, d, CLIP)
        self.channel_mapper = torch.nn.Sequential(torch.nn.Conv1d(L, L // 2, 1, bias=True),
                                                  torch.nn.Conv1d(L // 2, 77, 1, bias=True))
        self.dim_mapper = torch.nn.Linear(d, COND, bias=True)

    def forward(self, x):
        latent = self.mae(x)
        return self.dim_mapper(self.channel_mapper(latent)), self.mapping(latent)


@pytest.mark.parametrize("positions", ["sin-cos", "their own"])
def test_their_modules_and_ours_give_the_same_embeddings(tmp_path, cond_state, eeg, positions):
    """The same random state dict in DreamDiffusion's module structure and, imported, in ours: the same
    conditioning tokens and CLIP embedding (also when their positions are not the sin-cos ones: ours keep theirs)."""
    state = dict(cond_state)
    if positions == "their own":
        state["mae.pos_embed"] = state["mae.pos_embed"] + 0.05 * torch.randn(state["mae.pos_embed"].shape,
                                                                             generator=torch.Generator().manual_seed(3))
    theirs = _CondStageModel()
    theirs.load_state_dict(state, strict=True)  # every key and shape, as their definition names them
    theirs.eval()
    path = tmp_path / "dd.pth"
    torch.save(ldm_state(state), path)
    import_dreamdiffusion(path, tmp_path / "ours")
    ours, raw = load_checkpoint(tmp_path / "ours")  # through the saved checkpoint, as users get it
    assert raw["encoder"]["positions"] == ("stored" if positions == "their own" else "sincos")
    with torch.no_grad():
        want_cond, want_clip = theirs(eeg)
        got_cond, got_clip = ours.prompt_embeds(eeg), ours.clip_embeds(eeg)
    torch.testing.assert_close(got_cond, want_cond, atol=1e-5, rtol=0)
    torch.testing.assert_close(got_clip, want_clip, atol=1e-5, rtol=0)
