"""Stimulus sets: a folder with one subfolder of images per class, and the project's own shapes × colours set.

A stimulus set is any folder laid out as ``SET/<class>/<image>``: classes are the subfolders (sorted by
name; hidden ones skipped), each holding at least one image (``.png``, ``.jpg``, ...; other files are
ignored, as are files directly in ``SET``). Class ``k`` (1-based, in sorted order) is announced during a
calibration session with the marker text ``"k"``, which is what ``bci-dream make-pairs RECORDING
--class k=SET/<class>/`` expects.

Sets shipped with the package live in ``calibration/stimuli/`` (``bci_dream/_data/calibration/stimuli``
in an installed wheel) and can be named instead of given as a folder, e.g. ``"shapes-colours"``.

``shapes-colours`` is made by this project (CC0): 4 shapes × 4 colours on a mid-grey background, three
variants each, drawn with Pillow by :func:`generate_shapes_colours`. Shape and colour are what
DreamDiffusion's reconstructions most often get wrong, so this set measures exactly that. Regenerate
it with ``python -m bci_dream.calibrate.stimuli calibration/stimuli/shapes-colours``.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from PIL import Image, ImageDraw

from bci_dream.core.errors import BciDreamError
from bci_dream.devices import shipped_data_folder
from bci_dream.io.image_file import IMAGE_SUFFIXES, is_readable_image

log = logging.getLogger(__name__)

#: Shapes of the ``shapes-colours`` set, in drawing-function order.
SHAPES = ("circle", "square", "triangle", "star")
#: Colours of the ``shapes-colours`` set (sRGB, 0-255), chosen to be distinct on mid-grey.
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "green": (30, 170, 60),
    "blue": (40, 90, 230),
    "yellow": (245, 210, 30),
}
#: Background of the ``shapes-colours`` images: mid-grey, also the suggested screen colour between images.
BACKGROUND = (128, 128, 128)
#: Shapes are drawn this many times larger, then box-filtered down: antialiased, deterministic edges.
_SUPERSAMPLE = 4
#: Radius of a variant-0 circle as a fraction of the image side.
_BASE_RADIUS = 0.26
#: Largest rotation of a variant, in degrees, per shape: well below each shape's symmetry angle, so that a
#: triangle never looks like it points sideways.
_MAX_ROTATION = {"circle": 0.0, "square": 20.0, "triangle": 12.0, "star": 15.0}

LICENSE_TEXT = """\
shapes-colours stimulus set: CC0 1.0 Universal (public domain dedication)

These images were made by the bci-dream project with bci_dream.calibrate.stimuli.generate_shapes_colours
(Pillow ImageDraw, no third-party artwork). To the extent possible under law, the bci-dream authors have
waived all copyright and related or neighboring rights to these images. You can copy, modify and
distribute them, even for commercial purposes, without asking permission.

https://creativecommons.org/publicdomain/zero/1.0/
"""

README_TEXT = """\
shapes-colours: {n_classes} classes, colours ({colours}) x shapes ({shapes}), {variants} images each.

Each class folder is named <colour>-<shape> and holds <colour>-<shape>-<n>.png: a {size}x{size} RGB PNG of one
filled shape on a mid-grey (128,128,128) background. Variant 1 is centred, upright and of the base size;
the others are scaled by 0.8-1.15, shifted by up to 8 % of the side and rotated by up to 20 (squares),
12 (triangles) or 15 (stars) degrees, drawn from a random generator seeded with the seed, the class and
the variant. Shapes are drawn at {supersample}x and box-filtered down, so edges are antialiased.

Generated (seed {seed}) by the bci-dream project with Pillow's ImageDraw:

    python -m bci_dream.calibrate.stimuli calibration/stimuli/shapes-colours \\
        --variants {variants} --size {size} --seed {seed}

The same Pillow version gives pixel-identical images; another version may differ at a few edge pixels.
License: CC0 1.0 (see LICENSE.txt).
"""


class StimulusError(BciDreamError):
    """A stimulus set is missing, has no classes, has an empty class or unreadable images."""


class Stimulus(NamedTuple):
    """One image of a stimulus set.

    Attributes:
        class_name: the class (its subfolder's name).
        class_index: 1-based index of the class in the set's sorted classes; the marker text is ``str(class_index)``.
        path: the image file.
    """

    class_name: str
    class_index: int
    path: Path

    @property
    def relative(self) -> str:
        """``"<class>/<file>"``, the image's path inside its set (POSIX separators)."""
        return f"{self.class_name}/{self.path.name}"


@dataclass(frozen=True)
class StimulusSet:
    """A checked folder of class subfolders of images.

    Attributes:
        name: the set's name (its folder's name).
        folder: the set's folder.
        classes: class names, sorted; class ``classes[k - 1]`` has index ``k``.
        items: every image, by class then file name.
    """

    name: str
    folder: Path
    classes: tuple[str, ...]
    items: tuple[Stimulus, ...]

    def __len__(self) -> int:
        return len(self.items)

    def class_index(self, class_name: str) -> int:
        """1-based index of ``class_name``; :class:`StimulusError` if the set has no such class."""
        try:
            return self.classes.index(class_name) + 1
        except ValueError:
            raise StimulusError(f"stimulus set {self.folder} has no class {class_name!r}") from None

    def images_of(self, class_name: str) -> list[Path]:
        """The images of one class, sorted by file name."""
        self.class_index(class_name)
        return [s.path for s in self.items if s.class_name == class_name]

    def marker_classes(self) -> dict[str, Path]:
        """Marker text → class folder, i.e. the ``--class MARKER=FOLDER`` arguments of ``bci-dream make-pairs``."""
        return {str(i): self.folder / c for i, c in enumerate(self.classes, start=1)}


# -- finding and loading sets --------------------------------------------------------------------------

def calibration_root() -> Path:
    """The shipped ``calibration/`` folder: ``bci_dream/_data/calibration`` in a wheel, else the checkout's."""
    return shipped_data_folder("calibration")


def shipped_stimulus_sets() -> list[str]:
    """Names of the stimulus sets shipped in ``calibration/stimuli/``, sorted."""
    folder = calibration_root() / "stimuli"
    if not folder.is_dir():
        return []
    return sorted(d.name for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))


def find_stimulus_set(name_or_folder: str | os.PathLike, base: Path | None = None) -> Path | None:
    """The folder a set argument means, or None.

    A folder (relative to ``base`` if given, else to the working directory) wins over a shipped set of the
    same name; a bare name (no path separator) then falls back to ``calibration/stimuli/NAME``.
    """
    path = Path(name_or_folder).expanduser()
    candidate = base / path if base is not None and not path.is_absolute() else path
    if candidate.is_dir():
        return candidate
    text = os.fspath(name_or_folder)
    if text and "/" not in text and os.sep not in text:
        shipped = calibration_root() / "stimuli" / text
        if shipped.is_dir():
            return shipped
    return None


def load_stimulus_set(folder: str | os.PathLike, check_images: bool = True) -> StimulusSet:
    """Read and check a stimulus set: a folder of class subfolders, or the name of a shipped set.

    Args:
        folder: the set's folder, or a shipped set's name (``"shapes-colours"``).
        check_images: open and fully decode every image with Pillow (catches truncated or corrupt files).

    Raises:
        StimulusError: one line naming the folder and the culprits: the folder is missing, has no class
            subfolders, has class folders without images, or has images Pillow cannot read.
    """
    resolved = find_stimulus_set(folder)
    if resolved is None:
        shipped = ", ".join(shipped_stimulus_sets()) or "none"
        raise StimulusError(f"stimulus set {os.fspath(folder)} not found: no such folder, and not a shipped set "
                            f"(shipped: {shipped})")
    root = resolved
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not class_dirs:
        loose = [p.name for p in root.iterdir() if _is_image(p)]
        hint = f" ({len(loose)} images lie directly in it)" if loose else ""
        raise StimulusError(f"stimulus set {root} has no class subfolders{hint}; put each class's images in "
                            f"{root}/<class>/")
    images: dict[str, list[Path]] = {d.name: sorted(p for p in d.iterdir() if _is_image(p)) for d in class_dirs}
    empty = [name for name, files in images.items() if not files]
    if empty:
        raise StimulusError(f"stimulus set {root}: {len(empty)} class folder(s) without images "
                            f"({', '.join(IMAGE_SUFFIXES)}): {name_list(empty)}")
    classes = tuple(d.name for d in class_dirs)
    items = tuple(Stimulus(name, k, path) for k, name in enumerate(classes, start=1) for path in images[name])
    if check_images:
        bad = [s.relative for s in items if not is_readable_image(s.path)]
        if bad:
            raise StimulusError(f"stimulus set {root}: {len(bad)} image(s) Pillow cannot read: {name_list(bad)}")
    log.debug("stimulus set %s: %d classes, %d images", root, len(classes), len(items))
    return StimulusSet(name=root.name, folder=root, classes=classes, items=items)


def name_list(names: Sequence[str], limit: int = 5) -> str:
    """``"a, b, c, d, e and 3 more"``: up to ``limit`` names, then how many were left out."""
    shown = ", ".join(names[:limit])
    return shown if len(names) <= limit else f"{shown} and {len(names) - limit} more"


def _is_image(path: Path) -> bool:
    return path.is_file() and not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


# -- the shapes × colours set --------------------------------------------------------------------------

def shapes_colours_classes() -> list[str]:
    """Class names of the ``shapes-colours`` set (``"red-circle"``, ...), in generation order."""
    return [f"{colour}-{shape}" for colour in COLOURS for shape in SHAPES]


def render_shape(shape: str, colour: tuple[int, int, int], size: int = 224, scale: float = 1.0,
                 dx: float = 0.0, dy: float = 0.0, angle: float = 0.0) -> Image.Image:
    """One filled shape on the mid-grey background, as an RGB image.

    Args:
        shape: one of :data:`SHAPES`.
        colour: sRGB fill, 0-255.
        size: side of the square image, in pixels.
        scale: size relative to the base size (a circle of radius 0.26 × ``size``).
        dx, dy: offset of the shape's centre from the image centre, in pixels (y down).
        angle: clockwise rotation, in degrees (ignored for circles).
    """
    if shape not in SHAPES:
        raise ValueError(f"unknown shape {shape!r}; shapes: {', '.join(SHAPES)}")
    big = size * _SUPERSAMPLE
    image = Image.new("RGB", (big, big), BACKGROUND)
    draw = ImageDraw.Draw(image)
    cx, cy = (size / 2 + dx) * _SUPERSAMPLE, (size / 2 + dy) * _SUPERSAMPLE
    r = _BASE_RADIUS * size * scale * _SUPERSAMPLE
    if shape == "circle":
        draw.ellipse((cx - r, cy - r, cx + r, cy + r), fill=colour)
    else:
        if shape == "square":  # circumradius such that the area matches the circle's
            radii, start = [r * math.sqrt(math.pi / 2)] * 4, 45.0
        elif shape == "triangle":
            radii, start = [r * 1.3] * 3, -90.0
        else:  # five-pointed star, inner radius 0.45 × outer
            radii, start = [r * 1.35, r * 1.35 * 0.45] * 5, -90.0
        n = len(radii)
        points = [(cx + rad * math.cos(math.radians(start + angle + 360.0 * i / n)),
                   cy + rad * math.sin(math.radians(start + angle + 360.0 * i / n))) for i, rad in enumerate(radii)]
        draw.polygon(points, fill=colour)
    return image.resize((size, size), Image.Resampling.BOX)


def variant_parameters(class_name: str, variant: int, size: int = 224, seed: int = 0) -> dict[str, float]:
    """``scale``, ``dx``, ``dy`` (pixels) and ``angle`` (degrees) of one variant; variant 0 is the canonical one."""
    if variant == 0:
        return {"scale": 1.0, "dx": 0.0, "dy": 0.0, "angle": 0.0}
    rng = random.Random(f"shapes-colours:{seed}:{class_name}:{variant}")  # str seeds are hash-seed independent
    max_angle = _MAX_ROTATION.get(class_name.rsplit("-", 1)[-1], 15.0)
    return {"scale": rng.uniform(0.8, 1.15), "dx": rng.uniform(-0.08, 0.08) * size,
            "dy": rng.uniform(-0.08, 0.08) * size, "angle": rng.uniform(-max_angle, max_angle)}


def generate_shapes_colours(folder: str | os.PathLike, variants: int = 3, size: int = 224, seed: int = 0) -> Path:
    """Write the ``shapes-colours`` set: ``folder/<colour>-<shape>/<colour>-<shape>-<n>.png`` plus LICENSE/README.

    Deterministic: the same arguments (and Pillow version) give the same pixels. Existing files of the same
    names are overwritten; other files are left alone.

    Args:
        folder: output folder, created if needed.
        variants: images per class (size, position and rotation differ).
        size: image side in pixels.
        seed: seed of the variants' random parameters.

    Returns:
        the folder.
    """
    if variants < 1 or size < 16:
        raise ValueError(f"need variants >= 1 and size >= 16, not {variants} and {size}")
    root = Path(folder)
    for colour_name, colour in COLOURS.items():
        for shape in SHAPES:
            class_name = f"{colour_name}-{shape}"
            (root / class_name).mkdir(parents=True, exist_ok=True)
            for v in range(variants):
                image = render_shape(shape, colour, size, **variant_parameters(class_name, v, size, seed))
                image.save(root / class_name / f"{class_name}-{v + 1}.png", optimize=True)
    (root / "LICENSE.txt").write_text(LICENSE_TEXT, encoding="utf-8")
    (root / "README.txt").write_text(README_TEXT.format(
        n_classes=len(COLOURS) * len(SHAPES), shapes=", ".join(SHAPES), colours=", ".join(COLOURS),
        variants=variants, size=size, seed=seed, supersample=_SUPERSAMPLE), encoding="utf-8")
    log.info("wrote %d images to %s", len(COLOURS) * len(SHAPES) * variants, root)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m bci_dream.calibrate.stimuli OUT_FOLDER``: write the shapes-colours set."""
    parser = argparse.ArgumentParser(prog="python -m bci_dream.calibrate.stimuli",
                                     description="Write the shapes x colours calibration stimulus set (CC0).")
    parser.add_argument("folder", type=Path, help="output folder (created if needed)")
    parser.add_argument("--variants", type=int, default=3, help="images per class (default 3)")
    parser.add_argument("--size", type=int, default=224, help="image side in pixels (default 224)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the variants (default 0)")
    args = parser.parse_args(argv)
    try:
        generate_shapes_colours(args.folder, args.variants, args.size, args.seed)
        stimuli = load_stimulus_set(args.folder)
    except (ValueError, OSError, BciDreamError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {len(stimuli)} images in {len(stimuli.classes)} classes to {args.folder}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
