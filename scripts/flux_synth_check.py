"""Build a reduced-depth synthetic Flux.1 [dev] set and load it with sd-scripts' own loaders.

Runs inside an sd-scripts environment (torch, transformers, accelerate); CPU is enough:

  python scripts/flux_synth_check.py SD_SCRIPTS_DIR OUT [--blocks 2 4] [--fp8] [--t5] [--device cpu]

Checks the pure key tables of lorakit.synth.flux at full dev size against sd-scripts' classes
(transformer state dict, the 304 default LoRA targets); then, each against sd-scripts' loaders
(library/flux_utils.py): the transformer is taken for dev (not schnell) at the written depth and
logs ``Loaded Flux: <All keys matched successfully>``; the AE logs ``Loaded AE: <All keys matched
successfully>``; CLIP-L (and T5 with ``--t5``: 9.5 GB) load with no missing key; ``--bpe``:
FluxTokenizeStrategy tokenizes offline from the written cache; ``--fp8``: the transformer loads
as ``float8_e4m3fn``. A forward pass of the transformer gives finite numbers. Prints one JSON
line and exits 0, or exits 1 with the failed checks.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))


class _Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _forward(model: Any, torch: Any) -> bool:
    """One tiny forward (a 32x32 latent: 16 image tokens, 8 text tokens) in fp32; finite?"""
    model = model.to(torch.float32)
    img = torch.randn(1, 16, 64)
    img_ids = torch.zeros(1, 16, 3)
    img_ids[0, :, 1] = torch.arange(16) // 4
    img_ids[0, :, 2] = torch.arange(16) % 4
    txt = torch.randn(1, 8, 4096)
    txt_ids = torch.zeros(1, 8, 3)
    y = torch.randn(1, 768)
    t = torch.tensor([0.5])
    with torch.no_grad():
        out = model(img=img, img_ids=img_ids, txt=txt, txt_ids=txt_ids, timesteps=t, y=y, guidance=torch.tensor([1.0]))
    return bool(out.shape == img.shape and torch.isfinite(out).all())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sd_scripts", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--blocks", type=int, nargs=2, default=(2, 4), metavar=("DOUBLE", "SINGLE"))
    ap.add_argument("--fp8", action="store_true")
    ap.add_argument("--t5", action="store_true", help="also write and load the full-size T5-XXL (9.5 GB)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--bpe", type=Path, help="CLIP's BPE file: also write the tokenizer cache and tokenize offline")
    a = ap.parse_args()
    sd_scripts = a.sd_scripts.resolve()
    sys.path.insert(0, str(sd_scripts))
    sys.path.insert(0, str(HERE))
    from sdscripts_flags import _torchvision_stand_in

    _torchvision_stand_in()  # library.utils imports torchvision.transforms; no check here uses it
    import torch
    from library import flux_models, flux_utils

    from lorakit.synth.build import _meta
    from lorakit.synth.flux import _check_against_sd_scripts, build_flux, lora_modules, transformer_layout

    failed: list[str] = []
    # the pure tables at full dev size against sd-scripts' own classes (meta device: no memory)
    full = _meta(lambda: flux_models.Flux(flux_models.configs["dev"].params))
    _check_against_sd_scripts(full, transformer_layout(), "Flux transformer (full dev)")
    linears = {
        "lora_unet_" + f"{blocks_name}.{i}.{name}".replace(".", "_"): (m.in_features, m.out_features)
        for blocks_name in ("double_blocks", "single_blocks")
        for i, block in enumerate(getattr(full, blocks_name))
        for name, m in block.named_modules()
        if type(m).__name__ == "Linear"
    }
    if linears != lora_modules():
        failed.append("lora_modules() differs from the Linear modules of the double/single blocks")

    tes = ("clip_l", "t5xxl") if a.t5 else ("clip_l",)
    blocks = (a.blocks[0], a.blocks[1])
    a.out.mkdir(parents=True, exist_ok=True)
    res = build_flux(a.out, a.device, 0, 0.3, blocks=blocks, fp8=a.fp8, text_encoders=tes)

    lines = _Lines()
    logging.getLogger("library.flux_utils").addHandler(lines)
    dtype = None if a.fp8 else torch.bfloat16  # as flux_train_network.py loads it under --fp8_base
    is_schnell, model = flux_utils.load_flow_model(res["checkpoint"], dtype, "cpu")
    if is_schnell:
        failed.append("the transformer was taken for schnell (no guidance_in)")
    depth = (len(model.double_blocks), len(model.single_blocks))
    if depth != blocks:
        failed.append(f"depth {depth}, written {blocks}")
    want_dtype = torch.float8_e4m3fn if a.fp8 else torch.bfloat16
    if model.dtype != want_dtype:
        failed.append(f"transformer dtype {model.dtype}, expected {want_dtype}")
    if not _forward(model, torch):
        failed.append("transformer forward: not finite or wrong shape")
    del model
    flux_utils.load_ae(res["ae"], torch.bfloat16, "cpu")
    clip = flux_utils.load_clip_l(res["clip_l"], torch.bfloat16, "cpu")
    del clip
    if a.t5:
        t5 = flux_utils.load_t5xxl(res["t5xxl"], torch.bfloat16, "cpu")
        del t5
    for what in ("Flux", "AE"):
        if f"Loaded {what}: <All keys matched successfully>" not in lines.lines:
            failed.append(f"no `Loaded {what}: <All keys matched successfully>` in {lines.lines}")
    for what in ("CLIP-L", "T5xxl") if a.t5 else ("CLIP-L",):
        line = next((ln for ln in lines.lines if ln.startswith(f"Loaded {what}:")), None)
        if line is None or ("missing_keys=[]" not in line and "All keys matched" not in line):
            failed.append(f"{what}: {line}")
    if a.bpe is not None:
        from library import strategy_flux

        from lorakit.synth.build import build_tokenizers

        build_tokenizers(a.out / "tokenizers", t5=True, bpe=a.bpe)
        tok = strategy_flux.FluxTokenizeStrategy(512, tokenizer_cache_dir=str(a.out / "tokenizers"))
        l_ids, t5_ids, _mask = tok.tokenize("a photo of a cat, detailed")
        if tuple(l_ids.shape) != (1, 77) or tuple(t5_ids.shape) != (1, 512) or int(t5_ids.max()) >= 32128:
            failed.append(f"offline tokenizers: CLIP-L {tuple(l_ids.shape)}, T5 {tuple(t5_ids.shape)}")
    summary = {
        "ok": not failed,
        "failed": failed,
        "checkpoint_bytes": res["checkpoint_bytes"],
        "dtype": res["dtype"],
        "blocks": list(depth),
        "loaded": [ln for ln in lines.lines if ln.startswith("Loaded ")],
    }
    print(json.dumps(summary))
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
