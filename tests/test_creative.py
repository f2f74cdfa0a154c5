"""Creative mode: band-power features (known sines, and a real OpenBCI recording with eyes closed), their baseline
z-scores, the steering rules, prompts blended with the EEG through the real engine and tiny random-weight models,
classifier-free guidance against a negative prompt, the sham control, style presets, and bad input."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from bci_dream.generation.generator import load_generator
from bci_dream.runtime.creative import Creative, CreativeError, CreativeSettings, ShamSource, blend
from bci_dream.runtime.steering import SteeringError, parse_rule
from bci_dream.signal.band_features import BandFeatureExtractor, band_features, channel_group, feature_names
from bci_dream.signal.feature_tracker import FeatureTracker
from bci_dream.signal.windower import Window

SIZE = 64
FS = 250.0
NAMES = ["Fz", "C3", "Cz", "C4", "Pz", "PO7", "Oz", "PO8", "F5", "F7", "F3", "F1", "F2", "F4", "F6", "F8"]


def sines(freqs: dict[str, float], seconds: float = 2.0, noise: float = 1.0, seed: int = 0) -> np.ndarray:
    """[16, T] µV: white noise, plus a 20-µV sine at ``freqs[name]`` Hz on the named channels."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * FS)) / FS
    x = rng.normal(0, noise, (len(NAMES), len(t)))
    for name, f in freqs.items():
        x[NAMES.index(name)] += 20 * np.sin(2 * np.pi * f * t)
    return x


# -- features ------------------------------------------------------------------------------------------------------

def test_band_features_find_a_known_rhythm_where_it_was_put():
    assert [channel_group(n) for n in ("O1", "Oz", "PO8", "Fp1", "FCz", "T7", "EXG Channel 0", "A5", "EEG Fp1-REF",
                                       "T3", "O01")] == \
        ["occipital", "occipital", "occipital", "frontal", "central", "temporal", None, None, "frontal", "temporal",
         "occipital"]
    referenced = [f"EEG {n}-REF" for n in NAMES]  # (an EDF's labels: the same sites, grouped and paired the same)
    assert band_features(sines({"F4": 10.0}), FS, referenced)["alpha_asymmetry"] == pytest.approx(
        band_features(sines({"F4": 10.0}), FS, NAMES)["alpha_asymmetry"])
    alpha = band_features(sines({"Oz": 10.0, "PO7": 10.0, "PO8": 10.0}), FS, NAMES)
    assert alpha["alpha.occipital"] > 0.8 and alpha["alpha.frontal"] < 0.35
    assert alpha["alpha"] > 1.5 * band_features(sines({}), FS, NAMES)["alpha"]
    beta = band_features(sines({n: 20.0 for n in NAMES}), FS, NAMES)
    assert beta["beta"] > 0.8 and beta["engagement"] > 5 * band_features(sines({}), FS, NAMES)["engagement"]
    right = band_features(sines({"F4": 10.0, "F8": 10.0}), FS, NAMES)
    assert right["alpha_asymmetry"] > 2 > -2 > band_features(sines({"F3": 10.0, "F7": 10.0}), FS, NAMES)[
        "alpha_asymmetry"]
    blink = sines({})
    for name in NAMES:  # a blink's slow wave, on the frontal channels
        if channel_group(name) == "frontal":
            blink[NAMES.index(name)] += 150 * np.exp(-((np.arange(500) / FS - 1.0) ** 2) / 0.02)
    assert band_features(blink, FS, NAMES)["blink"] > 0.5 > band_features(sines({}), FS, NAMES)["blink"]
    blinked = band_features(blink, FS, NAMES)
    assert blinked["artefact"] == max(blinked["blink"], blinked["emg"], blinked["line_noise"])
    assert sorted(alpha) == sorted(feature_names(NAMES))
    generic = band_features(sines({}), FS, [f"EXG Channel {i}" for i in range(16)])
    assert "alpha" in generic and not any("." in k for k in generic) and "alpha_asymmetry" not in generic
    mask = np.ones(16, bool)
    mask[:8] = False
    flat = BandFeatureExtractor(FS, NAMES, 500)(np.zeros((16, 500)), mask)
    assert all(np.isnan(v) for v in flat.values())  # a flat window is NaN, not a number


def test_the_tracker_smooths_and_scores_against_the_baseline():
    tracker = FeatureTracker(tau_s=0.0)
    tracker.start_baseline(5.0)
    rng = np.random.default_rng(0)
    for i in range(21):
        tracker.update({"alpha": 0.2 + 0.01 * rng.standard_normal()}, t=i * 0.25)
    assert tracker.baseline_state == "done"
    high = tracker.update({"alpha": 0.3}, t=6.0)
    assert high.reference == "baseline" and high.z["alpha"] > 3
    stale = FeatureTracker(tau_s=0.0)
    stale.update({"alpha": 0.2, "alpha.occipital": 0.3}, 0.0)
    gone = stale.update({"alpha": 0.2, "alpha.occipital": float("nan")}, 0.25)  # (its channels went flat)
    assert "alpha.occipital" not in gone.smoothed and "alpha.occipital" not in gone.z
    smooth = FeatureTracker(tau_s=2.0)
    smooth.update({"alpha": 0.0}, 0.0)
    assert 0 < smooth.update({"alpha": 1.0}, 0.25).smoothed["alpha"] < 0.2  # one hop moves it by 1 - e^-1/8


def test_alpha_rises_with_the_eyes_closed_on_a_real_recording_and_the_blend_follows(shared_data):
    """OpenBCI GUI's sample recording (Cyton, 8 channels): blinks and jaw clenches, then eyes-closed alpha (the
    manifest: the last 30 s; on the spectra occipital alpha is up from about 20 s on). Filtered as the live pipeline
    filters it, features every 0.25 s over 2-s windows, a baseline over the first 20 s (eyes open, artefacts): the
    alpha feature's z-score in the last 30 s is high, and the prompt mapped to alpha takes over the blend."""
    from bci_dream.io.readers import read_recording
    from bci_dream.runtime.steering import Steering
    from bci_dream.signal.filters import OnlineFilter, design_filter

    rec = read_recording(shared_data / "openbci-gui" / "OpenBCI_GUI-v6-blinks-jawClench-alpha.txt")
    x = OnlineFilter(design_filter(rec.sfreq, notch=60.0), rec.n_channels).process(rec.data.astype(float)).T
    n, hop = int(2 * rec.sfreq), int(0.25 * rec.sfreq)
    extractor, tracker = BandFeatureExtractor(rec.sfreq, rec.ch_names, n), FeatureTracker()
    tracker.start_baseline(20.0)
    steering = Steering([parse_rule("alpha=calm ocean at dusk"), parse_rule("beta=busy city at noon")])
    t, z, w = [], [], []
    for end in range(n, x.shape[1], hop):
        features = tracker.update(extractor(x[:, end - n:end]), end / rec.sfreq)
        t.append(end / rec.sfreq)
        z.append(features.z["alpha"])
        w.append(steering.state(features.z).prompt_weights[0])
    t, z, w = map(np.asarray, (t, z, w))
    late, baseline = t >= rec.duration - 30, t < 20
    assert tracker.baseline_state == "done"
    assert z[late].mean() > 2.0  # alpha well above the eyes-open baseline
    assert w[late].mean() > 0.8 and w[late].mean() > w[baseline].mean() + 0.25  # "calm ocean at dusk" takes over


def test_steering_rules_read_and_weigh():
    rule = parse_rule("alpha*2=calm ocean at dusk")
    assert (rule.feature, rule.target, rule.prompt, rule.gain) == ("alpha", "prompt", "calm ocean at dusk", 2.0)
    assert parse_rule("engagement>ip_scale").target == "ip_scale" and parse_rule("beta.frontal>seed").target == "seed"
    for bad, said in (("alpha", "cannot read"), ("alpha>volume", "unknown steering target"), ("alpha=", "cannot read"),
                      ("alpha*1.2.3=sea", "cannot read"), ("alpha*1e999=sea", "not a finite number")):
        with pytest.raises(SteeringError, match=said):
            parse_rule(bad)
    with pytest.raises(SteeringError, match="unknown feature 'alfa'"):
        parse_rule("alfa=sea", features=feature_names(NAMES))
    from bci_dream.runtime.steering import Steering

    steering = Steering([parse_rule("alpha=sea"), parse_rule("beta=city"), parse_rule("engagement>seed")])
    even, alpha_up = steering.state({}), steering.state({"alpha": 2.0, "beta": -1.0, "engagement": 3.0})
    assert even.prompt_weights == (0.5, 0.5) and even.seed_mix == 0.5
    assert alpha_up.prompt_weights[0] > 0.9 and sum(alpha_up.prompt_weights) == pytest.approx(1) and \
        alpha_up.seed_mix > 0.9


# -- blending through the engine ----------------------------------------------------------------------------------

@pytest.fixture()
def folders(tiny_pipelines):
    return tiny_pipelines


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def _window(seed: int) -> Window:
    from test_engine import _window as engine_window  # (the engine tests' random 16-channel window)

    return engine_window(seed)


def _engine(generator, live, creative=None, clip: int | None = None):
    from bci_dream.models.eeg_model import EegModel, EegModelConfig
    from bci_dream.models.encoder_config import preset
    from bci_dream.runtime.engine import Engine
    from bci_dream.runtime.routes import IP_ADAPTER, RouteSettings

    torch.manual_seed(0)
    config = EegModelConfig(encoder=preset("tiny"), cross_attention_dim=None if clip else generator.cross_attention_dim,
                            clip_projection_dim=clip)
    return Engine(live, EegModel(config), generator, untrained_conditioning=True, similarity_threshold=1.1,
                  route=RouteSettings(IP_ADAPTER) if clip else None, creative=creative)


@pytest.fixture()
def live(tiny_xdf_live):
    return tiny_xdf_live


def pixels(frame) -> np.ndarray:
    return np.asarray(frame.image)


def test_the_eeg_influence_blends_the_prompt_with_the_eeg(folders, live):
    g = load_generator(str(folders["sd"]), size=SIZE, seed=3, device="cpu")
    prompt_only = Creative(g, CreativeSettings(prompt="a red cat", eeg_influence=0.0))
    engine = _engine(g, live, prompt_only)
    a, b = engine.process(_window(0))[0], engine.process(_window(1))[0]
    assert np.array_equal(pixels(a), pixels(b))  # influence 0: the EEG does not count
    reference = g.generate(g.encode_texts(["a red cat"])[0].prompt_embeds)
    assert np.array_equal(pixels(a), np.asarray(reference.image))  # ... and the image is the prompt's own
    assert a.record.eeg_influence == 0.0 and a.record.prompt_weights == {"a red cat": 1.0}
    prompt_only.set_eeg_influence(0.7)  # live, as the app's slider and OSC set it
    c, d = engine.process(_window(0))[0], engine.process(_window(1))[0]
    assert not np.array_equal(pixels(c), pixels(d)) and c.record.eeg_influence == 0.7
    text = torch.randn(1, 77, 8)
    eeg = torch.randn(1, 77, 8) * 100
    half = blend(text, eeg, 0.5)
    assert float(half.norm(dim=-1).mean()) < float(text.norm(dim=-1).mean()) * 1.01  # the EEG's scale is the text's
    assert torch.equal(blend(text, eeg, 0.0), text)


def test_steering_and_the_sham_are_recorded_per_frame_and_artefacts_hold_generation(folders, live):
    from bci_dream.signal.feature_tracker import TrackedFeatures

    class Monitor:  # (the live FeatureMonitor's interface; its features are set here: the test names the moment)
        latest = TrackedFeatures(0.0, {}, {"artefact": 0.1}, {"alpha": 2.0, "beta": -1.0, "artefact": 0.0},
                                 "baseline")
        tracker = FeatureTracker()

        def add_listener(self, listener):
            pass

    g = load_generator(str(folders["sd"]), size=SIZE, seed=3, device="cpu")
    settings = CreativeSettings(rules=(parse_rule("alpha=calm ocean"), parse_rule("beta=busy city")),
                                hold_artefact=0.5, sham="shifted", sham_shift_s=30.0)
    creative = Creative(g, settings, monitor=Monitor())
    engine = _engine(g, live, creative)
    frame = engine.process(_window(0))[0]
    weights = frame.record.prompt_weights
    assert weights["calm ocean"] > 0.9 and frame.record.features["alpha"] == 2.0
    assert frame.record.feature_reference == "baseline" and frame.record.sham.startswith("shifted")
    assert "steered by band power" in frame.record.labels and "sham EEG (shifted)" in frame.record.labels
    Monitor.latest = TrackedFeatures(1.0, {}, {"artefact": 0.9}, {"artefact": 3.0}, "baseline")
    held = engine.process(_window(1))[0]
    assert held.image is None and held.record.skipped and held.record.reason == "artefact"
    assert "steering alpha → 'calm ocean'" in creative.describe()


def test_one_engine_runs_one_pair_of_threads_and_seeds_are_checked(folders, live):
    import threading

    from bci_dream.generation.generator import GenerationError

    g = load_generator(str(folders["sd"]), size=SIZE, seed=3, device="cpu")
    engine = _engine(g, live)
    engine.start()
    engine.start()  # (an OSC /generate 1 while it runs)
    try:
        assert sum(t.name == "engine:generate" and t.is_alive() for t in threading.enumerate()) == 1
    finally:
        engine.stop()
    for bad in (2 ** 64, -1, 1.5, "7"):
        with pytest.raises(GenerationError, match="a seed is a whole number"):
            g.set_seed(bad)
    assert g.seed == 3


def test_the_sham_feeds_eeg_from_another_time():
    windows = [Window(np.full((2, 4), float(i), np.float32), np.array([True, False]), t_end=float(i), sfreq=250.0,
                      index_end=i, ch_names=("Fz", "Cz")) for i in range(60)]
    sham = ShamSource("shifted", shift_s=30.0)
    fed = [sham.swap(w) for w in windows]
    assert fed[5][1].startswith("shifted 5.0 s (the session is younger")  # the oldest it has, said so
    assert float(fed[50][0].data[0, 0]) == 20.0 and fed[50][1] == "shifted 30 s" and fed[50][2] == 20.0
    assert fed[1][2] == 0.0  # (the window before it, not the live one, once there is one)
    assert float(fed[50][0].data[1, 0]) == 0.0  # (rows of absent channels stay zero)
    shuffled = ShamSource("shuffled", seed=1)
    picks = {float(shuffled.swap(w)[0].data[0, 0]) for w in windows}
    assert len(picks) > 10  # drawn from the history, not the live window


def test_the_ip_adapter_route_takes_the_influence_as_the_adapters_strength(folders, live):
    g = load_generator(str(folders["sdxl"]), size=SIZE, seed=3, device="cpu", ip_adapter=folders["sdxl-ip"],
                       prompt="a red cat")
    creative = Creative(g, CreativeSettings(prompt="a red cat", eeg_influence=0.0), clip_route=True)
    engine = _engine(g, live, creative, clip=24)
    a, b = engine.process(_window(0))[0], engine.process(_window(1))[0]
    assert g.ip_adapter_scale == 0.0 and np.array_equal(pixels(a), pixels(b))  # the image embedding does nothing
    creative.set_eeg_influence(1.0)
    c, d = engine.process(_window(0))[0], engine.process(_window(1))[0]
    assert g.ip_adapter_scale == 1.0 and not np.array_equal(pixels(c), pixels(d))
    creative.set_eeg_influence(0.0)
    engine.process(_window(0))
    again = Creative(g, CreativeSettings(prompt="a red cat", eeg_influence=0.5), clip_route=True)
    assert again.base_ip_scale == 1.0  # (the strength loaded, not the last one steered)
    again.set_prompt(None)  # a cleared prompt is the empty prompt beside the image, not the one loaded
    blank = again.apply(torch.ones(1, 24), 0.0)
    assert torch.equal(blank.text[0], g.encode_texts([""])[0].prompt_embeds)


def test_a_negative_prompt_guides_as_the_pipeline_does(folders):
    for kind, extra in (("sd", {}), ("sdxl", {"ip_adapter": folders["sdxl-ip"]})):
        g = load_generator(str(folders[kind]), size=SIZE, seed=3, device="cpu", guidance=3.0,
                           negative_prompt="blurry", **extra)
        assert g.cfg and g.negative.prompt == "blurry"
        embeds = g.encode_texts(["a red cat"])[0].prompt_embeds
        image = g._image_input(torch.ones(24)) if g.image_embed_dim else None
        with torch.inference_mode():
            e, pooled = g._inputs(embeds, None)
            assert torch.allclose(g._denoise(e, pooled, image), g._denoise_with_pipeline(e, pooled, image), atol=1e-5)
        plain = load_generator(str(folders[kind]), size=SIZE, seed=3, device="cpu", guidance=3.0, **extra)
        made = g.generate(embeds) if image is None else g.generate_from_image_embeds(torch.ones(24), embeds)
        other = plain.generate(embeds) if image is None else plain.generate_from_image_embeds(torch.ones(24), embeds)
        assert not np.array_equal(pixels(made), pixels(other))  # the negative prompt changes the image


def test_a_long_prompt_is_cut_with_a_warning(folders, caplog):
    g = load_generator(str(folders["sd"]), size=SIZE, device="cpu")
    with caplog.at_level(logging.WARNING):
        g.encode_texts(["word " * 100])
    assert "the text encoder takes 77: the rest is cut off" in caplog.text


def test_bad_creative_settings_are_one_line(folders, tmp_path):
    from bci_dream.runtime.styles import StyleError, list_styles, load_style

    assert {"dreamlike", "photo", "ink", "neon"} <= set(list_styles())
    assert load_style("ink").apply("a cat").startswith("a cat, black ink drawing")
    bad = tmp_path / "mine.toml"
    bad.write_text('prompt = "x"\ncolour = "red"\n')
    with pytest.raises(StyleError, match="unknown key colour"):
        load_style(bad)
    with pytest.raises(StyleError, match="unknown style 'nope'"):
        load_style("nope")
    g = load_generator(str(folders["sd"]), size=SIZE, device="cpu")
    for settings, said in ((CreativeSettings(eeg_influence=0.5), "give --prompt"),
                           (CreativeSettings(prompt="x", eeg_influence=2.0), "between 0 and 1"),
                           (CreativeSettings(rules=(parse_rule("alpha=sea"),)), "needs the live features")):
        with pytest.raises(CreativeError, match=said):
            Creative(g, settings)


def test_the_command_line_runs_creative_mode_and_saves_it_with_the_session(tmp_path, capsys, monkeypatch):
    import os
    import subprocess
    import sys

    def run(*extra: str):
        return subprocess.run([sys.executable, "-m", "bci_dream.cli", "run", "--device", "synthetic", "--seconds", "4",
                               "--headless", "--out", str(tmp_path / "out"), "--model", "tiny", "--gpu", "cpu",
                               "--similarity", "1.1", *extra], capture_output=True, text=True, timeout=180,
                              env={**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "HF_HUB_OFFLINE": "1"})

    proc = run("--prompt", "a red cat", "--eeg-influence", "0.5", "--steer", "alpha=calm ocean at dusk",
               "--steer", "beta=busy city at noon", "--baseline", "1", "--style", "photo")
    assert proc.returncode == 0, proc.stderr
    assert "creative mode: prompt 'a red cat, photograph" in proc.stdout and "steered by band power" in proc.stdout
    session = json.loads((tmp_path / "out" / "session.json").read_text())
    assert session["creative"]["eeg_influence"] == 0.5 and session["creative"]["rules"] == [
        "alpha → 'calm ocean at dusk'", "beta → 'busy city at noon'"]
    records = [json.loads(r) for r in (tmp_path / "out" / "frames.jsonl").read_text().splitlines()]
    made = [r for r in records if not r["skipped"]]
    assert made and all(set(r["prompt_weights"]) == {"a red cat, photograph, natural light, 35 mm, detailed",
                                                     "calm ocean at dusk", "busy city at noon"} for r in made)
    assert any(r["feature_reference"] == "baseline" for r in made)  # the 1-s baseline was recorded, then used
    from bci_dream.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for extra, said in ((["--steer", "alfa"], "cannot read the steering rule 'alfa'"),
                        (["--eeg-influence", "0.3"], "give --prompt"),
                        (["--negative-prompt", "blurry"], "needs classifier-free guidance"),
                        (["--style", "nope"], "unknown style 'nope'")):
        capsys.readouterr()
        code = main(["run", "--device", "synthetic", "--seconds", "4", "--headless", "--out", str(tmp_path / "bad"),
                     "--model", "tiny", "--gpu", "cpu", *extra])  # (in this process: refused before the models load)
        err = capsys.readouterr().err
        assert code == 1 and said in err and "Traceback" not in err and err.count("error:") == 1, err
