"""The engine with the tiny random-weight SD-Turbo-shaped model (no GPU here: the CPU path runs)."""

import json
import logging
import re
import subprocess
import sys
import time

import numpy as np
import pytest

from bci_dream.acquisition.brainflow_source import BrainFlowSource
from bci_dream.acquisition.live import LiveStream
from bci_dream.acquisition.xdf_replay import XdfReplaySource
from bci_dream.core.errors import CheckpointError
from bci_dream.devices import get_profile
from bci_dream.generation.session_models import eeg_model_for
from bci_dream.runtime.engine import PREVIEW_LABEL, UNTRAINED_CONDITIONING_LABEL, Engine, LatestSlot
from bci_dream.signal.windower import Window


@pytest.fixture(scope="module")
def generator(tmp_path_factory):
    from bci_dream.generation.generator import load_generator

    with pytest.MonkeyPatch.context() as mp:  # the tiny model is built into a temporary cache, not ~/.cache
        mp.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache")))
        yield load_generator("tiny", device="cpu", seed=0)


def _wait(predicate, timeout):
    end = time.monotonic() + timeout
    while time.monotonic() < end and not predicate():
        time.sleep(0.02)
    return predicate()


def _engine(live, generator, **kw):
    model, untrained = eeg_model_for(generator.cross_attention_dim, None, preset_name="tiny")
    return Engine(live, model, generator, untrained_conditioning=untrained, **kw)


def _run_until(source, generator, enough, **engine_options):
    """Stream ``source`` through an engine until ``enough(frames)``; returns (live, engine, frames)."""
    live = LiveStream(source)
    live.open()
    engine = _engine(live, generator, **engine_options)
    frames = []
    engine.add_listener(frames.append)
    engine.start()
    live.start()
    try:
        assert _wait(lambda: enough(frames), 30)
    finally:
        engine.stop()
        live.stop()
    return live, engine, frames


def test_synthetic_board_frames_carry_timestamps_and_timings(generator):
    live, _, frames = _run_until(BrainFlowSource(get_profile("synthetic")), generator,
                                 lambda frames: sum(f.image is not None for f in frames) >= 3,
                                 hop_s=0.25, similarity_threshold=1.1)
    made = [f for f in frames if f.image is not None]
    for f in made:
        r = f.record
        # t_end is the timestamp of the window's last EEG sample, as held in the ring buffer
        assert r.t_end == live.pipeline.raw.range(r.index_end - 1, r.index_end).timestamps[0]
        assert r.encode_ms > 0 and r.denoise_ms > 0 and r.decode_ms > 0
        assert r.latency_ms > r.encode_ms  # from the last sample to the image: at least the encoding
        assert r.labels == [PREVIEW_LABEL, UNTRAINED_CONDITIONING_LABEL]
    assert [f.record.index for f in frames] == list(range(len(frames)))
    assert all(b.record.t_end >= a.record.t_end for a, b in zip(made, made[1:]))


def test_no_images_are_made_of_eeg_the_device_drove_itself(generator):
    """While an impedance check drives the electrodes (the source says so), and until the last window holding that
    stretch has passed, each window is skipped as ``driven``; images come again after it."""
    from pylsl import local_clock

    source = BrainFlowSource(get_profile("synthetic"))
    live = LiveStream(source)
    live.open()
    engine = _engine(live, generator, hop_s=0.25, similarity_threshold=1.1)
    frames = []
    engine.add_listener(frames.append)
    source.begin_driven_span("impedance check", local_clock())
    engine.start()
    live.start()
    try:
        assert _wait(lambda: sum(f.record.reason == "driven" for f in frames) >= 3, 30)
        assert not any(f.image is not None for f in frames) and engine.stats.held_driven >= 3
        ended = local_clock()
        source.end_driven_span(ended)
        assert _wait(lambda: any(f.image is not None for f in frames), 30)
    finally:
        engine.stop()
        live.stop()
    first_image = next(f for f in frames if f.image is not None).record
    assert first_image.t_end - engine.windower.window_s >= ended - 0.1  # (no image holds any of the driven stretch)
    assert all(f.record.skipped for f in frames if f.record.t_end < ended)


def test_a_failure_cutting_windows_stops_generation_with_its_reason(generator):
    """A bug in the window thread (stood in for by a poll that raises) ends generation through the error listeners,
    as persistent generation failures do, instead of a thread traceback and an engine that never makes a frame."""
    live = LiveStream(BrainFlowSource(get_profile("synthetic")))
    live.open()
    engine = _engine(live, generator)
    errors = []
    engine.add_error_listener(errors.append)

    def broken_poll():
        raise RuntimeError("the window could not be cut")

    engine.windower.poll = broken_poll
    engine.start()
    live.start()
    try:
        assert _wait(lambda: errors, 10)
    finally:
        engine.stop()
        live.stop()
    assert [str(e) for e in errors] == ["the window could not be cut"] and str(engine.error) == errors[0].args[0]
    assert not engine.running


def test_real_recording_replay_through_the_engine(generator, shared_data):
    _, _, frames = _run_until(XdfReplaySource(shared_data / "bci-essentials/ssvep_example.xdf", speed=4.0),
                              generator, lambda frames: sum(f.image is not None for f in frames) >= 3,
                              hop_s=0.5, similarity_threshold=1.1)
    assert all(f.image.size == (generator.size, generator.size) for f in frames if f.image is not None)


class SlowGenerator:
    """The real tiny generator made slow, as a big model on a small GPU would be."""

    def __init__(self, inner, delay):
        self.inner, self.delay = inner, delay
        self.model_id, self.is_preview = inner.model_id, inner.is_preview
        self.cross_attention_dim, self.seed = inner.cross_attention_dim, inner.seed

    def generate(self, embeds):
        time.sleep(self.delay)
        return self.inner.generate(embeds)


def test_latest_wins_drops_stale_windows_under_a_slow_generator(generator):
    _, engine, frames = _run_until(BrainFlowSource(get_profile("synthetic")), SlowGenerator(generator, 0.6),
                                   lambda frames: len(frames) >= 4, hop_s=0.05, similarity_threshold=1.1)
    assert engine.stats.dropped_stale > 0
    assert engine.stats.windows > len(frames) + engine.stats.dropped_stale - 2
    # nothing piles up: each frame starts from a window at most about one generation old
    assert max(f.record.latency_ms for f in frames) < 3 * 600 + 1000


def test_similarity_gate_skips_repeated_input_and_same_seed_gives_same_image(generator, tmp_path):
    live = LiveStream(XdfReplaySource(_tiny_xdf(tmp_path), speed=0))
    live.open()
    window = _window()
    first, again = _engine(live, generator), _engine(live, generator)
    a = first.process(window)
    b = first.process(window)
    assert a[0].image is not None and b[0].record.skipped and b[0].record.reason == "similar"
    assert b[0].record.similarity == pytest.approx(1.0)
    c = again.process(window)  # a fresh engine, same seed, same input
    assert np.array_equal(np.asarray(a[0].image), np.asarray(c[0].image))
    other = _window(seed=1)
    d = again.process(other)
    assert not d[0].record.skipped and not np.array_equal(np.asarray(a[0].image), np.asarray(d[0].image))


def test_non_finite_window_is_skipped_and_counted(generator, tmp_path):
    live = LiveStream(XdfReplaySource(_tiny_xdf(tmp_path), speed=0))
    live.open()
    engine = _engine(live, generator)
    bad = _window()
    bad.data[3, 10] = np.nan
    frames = engine.process(bad)
    assert frames[0].record.reason == "non_finite" and engine.stats.skipped_nonfinite == 1


def test_interpolation_adds_frames_between_embeddings(generator, tmp_path):
    live = LiveStream(XdfReplaySource(_tiny_xdf(tmp_path), speed=0))
    live.open()
    engine = _engine(live, generator, interpolation_steps=2)
    engine.process(_window())
    frames = engine.process(_window(seed=3))
    assert [f.record.interpolated for f in frames] == [True, True, False]


def test_checkpoint_for_another_width_is_refused(generator, tmp_path):
    from bci_dream.models.checkpoint import save_checkpoint
    from bci_dream.models.eeg_model import EegModel, EegModelConfig
    from bci_dream.models.encoder_config import preset

    ckpt = tmp_path / "ckpt"
    save_checkpoint(ckpt, EegModel(EegModelConfig(preset("tiny"), cross_attention_dim=768, clip_projection_dim=None)))
    model, _ = eeg_model_for(generator.cross_attention_dim, ckpt)
    live = LiveStream(XdfReplaySource(_tiny_xdf(tmp_path), speed=0))
    live.open()
    with pytest.raises(CheckpointError, match="width 768.*1024"):
        Engine(live, model, generator)


def test_latest_slot_replaces_the_waiting_item():
    slot = LatestSlot()
    assert slot.put(1) is False and slot.put(2) is True
    assert slot.take(0.1) == 2 and slot.take(0.01) is None


@pytest.mark.parametrize("command", ["run", "replay"])
def test_headless_commands_write_images_and_frames(command, tmp_path, shared_data):
    out = tmp_path / "out"
    args = (["run", "--device", "synthetic", "--seconds", "4"] if command == "run" else
            ["replay", str(shared_data / "bci-essentials/ssvep_example.xdf"), "--speed", "2", "--seconds", "4"])
    env = {**__import__("os").environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    proc = subprocess.run([sys.executable, "-m", "bci_dream.cli", *args, "--headless", "--out", str(out),
                           "--model", "tiny", "--similarity", "1.1"], capture_output=True, text=True, timeout=120,
                          env=env)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(x) for x in (out / "frames.jsonl").read_text().splitlines()]
    made = [r for r in records if not r["skipped"]]
    assert made and all((out / f"{r['index']:06d}.png").is_file() for r in made)
    assert all(PREVIEW_LABEL in r["labels"] for r in records)
    assert "frames/s" in proc.stdout and "latency p50" in proc.stdout and PREVIEW_LABEL in proc.stdout
    assert re.search(r"model tiny · route dreamdiffusion · EEG encoder (bf16|fp32) · EEG model untrained", proc.stdout)


def test_headless_needs_an_output_folder():
    proc = subprocess.run([sys.executable, "-m", "bci_dream.cli", "run", "--headless"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 1 and "--headless needs --out" in proc.stderr


def _window(seed: int = 0) -> Window:
    rng = np.random.default_rng(seed)
    mask = np.zeros(128, bool)
    mask[:16] = True
    data = np.where(mask[:, None], rng.standard_normal((128, 512)) * 20, 0).astype(np.float32)
    return Window(data=data, mask=mask, t_end=1.0, sfreq=256.0, index_end=512,
                  ch_names=tuple(f"c{i}" for i in range(128)))


def _tiny_xdf(tmp_path):
    from bci_dream.io.xdf_writer import XdfWriter

    path = tmp_path / "tiny.xdf"
    if not path.exists():
        with XdfWriter(path) as w:
            sid = w.add_stream("EEG", "EEG", 2, 250.0, channel_labels=["Fz", "Cz"])
            w.write_samples(sid, np.zeros((10, 2), np.float32), np.arange(10) / 250.0)
    return path


def test_prompt_encoder_gives_the_models_embeddings_and_names_a_wrong_shape():
    """On the CPU the PromptEncoder runs the model eagerly (the CUDA-graph path runs in benchmarks/encoder_speed.py
    on a GPU, where it is checked against eager)."""
    import torch

    from bci_dream.models.prompt_encoder import PromptEncoder

    model, _ = eeg_model_for(64, None, preset_name="tiny")
    encoder = PromptEncoder(model, "cpu", precision="fp32")
    assert not encoder.graphed and encoder.precision == "fp32"
    w = _window(seed=2)
    n_channels, n_samples = encoder.shape
    data, mask = w.data[:n_channels, :n_samples].copy(), w.mask[:n_channels]
    with torch.inference_mode():
        want = model.prompt_embeds(torch.from_numpy(data)[None], torch.from_numpy(mask.astype(np.float32))[None])
    torch.testing.assert_close(encoder(data, mask), want)
    with pytest.raises(ValueError, match="takes windows of"):
        encoder(data[:, :10], mask)


def test_a_compiled_generator_warms_up_on_the_generation_thread(generator, tmp_path):
    """torch.compile's CUDA graphs belong to the thread that records them (seen failing on an H100 when the
    main thread warmed up): the engine warms a compiled generator up on its own thread before any window."""
    import threading

    calls = []

    class Compiled(SlowGenerator):
        compiled = True

        def warmup(self):
            calls.append(("warmup", threading.current_thread().name))

        def generate(self, embeds):
            calls.append(("generate", threading.current_thread().name))
            return self.inner.generate(embeds)

    live = LiveStream(XdfReplaySource(_tiny_xdf(tmp_path), speed=0))
    live.open()
    engine = _engine(live, Compiled(generator, 0), similarity_threshold=1.1)
    engine.start()
    try:
        assert engine.ready.wait(10)
        engine._slot.put(_window())
        assert _wait(lambda: len(calls) >= 2, 10)
    finally:
        engine.stop()
    assert calls[:2] == [("warmup", "engine:generate"), ("generate", "engine:generate")]


def _openbci_as_lsl_gui_sends_it(shared_data, tmp_path):
    """The OpenBCI recording of the shared data as the OpenBCI GUI's LSL output would carry it: Ch1 ... Ch8."""
    from bci_dream.io.readers import read_recording
    from bci_dream.io.xdf_writer import XdfWriter

    rec = read_recording(shared_data / "openbci-gui/OpenBCI_GUI-v6-blinks-jawClench-alpha.txt")
    path = tmp_path / "obci_eeg1.xdf"
    n = int(20 * rec.sfreq)
    with XdfWriter(path) as w:
        sid = w.add_stream("obci_eeg1", "EEG", rec.n_channels, rec.sfreq,
                           channel_labels=[f"Ch{i + 1}" for i in range(rec.n_channels)])
        w.write_samples(sid, rec.data[:n], np.arange(n) / rec.sfreq)
    return path


def test_a_generic_stream_is_named_by_the_layout_live_and_in_its_recording(shared_data, tmp_path, caplog):
    """A Cyton through the OpenBCI GUI's LSL output arrives as Ch1..Ch8: without a naming the encoder would see
    nothing (said in one warning); with --layout cyton every channel lands on its site, and the recording made
    from the stream carries the names."""
    import pyxdf

    from bci_dream.devices import get_profile
    from bci_dream.signal.channels import layout_naming

    path = _openbci_as_lsl_gui_sends_it(shared_data, tmp_path)
    caplog.set_level(logging.WARNING)
    bare = LiveStream(XdfReplaySource(path, speed=0))
    bare.open()
    assert bare.windower().mapping.n_mapped == 0 and "none of its channels (Ch1" in caplog.text
    bare.stop()
    named = LiveStream(XdfReplaySource(path, speed=0), naming=layout_naming(get_profile("cyton")))
    info = named.open()
    assert info.ch_names == get_profile("cyton").channels and named.windower().mapping.n_mapped == 8
    named.start_recording(tmp_path / "named.xdf")
    named.start()
    assert _wait(lambda: named.pipeline.stats.samples > 500, 20)
    named.stop()
    streams, _ = pyxdf.load_xdf(str(tmp_path / "named.xdf"))
    eeg = next(s for s in streams if s["info"]["type"][0] == "EEG")
    labels = [c["label"][0] for c in eeg["info"]["desc"][0]["channels"][0]["channel"]]
    assert labels == list(get_profile("cyton").channels)


def test_the_engine_names_windows_as_its_checkpoint_was_trained(generator, shared_data, tmp_path):
    """A checkpoint fine-tuned with --layout cyton remembers it: the engine names the windows of a Ch1..Ch8
    stream the same way (a naming that does not fit the stream is not used)."""
    from bci_dream.devices import get_profile
    from bci_dream.models.channel_naming import naming_that_fits
    from bci_dream.signal.channels import layout_naming

    naming = layout_naming(get_profile("cyton"))
    model, _ = eeg_model_for(generator.cross_attention_dim, None, preset_name="tiny")
    live = LiveStream(XdfReplaySource(_openbci_as_lsl_gui_sends_it(shared_data, tmp_path), speed=0))
    live.open()
    try:
        assert Engine(live, model, generator, channel_naming=naming).windower.mapping.n_mapped == 8
        assert Engine(live, model, generator).windower.mapping.n_mapped == 0
        assert naming_that_fits(layout_naming(get_profile("muse-2")), live.info.ch_names) is None
    finally:
        live.stop()


def test_a_stream_filtered_otherwise_than_the_model_was_trained_is_refused(generator, tmp_path):
    from bci_dream.acquisition.filter_settings import FilterSettings, band_pass_mismatch
    from bci_dream.models.checkpoint import save_checkpoint
    from bci_dream.models.eeg_model import EegModel, EegModelConfig, Preprocessing
    from bci_dream.models.encoder_config import preset

    assert band_pass_mismatch((1.0, 45.0), FilterSettings((1.0, 45.0), 60.0)) is None  # (notch: the local mains)
    ckpt = tmp_path / "ckpt"
    config = EegModelConfig(preset("tiny"), cross_attention_dim=generator.cross_attention_dim, clip_projection_dim=None,
                            preprocessing=Preprocessing(bandpass=(5.0, 95.0)))
    save_checkpoint(ckpt, EegModel(config), meta={"stage": "finetune"})
    model, untrained = eeg_model_for(generator.cross_attention_dim, ckpt)
    assert not untrained
    live = LiveStream(XdfReplaySource(_tiny_xdf(tmp_path), speed=0))
    live.open()
    with pytest.raises(CheckpointError, match="trained on 5-95 Hz EEG but the stream is filtered 1-45 Hz; give "
                                              "--bandpass 5 95"):
        Engine(live, model, generator)
    # the headless commands give the stream the model's band-pass when no filter option is given
    from bci_dream.commands.common import filters_from_args

    args = type("Args", (), {"no_filter": False, "bandpass": None, "notch": None, "checkpoint": ckpt})()
    assert filters_from_args(args, None).bandpass == (5.0, 95.0)
    args.bandpass = [1.0, 40.0]
    assert filters_from_args(args, None).bandpass == (1.0, 40.0)
