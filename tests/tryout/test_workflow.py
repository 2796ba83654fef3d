"""The pure part of `lorakit try`: prompts and the API-format graph per family."""

from __future__ import annotations

from typing import Any

import pytest

from lorakit.tryout import workflow as wf


def test_prompt_options_and_trigger() -> None:
    p = wf.parse_prompt("a cat on a mat --n blurry, ugly --w 1024 --s 20", "sks")
    assert p == wf.Prompt("sks, a cat on a mat", "blurry, ugly")
    assert wf.parse_prompt("SKS style, a dog", "sks").text == "SKS style, a dog"  # already there
    assert wf.parse_prompt("a dog", None) == wf.Prompt("a dog")


def test_prompts_default_to_trigger_and_class() -> None:
    assert wf.prompts_for([], "sks", "style") == [wf.Prompt("sks, style")]
    assert wf.prompts_for([], None, None) == [wf.Prompt("a picture")]
    assert [p.text for p in wf.prompts_for(["a", "b"], "t", None)] == ["t, a", "t, b"]


def _check_wiring(graph: dict[str, Any]) -> None:
    """Every link points at an existing node; the loaders' outputs exist (slots as in ComfyUI)."""
    outputs = {"CheckpointLoaderSimple": 3, "TripleCLIPLoader": 1, "LoraLoader": 2, "CLIPTextEncode": 1,
               "EmptyLatentImage": 1, "EmptySD3LatentImage": 1, "KSampler": 1, "VAEDecode": 1, "SaveImage": 0}  # fmt: skip
    for node in graph.values():
        assert set(node) == {"class_type", "inputs"}
        for value in node["inputs"].values():
            if isinstance(value, list):
                src, slot = value
                assert src in graph and slot < outputs[graph[src]["class_type"]]
    assert all(k.isdigit() for k in graph)


def test_sdxl_graph() -> None:
    g = wf.build_graph(
        "sdxl", {"checkpoint": "sdxl/base.safetensors"}, "me.safetensors", 0.5, wf.Prompt("sks, cat", "bad"),
        width=1024, height=768, seed=7, steps=12, prefix="lorakit/x/p0-s0.5",
    )  # fmt: skip
    _check_wiring(g)
    kinds = sorted(n["class_type"] for n in g.values())
    assert kinds == sorted(["CheckpointLoaderSimple", "LoraLoader", "CLIPTextEncode", "CLIPTextEncode",
                            "EmptyLatentImage", "KSampler", "VAEDecode", "SaveImage"])  # fmt: skip
    lora = next(n["inputs"] for n in g.values() if n["class_type"] == "LoraLoader")
    assert lora["lora_name"] == "me.safetensors" and lora["strength_model"] == lora["strength_clip"] == 0.5
    ks = next(n["inputs"] for n in g.values() if n["class_type"] == "KSampler")
    assert (ks["seed"], ks["steps"]) == (7, 12)
    assert g[ks["positive"][0]]["inputs"]["text"] == "sks, cat"
    assert g[ks["negative"][0]]["inputs"]["text"] == "bad"
    assert g[ks["latent_image"][0]]["inputs"] == {"width": 1024, "height": 768, "batch_size": 1}
    assert g[wf.SAVE_NODE]["inputs"]["filename_prefix"] == "lorakit/x/p0-s0.5"


def test_sd35_graph_with_and_without_separate_encoders() -> None:
    files = {
        "checkpoint": "sd35.safetensors",
        "clip_l": "l.safetensors",
        "clip_g": "g.safetensors",
        "t5xxl": "t5.safetensors",
    }
    g = wf.build_graph("sd3.5-large", files, "me.safetensors", 1.0, wf.Prompt("x"), width=1024, height=1024,
                       seed=1, steps=4, prefix="p")  # fmt: skip
    _check_wiring(g)
    tri = next(k for k, n in g.items() if n["class_type"] == "TripleCLIPLoader")
    assert g[tri]["inputs"] == {
        "clip_name1": "l.safetensors",
        "clip_name2": "g.safetensors",
        "clip_name3": "t5.safetensors",
    }
    lora = next(n["inputs"] for n in g.values() if n["class_type"] == "LoraLoader")
    assert lora["clip"] == [tri, 0]  # the encoders come from the triple loader
    assert any(n["class_type"] == "EmptySD3LatentImage" for n in g.values())
    alone = wf.build_graph("sd3.5-medium", {"checkpoint": "sd35.safetensors"}, "me.safetensors", 1.0, wf.Prompt("x"),
                           width=512, height=512, seed=1, steps=4, prefix="p")  # fmt: skip
    _check_wiring(alone)
    assert not any(n["class_type"] == "TripleCLIPLoader" for n in alone.values())


def test_every_family_of_the_registry_has_a_graph() -> None:
    from lorakit.config.schema import TrainSpec

    families = TrainSpec.model_fields["model"].annotation.model_fields["family"].annotation  # type: ignore[union-attr]
    assert set(families.__args__) <= set(wf.GRAPHS)  # type: ignore[attr-defined]


@pytest.mark.parametrize("strengths", [(0.0, 0.5, 1.0), (0.8,)])
def test_renders_are_prompts_times_strengths_with_one_seed(strengths: tuple[float, ...]) -> None:
    rs = wf.plan_renders("sdxl", {"checkpoint": "b.safetensors"}, "l.safetensors", [wf.Prompt("a"), wf.Prompt("b")],
                         strengths, width=64, height=64, seed=3, steps=2, prefix="lorakit/run")  # fmt: skip
    assert [(r.prompt_index, r.strength) for r in rs] == [(i, s) for i in range(2) for s in strengths]
    assert {r.graph["6"]["inputs"]["seed"] for r in rs} == {3}
    assert len({r.prefix for r in rs}) == len(rs)
