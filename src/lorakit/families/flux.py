"""Flux.1 [dev]: flux_train_network.py with networks.lora_flux, a transformer file plus CLIP-L,
T5-XXL and the autoencoder (ae), block swap over unlike double and single blocks.

Sources (docs/research/flux.md has the file:line of each): sd-scripts 48d368fa
`library/flux_models.py` (`configs["dev"]`: hidden 3072, 24 heads, mlp 12288, 19 double + 38
single blocks; `enable_block_swap`: N blocks put N//2 double and 2·(N − N//2) single blocks on the
CPU, at most 17 and 36 of them, so N ≤ 35), `library/flux_train_utils.py` (the Flux flags and their
choices), `networks/lora_flux.py` (the adapted layers: 10 per double block, 3 per single block,
304 modules at the defaults), `flux_train_network.py` (blocks_to_swap and
cpu_offload_checkpointing refused together). Parameter counts are computed from those shapes
(11,901,408,320 for the transformer) and match the published 11.9 B / 23.8 GB bf16 file.
"""

from __future__ import annotations

from lorakit.families.arch import CLIP_L_PARAMS, CLIP_L_TE_LINEARS, T5XXL_PARAMS, Arch, Linear
from lorakit.families.base import Estimator, ModelFamily, ModelFile, OptionFlag, Swap, Synth
from lorakit.families.comfy import FamilyGraph, Loader

HIDDEN, MLP, HEADS = 3072, 12288, 24
DOUBLE, SINGLE = 19, 38
IMAGE_TOKENS = 1e6 / 16**2  # 1/8 latent packed 2x2: one token per 16x16 pixels
TEXT_TOKENS = 512  # T5 tokens for dev (t5xxl_max_token_length)
AE_PARAMS = 83_819_683

# networks.lora_flux's layers, per block (modulation runs on one vector per image: ~0 tokens)
_DOUBLE_STREAM = (
    Linear(HIDDEN, 6 * HIDDEN, 0.0, 1),  # {img,txt}_mod.lin
    Linear(HIDDEN, 3 * HIDDEN, 1.0, 1),  # {img,txt}_attn.qkv
    Linear(HIDDEN, HIDDEN, 1.0, 1),  # {img,txt}_attn.proj
    Linear(HIDDEN, MLP, 1.0, 1),  # {img,txt}_mlp.0
    Linear(MLP, HIDDEN, 1.0, 1),  # {img,txt}_mlp.2
)


def _linears() -> tuple[Linear, ...]:
    out: list[Linear] = []
    for stream_tokens in (IMAGE_TOKENS, float(TEXT_TOKENS)):  # img_* then txt_* layers
        for lin in _DOUBLE_STREAM:
            tokens = stream_tokens if lin.tokens_per_mpix else 0.0
            out.append(Linear(lin.fan_in, lin.fan_out, tokens, DOUBLE))
    joint = IMAGE_TOKENS + TEXT_TOKENS  # single blocks run on the joined sequence
    out += [
        Linear(HIDDEN, 3 * HIDDEN + MLP, joint, SINGLE),  # linear1 (qkv + mlp in)
        Linear(HIDDEN + MLP, HIDDEN, joint, SINGLE),  # linear2 (attn out + mlp out)
        Linear(HIDDEN, 3 * HIDDEN, 0.0, SINGLE),  # modulation.lin
    ]
    return tuple(out)


_LINEARS = _linears()
DOUBLE_BLOCK_PARAMS = 339_831_296  # weights + biases + norms of one double block
SINGLE_BLOCK_PARAMS = 141_591_808
TRANSFORMER_PARAMS = DOUBLE * DOUBLE_BLOCK_PARAMS + SINGLE * SINGLE_BLOCK_PARAMS + 64_124_992  # + embedders, final


def swapped_params(n: int) -> float:
    """sd-scripts' Flux.enable_block_swap: N//2 double and 2·(N − N//2) single blocks go to the CPU."""
    return (n // 2) * DOUBLE_BLOCK_PARAMS + 2 * (n - n // 2) * SINGLE_BLOCK_PARAMS


_ARCH = Arch(
    family="flux-dev",
    denoiser_params=TRANSFORMER_PARAMS,
    vae_params=AE_PARAMS,
    text_encoder_params=(("clip_l", CLIP_L_PARAMS), ("t5xxl", T5XXL_PARAMS)),
    trainable_text_encoders=("clip_l",),  # T5 only with network_args train_t5xxl (not exposed)
    linears=_LINEARS,
    convs=(),
    te_linears=CLIP_L_TE_LINEARS,
    depth=DOUBLE + SINGLE,
    latent_channels=16,
    attentions=((HEADS, IMAGE_TOKENS, TEXT_TOKENS, DOUBLE + SINGLE),),
)

# ComfyUI (nodes.py at a125cd84): the BFL transformer through UNETLoader, CLIP-L + T5 through
# DualCLIPLoader type "flux", the AE through VAELoader; cfg 1 with FluxGuidance 3.5 (its examples)
_COMFY = FamilyGraph(
    (
        Loader(
            "UNETLoader", "diffusion_models", ("unet_name",), ("checkpoint",), {"MODEL": 0}, {"weight_dtype": "default"}
        ),
        Loader(
            "DualCLIPLoader",
            "text_encoders",
            ("clip_name1", "clip_name2"),
            ("clip_l", "t5xxl"),
            {"CLIP": 0},
            {"type": "flux"},
        ),
        Loader("VAELoader", "vae", ("vae_name",), ("ae",), {"VAE": 0}),
    ),
    "EmptySD3LatentImage",
    1.0,
    "euler",
    "simple",
    guidance=3.5,
)

FLUX_DEV = ModelFamily(
    name="flux-dev",
    display="Flux.1 D",
    line="Flux.1",
    script="flux_train_network.py",
    lora_module="networks.lora_flux",
    lycoris_kinds=frozenset(),  # LyCORIS' Flux path is untested here: LoRA only
    model_files=(
        ModelFile("checkpoint", "pretrained_model_name_or_path", True),
        ModelFile("clip_l", "clip_l", True),
        ModelFile("t5xxl", "t5xxl", True),
        ModelFile("ae", "ae", True),
    ),
    option_flags=(
        OptionFlag("training.blocks_to_swap", "blocks_to_swap", switch=False),
        OptionFlag("training.cpu_offload_checkpointing", "cpu_offload_checkpointing", switch=True),
        OptionFlag("training.guidance_scale", "guidance_scale", switch=False),
        OptionFlag("training.timestep_sampling", "timestep_sampling", switch=False),
        OptionFlag("training.discrete_flow_shift", "discrete_flow_shift", switch=False),
        OptionFlag("training.model_prediction_type", "model_prediction_type", switch=False),
        OptionFlag("training.apply_t5_attn_mask", "apply_t5_attn_mask", switch=True),
    ),
    arch=_ARCH,
    # activations: set so the flux-dev preset's estimate meets its one H200 run (16.73 GiB peak,
    # fp8 base + GC, bs 1, 1024²; gpu/data/speed_measurements_flux.json) — the VRAM fit leaves fp8
    # rows out, so this prior is the Flux number until runs without fp8 are measured;
    # linears hold ~88 % of the forward FLOPs (attention over 4608 tokens the rest)
    estimator=Estimator(act_gib_per_mpix=21.0, linear_flop_share=0.88),
    synth=Synth(builder="flux", t5_tokenizer=True, options=frozenset({"blocks", "fp8"})),
    comfy=_COMFY,
    denoiser_kind="mmdit",
    denoiser_label="Flux DiT",
    swap=Swap(35, swapped_params, conflicts=("cpu_offload_checkpointing",)),
    checkpoint_word="flux",
    measurement_words=("flux", "flux1", "flux.1"),
    companions_problem="Flux.1 needs CLIP-L, T5-XXL and its autoencoder",
    companions_fix="set model.clip_l, model.t5xxl and model.ae (ae.safetensors) to the files",
)
