"""LaunchPlan: spec + dataset plan + trainer location → the exact argv, the dataset TOML
and the files of a run. A pure function: no clock, no subprocess; the run folder is given.

Dry-run and real run build the plan here, in the same way; only what happens after differs.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from lorakit.config.schema import LYCORIS_KINDS, TrainSpec
from lorakit.dataset.plan import DatasetPlan, StepsMath
from lorakit.kohya.dataset_toml import dataset_toml
from lorakit.kohya.install import Trainer
from lorakit.kohya.model_flags import Flags, model_flags
from lorakit.kohya.tblog import LOGS_DIR

OPTIMIZER_TYPES: dict[str, str] = {
    "adamw": "AdamW",
    "adamw8bit": "AdamW8bit",
    "paged-adamw8bit": "PagedAdamW8bit",
    "adafactor": "Adafactor",
    "prodigy": "Prodigy",
    "dadaptadam": "DAdaptAdam",
    "lion": "Lion",
    "lion8bit": "Lion8bit",
    "sgd": "SGDNesterov",
}
ACCELERATE_LAUNCH = ("-m", "accelerate.commands.launch")
DATASET_TOML = "dataset.toml"
SAMPLE_PROMPTS = "sample_prompts.txt"


@dataclass(frozen=True)
class LaunchPlan:
    argv: list[str]
    cwd: Path  # sd-scripts folder (its `networks`/`library` import from there)
    run_dir: Path
    script: str
    dataset_toml: str
    sample_prompts: str | None
    steps: StepsMath
    env: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    @property
    def trainer_argv(self) -> list[str]:
        """The arguments after the training script (what sd-scripts' parser sees)."""
        return self.argv[self.argv.index(str(self.cwd / self.script)) + 1 :]

    def command_text(self) -> str:
        env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.env.items()))
        cmd = shlex.join(self.argv)
        return f"cd {shlex.quote(str(self.cwd))} && {env + ' ' if env else ''}{cmd}"

    def files(self) -> dict[str, str]:
        """Files the run folder must hold before launch (name → content)."""
        out = {DATASET_TOML: self.dataset_toml, "command.txt": self.command_text() + "\n"}
        if self.sample_prompts is not None:
            out[SAMPLE_PROMPTS] = self.sample_prompts
        return out


def _fmt(v: float) -> str:
    return f"{v:g}"


def _kv(args: dict[str, str | int | float | bool]) -> list[str]:
    out = []
    for k, v in args.items():
        value = ("True" if v else "False") if isinstance(v, bool) else str(v)
        out.append(f"{k}={value}")
    return out


def network_flags(spec: TrainSpec) -> tuple[Flags, list[str]]:
    n = spec.network
    fam = spec.family
    flags: Flags = []
    net_args: list[str] = []
    if n.kind in LYCORIS_KINDS:
        flags.append(("network_module", "lycoris.kohya"))
        net_args.append(f"algo={n.kind}")
    else:
        flags.append(("network_module", fam.lora_module))
    flags += [("network_dim", str(n.dim)), ("network_alpha", _fmt(n.alpha))]
    if n.dropout is not None:
        flags.append(("network_dropout", _fmt(n.dropout)))
    if n.weights is not None:
        flags.append(("network_weights", str(n.weights)))
    if n.dim_from_weights:
        flags.append(("dim_from_weights", None))
    if n.conv_dim is not None and fam.conv_lora:
        net_args.append(f"conv_dim={n.conv_dim}")
        net_args.append(f"conv_alpha={_fmt(n.conv_alpha if n.conv_alpha is not None else 1)}")
    net_args += _kv(n.args)
    return flags, net_args


def optimizer_flags(spec: TrainSpec) -> tuple[Flags, list[str]]:
    o = spec.optimizer
    flags: Flags = [("optimizer_type", OPTIMIZER_TYPES[o.name]), ("learning_rate", _fmt(o.lr))]
    if o.unet_lr is not None:
        flags.append(("unet_lr", _fmt(o.unet_lr)))
    if o.text_encoder_lr is not None and not spec.training.unet_only:
        flags.append(("text_encoder_lr", _fmt(o.text_encoder_lr)))
    flags.append(("lr_scheduler", o.scheduler))
    if o.scheduler_type is not None:
        flags.append(("lr_scheduler_type", o.scheduler_type))
    if o.cycles is not None:
        flags.append(("lr_scheduler_num_cycles", str(o.cycles)))
    if o.warmup_steps:
        flags.append(("lr_warmup_steps", str(o.warmup_steps)))
    elif o.warmup_ratio is not None:  # sd-scripts: a value < 1 is a share of all steps
        flags.append(("lr_warmup_steps", _fmt(o.warmup_ratio)))
    if o.max_grad_norm is not None:
        flags.append(("max_grad_norm", _fmt(o.max_grad_norm)))
    return flags, _kv(o.args)


def training_flags(spec: TrainSpec) -> Flags:
    t, s = spec.training, spec.saving
    flags: Flags = []
    if t.max_steps is not None:
        flags.append(("max_train_steps", str(t.max_steps)))
    else:
        flags.append(("max_train_epochs", str(t.epochs)))
    mixed = "no" if t.precision == "fp32" else t.precision  # sd-scripts/accelerate spell fp32 "no"
    flags += [("mixed_precision", mixed), ("save_precision", s.precision)]
    switches = {
        "full_bf16": t.full_bf16,
        "fp8_base": t.fp8_base,
        "gradient_checkpointing": t.gradient_checkpointing,
        "sdpa": t.attention == "sdpa",
        "xformers": t.attention == "xformers",
        "cache_latents": t.cache_latents,
        "cache_latents_to_disk": t.cache_latents and t.cache_latents_to_disk,
        "cache_text_encoder_outputs": t.cache_text_encoder_outputs,
        "network_train_unet_only": t.unet_only,
        "debiased_estimation_loss": t.debiased_estimation,
    }
    flags += [(name, None) for name, on in switches.items() if on]
    for name, value in (
        ("min_snr_gamma", t.min_snr_gamma),
        ("noise_offset", t.noise_offset or None),
        ("scale_weight_norms", t.scale_weight_norms),
        ("clip_skip", t.clip_skip),
        ("adaptive_noise_scale", t.adaptive_noise_scale),
        ("multires_noise_iterations", t.multires_noise_iterations),
        ("multires_noise_discount", t.multires_noise_discount),
        ("min_timestep", t.min_timestep),
        ("max_timestep", t.max_timestep),
        ("caption_dropout_rate", t.caption_dropout_rate),
        ("max_token_length", t.max_token_length),
    ):
        if value is not None:
            flags.append((name, _fmt(value)))
    flags += [("seed", str(t.seed)), ("max_data_loader_n_workers", str(t.dataloader_workers))]
    if t.dataloader_workers:
        flags.append(("persistent_data_loader_workers", None))
    return flags


def saving_flags(spec: TrainSpec, run_dir: Path) -> Flags:
    s = spec.saving
    flags: Flags = [
        ("output_dir", str(run_dir)),
        ("output_name", spec.output.name),
        ("save_model_as", "safetensors"),
    ]
    if s.every_n_epochs is not None:
        flags.append(("save_every_n_epochs", str(s.every_n_epochs)))
    if s.every_n_steps is not None:
        flags.append(("save_every_n_steps", str(s.every_n_steps)))
    if s.keep_last is not None:
        flags.append(("save_last_n_epochs", str(s.keep_last)))
    if s.save_state:
        flags.append(("save_state", None))
    return flags


def logging_flags(run_dir: Path) -> Flags:
    """Per-step scalars (loss/current, loss/average, lr/*) to TensorBoard event files under
    <run>/logs: what lorakit's loss curve reads (the progress bar prints only a 3-digit running
    mean), and a folder users can open with `tensorboard --logdir`."""
    return [("log_with", "tensorboard"), ("logging_dir", str(run_dir / LOGS_DIR))]


def sample_prompts(spec: TrainSpec) -> str | None:
    sm = spec.sampling
    if not sm.prompts:
        return None
    w, h = spec.training.size
    return "".join(f"{p} --w {w} --h {h} --s {sm.steps}\n" for p in sm.prompts)


def sampling_flags(spec: TrainSpec, run_dir: Path) -> Flags:
    sm = spec.sampling
    if not sm.prompts:
        return []
    flags: Flags = [("sample_prompts", str(run_dir / SAMPLE_PROMPTS)), ("sample_sampler", sm.sampler)]
    if sm.every_n_epochs is not None:
        flags.append(("sample_every_n_epochs", str(sm.every_n_epochs)))
    if sm.every_n_steps is not None:
        flags.append(("sample_every_n_steps", str(sm.every_n_steps)))
    return flags


def accelerate_args(spec: TrainSpec) -> list[str]:
    gpus = spec.training.gpus or []
    args = [
        f"--num_processes={max(1, len(gpus))}",
        "--num_machines=1",
        f"--mixed_precision={'no' if spec.training.precision == 'fp32' else spec.training.precision}",
        "--dynamo_backend=no",
        "--num_cpu_threads_per_process=2",
    ]
    if len(gpus) > 1:
        args.insert(0, "--multi_gpu")
    if gpus:
        args.append("--gpu_ids=" + ",".join(str(g) for g in gpus))
    return args


def render_flags(flags: Flags) -> list[str]:
    return [f"--{name}" if value is None else f"--{name}={value}" for name, value in flags]


def build_launch_plan(spec: TrainSpec, dataset: DatasetPlan, trainer: Trainer, run_dir: Path) -> LaunchPlan:
    fam = spec.family
    net, net_args = network_flags(spec)
    opt, opt_args = optimizer_flags(spec)
    m = spec.model
    head: Flags = [*model_flags(spec)]
    if m.tokenizer_cache_dir is not None:
        head.append(("tokenizer_cache_dir", str(m.tokenizer_cache_dir)))
    head.append(("dataset_config", str(run_dir / DATASET_TOML)))
    argv = [
        trainer.python,
        *ACCELERATE_LAUNCH,
        *accelerate_args(spec),
        str(trainer.sd_scripts / fam.script),
        *render_flags(head + saving_flags(spec, run_dir) + logging_flags(run_dir) + net),
    ]
    if net_args:
        argv += ["--network_args", *net_args]
    argv += render_flags(opt)
    if opt_args:
        argv += ["--optimizer_args", *opt_args]
    if spec.optimizer.scheduler_args:
        argv += ["--lr_scheduler_args", *_kv(spec.optimizer.scheduler_args)]
    argv += render_flags(training_flags(spec) + sampling_flags(spec, run_dir))

    t = spec.training
    steps = dataset.steps(t.batch_size, t.epochs, t.max_steps, n_gpus=len(t.gpus or []) or 1)
    warnings = list(dataset.warnings)
    if len([c for c in dataset.concepts if c.images]) > 1 and t.batch_size > 1:
        warnings.append(
            f"training.batch_size is {t.batch_size} with {len(dataset.concepts)} concepts: a batch mixes "
            "concepts only inside one aspect bucket, so balancing is uneven; the guides use batch 1 for "
            "multi-concept datasets"
        )
    return LaunchPlan(
        argv=argv,
        cwd=trainer.sd_scripts,
        run_dir=run_dir,
        script=fam.script,
        dataset_toml=dataset_toml(spec, dataset),
        sample_prompts=sample_prompts(spec),
        steps=steps,
        # wide COLUMNS: sd-scripts logs through rich, which wraps at 80 columns without a TTY;
        # PCI_BUS_ID: CUDA numbers GPUs as NVML/nvidia-smi do, so --gpus and the locks agree
        env={"PYTHONUNBUFFERED": "1", "COLUMNS": "240", "CUDA_DEVICE_ORDER": "PCI_BUS_ID"},
        warnings=warnings,
    )
