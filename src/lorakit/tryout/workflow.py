"""Pure: the ComfyUI API-format graph that renders one prompt at one LoRA strength.

A family is data (its ``comfy`` graph, lorakit/families/comfy.py): the loader nodes for its
files, the empty-latent node and the sampler settings. Node class and input names are ComfyUI's
(nodes.py, comfy_extras/nodes_sd3.py at a125cd84): CheckpointLoaderSimple → (MODEL, CLIP, VAE);
TripleCLIPLoader (clip-l, clip-g, t5) → CLIP; LoraLoader(model, clip, lora_name, strength_model,
strength_clip) → (MODEL, CLIP); CLIPTextEncode; EmptyLatentImage / EmptySD3LatentImage; KSampler; VAEDecode; SaveImage.
A new family (Flux: UNETLoader + DualCLIPLoader + VAELoader + FluxGuidance) gives its own graph.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from lorakit import families
from lorakit.families.comfy import FamilyGraph, Loader

DEFAULT_STRENGTHS = (0.0, 0.5, 1.0)
DEFAULT_SEED = 42


GRAPHS: dict[str, FamilyGraph] = {f.name: f.comfy for f in families.FAMILIES.values() if f.comfy is not None}


def loaders_used(family: str, model_files: Mapping[str, str | None]) -> list[Loader]:
    """The loaders this family needs for these files (optional ones only when all are given)."""
    return [ld for ld in GRAPHS[family].loaders if not ld.optional or all(model_files.get(k) for k in ld.model_keys)]


@dataclass(frozen=True)
class Prompt:
    text: str
    negative: str = ""


_OPTION = re.compile(r"\s--(\w+)\s")


def parse_prompt(line: str, trigger: str | None) -> Prompt:
    """A sampling prompt as sd-scripts reads it ("text --n negative --w 1024 ..."): the text and
    its negative; the other options are sd-scripts' own. The trigger is put first when missing."""
    parts = _OPTION.split(f" {line.strip()} ")
    text, negative = parts[0].strip(), ""
    for key, value in zip(parts[1::2], parts[2::2], strict=False):
        if key == "n":
            negative = value.strip()
    if trigger and trigger.lower() not in text.lower():
        text = f"{trigger}, {text}" if text else trigger
    return Prompt(text, negative)


def prompts_for(lines: Sequence[str], trigger: str | None, class_word: str | None) -> list[Prompt]:
    """The run's sample prompts, or one made of its trigger and class word."""
    if lines:
        return [parse_prompt(p, trigger) for p in lines]
    words = ", ".join(w for w in (trigger, class_word) if w) or "a picture"
    return [Prompt(words)]


@dataclass(frozen=True)
class Render:
    """One cell of the grid: a prompt at a strength."""

    prompt_index: int
    strength: float
    prefix: str  # SaveImage filename_prefix (a subfolder of ComfyUI's output folder)
    graph: dict[str, Any]


SAVE_NODE = "9"


def build_graph(
    family: str,
    files: Mapping[str, str],
    lora: str,
    strength: float,
    prompt: Prompt,
    *,
    width: int,
    height: int,
    seed: int,
    steps: int,
    prefix: str,
) -> dict[str, Any]:
    """The API-format graph ({node id: {"class_type", "inputs"}}) for one image.

    ``files`` maps ``model.<key>`` to the name ComfyUI lists for it; ``lora`` is the LoRA's name
    in ComfyUI's ``loras`` list."""
    fam = GRAPHS[family]
    graph: dict[str, Any] = {}
    source: dict[str, list[Any]] = {}
    for i, ld in enumerate(loaders_used(family, files), start=1):
        nid = str(9 + i)  # "10", "11", ...: ComfyUI ids are numeric strings
        inputs: dict[str, Any] = {name: files[key] for name, key in zip(ld.inputs, ld.model_keys, strict=True)}
        graph[nid] = {"class_type": ld.node, "inputs": inputs | dict(ld.fixed)}
        for kind, slot in ld.outputs.items():
            source[kind] = [nid, slot]
    graph["1"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": source["MODEL"],
            "clip": source["CLIP"],
            "lora_name": lora,
            "strength_model": strength,
            "strength_clip": strength,
        },
    }
    graph["2"] = {"class_type": "CLIPTextEncode", "inputs": {"text": prompt.text, "clip": ["1", 1]}}
    graph["3"] = {"class_type": "CLIPTextEncode", "inputs": {"text": prompt.negative, "clip": ["1", 1]}}
    positive: list[Any] = ["2", 0]
    if fam.guidance is not None:
        graph["4"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": positive, "guidance": fam.guidance}}
        positive = ["4", 0]
    graph["5"] = {"class_type": fam.latent, "inputs": {"width": width, "height": height, "batch_size": 1}}
    graph["6"] = {
        "class_type": "KSampler",
        "inputs": {
            "model": ["1", 0],
            "seed": seed,
            "steps": steps,
            "cfg": fam.cfg,
            "sampler_name": fam.sampler,
            "scheduler": fam.scheduler,
            "positive": positive,
            "negative": ["3", 0],
            "latent_image": ["5", 0],
            "denoise": 1.0,
        },
    }
    graph["7"] = {"class_type": "VAEDecode", "inputs": {"samples": ["6", 0], "vae": source["VAE"]}}
    graph[SAVE_NODE] = {"class_type": "SaveImage", "inputs": {"images": ["7", 0], "filename_prefix": prefix}}
    return graph


def strength_label(strength: float) -> str:
    return f"{strength:g}"


def plan_renders(
    family: str,
    files: Mapping[str, str],
    lora: str,
    prompts: Sequence[Prompt],
    strengths: Sequence[float],
    *,
    width: int,
    height: int,
    seed: int,
    steps: int,
    prefix: str,
) -> list[Render]:
    """Every (prompt, strength) cell, prompts outer; the same seed everywhere, so strength 0 is
    the base model's own picture and each column differs only by the LoRA's weight."""
    out: list[Render] = []
    for i, p in enumerate(prompts):
        for s in strengths:
            cell_prefix = f"{prefix}/p{i}-s{strength_label(s)}"
            graph = build_graph(
                family, files, lora, s, p, width=width, height=height, seed=seed, steps=steps, prefix=cell_prefix
            )
            out.append(Render(i, s, cell_prefix, graph))
    return out
