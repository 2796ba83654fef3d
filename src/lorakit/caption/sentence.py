# mypy: disable-error-code="import-not-found, import-untyped"
"""The sentence captioner: BLIP through transformers' native classes.

Why BLIP and not Florence-2 (docs/research/captioning.md §3 recommended Florence-2): the native
Florence-2 classes need transformers >= 4.56, and sd-scripts 48d368fa pins 4.54.1; BLIP runs on
every transformers lorakit meets (the trainer's pin included, so the GPU machine needs no extra
wheel), needs no ``trust_remote_code``, is BSD-3-Clause and is what sd-scripts' own
``finetune/make_captions.py`` uses (BLIP-large, at most 75 / at least 5 new tokens, one beam).
Its captions are short and generic ("a drawing of a girl with ..."); put the specifics in the
trigger, or use the tagger.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lorakit.caption.wd14 import flatten_rgb
from lorakit.errors import DatasetError, EnvironmentProblem

MAX_NEW_TOKENS = 75
MIN_NEW_TOKENS = 5


class BlipCaptioner:
    def __init__(self, folder: Path, device: str = "auto") -> None:
        try:
            import torch
            from transformers import BlipForConditionalGeneration, BlipProcessor
        except ImportError as exc:
            raise EnvironmentProblem(
                f"--tagger blip needs torch and transformers ({exc})", fix="pip install 'lorakit[caption]' torch"
            ) from None
        if not (folder / "config.json").is_file():
            raise DatasetError(
                f"{folder}: no config.json", fix="pass a BLIP model folder (Salesforce/blip-image-captioning-large)"
            )
        cuda = torch.cuda.is_available()
        if device == "cuda" and not cuda:
            raise EnvironmentProblem("--device cuda: torch sees no CUDA GPU", fix="pass --device cpu")
        self.device = "cuda" if device in ("auto", "cuda") and cuda else "cpu"
        self.dtype = torch.float16 if self.device == "cuda" else torch.float32
        try:
            self.processor: Any = BlipProcessor.from_pretrained(str(folder))
            model: Any = BlipForConditionalGeneration.from_pretrained(str(folder))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{folder}: not a BLIP model ({exc})", fix="pass a BLIP model folder") from None
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        limit = int(getattr(model.config.text_config, "max_position_embeddings", 512))
        self.max_new_tokens = max(MIN_NEW_TOKENS, min(MAX_NEW_TOKENS, limit - 2))
        gpu = f" ({torch.cuda.get_device_name(0)})" if self.device == "cuda" else ""
        self.provider = f"torch {self.device}{gpu}"
        self.fixed_batch: int | None = None

    def batch_size(self, wanted: int) -> int:
        return max(1, wanted)

    def load(self, path: Path) -> Any:
        from PIL import Image, ImageOps

        with Image.open(path) as im:
            im.load()
            return flatten_rgb(ImageOps.exif_transpose(im))

    def caption(self, batch: Sequence[Any]) -> list[list[str]]:
        import torch

        inputs = self.processor(images=list(batch), return_tensors="pt")
        pixels = inputs["pixel_values"].to(device=self.device, dtype=self.dtype)
        with torch.inference_mode():
            out = self.model.generate(
                pixel_values=pixels, max_new_tokens=self.max_new_tokens, min_new_tokens=MIN_NEW_TOKENS, num_beams=1
            )
        texts = self.processor.batch_decode(out, skip_special_tokens=True)
        return [[s] if (s := " ".join(t.split())) else [] for t in texts]
