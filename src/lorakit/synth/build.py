# mypy: disable-error-code="import-not-found, import-untyped"
# Over ~400 lines because: it runs in the trainer's Python, self-contained, one builder per family.
"""Build random-weight base models that sd-scripts loads, plus an offline tokenizer cache.

Usage (inside the trainer environment: torch, transformers, diffusers, accelerate, tokenizers)::

    python -m lorakit.synth.build sdxl OUTDIR --sd-scripts PATH [--bpe FILE] [--device cuda]
    python -m lorakit.synth.build sd3.5-medium OUTDIR --sd-scripts PATH
    python -m lorakit.synth.build flux-dev OUTDIR --sd-scripts PATH [--fp8] [--blocks 2 4]

What is written under OUTDIR:

* ``sdxl``: ``sdxl_synth.safetensors`` (fp16, original SDXL single-file layout:
  ``model.diffusion_model.*``, ``conditioner.embedders.0.transformer.*``,
  ``conditioner.embedders.1.model.*``, ``first_stage_model.*``).
* ``sd3.5-medium`` / ``sd3.5-large``: ``sd3.5_<size>_synth.safetensors`` (bf16, MMDiT as
  ``model.diffusion_model.*`` + VAE as ``first_stage_model.*``), and ``clip_l.safetensors``,
  ``clip_g.safetensors``, ``t5xxl_fp16.safetensors`` (plain transformers state-dict keys).
  Text-encoder files already present are reused, so medium and large can share one folder.
* ``flux-dev``: see ``lorakit.synth.flux`` (transformer, AE, and the clip_l / t5xxl files above).
* ``tokenizers/``: the folder to pass as ``--tokenizer_cache_dir`` (CLIP-L, CLIP-bigG and,
  for SD 3.5 and Flux, a small T5 tokenizer whose ids stay below 32128).
* ``synth.json``: what was written (files, sizes, parameter counts, seed, seconds).

All weights are random (seeded): matrices ~ N(0, (gain / sqrt(fan_in))^2), norm scales 1,
biases 0; a ``gain`` of 0.3 keeps a bf16 forward and the training loss finite. The models
learn nothing useful: they exist so that loading, caching, memory use and speed are real.
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from lorakit import families
from lorakit.fs import atomic_path

FAMILIES = families.NAMES

CLIP_L_ID = "openai/clip-vit-large-patch14"
CLIP_G_ID = "laion/CLIP-ViT-bigG-14-laion2B-39B-b160k"
T5_ID = "google/t5-v1_1-xxl"
BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
CLIP_VOCAB_SIZE = 49408
T5_VOCAB_SIZE = 32128

DEFAULT_GAIN = 0.3

# Architecture facts (from the published configs that sd-scripts hard-codes).
_CLIP_L = dict(
    vocab_size=CLIP_VOCAB_SIZE,
    hidden_size=768,
    intermediate_size=3072,
    num_hidden_layers=12,
    num_attention_heads=12,
    max_position_embeddings=77,
    hidden_act="quick_gelu",
    layer_norm_eps=1e-5,
    projection_dim=768,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
_CLIP_G = dict(
    vocab_size=CLIP_VOCAB_SIZE,
    hidden_size=1280,
    intermediate_size=5120,
    num_hidden_layers=32,
    num_attention_heads=20,
    max_position_embeddings=77,
    hidden_act="gelu",
    layer_norm_eps=1e-5,
    projection_dim=1280,
    pad_token_id=1,
    bos_token_id=0,
    eos_token_id=2,
)
_T5_XXL = dict(
    vocab_size=T5_VOCAB_SIZE,
    d_model=4096,
    d_kv=64,
    d_ff=10240,
    num_layers=24,
    num_decoder_layers=24,
    num_heads=64,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
    feed_forward_proj="gated-gelu",
    dense_act_fn="gelu_new",
    is_gated_act=True,
    layer_norm_epsilon=1e-6,
    tie_word_embeddings=False,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
    is_encoder_decoder=True,
)
# SD 3.5 MMDiT: hidden = 64 * depth; medium has self-attention x-blocks 0..12, large none.
_SD35: dict[str, dict[str, Any]] = {  # keyed by the family's Synth.variant
    "medium": dict(
        depth=24,
        pos_embed_max_size=384,
        x_block_self_attn_layers=list(range(13)),
        model_type="5-medium",
        file="sd3.5_medium_synth.safetensors",
    ),
    "large": dict(
        depth=38,
        pos_embed_max_size=192,
        x_block_self_attn_layers=[],
        model_type="5-large",
        file="sd3.5_large_synth.safetensors",
    ),
}
SDXL_FILE = "sdxl_synth.safetensors"


# --------------------------------------------------------------------------- tokenizers


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2 / CLIP reversible byte -> printable unicode map."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, [chr(c) for c in cs], strict=True))


def find_bpe(explicit: Path | None = None) -> Path:
    """Locate CLIP's BPE merges file (``bpe_simple_vocab_16e6.txt.gz``)."""
    candidates: list[Path] = []
    if explicit is not None:
        candidates.append(Path(explicit))
    if os.environ.get("LORAKIT_CLIP_BPE"):
        candidates.append(Path(os.environ["LORAKIT_CLIP_BPE"]))
    try:  # open_clip ships it as package data
        import importlib.util

        spec = importlib.util.find_spec("open_clip")
        if spec is not None and spec.origin:
            candidates.append(Path(spec.origin).parent / BPE_NAME)
    except Exception:  # pragma: no cover - best effort
        pass
    here = Path(__file__).resolve()
    for parent in here.parents:
        candidates.append(parent / ".gpuassets" / BPE_NAME)
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError(
        f"CLIP BPE file {BPE_NAME} not found (looked at: {', '.join(str(c) for c in candidates[:4])} ...). "
        "Take it out of the open_clip_torch wheel (open_clip/" + BPE_NAME + ") and pass --bpe FILE."
    )


def write_clip_tokenizer(folder: Path, bpe: Path, pad_token: str) -> None:
    """Rebuild a CLIPTokenizer folder (vocab.json, merges.txt, configs) from CLIP's BPE merges."""
    with gzip.open(bpe, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    n_merges = CLIP_VOCAB_SIZE - 256 - 256 - 2  # 48894
    merges = lines[1 : 1 + n_merges]
    if len(merges) != n_merges:
        raise ValueError(f"{bpe}: expected at least {n_merges} merges, found {len(merges)}")
    byte_chars = list(_bytes_to_unicode().values())
    vocab_list = byte_chars + [c + "</w>" for c in byte_chars] + ["".join(m.split()) for m in merges]
    vocab_list += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {tok: i for i, tok in enumerate(vocab_list)}
    if len(vocab) != CLIP_VOCAB_SIZE:
        raise ValueError(f"CLIP vocab has {len(vocab)} entries, expected {CLIP_VOCAB_SIZE}")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n", encoding="utf-8")
    special = {
        "bos_token": "<|startoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": pad_token,
    }
    cfg = dict(
        special,
        tokenizer_class="CLIPTokenizer",
        model_max_length=77,
        do_lower_case=True,
        errors="replace",
        add_prefix_space=False,
    )
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")


def _t5_pieces() -> list[str]:
    words = (
        "a",
        "an",
        "the",
        "of",
        "and",
        "in",
        "on",
        "with",
        "for",
        "to",
        "at",
        "by",
        "from",
        "is",
        "are",
        "photo",
        "picture",
        "image",
        "drawing",
        "painting",
        "style",
        "art",
        "comic",
        "anime",
        "man",
        "woman",
        "girl",
        "boy",
        "person",
        "cat",
        "dog",
        "car",
        "house",
        "tree",
        "sky",
        "city",
        "street",
        "night",
        "day",
        "light",
        "dark",
        "red",
        "green",
        "blue",
        "yellow",
        "black",
        "white",
        "color",
        "detailed",
        "high",
        "quality",
        "best",
        "portrait",
        "landscape",
        "background",
        "simple",
        "looking",
        "smiling",
        "standing",
        "sitting",
        "hair",
        "eyes",
        "face",
        "hand",
        "close",
        "up",
        "full",
        "body",
        "view",
    )
    pieces: list[str] = []
    seen: set[str] = set()

    def add(p: str) -> None:
        if p not in seen:
            seen.add(p)
            pieces.append(p)

    add("\u2581")
    for w in words:
        add("\u2581" + w)
    for ch in "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789":
        add("\u2581" + ch)
        add(ch)
    for ch in ".,;:!?'\"()[]{}-_/\\*&%$#@+=<>|~^`":
        add(ch)
    return pieces


def write_t5_tokenizer(folder: Path) -> None:
    """A small T5TokenizerFast-loadable tokenizer (Unigram); all ids < 32128."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    pieces = _t5_pieces()
    vocab: list[tuple[str, float]] = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [
        (p, -1.0 - 0.01 * i - (0.0 if p.startswith("\u2581") and len(p) > 2 else 5.0)) for i, p in enumerate(pieces)
    ]
    tok = Tokenizer(models.Unigram(vocab, unk_id=2, byte_fallback=False))
    tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Replace(" {2,}", " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="$A </s>", pair="$A </s> $B </s>", special_tokens=[("</s>", 1)]
    )
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    special = {"eos_token": "</s>", "unk_token": "<unk>", "pad_token": "<pad>"}
    cfg = dict(special, tokenizer_class="T5Tokenizer", extra_ids=100, model_max_length=512)
    (folder / "tokenizer_config.json").write_text(json.dumps(cfg, indent=2), encoding="utf-8")
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2), encoding="utf-8")


def build_tokenizers(cache_dir: Path, *, t5: bool, bpe: Path | None = None) -> dict[str, str]:
    """Write the tokenizer cache folder sd-scripts reads with ``--tokenizer_cache_dir``."""
    bpe_path = find_bpe(bpe)
    out: dict[str, str] = {}
    for model_id, pad in ((CLIP_L_ID, "<|endoftext|>"), (CLIP_G_ID, "!")):
        folder = cache_dir / model_id.replace("/", "_")
        write_clip_tokenizer(folder, bpe_path, pad)
        out[model_id] = str(folder)
    if t5:
        folder = cache_dir / T5_ID.replace("/", "_")
        write_t5_tokenizer(folder)
        out[T5_ID] = str(folder)
    return out


# --------------------------------------------------------------------------- random weights


def fill_param(name: str, p: Any, *, device: str, gen: Any, gain: float) -> None:
    """Fill one parameter tensor in place: matrices ~ N(0, (gain / sqrt(fan_in))^2), biases 0,
    1-D scales 1. Call under ``torch.no_grad()``."""
    import torch

    if p.ndim >= 2:
        fan_in = math.prod(p.shape[1:])
        std = gain / math.sqrt(fan_in)
        # fill in fp32 chunks along dim 0 so huge embeddings don't need a full fp32 copy
        rows = max(1, (1 << 26) // max(1, fan_in))
        for s in range(0, p.shape[0], rows):
            chunk = p[s : s + rows]
            chunk.copy_(torch.randn(chunk.shape, generator=gen, device=device) * std)
    elif name.endswith("bias"):
        p.zero_()
    else:  # 1-D scales (LayerNorm/GroupNorm/RMSNorm weights) and odd scalars
        p.fill_(1.0)


def _fill_random(
    module: Any, *, device: str, dtype: Any, gen: Any, gain: float, buffer_hook: Any = None
) -> dict[str, Any]:
    """Materialize a meta-device module on ``device`` in ``dtype`` and fill it with seeded noise."""
    import torch

    module.to(dtype=dtype)
    module.to_empty(device=device)
    n_params = 0
    unknown_buffers: list[str] = []
    with torch.no_grad():
        for name, p in module.named_parameters():
            n_params += p.numel()
            fill_param(name, p, device=device, gen=gen, gain=gain)
        for name, b in module.named_buffers():
            if buffer_hook is not None and buffer_hook(name, b):
                continue
            if "position_ids" in name:
                b.copy_(torch.arange(b.shape[-1], device=b.device).expand_as(b))
            else:
                b.zero_()
                unknown_buffers.append(name)
    return {"params": n_params, "zeroed_buffers": unknown_buffers}


def _generator(device: str, seed: int) -> Any:
    import torch

    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return g


def _meta(fn: Any) -> Any:
    from accelerate import init_empty_weights

    with init_empty_weights():
        return fn()


def _clip_models(with_projection_l: bool) -> tuple[Any, Any]:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    cfg_l = CLIPTextConfig(**_CLIP_L)
    cfg_g = CLIPTextConfig(**_CLIP_G)
    cls_l = CLIPTextModelWithProjection if with_projection_l else CLIPTextModel
    te_l = _meta(lambda: cls_l(cfg_l))
    te_g = _meta(lambda: CLIPTextModelWithProjection(cfg_g))
    return te_l, te_g


def _state_to_cpu(sd: dict[str, Any], prefix: str = "", dtype: Any = None) -> dict[str, Any]:
    """CPU copies for safetensors: contiguous, and no two entries sharing storage (tied weights)."""
    out = {}
    seen: set[int] = set()
    for k, v in sd.items():
        t = v.detach()
        if dtype is not None:
            t = t.to(dtype)
        ptr = t.data_ptr()
        if t.device.type != "cpu":
            t = t.to("cpu")
        elif ptr in seen or not t.is_contiguous():
            t = t.contiguous().clone()
        seen.add(ptr)
        out[prefix + k] = t.contiguous()
    return out


def _save(sd: dict[str, Any], path: Path, metadata: dict[str, str] | None = None) -> int:
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file(sd, str(tmp), metadata=metadata)
    return path.stat().st_size


def _valid_safetensors(path: Path) -> bool:
    if not path.is_file() or path.stat().st_size < 16:
        return False
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return len(list(f.keys())) > 0
    except Exception:
        return False


def _build_sdxl(name: str, variant: str, out: Path, device: str, seed: int, gain: float) -> dict[str, Any]:
    import torch
    from diffusers import AutoencoderKL
    from library import model_util, sdxl_model_util, sdxl_original_unet

    info: dict[str, Any] = {}
    g = _generator(device, seed)
    unet = _meta(lambda: sdxl_original_unet.SdxlUNet2DConditionModel())
    te1, te2 = _clip_models(with_projection_l=False)
    vae = _meta(lambda: AutoencoderKL(**model_util.create_vae_diffusers_config()))
    dt = torch.float16
    info["unet"] = _fill_random(unet, device=device, dtype=dt, gen=g, gain=gain)
    info["text_encoder_1"] = _fill_random(te1, device=device, dtype=dt, gen=g, gain=gain)
    info["text_encoder_2"] = _fill_random(te2, device=device, dtype=dt, gen=g, gain=gain)
    info["vae"] = _fill_random(vae, device=device, dtype=dt, gen=g, gain=gain)
    logit_scale = torch.tensor(math.log(100.0), dtype=dt, device=device)
    path = out / SDXL_FILE
    with atomic_path(path) as tmp:  # keeps the .safetensors suffix: sd-scripts picks the format from it
        sdxl_model_util.save_stable_diffusion_checkpoint(
            str(tmp), te1, te2, unet, 0, 0, None, vae, logit_scale, {"lorakit_synth": name}, save_dtype=dt
        )
    return {"checkpoint": str(path), "checkpoint_bytes": path.stat().st_size, "dtype": "float16", "parts": info}


def _build_sd35(name: str, variant: str, out: Path, device: str, seed: int, gain: float) -> dict[str, Any]:
    import torch
    from library import sd3_models

    spec = _SD35[variant]
    depth = int(spec["depth"])
    pmax = int(spec["pos_embed_max_size"])
    hidden = 64 * depth
    params = sd3_models.SD3Params(
        patch_size=2,
        depth=depth,
        num_patches=pmax * pmax,
        pos_embed_max_size=pmax,
        adm_in_channels=2048,
        qk_norm="rms",
        x_block_self_attn_layers=list(spec["x_block_self_attn_layers"]),
        context_embedder_in_features=4096,
        context_embedder_out_features=hidden,
        model_type=str(spec["model_type"]),
    )
    g = _generator(device, seed)
    result: dict[str, Any] = {"parts": {}}
    dt = torch.bfloat16

    def pos_hook(name: str, buf: Any) -> bool:
        if name == "pos_embed":
            pe = sd3_models.get_2d_sincos_pos_embed(hidden, pmax)
            buf.copy_(torch.from_numpy(pe).reshape(buf.shape).to(buf.device, buf.dtype))
            return True
        return False

    mmdit = _meta(lambda: sd3_models.create_sd3_mmdit(params))
    result["parts"]["mmdit"] = _fill_random(mmdit, device=device, dtype=dt, gen=g, gain=gain, buffer_hook=pos_hook)
    vae = _meta(lambda: sd3_models.SDVAE())
    result["parts"]["vae"] = _fill_random(vae, device=device, dtype=dt, gen=g, gain=gain)
    sd = _state_to_cpu(mmdit.state_dict(), "model.diffusion_model.")
    sd.update(_state_to_cpu(vae.state_dict(), "first_stage_model."))
    del mmdit, vae
    ckpt = out / str(spec["file"])
    result["checkpoint"] = str(ckpt)
    result["checkpoint_bytes"] = _save(sd, ckpt, {"lorakit_synth": name})
    result["dtype"] = "bfloat16"
    del sd

    # text encoders (shared between medium and large: reused when present)
    result.update(write_text_encoders(out, ("clip_l", "clip_g", "t5xxl"), result["parts"], device, g, gain))
    return result


TE_FILES = {"clip_l": "clip_l.safetensors", "clip_g": "clip_g.safetensors", "t5xxl": "t5xxl_fp16.safetensors"}


def write_text_encoders(
    out: Path, keys: tuple[str, ...], parts: dict[str, Any], device: str, g: Any, gain: float
) -> dict[str, str]:
    """Write the fp16 text-encoder files named by ``keys`` (plain transformers keys; CLIP-L with
    its projection), reusing valid files already in ``out``; returns ``{key: path}`` and records
    each part in ``parts``. SD 3.5 and Flux.1 share these files."""
    import torch

    result: dict[str, str] = {}
    half = torch.float16
    for key in keys:
        path = out / TE_FILES[key]
        result[key] = str(path)
        if _valid_safetensors(path):
            parts[key] = {"reused": True}
            continue
        if key == "t5xxl":
            from transformers import T5Config, T5EncoderModel

            t5_cfg = T5Config(**_T5_XXL)
            model = _meta(lambda: T5EncoderModel(t5_cfg))  # noqa: B023 - called right here
        else:
            te_l, te_g = _clip_models(with_projection_l=True)
            model = te_l if key == "clip_l" else te_g
        parts[key] = _fill_random(model, device=device, dtype=half, gen=g, gain=gain)
        # clone every entry: tied weights (T5 shared / embed_tokens) become separate tensors
        sd = _state_to_cpu(model.state_dict())
        del model
        parts[key]["bytes"] = _save(sd, path, {"lorakit_synth": key})
        del sd
    return result


def _build_flux(
    name: str, variant: str, out: Path, device: str, seed: int, gain: float, **options: Any
) -> dict[str, Any]:
    from lorakit.synth.flux import build_flux

    return build_flux(out, device, seed, gain, blocks=options.get("blocks"), fp8=bool(options.get("fp8")))


# Synth.builder (lorakit/families/) → the function that writes that layout: (family name,
# Synth.variant, out, device, seed, gain, **Synth.options given) → what synth.json records.
BUILDERS: dict[str, Callable[..., dict[str, Any]]] = {
    "single-file-unet": _build_sdxl,
    "mmdit-split-encoders": _build_sd35,
    "flux": _build_flux,
}


def build(
    family: str,
    out: Path,
    sd_scripts: Path,
    *,
    bpe: Path | None = None,
    seed: int = 0,
    device: str | None = None,
    gain: float = DEFAULT_GAIN,
    blocks: tuple[int, int] | None = None,
    fp8: bool = False,
) -> dict[str, Any]:
    """Build the random-weight model(s) for ``family`` into ``out``; returns what ``synth.json`` holds.

    ``blocks`` / ``fp8``: for a family whose ``Synth.options`` name them (a reduced (double,
    single) depth; the transformer in fp8)."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)}")
    out = Path(out)
    sd_scripts = Path(sd_scripts).resolve()
    if not (sd_scripts / "library").is_dir():
        raise FileNotFoundError(f"{sd_scripts} does not look like an sd-scripts checkout (no library/ folder)")
    if str(sd_scripts) not in sys.path:
        sys.path.insert(0, str(sd_scripts))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    import torch

    dev = device or ("cuda" if torch.cuda.is_available() else "cpu")
    tokenizer_dir = out / "tokenizers"
    layout = families.get(family).synth
    toks = build_tokenizers(tokenizer_dir, t5=layout.t5_tokenizer, bpe=bpe)
    options = {k: v for k, v in (("blocks", blocks), ("fp8", fp8)) if v}
    with torch.inference_mode(False):
        res = BUILDERS[layout.builder](family, layout.variant, out, dev, seed, gain, **options)
    if dev.startswith("cuda"):
        torch.cuda.empty_cache()
    info: dict[str, Any] = {
        "family": family,
        "seed": seed,
        "gain": gain,
        "device": dev,
        "torch": torch.__version__,
        "tokenizer_cache_dir": str(tokenizer_dir),
        "tokenizers": toks,
        "build_seconds": round(time.time() - t0, 1),
        **res,
    }
    # one synth.json per folder, keyed by family (medium and large may share a folder)
    meta_path = out / "synth.json"
    all_info: dict[str, Any] = {}
    if meta_path.is_file():
        try:
            all_info = json.loads(meta_path.read_text())
        except ValueError:
            all_info = {}
    all_info[family + ("-fp8" if fp8 else "")] = info  # an fp8 build sits beside the 16-bit one
    meta_path.write_text(json.dumps(all_info, indent=2))
    return info


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m lorakit.synth.build", description=__doc__.split("\n")[0])
    ap.add_argument("family", choices=FAMILIES)
    ap.add_argument("out", type=Path)
    ap.add_argument("--sd-scripts", type=Path, required=True, help="sd-scripts checkout (has library/)")
    ap.add_argument("--bpe", type=Path, default=None, help=f"CLIP {BPE_NAME} (default: search)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--device", default=None, help="cuda or cpu (default: cuda if available)")
    ap.add_argument("--gain", type=float, default=DEFAULT_GAIN)
    ap.add_argument("--tokenizers-only", action="store_true", help="write only the tokenizer cache")
    ap.add_argument("--blocks", type=int, nargs=2, metavar=("DOUBLE", "SINGLE"), help="flux-dev: reduced depth")
    ap.add_argument("--fp8", action="store_true", help="flux-dev: write the transformer in float8_e4m3fn")
    a = ap.parse_args(argv)
    takes = families.get(a.family).synth.options
    for opt, value in (("blocks", a.blocks), ("fp8", a.fp8)):
        if value and opt not in takes:
            ap.error(f"--{opt} does not apply to {a.family}")
    if a.tokenizers_only:
        toks = build_tokenizers(a.out / "tokenizers", t5=families.get(a.family).synth.t5_tokenizer, bpe=a.bpe)
        print(json.dumps(toks, indent=2))
        return 0
    blocks = (a.blocks[0], a.blocks[1]) if a.blocks else None
    info = build(
        a.family, a.out, a.sd_scripts, bpe=a.bpe, seed=a.seed, device=a.device, gain=a.gain, blocks=blocks, fp8=a.fp8
    )
    print(json.dumps({k: v for k, v in info.items() if k != "parts"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
