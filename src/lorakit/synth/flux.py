# mypy: disable-error-code="import-not-found, import-untyped"
"""A random-weight Flux.1 [dev] set that sd-scripts' ``flux_train_network.py`` loads.

Files written under OUT (by ``python -m lorakit.synth.build flux-dev OUT --sd-scripts PATH``):

* ``flux1-dev_synth.safetensors``: the transformer, BFL keys without a prefix (``img_in.*``,
  ``double_blocks.N.*``, ``single_blocks.M.*``, ``guidance_in.*`` kept so the file counts as
  dev, not schnell), bf16 (23.8 GB at full depth); with ``--fp8``
  ``flux1-dev-fp8_synth.safetensors`` in ``float8_e4m3fn`` (11.9 GB) instead.
  It is streamed tensor by tensor: the whole model is never held in memory.
* ``ae_synth.safetensors``: the BFL autoencoder (``encoder.*`` / ``decoder.*``), fp32 like the
  published ``ae.safetensors``.
* ``clip_l.safetensors`` / ``t5xxl_fp16.safetensors``: the SD 3.5 builder's files (reused when
  present): Flux loads them as they are.

The pure part (``transformer_layout``, ``ae_layout``, ``lora_modules``, ``param_count``) computes
the key layout from the dev parameters without torch; the tests pin it against the numbers of
docs/research/flux.md and, where torch is installed, against sd-scripts' own classes.
Source of the layout: sd-scripts 48d368fa ``library/flux_models.py`` (``configs["dev"]``,
``Flux``, ``AutoEncoder``) and ``networks/lora_flux.py`` (target modules, names).
"""

from __future__ import annotations

import json
import math
import queue
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from lorakit.families.flux import FLUX_DEV
from lorakit.fs import atomic_path

TRANSFORMER_FILE = "flux1-dev_synth.safetensors"
TRANSFORMER_FP8_FILE = "flux1-dev-fp8_synth.safetensors"  # beside the bf16 one: both share the other files
AE_FILE = "ae_synth.safetensors"


@dataclass(frozen=True)
class FluxDims:
    """``FluxParams`` of ``configs["dev"]`` (sd-scripts library/flux_models.py)."""

    in_channels: int = 64
    vec_in_dim: int = 768
    context_in_dim: int = 4096
    hidden_size: int = 3072
    mlp_ratio: float = 4.0
    num_heads: int = 24
    depth: int = 19
    depth_single_blocks: int = 38
    guidance_embed: bool = True

    @property
    def mlp_hidden(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads


@dataclass(frozen=True)
class AEDims:
    """``AutoEncoderParams`` of ``configs["dev"]`` (the same for schnell)."""

    in_channels: int = 3
    ch: int = 128
    out_ch: int = 3
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 16


DEV = FluxDims()
DEV_AE = AEDims()

# bytes of the files written beside the transformer (fp32 AE; fp16 CLIP-L with projection, T5-XXL)
AE_BYTES = 83_819_683 * 4
TE_BYTES = {"clip_l": 123_650_304 * 2, "t5xxl": 4_762_310_656 * 2}

Shape = tuple[int, ...]


def _linear(name: str, n_in: int, n_out: int, bias: bool = True) -> Iterator[tuple[str, Shape]]:
    yield f"{name}.weight", (n_out, n_in)
    if bias:
        yield f"{name}.bias", (n_out,)


def _block_linears(d: FluxDims) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
    """(name inside the block, in, out) of every Linear of a double and of a single block."""
    h, mlp = d.hidden_size, d.mlp_hidden
    double: list[tuple[str, int, int]] = []
    for side in ("img", "txt"):
        double += [
            (f"{side}_mod.lin", h, 6 * h),
            (f"{side}_attn.qkv", h, 3 * h),
            (f"{side}_attn.proj", h, h),
            (f"{side}_mlp.0", h, mlp),
            (f"{side}_mlp.2", mlp, h),
        ]
    single = [("linear1", h, 3 * h + mlp), ("linear2", h + mlp, h), ("modulation.lin", h, 3 * h)]
    return double, single


def transformer_layout(dims: FluxDims = DEV) -> dict[str, Shape]:
    """Every tensor of the BFL transformer state dict, in ``Flux.named_parameters()`` order."""
    d, h = dims, dims.hidden_size
    double, single = _block_linears(d)
    out: dict[str, Shape] = {}
    out.update(_linear("img_in", d.in_channels, h))
    out.update(_linear("time_in.in_layer", 256, h))
    out.update(_linear("time_in.out_layer", h, h))
    out.update(_linear("vector_in.in_layer", d.vec_in_dim, h))
    out.update(_linear("vector_in.out_layer", h, h))
    if d.guidance_embed:
        out.update(_linear("guidance_in.in_layer", 256, h))
        out.update(_linear("guidance_in.out_layer", h, h))
    out.update(_linear("txt_in", d.context_in_dim, h))
    norms = [f"{which}_norm.scale" for which in ("query", "key")]
    for n in range(d.depth):
        for name, n_in, n_out in double:
            out.update(_linear(f"double_blocks.{n}.{name}", n_in, n_out))
            if name.endswith("_attn.qkv"):
                for norm in norms:
                    out[f"double_blocks.{n}.{name[: -len('qkv')]}norm.{norm}"] = (d.head_dim,)
    for m in range(d.depth_single_blocks):
        for name, n_in, n_out in single:
            out.update(_linear(f"single_blocks.{m}.{name}", n_in, n_out))
            if name == "linear2":
                for norm in norms:
                    out[f"single_blocks.{m}.norm.{norm}"] = (d.head_dim,)
    out.update(_linear("final_layer.linear", h, d.in_channels))
    out.update(_linear("final_layer.adaLN_modulation.1", h, 2 * h))
    return out


def _conv(name: str, n_in: int, n_out: int, k: int) -> Iterator[tuple[str, Shape]]:
    yield f"{name}.weight", (n_out, n_in, k, k)
    yield f"{name}.bias", (n_out,)


def _norm(name: str, c: int) -> Iterator[tuple[str, Shape]]:
    yield f"{name}.weight", (c,)
    yield f"{name}.bias", (c,)


def _resnet(name: str, c_in: int, c_out: int) -> Iterator[tuple[str, Shape]]:
    yield from _norm(f"{name}.norm1", c_in)
    yield from _conv(f"{name}.conv1", c_in, c_out, 3)
    yield from _norm(f"{name}.norm2", c_out)
    yield from _conv(f"{name}.conv2", c_out, c_out, 3)
    if c_in != c_out:
        yield from _conv(f"{name}.nin_shortcut", c_in, c_out, 1)


def _mid(name: str, c: int) -> Iterator[tuple[str, Shape]]:
    yield from _resnet(f"{name}.block_1", c, c)
    yield from _norm(f"{name}.attn_1.norm", c)
    for part in ("q", "k", "v", "proj_out"):
        yield from _conv(f"{name}.attn_1.{part}", c, c, 1)
    yield from _resnet(f"{name}.block_2", c, c)


def ae_layout(ae: AEDims = DEV_AE) -> dict[str, Shape]:
    """Every tensor of the BFL autoencoder state dict (``encoder.*`` then ``decoder.*``)."""
    out: dict[str, Shape] = {}
    levels = len(ae.ch_mult)
    out.update(_conv("encoder.conv_in", ae.in_channels, ae.ch, 3))
    c_in = ae.ch
    for i in range(levels):
        c_in, c_out = ae.ch * (1, *ae.ch_mult)[i], ae.ch * ae.ch_mult[i]
        for b in range(ae.num_res_blocks):
            out.update(_resnet(f"encoder.down.{i}.block.{b}", c_in, c_out))
            c_in = c_out
        if i != levels - 1:
            out.update(_conv(f"encoder.down.{i}.downsample.conv", c_in, c_in, 3))
    out.update(_mid("encoder.mid", c_in))
    out.update(_norm("encoder.norm_out", c_in))
    out.update(_conv("encoder.conv_out", c_in, 2 * ae.z_channels, 3))
    c_in = ae.ch * ae.ch_mult[-1]
    out.update(_conv("decoder.conv_in", ae.z_channels, c_in, 3))
    out.update(_mid("decoder.mid", c_in))
    up: dict[int, dict[str, Shape]] = {}
    for i in reversed(range(levels)):  # built from the bottom, stored as up[i]
        level: dict[str, Shape] = {}
        c_out = ae.ch * ae.ch_mult[i]
        for b in range(ae.num_res_blocks + 1):
            level.update(_resnet(f"decoder.up.{i}.block.{b}", c_in, c_out))
            c_in = c_out
        if i != 0:
            level.update(_conv(f"decoder.up.{i}.upsample.conv", c_in, c_in, 3))
        up[i] = level
    for i in range(levels):
        out.update(up[i])
    out.update(_norm("decoder.norm_out", c_in))
    out.update(_conv("decoder.conv_out", c_in, ae.out_ch, 3))
    return out


def lora_modules(dims: FluxDims = DEV) -> dict[str, tuple[int, int]]:
    """The ``networks.lora_flux`` modules at its defaults (train_blocks=all, unet only):
    ``lora_unet_<module path with _>`` -> (in, out), every Linear of every double and single block."""
    double, single = _block_linears(dims)
    out: dict[str, tuple[int, int]] = {}
    for n in range(dims.depth):
        for name, n_in, n_out in double:
            out["lora_unet_" + f"double_blocks.{n}.{name}".replace(".", "_")] = (n_in, n_out)
    for m in range(dims.depth_single_blocks):
        for name, n_in, n_out in single:
            out["lora_unet_" + f"single_blocks.{m}.{name}".replace(".", "_")] = (n_in, n_out)
    return out


def param_count(layout: dict[str, Shape]) -> int:
    return sum(math.prod(s) for s in layout.values())


# --------------------------------------------------------------------------- streamed safetensors

# safetensors' dtype names and sizes in bytes (format: 8-byte little-endian header length, a JSON
# header {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, then the raw data)
_ST_DTYPES = {"bfloat16": ("BF16", 2), "float16": ("F16", 2), "float32": ("F32", 4), "float8_e4m3fn": ("F8_E4M3", 1)}


def safetensors_header(
    layout: dict[str, Shape], dtype: str, metadata: dict[str, str] | None = None
) -> tuple[bytes, int]:
    """The header bytes (length prefix included, padded to 8) of a file holding ``layout`` in
    ``dtype`` in that order, and the size of the data that follows."""
    code, size = _ST_DTYPES[dtype]
    header: dict[str, Any] = {"__metadata__": dict(metadata)} if metadata else {}
    offset = 0
    for name, shape in layout.items():
        n = math.prod(shape) * size
        header[name] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw, offset


def write_streamed(
    path: Path,
    layout: dict[str, Shape],
    dtype: str,
    produce: Callable[[str, Shape], Any],
    metadata: dict[str, str] | None = None,
) -> int:
    """Write a safetensors file tensor by tensor: ``produce(name, shape)`` returns a contiguous
    CPU tensor of ``dtype``; a writer thread puts it on disk while the next one is made."""
    head, data_len = safetensors_header(layout, dtype, metadata)
    pending: queue.Queue[Any] = queue.Queue(maxsize=4)
    failure: list[BaseException] = []

    def writer(f: BinaryIO) -> None:
        while (item := pending.get()) is not None:
            if not failure:
                try:
                    f.write(memoryview(item.reshape(-1).view(_uint8()).numpy()))
                except BaseException as exc:  # re-raised in the producing thread
                    failure.append(exc)

    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(head)
        t = threading.Thread(target=writer, args=(f,), daemon=True)
        t.start()
        try:
            for name, shape in layout.items():
                if failure:
                    break
                tensor = produce(name, shape)
                if tuple(tensor.shape) != shape or str(tensor.dtype).removeprefix("torch.") != dtype:
                    raise ValueError(f"{name}: made {tuple(tensor.shape)} {tensor.dtype}, expected {shape} {dtype}")
                pending.put(tensor)
        finally:
            pending.put(None)
            t.join()
        if failure:
            raise failure[0]
        written = f.tell()
    if written != len(head) + data_len:
        raise OSError(f"{path}: wrote {written} bytes, expected {len(head) + data_len}")
    return path.stat().st_size


def _uint8() -> Any:
    import torch

    return torch.uint8


# --------------------------------------------------------------------------- the builder


def _check_against_sd_scripts(model: Any, layout: dict[str, Shape], what: str) -> None:
    """The pure layout must be the meta model's: a mismatch means sd-scripts changed under us."""
    got = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    if got != layout:
        missing = sorted(set(layout) - set(got))[:3]
        extra = sorted(set(got) - set(layout))[:3]
        diff = sorted(k for k in set(got) & set(layout) if got[k] != layout[k])[:3]
        raise RuntimeError(f"{what}: sd-scripts' layout differs (missing {missing}, extra {extra}, shapes {diff})")


def _check_free_space(out: Path, layout: dict[str, Shape], dtype: str, text_encoders: tuple[str, ...]) -> None:
    """Refuse before writing when ``out`` cannot hold the set (the full bf16 set is ~34 GB)."""
    import shutil

    from lorakit.synth.build import TE_FILES, _valid_safetensors

    _, data = safetensors_header(layout, dtype)
    need = data + AE_BYTES + sum(TE_BYTES[k] for k in text_encoders if not _valid_safetensors(out / TE_FILES[k]))
    free = shutil.disk_usage(out).free
    if free < need * 1.01:
        raise OSError(f"the flux-dev set needs {need / 1e9:.1f} GB free in {out}, which has {free / 1e9:.1f} GB")


def build_flux(
    out: Path,
    device: str,
    seed: int,
    gain: float,
    *,
    blocks: tuple[int, int] | None = None,
    fp8: bool = False,
    text_encoders: tuple[str, ...] = ("clip_l", "t5xxl"),
) -> dict[str, Any]:
    """Write the Flux.1 [dev] set into ``out`` (sd-scripts' ``library`` must be importable).

    ``blocks``: (double, single) depth for a small test model (sd-scripts reads the depth from
    the file); ``fp8``: the transformer in ``float8_e4m3fn`` (the "Loaded fp8 FLUX model" path);
    ``text_encoders``: which of the shared full-size files to write (a CPU check leaves out T5)."""
    import torch
    from library import flux_models

    from lorakit.synth.build import (
        _fill_random,
        _generator,
        _meta,
        _save,
        _state_to_cpu,
        fill_param,
        write_text_encoders,
    )

    depth, single = blocks if blocks is not None else (DEV.depth, DEV.depth_single_blocks)
    if depth < 1 or single < 1:
        raise ValueError(f"Flux needs at least one double and one single block, got {depth} and {single}")
    dims = FluxDims(depth=depth, depth_single_blocks=single)
    spec = flux_models.configs["dev"]
    params = flux_models.FluxParams(**{**vars(spec.params), "depth": depth, "depth_single_blocks": single})
    layout = transformer_layout(dims)
    _check_against_sd_scripts(_meta(lambda: flux_models.Flux(params)), layout, "Flux transformer")

    ckpt = out / (TRANSFORMER_FP8_FILE if fp8 else TRANSFORMER_FILE)
    dtype_name = "float8_e4m3fn" if fp8 else "bfloat16"
    _check_free_space(out, layout, dtype_name, text_encoders)

    g = _generator(device, seed)
    result: dict[str, Any] = {"parts": {}, "blocks": [depth, single]}
    save_dtype = torch.float8_e4m3fn if fp8 else torch.bfloat16

    def produce(name: str, shape: Shape) -> Any:
        t = torch.empty(shape, dtype=torch.bfloat16, device=device)
        with torch.no_grad():
            fill_param(name, t, device=device, gen=g, gain=gain)
        return t.to(save_dtype).cpu()

    meta = {"lorakit_synth": FLUX_DEV.name, "blocks": f"{depth},{single}"}
    result["checkpoint"] = str(ckpt)
    result["checkpoint_bytes"] = write_streamed(ckpt, layout, dtype_name, produce, meta)
    result["dtype"] = dtype_name
    result["parts"]["transformer"] = {"params": param_count(layout), "tensors": len(layout)}

    ae = _meta(lambda: flux_models.AutoEncoder(spec.ae_params))
    _check_against_sd_scripts(ae, ae_layout(), "Flux AE")
    result["parts"]["ae"] = _fill_random(ae, device=device, dtype=torch.float32, gen=g, gain=gain)
    sd = _state_to_cpu(ae.state_dict())
    del ae
    ae_path = out / AE_FILE
    result["ae"] = str(ae_path)
    result["parts"]["ae"]["bytes"] = _save(sd, ae_path, {"lorakit_synth": "flux-ae"})
    del sd

    result.update(write_text_encoders(out, text_encoders, result["parts"], device, g, gain))
    return result
