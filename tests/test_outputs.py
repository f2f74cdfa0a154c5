"""A session's outputs: OSC out and in on 127.0.0.1 (a real python-osc server in the test), video written as frames
come and rendered afterwards (read back with PyAV), markers from OSC; bad addresses and ports in one line. The
sessions run the real command line on BrainFlow's synthetic board with the tiny random-weight model."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from bci_dream.runtime.osc import OscError, OscReceiver, parse_host_port


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _bci_dream(*args: str, cache: Path, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "bci_dream.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "XDG_CACHE_HOME": str(cache), "HF_HUB_OFFLINE": "1"}, **kwargs)


def _video_frames(path: Path) -> int:
    import av

    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(container.streams.video[0]))


@pytest.fixture()
def osc_server():
    """A python-osc server on 127.0.0.1 that keeps every message it gets."""
    from pythonosc.dispatcher import Dispatcher
    from pythonosc.osc_server import ThreadingOSCUDPServer

    got: list[tuple] = []
    dispatcher = Dispatcher()
    dispatcher.set_default_handler(lambda address, *args: got.append((address, *args)))
    server = ThreadingOSCUDPServer(("127.0.0.1", 0), dispatcher)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1], got
    server.shutdown()
    server.server_close()


def test_osc_round_trip_video_and_markers_of_a_headless_session(osc_server, tmp_path):
    from pythonosc.udp_client import SimpleUDPClient

    port, got = osc_server
    listen = _free_port()
    out, video = tmp_path / "out", tmp_path / "session.mp4"
    proc = _bci_dream("run", "--device", "synthetic", "--seconds", "6", "--headless", "--out", str(out), "--model",
                      "tiny", "--gpu", "cpu", "--similarity", "1.1", "--osc", f"127.0.0.1:{port}", "--osc-listen",
                      str(listen), "--video", str(video), "--prompt", "a red cat", cache=tmp_path / "xdg")
    client = SimpleUDPClient("127.0.0.1", listen)
    influence_sent = False
    while proc.poll() is None:  # (commands until the session ends: its receiver opens once the models are loaded)
        client.send_message("/bci-dream/marker", "stimulus on")
        if any(a == "/bci-dream/frame" for a, *_ in got) and not influence_sent:
            client.send_message("/bci-dream/eeg_influence", 0.25)
            influence_sent = True
        time.sleep(0.2)
    stdout, stderr = proc.communicate()
    assert proc.returncode == 0, stderr
    assert f"outputs: OSC to 127.0.0.1:{port}, OSC commands on port {listen}, video {video}" in stdout
    addresses = {a for a, *_ in got}
    assert {"/bci-dream/feature/alpha", "/bci-dream/feature/artefact", "/bci-dream/frame",
            "/bci-dream/eeg_influence", "/bci-dream/steering"} <= addresses
    assert any(a.startswith("/bci-dream/quality/") for a in addresses)  # signal quality, once a second
    alpha = next(args for a, *args in got if a == "/bci-dream/feature/alpha")
    assert len(alpha) == 2 and 0 <= alpha[0] <= 1  # (smoothed relative power, z-score)
    markers = [json.loads(line) for line in (out / "markers.jsonl").read_text().splitlines()]
    assert markers and all(m["marker"] == "stimulus on" and m["source"] == "osc" for m in markers)
    records = [json.loads(line) for line in (out / "frames.jsonl").read_text().splitlines()]
    made = [r for r in records if not r["skipped"]]
    assert influence_sent and any(r["eeg_influence"] == 0.25 for r in made)  # the command changed the session
    assert _video_frames(video) == len(made)  # every image, in the video as it came
    sidecar = (tmp_path / "session.mp4.frames.csv").read_text().splitlines()
    assert sidecar[0] == "video_frame,pts_ms,engine_index,t_end" and len(sidecar) == len(made) + 1
    rendered = tmp_path / "rendered.mp4"
    done = subprocess.run([sys.executable, "-m", "bci_dream.cli", "render", str(out), "-o", str(rendered)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"rendered {len(made)} frames" in done.stdout and _video_frames(rendered) == len(made)


def test_bad_outputs_are_one_line_and_an_unreachable_host_does_not_stop_generation(tmp_path, capsys, monkeypatch):
    assert parse_host_port("10.0.0.2:7000") == ("10.0.0.2", 7000) and parse_host_port(":9000") == ("127.0.0.1", 9000)
    for bad in ("localhost", "host:0", "host:99999", "host:port"):
        with pytest.raises(OscError, match="is not an OSC address"):
            parse_host_port(bad)
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind(("0.0.0.0", 0))
    try:
        with pytest.raises(OscError, match="cannot listen for OSC on port"):
            OscReceiver(taken.getsockname()[1], {})
    finally:
        taken.close()

    def run(*extra: str) -> subprocess.CompletedProcess:
        proc = _bci_dream("run", "--device", "synthetic", "--seconds", "3", "--headless", "--out", str(tmp_path / "o"),
                          "--model", "tiny", "--gpu", "cpu", *extra, cache=tmp_path / "xdg")
        stdout, stderr = proc.communicate(timeout=180)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    unreachable = run("--osc", "no-such-host.invalid:9000")
    assert unreachable.returncode == 0, unreachable.stderr
    assert unreachable.stderr.count("cannot send OSC to no-such-host.invalid:9000") == 1
    assert "generation goes on without OSC" in unreachable.stderr and "Traceback" not in unreachable.stderr
    assert "frames" in unreachable.stdout.splitlines()[-1]
    from bci_dream.cli import main

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for extra, said in ((["--osc", "nowhere"], "is not an OSC address"),
                        (["--video", str(tmp_path / "out.gif")], "give a .mp4, .mkv or .mov file")):
        capsys.readouterr()
        code = main(["run", "--device", "synthetic", "--seconds", "3", "--headless", "--out", str(tmp_path / "o"),
                     "--model", "tiny", "--gpu", "cpu", *extra])  # (in this process: refused before the models load)
        err = capsys.readouterr().err
        assert code == 1 and said in err and err.count("error:") == 1 and "Traceback" not in err, err
    empty = subprocess.run([sys.executable, "-m", "bci_dream.cli", "render", str(tmp_path), "-o",
                            str(tmp_path / "x.mp4")], capture_output=True, text=True, timeout=60)
    assert empty.returncode == 1 and "has no frames.jsonl" in empty.stderr and "Traceback" not in empty.stderr


def test_markers_from_udp_and_an_lsl_stream_reach_a_brainflow_source(tmp_path):
    """For any source, not only LSL ones: markers as UDP datagrams and from an LSL marker stream go into the stream
    (here BrainFlow's real synthetic board), with the LSL marker's own time."""
    import pylsl

    from bci_dream.acquisition.live import LiveStream, make_source
    from bci_dream.acquisition.marker_inputs import LslMarkers, MarkerInputError, UdpMarkers
    from bci_dream.devices import get_profile

    live = LiveStream(make_source(get_profile("synthetic")))
    live.open()
    live.start()
    udp = UdpMarkers(live, 0)
    info = pylsl.StreamInfo("test-stimuli", "Markers", 1, pylsl.IRREGULAR_RATE, "string", "test-stimuli-1")
    outlet = pylsl.StreamOutlet(info)
    lsl = LslMarkers(live, "test-stimuli")
    try:
        with pytest.raises(MarkerInputError, match="cannot listen for UDP markers on port"):
            UdpMarkers(live, udp.port)  # (taken)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.sendto(b"face\n", ("127.0.0.1", udp.port))
        assert lsl.connected.wait(10)
        stamp = pylsl.local_clock()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and lsl.received == 0:
            outlet.push_sample(["house"], stamp)
            time.sleep(0.2)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and {"face", "house"} - {m.text for m in live.pipeline.markers.since(0)[0]}:
            time.sleep(0.1)
        markers = {m.text: m for m in live.pipeline.markers.since(0)[0]}
        assert markers["face"].stream == "udp" and markers["house"].stream == "test-stimuli"
        assert abs(markers["house"].timestamp - stamp) < 0.05  # (its own time, mapped to this clock)
    finally:
        udp.close()
        lsl.close()
        live.stop()


def test_a_virtual_camera_without_its_library_is_one_line(tmp_path):
    """pyvirtualcam is an optional extra (it needs a camera driver, which this machine has none of): asked for
    without it, the session does not start and one line says what to install."""
    import importlib.util

    if importlib.util.find_spec("pyvirtualcam") is not None:
        pytest.skip("pyvirtualcam is installed here; this test is for a machine without it")
    proc = _bci_dream("run", "--device", "synthetic", "--seconds", "2", "--headless", "--out", str(tmp_path / "o"),
                      "--model", "tiny", "--gpu", "cpu", "--virtual-camera", cache=tmp_path / "xdg")
    _, stderr = proc.communicate(timeout=180)
    assert proc.returncode == 1 and "pip install 'bci-dream[show]'" in stderr and "Traceback" not in stderr
    assert stderr.count("error:") == 1


def test_the_virtual_camera_gets_every_image(monkeypatch):
    """The camera driver cannot run here (no v4l2loopback in this VM), so pyvirtualcam is replaced by a stand-in
    with its interface (Camera(width, height, fps), send(rgb array), close()); the rest is the real listener."""
    import types

    import numpy as np
    from PIL import Image

    from bci_dream.runtime.engine import Frame, FrameRecord
    from bci_dream.runtime.virtual_camera import VirtualCamera

    sent = []

    class Camera:
        device = "/dev/video9 (stand-in)"

        def __init__(self, width, height, fps):
            self.shape = (height, width, 3)

        def send(self, frame):
            assert frame.shape == self.shape and frame.dtype == np.uint8
            sent.append(frame)

        def close(self):
            sent.append("closed")

    monkeypatch.setitem(sys.modules, "pyvirtualcam", types.SimpleNamespace(Camera=Camera))
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())
    camera = VirtualCamera(64)
    for i in range(3):
        camera(Frame(Image.new("RGB", (32, 32), (i * 50, 0, 0)), FrameRecord(index=i, t_end=0.0, index_end=0)))
    camera(Frame(None, FrameRecord(index=3, t_end=0.0, index_end=0, skipped=True)))
    camera.close()
    assert len(sent) == 4 and sent[-1] == "closed" and int(sent[2][0, 0, 0]) == 100


def test_ndi_output_sends_every_image_as_bgrx(monkeypatch):
    """The NDI runtime cannot run here (ndi-python is an optional extra, not installed in CI), so NDIlib is replaced
    by a stand-in with its interface (initialize, SendCreate, send_create, VideoFrameV2, send_send_video_v2,
    send_destroy, destroy); the rest is the real listener. Without the library: one line."""
    import types

    import numpy as np
    from PIL import Image

    from bci_dream.runtime.engine import Frame, FrameRecord
    from bci_dream.runtime.ndi_output import NdiError, NdiOutput

    if importlib_util_find("NDIlib") is None:
        with pytest.raises(NdiError, match=r"pip install 'bci-dream\[show\]'"):
            NdiOutput()
    sent, events = [], []

    class VideoFrameV2:
        data = None
        FourCC = None

    ndi = types.SimpleNamespace(
        initialize=lambda: True, destroy=lambda: events.append("destroyed"), SendCreate=types.SimpleNamespace,
        send_create=lambda settings: events.append(settings.ndi_name) or "sender", VideoFrameV2=VideoFrameV2,
        FOURCC_VIDEO_TYPE_BGRX="BGRX", send_destroy=lambda sender: events.append("sender closed"),
        send_send_video_v2=lambda sender, frame: sent.append((frame.FourCC, frame.data.copy())))
    monkeypatch.setitem(sys.modules, "NDIlib", ndi)
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: object())
    output = NdiOutput("stage left")
    output(Frame(Image.new("RGB", (8, 8), (10, 20, 30)), FrameRecord(index=0, t_end=0.0, index_end=0)))
    output(Frame(None, FrameRecord(index=1, t_end=0.0, index_end=0, skipped=True)))
    output.close()
    assert events == ["stage left", "sender closed", "destroyed"] and len(sent) == 1
    fourcc, pixels = sent[0]
    assert fourcc == "BGRX" and pixels.shape == (8, 8, 4) and list(pixels[0, 0]) == [30, 20, 10, 255]
    assert pixels.dtype == np.uint8


def importlib_util_find(name: str):
    import importlib.util

    return importlib.util.find_spec(name)


def test_spout_and_syphon_on_another_system_are_one_line(tmp_path):
    """Spout is Windows-only and Syphon macOS-only: asked for on Linux, the session does not start and one line
    says what to use here instead."""
    for flag, other in (("--spout", "--syphon on macOS"), ("--syphon", "--spout on Windows")):
        proc = _bci_dream("run", "--device", "synthetic", "--seconds", "2", "--headless", "--out", str(tmp_path / "o"),
                          "--model", "tiny", "--gpu", "cpu", flag, cache=tmp_path / "xdg")
        _, stderr = proc.communicate(timeout=180)
        assert proc.returncode == 1 and other in stderr and "--ndi or --virtual-camera" in stderr, stderr
        assert stderr.count("error:") == 1 and "Traceback" not in stderr


def _frames():
    from PIL import Image

    from bci_dream.runtime.engine import Frame, FrameRecord

    yield Frame(Image.new("RGB", (8, 6), (10, 20, 30)), FrameRecord(index=0, t_end=0.0, index_end=0))
    yield Frame(None, FrameRecord(index=1, t_end=0.0, index_end=0, skipped=True))
    yield Frame(Image.new("RGB", (4, 4), (1, 2, 3)), FrameRecord(index=2, t_end=0.0, index_end=0))


def _stand_in(name: str, **attributes):
    """A module ``name`` with ``attributes``, found by importlib (for libraries that cannot run on this system)."""
    import importlib.machinery
    import types

    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attributes)
    return module


def test_spout_shares_every_image_as_rgba(monkeypatch):
    """Spout runs only on Windows (SpoutGL's wheels are Windows-only), so SpoutGL is replaced by a stand-in with
    its interface (SpoutSender: setSenderName, sendImage(buffer, width, height, GL format, invert, fbo),
    setFrameSync, releaseSender; enums.GL_RGBA) and the platform is said to be Windows; the rest is the real
    listener. Without SpoutGL (as here): one line."""
    import types

    import numpy as np

    from bci_dream.runtime import texture_share
    from bci_dream.runtime.texture_share import SpoutOutput, TextureShareError

    monkeypatch.setattr(texture_share, "sys", types.SimpleNamespace(platform="win32"))  # (this module's view only)
    with pytest.raises(TextureShareError, match=r"needs SpoutGL: pip install 'bci-dream\[show\]'"):
        SpoutOutput()
    events, sent = [], []

    class SpoutSender:
        def setSenderName(self, name):
            events.append(("name", name))

        def sendImage(self, pixels, width, height, gl_format, invert, fbo):
            assert pixels.flags.c_contiguous and gl_format == 0x1908 and not invert and fbo == 0
            sent.append((width, height, np.array(pixels)))
            return True

        def setFrameSync(self, name):
            events.append(("sync", name))

        def releaseSender(self):
            events.append("released")

    enums = _stand_in("SpoutGL.enums", GL_RGBA=0x1908)
    monkeypatch.setitem(sys.modules, "SpoutGL", _stand_in("SpoutGL", SpoutSender=SpoutSender, enums=enums))
    monkeypatch.setitem(sys.modules, "SpoutGL.enums", enums)
    output = SpoutOutput("stage left")
    for frame in _frames():
        output(frame)
    output.close()
    assert events == [("name", "stage left"), ("sync", "stage left"), ("sync", "stage left"), "released"]
    assert [(w, h) for w, h, _ in sent] == [(8, 6), (4, 4)] and output.sent == 2
    assert sent[0][2].shape == (6, 8, 4) and list(sent[0][2][0, 0]) == [10, 20, 30, 255]


def test_syphon_shares_every_image_as_a_metal_texture(monkeypatch):
    """Syphon runs only on macOS (Metal, PyObjC), so syphon-python is replaced by a stand-in with its interface
    (SyphonMetalServer(name): device, publish_frame_texture, stop; utils.raw.create_mtl_texture(device, w, h);
    utils.numpy.copy_image_to_mtl_texture(rgba, texture)) and the platform is said to be macOS; the rest is the
    real listener. A texture is made per image size."""
    import types

    from bci_dream.runtime import texture_share
    from bci_dream.runtime.texture_share import SyphonOutput

    monkeypatch.setattr(texture_share, "sys", types.SimpleNamespace(platform="darwin"))  # (this module's view only)
    events, textures = [], []

    class SyphonMetalServer:
        device = "metal device"

        def __init__(self, name):
            events.append(("server", name))

        def publish_frame_texture(self, texture):
            events.append(("published", texture["size"], list(texture["pixels"][0, 0])))

        def stop(self):
            events.append("stopped")

    def create_mtl_texture(device, width, height):
        assert device == "metal device"
        textures.append({"size": (width, height)})
        return textures[-1]

    def copy_image_to_mtl_texture(image, texture):
        assert image.shape == (texture["size"][1], texture["size"][0], 4)
        texture["pixels"] = image

    modules = [_stand_in("syphon", SyphonMetalServer=SyphonMetalServer),
               _stand_in("syphon.utils.raw", create_mtl_texture=create_mtl_texture),
               _stand_in("syphon.utils.numpy", copy_image_to_mtl_texture=copy_image_to_mtl_texture)]
    for module in modules:
        monkeypatch.setitem(sys.modules, module.__name__, module)
    output = SyphonOutput("gallery")
    for frame in [*_frames(), *_frames()]:
        output(frame)
    output.close()
    first, second = ("published", (8, 6), [10, 20, 30, 255]), ("published", (4, 4), [1, 2, 3, 255])
    assert events == [("server", "gallery"), first, second, first, second, "stopped"]
    assert len(textures) == 4 and output.sent == 4


def test_render_leaves_out_what_a_damaged_run_folder_lacks_and_says_so(tmp_path, caplog):
    """A run folder as a crash or a careless hand leaves it: a line that is JSON but not a record, a generated image
    deleted, one image damaged. The others become the video; each problem is one warning; --fps 0 is refused."""
    from PIL import Image

    from bci_dream.runtime.video_writer import VideoError, render

    out = tmp_path / "run"
    out.mkdir()
    lines = []
    for i in range(6):
        lines.append(json.dumps({"index": i, "t_end": 100.0 + i, "skipped": i == 4}))
        if i not in (2, 4):
            Image.new("RGB", (64, 64), (40 * i, 0, 0)).save(out / f"{i:06d}.png")
    (out / "000003.png").write_bytes(b"not a png")
    (out / "frames.jsonl").write_text("\n".join([*lines[:3], "[1, 2]", *lines[3:]]) + "\n")
    assert render(out, tmp_path / "v.mp4") == 3 and _video_frames(tmp_path / "v.mp4") == 3  # (frames 0, 1, 5)
    said = caplog.text
    assert "line 4 is not a frame record" in said and "1 generated image(s) are missing" in said
    assert "1 image(s) in" in said and "are damaged (000003.png" in said
    with pytest.raises(VideoError, match="--fps must be a positive frame rate"):
        render(out, tmp_path / "w.mp4", fps=0)
