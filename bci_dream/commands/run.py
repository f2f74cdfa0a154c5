"""``bci-dream run``: a device through the engine, writing images headless (the desktop app comes later)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def add_generation_args(p: argparse.ArgumentParser, headless: bool = True) -> None:
    """Options shared by ``run``, ``replay --headless`` and ``app`` (``headless``: add --headless and --out)."""
    g = p.add_argument_group("generation")
    if headless:
        g.add_argument("--headless", action="store_true", help="no window: write images and frames.jsonl to --out")
        g.add_argument("--out", type=Path, help="folder for the images and frames.jsonl")
    g.add_argument("--model", default="auto", help="diffusion model: auto (SD-Turbo if available, else the tiny "
                   "preview model), a name from 'bci-dream models list', a hub id or a folder")
    g.add_argument("--checkpoint", type=Path, help="EEG model (from 'bci-dream finetune'); without it the "
                   "conditioning is untrained")
    g.add_argument("--size", type=int, help="image side in pixels (default: the model's; smaller on a CPU)")
    g.add_argument("--steps", type=int, help="denoising steps (default: the model's, 1 for SD-Turbo)")
    g.add_argument("--seed", type=int, default=0, help="noise seed of the session")
    g.add_argument("--hop", type=float, default=0.25, help="seconds between windows")
    g.add_argument("--similarity", type=float, default=0.995,
                   help="skip a window whose embedding has at least this cosine similarity to the last one")
    g.add_argument("--interpolate", type=int, default=0, help="frames generated between successive embeddings")
    g.add_argument("--compile", nargs="?", const="default", default=None, metavar="MODE",
                   help="torch.compile the UNet and decoder (CUDA); MODE 'reduce-overhead' adds CUDA graphs, the "
                   "fastest measured (about 11 ms from window to 512x512 image on an H100); default mode 'default'")
    g.add_argument("--gpu", default="auto", help="torch device for the models (auto, cuda, cpu)")


def register(sub: argparse._SubParsersAction) -> None:
    from bci_dream.cli import _add_device_args

    p = sub.add_parser("run", help="stream a device through the EEG encoder and the diffusion model")
    _add_device_args(p)
    p.add_argument("--seconds", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    add_generation_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bci_dream.cli import _open_live

    check_headless(args)
    live = _open_live(args)
    return run_engine(live, args)


def check_headless(args: argparse.Namespace) -> None:
    from bci_dream.errors import BciDreamError

    if not args.headless:
        raise BciDreamError("this command writes images headless: add --headless --out DIR (the window is "
                            "'bci-dream app')")
    if args.out is None:
        raise BciDreamError("--headless needs --out DIR for the images and frames.jsonl")


def run_engine(live, args: argparse.Namespace) -> int:
    """Build generator and EEG model, run the engine over ``live`` until it ends, print the summary.

    The stream is stopped whatever happens (a model that cannot be loaded, Ctrl-C while compiling).
    """
    from bci_dream.cli import _run_live
    from bci_dream.engine import Engine, eeg_model_for, unet_adapter_of
    from bci_dream.generation.generator import load_generator
    from bci_dream.headless import FrameWriter, summary

    engine = writer = None
    try:
        writer = FrameWriter(args.out)
        # A compiled generator warms up on the engine's generation thread, the only thread that runs it:
        # torch.compile's CUDA graphs belong to the thread that recorded them.
        generator = load_generator(args.model, device=args.gpu, size=args.size, steps=args.steps, seed=args.seed,
                                   compile=args.compile or False, warmup=False if args.compile else None,
                                   adapter=unet_adapter_of(args.checkpoint))
        model, untrained = eeg_model_for(generator.cross_attention_dim, args.checkpoint, seed=args.seed)
        engine = Engine(live, model, generator, hop_s=args.hop, similarity_threshold=args.similarity,
                        interpolation_steps=args.interpolate, untrained_conditioning=untrained,
                        device=generator.device)
        engine.add_listener(writer)
        if generator.is_preview:
            print("generating with the untrained preview model 'tiny' (SD-Turbo is not available)", flush=True)
        engine.start()
        if generator.compiled:
            print("compiling the diffusion model for this session (a minute or more the first time) ...", flush=True)
            while not engine.ready.wait(0.5):
                pass  # (a wait with a timeout, so that Ctrl-C still ends it)
        started = time.monotonic()
        code = _run_live(live, args.seconds)
    except BaseException:
        live.stop()
        raise
    finally:
        if engine is not None:
            engine.stop()
        if writer is not None:
            writer.close()
    if engine.error is not None:
        print(f"bci-dream: error: generation stopped: {engine.error}", file=sys.stderr, flush=True)
        code = 1
    print(f"{summary(writer.records, time.monotonic() - started)}; images and frames.jsonl in {args.out}",
          flush=True)
    return code
