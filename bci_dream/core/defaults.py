"""Project-wide defaults, each stated once: every option, dataclass and profile that has a default for one of
these facts reads it from here."""

from __future__ import annotations

#: Band-pass edges (Hz) of the online filter when neither the user nor the device profile says otherwise.
BANDPASS_HZ: tuple[float, float] = (1.0, 45.0)
#: Line-noise notch (Hz) when neither the user nor the device profile says otherwise (60 in the Americas).
NOTCH_HZ: float = 50.0

#: The encoder's window: samples per channel and their rate (2 s at 256 Hz), as in DreamDiffusion's presets.
WINDOW_SAMPLES: int = 512
WINDOW_SFREQ: float = 256.0
WINDOW_S: float = WINDOW_SAMPLES / WINDOW_SFREQ
#: Seconds between live windows.
HOP_S: float = 0.25
#: Conditioning routes (:mod:`bci_dream.runtime.routes`): prompt embeddings into the UNet's cross-attention, a CLIP
#: image embedding through an IP-Adapter, or the nearest image of a bank shown itself.
ROUTES: tuple[str, ...] = ("dreamdiffusion", "ip-adapter", "retrieval")
#: The image-bank prior of the CLIP routes: the BANK_K nearest bank images, softmax temperature BANK_TEMPERATURE on
#: their cosines.
BANK_K: int = 5
BANK_TEMPERATURE: float = 0.05
#: Calibration and fine-tuning epochs: this long (s), from EPOCH_OFFSET_S after each image onset; the fine-tuned
#: encoder takes windows of this length, live too. The shipped protocols' onsets are at least this far apart.
EPOCH_S: float = 1.0
EPOCH_OFFSET_S: float = 0.0

#: The diffusion model fine-tuning conditions and the app generates with (hub id of a diffusers pipeline).
DIFFUSION_MODEL: str = "stabilityai/sd-turbo"
#: The CLIP vision model whose image embeddings the EEG's CLIP head learns and evaluation compares in.
CLIP_MODEL: str = "openai/clip-vit-large-patch14"
#: The image classifier of DreamDiffusion's generated-image n-way metric (ImageNet-1k).
CLASSIFIER: str = "google/vit-base-patch16-224"

#: The n-way identification and classification tests (DreamDiffusion's protocol: n = 50, 50 draws of distractors).
N_WAY: int = 50
N_WAY_TRIALS: int = 50
#: Share of the EEG-image pairs (fine-tuning) or of each class's trials (calibration) held out for validation.
VALIDATION_FRACTION: float = 0.2
#: Held-out trials drawn beside their generated images in a calibration's validation.png.
VALIDATION_FIGURE_ROWS: int = 4
#: A live window whose prompt embeddings have at least this cosine similarity to the last image's is skipped.
SIMILARITY_THRESHOLD: float = 0.995
#: A step between two samples longer than this many sample periods, and than GAP_MIN_S, is a gap: samples that
#: never arrived (shorter steps are the jitter of timestamps given on arrival, as BrainFlow, Bluetooth and the
#: OpenBCI GUI give them). A window is across a gap when its samples span that much more time than their count says.
GAP_PERIODS: float = 3.0
GAP_MIN_S: float = 0.1

#: How frames run (``--backend``; :mod:`bci_dream.generation.backends`).
BACKENDS = ("auto", "eager", "graph", "compile", "int8", "fp8", "tensorrt")
#: The default back end: ``eager`` until the planned frame is measured on a GPU (see benchmarks/README.md).
BACKEND = "eager"

#: Arithmetic of the EEG encoder and of pretraining (``--encoder-precision``, ``pretrain --precision``;
#: :mod:`bci_dream.models.precision`): ``auto`` = bf16 where the device has bf16 arithmetic (CUDA, CPUs with AVX-512
#: BF16 or AMX), float32 elsewhere.
PRECISIONS = ("auto", "fp32", "bf16")
PRECISION = "auto"
