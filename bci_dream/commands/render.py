"""``bci-dream render FRAMES_DIR -o out.mp4``: a headless run's images as a video, timed by their windows."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("render", help="render a headless run's images (PNG + frames.jsonl) to a video",
                       description="Each generated image becomes a video frame at the time of its EEG window "
                                   "(t_end in frames.jsonl); OUT.frames.csv lists the frames' times.")
    p.add_argument("frames_dir", type=Path, metavar="FRAMES_DIR", help="the --out folder of a headless run")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.mp4", help="the video file")
    p.add_argument("--fps", type=float, default=30.0, help="the frame rate the file announces (default 30)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bci_dream.runtime.video_writer import render

    n = render(args.frames_dir, args.output, fps=args.fps)
    print(f"rendered {n} frames from {args.frames_dir} to {args.output} (frame times in "
          f"{args.output}.frames.csv)", flush=True)
    return 0
