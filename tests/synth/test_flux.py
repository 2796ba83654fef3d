"""The synthetic Flux.1 [dev] set: its key layout (pure, pinned against the numbers of
docs/research/flux.md §2.1 and §3), the streamed safetensors header, the synth-model wiring, and,
where a trainer Python is given, a reduced-depth build loaded by sd-scripts' own loaders:
  LORAKIT_TEST_SD_SCRIPTS=/path/to/sd-scripts LORAKIT_TEST_TRAINER_PYTHON=/path/to/python \
  [LORAKIT_CLIP_BPE=/path/to/bpe_simple_vocab_16e6.txt.gz] pytest tests/synth
(CI has no torch: those are skipped there)."""

from __future__ import annotations

import json
import math
import os
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from lorakit.families.arch import CLIP_L_PROJ_PARAMS, T5XXL_PARAMS
from lorakit.families.sd3 import SD3_VAE_PARAMS
from lorakit.synth.flux import (
    AE_BYTES,
    DEV,
    TE_BYTES,
    FluxDims,
    ae_layout,
    lora_modules,
    param_count,
    safetensors_header,
    transformer_layout,
)
from tests.conftest import REPO, stand_in_sd_scripts

SD_SCRIPTS = os.environ.get("LORAKIT_TEST_SD_SCRIPTS")
PYTHON = os.environ.get("LORAKIT_TEST_TRAINER_PYTHON")


def test_transformer_layout_matches_the_fact_sheet() -> None:
    layout = transformer_layout()
    assert param_count(layout) == 11_901_408_320
    assert len(layout) == 780
    head = param_count(transformer_layout(FluxDims(depth=0, depth_single_blocks=0)))
    assert head == 64_124_992
    one_double = param_count(transformer_layout(FluxDims(depth=1, depth_single_blocks=0))) - head
    one_single = param_count(transformer_layout(FluxDims(depth=0, depth_single_blocks=1))) - head
    assert (one_double, one_single) == (339_831_296, 141_591_808)
    expected = {
        "img_in.weight": (3072, 64),
        "time_in.in_layer.weight": (3072, 256),
        "guidance_in.in_layer.bias": (3072,),  # kept: without it sd-scripts takes the file for schnell
        "vector_in.in_layer.weight": (3072, 768),
        "txt_in.weight": (3072, 4096),
        "double_blocks.18.img_mod.lin.weight": (18432, 3072),
        "double_blocks.0.txt_attn.qkv.bias": (9216,),
        "double_blocks.0.img_attn.norm.query_norm.scale": (128,),
        "double_blocks.3.txt_attn.norm.key_norm.scale": (128,),
        "double_blocks.18.img_attn.proj.bias": (3072,),
        "double_blocks.5.img_mlp.0.weight": (12288, 3072),
        "double_blocks.5.txt_mlp.2.weight": (3072, 12288),
        "single_blocks.37.linear1.weight": (21504, 3072),
        "single_blocks.0.linear2.weight": (3072, 15360),
        "single_blocks.37.modulation.lin.bias": (9216,),
        "single_blocks.2.norm.key_norm.scale": (128,),
        "final_layer.linear.weight": (64, 3072),
        "final_layer.adaLN_modulation.1.weight": (6144, 3072),
    }
    assert {k: layout[k] for k in expected} == expected
    # what sd-scripts' analyze_checkpoint_state counts the depth from
    assert max(int(k.split(".")[1]) for k in layout if k.endswith(".img_attn.proj.bias")) == 18
    assert max(int(k.split(".")[1]) for k in layout if k.endswith(".modulation.lin.bias") and "single" in k) == 37
    assert not any(k.startswith("model.diffusion_model.") or "norm1" in k or "pe_embedder" in k for k in layout)


def test_schnell_layout_has_no_guidance_in() -> None:
    schnell = transformer_layout(FluxDims(guidance_embed=False))
    assert not any(k.startswith("guidance_in.") for k in schnell)
    assert param_count(transformer_layout()) - param_count(schnell) == 256 * 3072 + 3072 + 3072 * 3072 + 3072


def test_reduced_depth_layout() -> None:
    layout = transformer_layout(FluxDims(depth=2, depth_single_blocks=4))
    assert {k.split(".")[1] for k in layout if k.startswith("double_blocks.")} == {"0", "1"}
    assert {k.split(".")[1] for k in layout if k.startswith("single_blocks.")} == {"0", "1", "2", "3"}
    assert param_count(layout) == 64_124_992 + 2 * 339_831_296 + 4 * 141_591_808


def test_ae_layout_matches_the_fact_sheet() -> None:
    ae = ae_layout()
    assert param_count(ae) == 83_819_683
    assert ae["encoder.conv_in.weight"] == (128, 3, 3, 3)
    assert ae["encoder.conv_out.weight"] == (32, 512, 3, 3)
    assert ae["decoder.conv_in.weight"] == (512, 16, 3, 3)
    assert ae["decoder.conv_out.weight"] == (3, 128, 3, 3)
    assert ae["encoder.mid.attn_1.q.weight"] == (512, 512, 1, 1)
    assert {k.rsplit(".", 3)[0] for k in ae if ".downsample." in k} == {f"encoder.down.{i}" for i in range(3)}
    assert {k.rsplit(".", 3)[0] for k in ae if ".upsample." in k} == {f"decoder.up.{i}" for i in (1, 2, 3)}
    shortcuts = {k.removesuffix(".nin_shortcut.weight") for k in ae if k.endswith("nin_shortcut.weight")}
    assert shortcuts == {
        "encoder.down.1.block.0",
        "encoder.down.2.block.0",
        "decoder.up.1.block.0",
        "decoder.up.0.block.0",
    }
    assert {k.split(".")[4] for k in ae if k.startswith("decoder.up.") and ".block." in k} == {"0", "1", "2"}
    assert not any("quant_conv" in k for k in ae)
    assert all(k.startswith(("encoder.", "decoder.")) for k in ae)


def test_free_space_sizes_agree_with_the_parameter_counts() -> None:
    assert AE_BYTES == param_count(ae_layout()) * 4 == SD3_VAE_PARAMS * 4  # fp32, like the published ae
    assert TE_BYTES == {"clip_l": CLIP_L_PROJ_PARAMS * 2, "t5xxl": T5XXL_PARAMS * 2}  # the SD 3.5 fp16 files


def test_default_lora_modules() -> None:
    mods = lora_modules()
    assert len(mods) == 304 == 19 * 10 + 38 * 3
    assert sum(i + o for i, o in mods.values()) == 4_786_176  # LoRA parameters per unit of rank
    assert mods["lora_unet_double_blocks_0_img_mod_lin"] == (3072, 18432)
    assert mods["lora_unet_double_blocks_18_txt_attn_qkv"] == (3072, 9216)
    assert mods["lora_unet_double_blocks_7_img_mlp_2"] == (12288, 3072)
    assert mods["lora_unet_single_blocks_37_linear1"] == (3072, 21504)
    assert mods["lora_unet_single_blocks_0_linear2"] == (15360, 3072)
    assert mods["lora_unet_single_blocks_9_modulation_lin"] == (3072, 9216)
    # every LoRA target is a Linear of the transformer with that shape
    layout = transformer_layout(DEV)
    for name, (n_in, n_out) in mods.items():
        key = name.removeprefix("lora_unet_")
        block, idx, rest = key.split("_", 2)[0] + "_blocks", key.split("_")[2], key.split("_", 3)[3]
        candidates = [
            k for k in layout if k.startswith(f"{block}.{idx}.") and k.replace(".", "_").endswith(rest + "_weight")
        ]
        assert [layout[k] for k in candidates] == [(n_out, n_in)], name


def test_streamed_header_is_valid_safetensors(tmp_path: Path) -> None:
    layout = {"b.weight": (3, 5), "a.bias": (3,), "c.scale": (7,)}
    head, n = safetensors_header(layout, "bfloat16", {"lorakit_synth": "x"})
    assert n == 2 * (15 + 3 + 7)
    (size,) = struct.unpack("<Q", head[:8])
    assert size == len(head) - 8 and size % 8 == 0
    meta = json.loads(head[8:])
    assert meta["__metadata__"] == {"lorakit_synth": "x"}
    assert [meta[k]["data_offsets"] for k in layout] == [[0, 30], [30, 36], [36, 50]]
    assert {meta[k]["dtype"] for k in layout} == {"BF16"}
    # the safetensors library accepts the file (numpy has no bf16: check it with an fp32 header)
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    head32, n32 = safetensors_header(layout, "float32")
    path = tmp_path / "x.safetensors"
    path.write_bytes(head32 + struct.pack(f"<{n32 // 4}f", *range(n32 // 4)))
    loaded = safetensors_numpy.load_file(str(path))
    assert {k: v.shape for k, v in loaded.items()} == layout
    assert loaded["a.bias"].tolist() == [15.0, 16.0, 17.0]
    assert math.prod(layout["c.scale"]) == loaded["c.scale"].size


def test_fp8_header_uses_one_byte_per_value() -> None:
    _, n = safetensors_header(transformer_layout(), "float8_e4m3fn")
    assert n == 11_901_408_320
    head, _ = safetensors_header({"w": (2, 2)}, "float8_e4m3fn")
    assert json.loads(head[8:])["w"]["dtype"] == "F8_E4M3"


def test_build_main_refuses_flux_options_for_other_families(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "lorakit.synth.build",
            "sdxl",
            str(tmp_path / "o"),
            "--sd-scripts",
            str(tmp_path),
            "--fp8",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "--fp8 does not apply to sdxl" in proc.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not (SD_SCRIPTS and PYTHON), reason="set LORAKIT_TEST_SD_SCRIPTS and LORAKIT_TEST_TRAINER_PYTHON")
@pytest.mark.parametrize("extra", [(), ("--fp8", "--blocks", "1", "2")], ids=["bf16-2x4", "fp8-1x2"])
def test_reduced_depth_build_loads_in_sd_scripts(tmp_path: Path, extra: tuple[str, ...]) -> None:
    assert SD_SCRIPTS and PYTHON
    bpe = os.environ.get("LORAKIT_CLIP_BPE")  # also checks the offline tokenizer cache when given
    extra += ("--bpe", bpe) if bpe and not extra else ()
    proc = subprocess.run(
        [PYTHON, str(REPO / "scripts" / "flux_synth_check.py"), SD_SCRIPTS, str(tmp_path / "flux"), *extra],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["ok"] and "Loaded Flux: <All keys matched successfully>" in summary["loaded"]
    assert "Loaded AE: <All keys matched successfully>" in summary["loaded"]
    fp8 = "--fp8" in extra
    blocks = (1, 2) if fp8 else (2, 4)
    assert summary["blocks"] == list(blocks)
    dims = FluxDims(depth=blocks[0], depth_single_blocks=blocks[1])
    per_value = 1 if fp8 else 2
    header, data = safetensors_header(transformer_layout(dims), summary["dtype"])
    assert data == param_count(transformer_layout(dims)) * per_value
    assert 0 <= summary["checkpoint_bytes"] - (len(header) + data) < 200  # + the __metadata__ entry


def test_synth_model_cli_hands_flux_dev_to_the_builder(lorakit, isolated_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """`lorakit synth-model flux-dev OUT` reaches `python -m lorakit.synth.build flux-dev` (whose
    argparse would exit 2 on an unknown family); a trainer Python without torch then fails there
    with the one-line message, and no folder is left behind."""
    sd = stand_in_sd_scripts(tmp_path / "sd-scripts")
    py = tmp_path / "bin" / "python"
    py.parent.mkdir()
    py.write_text(f'#!/bin/sh\nexec {sys.executable} -S "$@"\n', encoding="utf-8")  # no site-packages: no torch
    py.chmod(0o755)
    isolated_env.update(LORAKIT_SD_SCRIPTS=str(sd), LORAKIT_PYTHON=str(py))
    res = lorakit("synth-model", "flux-dev", str(tmp_path / "model"))
    assert res.code == 3, (res.code, res.err)
    assert "building the flux-dev model needs the Python package `torch`" in res.err
    assert not (tmp_path / "model").exists()
    res = lorakit("synth-model", "flux-schnell", str(tmp_path / "model"))
    assert res.code != 0 and "unknown family `flux-schnell`" in res.err and "flux-dev" in res.err
