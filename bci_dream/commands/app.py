"""``bci-dream app`` (also ``bci-dream`` alone): the desktop app."""

from __future__ import annotations

import argparse
from pathlib import Path

from bci_dream.acquisition.filter_settings import FilterSettings
from bci_dream.commands.common import (
    add_device_args,
    add_generation_args,
    connection_params,
    creative_options,
    filters_from_args,
    filters_given,
    naming_from_args,
    route_options,
    source_options,
)
from bci_dream.core.errors import BciDreamError
from bci_dream.devices import get_profile
from bci_dream.runtime.scene import load_scene


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("app", help="the desktop app: live traces beside the generated images (the default command)")
    add_device_args(p)
    p.add_argument("--replay", type=Path, metavar="FILE",
                   help="open a recorded session instead of a device (.xdf, or any format bci-dream reads)")
    p.add_argument("--speed", type=float, default=1.0, help="replay speed (1 = real time)")
    p.add_argument("--no-generate", action="store_true", help="only show the traces until Generate is pressed")
    add_generation_args(p, headless=False)
    p.add_argument("--scene", metavar="FILE.toml|last",
                   help="a scene: device, filters, model, prompts, steering, outputs and auto-start in one file "
                        "('last': the one opened or saved last); see 'bci_dream/runtime/scene.py'")
    p.add_argument("--show", type=int, metavar="SCREEN",
                   help="open the full-screen show window on this screen (0 the first; a second monitor or a "
                        "projector is 1)")
    p.set_defaults(func=run_app)


def run_app(args: argparse.Namespace) -> int:
    from bci_dream.gui.app import last_scene, run
    from bci_dream.gui.main_window import AppOptions

    if args.replay is not None and not args.replay.exists():
        raise BciDreamError(f"{args.replay} does not exist; give the path of a recorded session")
    params = connection_params(args)
    filters = None  # (the settings' or the device's)
    if filters_given(args):
        filters = filters_from_args(args, None if args.replay else get_profile(args.device))
    options = AppOptions(device=args.device, params=params, replay=args.replay, speed=args.speed, model=args.model,
                         checkpoint=args.checkpoint, gpu=args.gpu, size=args.size, seed=args.seed, hop=args.hop,
                         similarity=args.similarity, compile=args.compile, backend=args.backend, steps=args.steps,
                         encoder_precision=args.encoder_precision,
                         interpolate=args.interpolate, filters=filters, generate=not args.no_generate,
                         naming=naming_from_args(args), source_options=source_options(args),
                         route=route_options(args), bank_k=args.bank_k, bank_temperature=args.bank_temperature,
                         creative=creative_options(args), osc=args.osc, osc_listen=args.osc_listen, video=args.video,
                         lsl_frames=args.lsl_frames, show_screen=args.show, markers_udp=args.markers_udp,
                         markers_lsl=args.markers_lsl, virtual_camera=args.virtual_camera, ndi=args.ndi,
                         spout=args.spout, syphon=args.syphon, publish=args.publish)
    if args.scene:
        path = last_scene() if args.scene == "last" else Path(args.scene)
        if path is None:
            raise BciDreamError("no scene was opened or saved yet: give --scene FILE.toml")
        apply_scene(options, load_scene(path))
        options.scene = path
    return run(options)


def apply_scene(options, scene: dict) -> None:
    """Set ``options`` (:class:`~bci_dream.gui.main_window.AppOptions`) from a scene
    (:func:`~bci_dream.runtime.scene.load_scene`): what the scene says wins over the command line.

    Raises:
        BciDreamError: a device, style or steering rule in it that does not exist (one line).
    """
    source, model, creative, outputs, auto = (scene.get(k, {}) for k in ("source", "model", "creative", "outputs",
                                                                          "auto"))
    if "device" in source:
        get_profile(source["device"])  # (an unknown device: one line naming the known ones)
        options.device, options.params = source["device"], dict(source.get("params", {}))
    if "replay" in source:
        options.replay = Path(source["replay"])
    options.speed = float(source.get("speed", options.speed))
    if "bandpass" in source or "notch" in source:
        default = options.filters or FilterSettings()
        band = source.get("bandpass", list(default.bandpass) if default.bandpass else [])
        notch = (float(source["notch"]) or None) if "notch" in source else default.notch
        options.filters = FilterSettings(tuple(band) if band else None, notch)
    for key in ("model", "gpu", "size", "steps", "seed", "hop", "similarity", "interpolate", "compile", "backend",
                "encoder_precision"):
        if key in model:
            setattr(options, key, model[key])
    if "checkpoint" in model:
        options.checkpoint = Path(model["checkpoint"])
    options.route = {**options.route, **{k: model[k] for k in ("route", "ip_adapter", "ip_adapter_scale", "bank")
                                         if k in model}}
    if creative:
        given = argparse.Namespace(prompt=creative.get("prompt"), negative_prompt=creative.get("negative_prompt"),
                                   guidance=creative.get("guidance"), style=creative.get("style"),
                                   eeg_influence=float(creative.get("eeg_influence", 1.0)),
                                   steer=list(creative.get("steer", [])), baseline=creative.get("baseline_s", 0.0),
                                   hold_artefact=creative.get("hold_artefact"), sham=creative.get("sham"),
                                   sham_shift=float(creative.get("sham_shift_s", 30.0)))
        options.creative = creative_options(given)
    for key in ("osc", "osc_listen", "lsl_frames", "show_screen", "virtual_camera", "ndi", "spout", "syphon"):
        if key in outputs:
            setattr(options, key, outputs[key])
    if "video" in outputs:
        options.video = Path(outputs["video"])
    options.connect = bool(auto.get("connect", options.connect))
    options.generate = bool(auto.get("start", options.generate))
    options.auto_reconnect = bool(auto.get("reconnect", options.auto_reconnect))
    options.reconnect_s = float(auto.get("reconnect_s", options.reconnect_s))
