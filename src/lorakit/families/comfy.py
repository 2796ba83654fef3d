"""A family's ComfyUI graph as data (what ``lorakit try`` builds, tryout/workflow.py): the loader
nodes for its files, the empty-latent node and the sampler settings. Node class and input names
are ComfyUI's (nodes.py, comfy_extras/nodes_sd3.py at a125cd84)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Loader:
    """A loader node: one input per file, each named by a ``model.<key>`` of the spec."""

    node: str  # ComfyUI class_type
    folder: str  # the ComfyUI models folder its files are listed in (GET /models/<folder>)
    inputs: tuple[str, ...]  # input names, one per file
    model_keys: tuple[str, ...]  # spec.model.<key> for each file
    outputs: Mapping[str, int]  # "MODEL" / "CLIP" / "VAE" → output slot
    fixed: Mapping[str, Any] = field(default_factory=dict)  # constant inputs
    optional: bool = False  # used only when the spec names all its files


@dataclass(frozen=True)
class FamilyGraph:
    loaders: tuple[Loader, ...]  # later loaders override earlier ones' outputs
    latent: str
    cfg: float
    sampler: str
    scheduler: str
    guidance: float | None = None  # FluxGuidance on the positive conditioning (Flux)


CHECKPOINT = Loader(
    "CheckpointLoaderSimple", "checkpoints", ("ckpt_name",), ("checkpoint",), {"MODEL": 0, "CLIP": 1, "VAE": 2}
)
