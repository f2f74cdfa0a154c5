"""Generation back ends (issue 17): the planned whole frame against the eager path on tiny random-weight pipelines
saved in diffusers' formats (SD-Turbo-, SDXL-Turbo-shaped, an IP-Adapter), batched interpolation frames, and the
choice of back end with its fall-backs. The CUDA graph capture itself needs a GPU (benchmarks/gpu_figures.sh runs
it there); here the same planned frame runs eagerly on the CPU."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from bci_dream.core.errors import BciDreamError
from bci_dream.generation import backends
from bci_dream.generation.backends import choose_backend
from bci_dream.generation.frame_plan import FrameGraph, PlanError, plan_steps
from bci_dream.generation.generator import load_generator

SIZE = 64
CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _largest_difference(a, b) -> int:
    return int(np.abs(np.asarray(a, np.int16) - np.asarray(b, np.int16)).max())


def _scheduler(generator, name: str) -> None:
    import diffusers

    generator.pipe.scheduler = getattr(diffusers, name).from_config(generator.pipe.scheduler.config)
    generator._loop_constants()
    generator._graphs = {}


@pytest.mark.parametrize("steps, scheduler, guidance", [
    (1, None, 0.0),  # SD-Turbo as shipped: one Euler "trailing" step
    (3, None, 0.0),
    (2, None, 3.0),  # classifier-free guidance: two UNet rows per step
    (4, "LCMScheduler", 0.0),  # noise added between steps: a fixed offset per step
    (3, "EulerAncestralDiscreteScheduler", 0.0),
])
def test_the_planned_frame_is_the_eager_frame(tiny_pipelines, steps, scheduler, guidance):
    g = load_generator(str(tiny_pipelines["sd"]), size=SIZE, seed=3, device="cpu", steps=steps, guidance=guidance)
    if scheduler:
        _scheduler(g, scheduler)
    embeds = torch.randn(3, 77, g.cross_attention_dim, generator=torch.Generator().manual_seed(0))
    graph = FrameGraph(g, batch=3)
    assert not graph.graphed and len(graph.plan) == steps
    planned = graph.run(embeds)[0].numpy().copy()
    for i in range(3):  # (the eager path, one image at a time, the reference)
        assert _largest_difference(planned[i], g.generate(embeds[i:i + 1]).image) <= 1
    if scheduler in ("LCMScheduler", "EulerAncestralDiscreteScheduler"):
        assert any(step.offset is not None for step in graph.plan)


def test_the_planned_frame_on_sdxl_with_an_ip_adapter(tiny_pipelines):
    g = load_generator(str(tiny_pipelines["sdxl"]), size=SIZE, seed=3, device="cpu", backend="graph",
                       ip_adapter=tiny_pipelines["sdxl-ip"])
    assert g.backend == "graph" and g.backend_difference is not None and g.backend_difference <= 1
    image = torch.randn(24, generator=torch.Generator().manual_seed(1))
    planned = np.asarray(g.generate_from_image_embeds(image).image)
    g.backend = "eager"
    assert _largest_difference(planned, g.generate_from_image_embeds(image).image) <= 1


def test_interpolation_frames_go_through_the_unet_in_one_call(tiny_pipelines, monkeypatch):
    g = load_generator(str(tiny_pipelines["sd"]), size=SIZE, seed=3, device="cpu", backend="graph")
    embeds = torch.randn(4, 77, g.cross_attention_dim, generator=torch.Generator().manual_seed(2))
    calls = []
    unet_forward = type(g.pipe.unet).forward

    def counted(self, sample, *args, **kwargs):
        calls.append(sample.shape[0])
        return unet_forward(self, sample, *args, **kwargs)

    monkeypatch.setattr(type(g.pipe.unet), "forward", counted)
    batched = g.generate_batch(embeds)
    assert calls == [4] and len(batched) == 4
    calls.clear()
    g.backend = "eager"
    one_by_one = g.generate_batch(embeds)
    assert calls == [1, 1, 1, 1]
    for a, b in zip(batched, one_by_one):
        assert _largest_difference(a.image, b.image) <= 1


def test_the_engine_sends_interpolation_frames_as_one_batch(tiny_pipelines, tiny_xdf_live, monkeypatch):
    from test_engine import _window

    from bci_dream.models.eeg_model import EegModel, EegModelConfig
    from bci_dream.models.encoder_config import preset
    from bci_dream.runtime.engine import Engine

    g = load_generator(str(tiny_pipelines["sd"]), size=SIZE, seed=3, device="cpu", backend="graph")
    torch.manual_seed(0)
    model = EegModel(EegModelConfig(encoder=preset("tiny"), cross_attention_dim=g.cross_attention_dim))
    engine = Engine(tiny_xdf_live, model, g, untrained_conditioning=True, similarity_threshold=1.1,
                    interpolation_steps=2)
    batches = []
    real = g.generate_batch
    monkeypatch.setattr(g, "generate_batch", lambda embeds: batches.append(len(embeds)) or real(embeds))
    engine.process(_window(0))
    frames = engine.process(_window(1))
    assert batches == [3] and [f.record.interpolated for f in frames] == [True, True, False]
    assert all(f.image is not None and f.image.size == (SIZE, SIZE) for f in frames)
    assert [f.record.index for f in frames] == [1, 2, 3]


def test_a_scheduler_that_cannot_be_planned_runs_eagerly_said_once(tiny_pipelines, caplog):
    from diffusers import EulerDiscreteScheduler

    class Squaring(EulerDiscreteScheduler):  # (not a linear update: no plan reproduces it)
        def step(self, model_output, timestep, sample, **kwargs):
            out = super().step(model_output, timestep, sample, **kwargs)
            return (out[0] * out[0],) + tuple(out[1:])

    g = load_generator(str(tiny_pipelines["sd"]), size=SIZE, seed=3, device="cpu", backend="graph")
    g.pipe.scheduler = Squaring.from_config(g.pipe.scheduler.config)
    g._graphs = {}
    with pytest.raises(PlanError, match="not a fixed linear update"):
        plan_steps(g.pipe.scheduler, 1, tuple(g._latents.shape), seed=3, device=CPU, accepts_generator=True)
    with caplog.at_level(logging.WARNING):
        first = g.generate(torch.zeros(1, 77, g.cross_attention_dim))
        g.generate(torch.zeros(1, 77, g.cross_attention_dim))
    assert g.backend == "eager" and first.image.size == (SIZE, SIZE)
    assert sum("frames run eagerly" in r.getMessage() for r in caplog.records) == 1


def test_back_ends_that_cannot_run_here_fall_back_in_one_line(monkeypatch):
    assert choose_backend("auto", CPU) == ("eager", None)
    assert choose_backend("graph", CPU) == ("graph", None)
    for name, why in (("fp8", "float8 kernels need a CUDA GPU"), ("tensorrt", "TensorRT needs a CUDA GPU"),
                      ("compile", "pays only on a CUDA GPU")):
        chosen, line = choose_backend(name, CPU)
        assert chosen == "eager" and why in line and "\n" not in line
    monkeypatch.setattr(backends, "_missing", lambda module: True)
    chosen, line = choose_backend("int8", CPU)
    assert chosen == "eager" and "pip install torchao" in line
    with pytest.raises(BciDreamError, match="no back end 'fastest'.*eager, graph"):
        choose_backend("fastest", CPU)


def test_int8_through_torchao_is_checked_against_eager(tiny_pipelines):
    pytest.importorskip("torchao")
    g = load_generator(str(tiny_pipelines["sd"]), size=SIZE, seed=3, device="cpu", backend="int8")
    assert g.backend == "int8" and g.backend_difference is not None and 0 <= g.backend_difference <= 255
    assert "back end int8" in repr(g)
    assert g.generate(torch.zeros(1, 77, g.cross_attention_dim)).image.size == (SIZE, SIZE)


def test_the_planned_frame_follows_the_session(tiny_pipelines):
    """A new seed, noise mix or size makes a new plan; the same embedding and seed give the same image."""
    g = load_generator(str(tiny_pipelines["sd"]), size=SIZE, seed=3, device="cpu", backend="graph")
    embeds = torch.randn(1, 77, g.cross_attention_dim, generator=torch.Generator().manual_seed(4))
    first = np.asarray(g.generate(embeds).image)
    assert _largest_difference(first, g.generate(embeds).image) == 0
    g.set_seed(4)
    other = np.asarray(g.generate(embeds).image)
    g.backend = "eager"
    assert _largest_difference(other, g.generate(embeds).image) <= 1 and _largest_difference(first, other) > 0


def test_a_frame_made_while_the_gate_is_computed_is_the_same_frame_and_skips_the_same(tiny_pipelines, tiny_xdf_live):
    """On CUDA the engine makes the frame before reading the similarity gate (read back with the pixels, one wait);
    forced here on the CPU, it gives the frames and skips of the usual path."""
    from test_engine import _window

    from bci_dream.models.eeg_model import EegModel, EegModelConfig
    from bci_dream.models.encoder_config import preset
    from bci_dream.runtime.engine import Engine, gate_tensor, gate_values, read_gate

    g = load_generator(str(tiny_pipelines["sd"]), size=SIZE, seed=3, device="cpu", backend="graph")
    runs = {}
    for speculate in (False, True):
        torch.manual_seed(0)
        model = EegModel(EegModelConfig(encoder=preset("tiny"), cross_attention_dim=g.cross_attention_dim))
        engine = Engine(tiny_xdf_live, model, g, untrained_conditioning=True, similarity_threshold=0.999)
        engine.speculate = speculate
        nan = _window(2)
        nan.data[0, 0] = np.nan
        frames = [f for w in (_window(0), _window(0), _window(1), nan) for f in engine.process(w)]
        runs[speculate] = frames
    for plain, ahead in zip(runs[False], runs[True]):
        assert (plain.record.skipped, plain.record.reason) == (ahead.record.skipped, ahead.record.reason)
        assert plain.record.similarity == pytest.approx(ahead.record.similarity, abs=1e-5) \
            if plain.record.similarity is not None else ahead.record.similarity is None
        if plain.image is not None:
            assert _largest_difference(plain.image, ahead.image) == 0
    assert [f.record.reason for f in runs[True]] == ["", "similar", "", "non_finite"]

    a, b = torch.randn(1, 77, 8), torch.randn(1, 77, 8)
    assert read_gate(gate_tensor(a, b).tolist()) == pytest.approx(gate_values(a, b))
    assert read_gate(gate_tensor(a, None).tolist()) == (True, None)
    assert read_gate(gate_tensor(torch.full_like(a, float("nan")), b).tolist())[0] is False
