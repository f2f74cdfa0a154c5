"""The EEG encoder's precision: bf16 embeddings within the stated tolerance of float32's, on real EEG windows."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bci_dream.core.errors import BciDreamError
from bci_dream.generation.session_models import eeg_model_for
from bci_dream.io.readers import read_recording
from bci_dream.models.precision import BF16_TOLERANCE, compute_dtype, native_bf16
from bci_dream.models.prompt_encoder import PromptEncoder
from bci_dream.training.windows import WindowSpec, extract_windows


def test_auto_is_bf16_only_where_the_cpu_has_bf16_arithmetic():
    want = torch.bfloat16 if native_bf16("cpu") else torch.float32
    assert compute_dtype("cpu", "auto") == want
    assert compute_dtype("cpu", "fp32") == torch.float32 and compute_dtype("cpu", "bf16") == torch.bfloat16
    with pytest.raises(BciDreamError, match="unknown precision 'fp64'"):
        compute_dtype("cpu", "fp64")


@pytest.mark.parametrize("output", ["prompt_embeds", "clip_embeds"])
def test_bf16_embeddings_stay_within_the_tolerance_of_fp32_on_real_eeg(output, shared_data):
    """bf16 runs (emulated where the CPU lacks bf16 units: slower, same numbers) on windows of a real recording."""
    recording = read_recording(shared_data / "bci-essentials/ssvep_example.xdf")
    windows, mask, _ = extract_windows(recording, WindowSpec(), hop_s=5.0)
    clip_width = 32 if output == "clip_embeds" else None
    models = [eeg_model_for(64, None, preset_name="tiny", clip_width=clip_width, seed=3)[0] for _ in range(2)]
    fp32 = PromptEncoder(models[0], "cpu", precision="fp32", output=output)
    bf16 = PromptEncoder(models[1], "cpu", precision="bf16", output=output)
    assert bf16.precision == "bf16" and next(bf16.model.parameters()).dtype == torch.bfloat16
    n_channels, n_samples = fp32.shape
    assert len(windows) >= 8
    for data in windows[:8]:
        data = np.ascontiguousarray(data[:n_channels, :n_samples])
        a, b = fp32(data, mask[:n_channels]), bf16(data, mask[:n_channels]).float()
        assert float((b - a).abs().max() / a.abs().max()) < BF16_TOLERANCE
        assert float(torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), 0)) > 0.999
