"""IP-Adapters: image-embedding conditioning added to a frozen diffusion pipeline, through diffusers' own loader.

An IP-Adapter file (h94/IP-Adapter's layout: ``image_proj.*`` and ``ip_adapter.*`` tensors, ``.safetensors`` or
``.bin``) is loaded with ``pipe.load_ip_adapter`` without an image encoder: the EEG model predicts the CLIP image
embedding that the image encoder would have given (``ip_adapter_image_embeds``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from bci_dream.core.errors import first_line
from bci_dream.loading.hub import ModelLoadError, quiet

log = logging.getLogger(__name__)

#: File endings of IP-Adapter weights.
IP_ADAPTER_SUFFIXES = (".safetensors", ".bin")


def ip_adapter_file(source: str | os.PathLike) -> Path:
    """The IP-Adapter weights ``source`` names: the file itself, or the one IP-Adapter file in a folder.

    Raises:
        ModelLoadError: no such file, or a folder with none or several (one line naming them).
    """
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise ModelLoadError(f"IP-Adapter {source} does not exist; give an ip-adapter*.safetensors file or its folder")
    found = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in IP_ADAPTER_SUFFIXES
                   and "ip-adapter" in p.name.lower())
    if len(found) != 1:
        listed = ", ".join(p.name for p in found) or "none"
        raise ModelLoadError(f"the folder {path} should hold one IP-Adapter file (ip-adapter*.safetensors), it holds "
                             f"{listed}; give the file itself")
    return found[0]


def load_ip_adapter(pipe, source: str | os.PathLike, *, scale: float = 1.0) -> Path:
    """Load the IP-Adapter at ``source`` into ``pipe`` (no image encoder) at ``scale``; returns its file.

    Raises:
        ModelLoadError: the file is missing, is not an IP-Adapter, or does not fit the pipeline's UNet.
    """
    path = ip_adapter_file(source)
    try:
        # ("modules that should be kept in float32: []": the loader casts the UNet to its own dtype, a no-op)
        with quiet("diffusers.loaders.ip_adapter", "diffusers.loaders.unet", "diffusers.models.modeling_utils",
                   "transformers"):
            pipe.load_ip_adapter(str(path.parent), subfolder="", weight_name=path.name, image_encoder_folder=None)
        pipe.set_ip_adapter_scale(float(scale))
    except (OSError, ValueError, KeyError, RuntimeError) as e:
        raise ModelLoadError(f"cannot load the IP-Adapter {path} into {type(pipe).__name__}: {first_line(e)}; give an "
                             "IP-Adapter made for this model (SD 1.5 / SD 2 / SDXL)") from e
    log.info("IP-Adapter %s loaded at scale %g", path.name, scale)
    return path


def image_embed_width(unet) -> int | None:
    """The CLIP image-embedding width the UNet's loaded IP-Adapter projects (None: no IP-Adapter)."""
    projection = getattr(unet, "encoder_hid_proj", None)
    layers = getattr(projection, "image_projection_layers", None)
    if not layers:
        return None
    first = layers[0]
    linear = getattr(first, "image_embeds", None) or getattr(first, "proj_in", None)
    return int(linear.in_features) if linear is not None else None
