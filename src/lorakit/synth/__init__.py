"""Synthetic (random-weight) base models for testing lorakit end to end without downloads.

``lorakit.synth.build`` writes checkpoints with the exact key layout that kohya-ss
sd-scripts loads (SDXL single file; SD 3.5 MMDiT+VAE file plus CLIP-L, CLIP-G and T5-XXL
files; Flux.1 [dev] transformer and AE files plus CLIP-L and T5-XXL, ``lorakit.synth.flux``)
and an offline tokenizer cache for ``--tokenizer_cache_dir``. Importing this package is cheap:
torch, transformers, diffusers and sd-scripts are imported inside the functions.
"""

from __future__ import annotations

from lorakit.families import NAMES as FAMILIES

__all__ = ["FAMILIES"]
