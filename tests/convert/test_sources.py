"""sd-scripts TOMLs and launch lines (the shapes of docs/research/kohya-gui-import.md §2-4),
and the CLI path a user takes: import, then `lorakit train --config OUT --dry-run`."""

from __future__ import annotations

import json
from pathlib import Path

from lorakit.convert.api import import_config
from tests.convert.conftest import FIXTURES, dataset

# what an older GUI wrote next to a LoRA (config_lora-*.toml): flat, sorted, falsy values
# removed; LoRA+ ratios and lowvram as top-level keys, which sd-scripts never read (kohya_ss #3520)
OLD_GUI_TOML = """\
bucket_reso_steps = 64
cache_latents = true
caption_extension = ".txt"
enable_bucket = true
epoch = 10
gradient_checkpointing = true
learning_rate = 0.0001
loraplus_lr_ratio = 16
lowvram = true
lr_scheduler = "cosine"
lr_scheduler_num_cycles = 1
max_bucket_reso = 2048
max_data_loader_n_workers = 0
max_train_steps = 1200
min_bucket_reso = 256
mixed_precision = "bf16"
network_alpha = 16
network_args = []
network_dim = 32
network_module = "networks.lora"
noise_offset_type = "Original"
optimizer_args = []
optimizer_type = "AdamW8bit"
output_dir = "D:/loras"
output_name = "my-style"
resolution = "1024,1024"
save_every_n_epochs = 1
save_precision = "fp16"
sdpa = true
seed = 7
text_encoder_lr = [5e-05, 5e-05]
train_batch_size = 2
train_data_dir = "img"
unet_lr = 0.0001
wandb_api_key = "secret"
"""


def _rows(result):  # type: ignore[no-untyped-def]
    return {r.key: r for r in result.rows}


def test_old_gui_toml(tmp_path: Path) -> None:
    path = tmp_path / "config_lora-20240101-120000.toml"
    path.write_text(OLD_GUI_TOML)
    result = import_config(path)
    rows = _rows(result)
    assert rows["loraplus_lr_ratio"].status == "dropped" and "#3520" in rows["loraplus_lr_ratio"].target
    assert rows["lowvram"].status == "dropped"
    assert rows["wandb_api_key"].status == "dropped" and "secret" not in json.dumps(result.full)
    assert rows["epoch"].status == "dropped"  # max_train_steps wins
    t, o = result.full["training"], result.full["optimizer"]
    assert (t["max_steps"], t["epochs"], t["batch_size"], t["attention"], t["seed"]) == (1200, None, 2, "sdpa", 7)
    assert (o["name"], o["lr"], o["unet_lr"], o["text_encoder_lr"], o["scheduler"]) == (
        "adamw8bit",
        1e-4,
        1e-4,
        5e-5,
        "cosine",
    )
    assert result.full["output"]["name"] == "my-style"
    assert result.full["dataset"]["folder"].endswith("img")
    assert not result.imported.blocking()


def test_sections_are_flattened_like_sd_scripts(tmp_path: Path) -> None:
    path = tmp_path / "hand.toml"
    path.write_text(
        "[model_arguments]\nnetwork_dim = 16\n[training_arguments]\nlearning_rate = 3e-4\nmax_train_epochs = 4\n"
    )
    result = import_config(path)
    assert (result.full["network"]["dim"], result.full["optimizer"]["lr"], result.full["training"]["epochs"]) == (
        16,
        3e-4,
        4,
    )


LAUNCH = r"""#!/bin/bash
# my run
accelerate launch --num_cpu_threads_per_process=2 "./sdxl_train_network.py" \
  --pretrained_model_name_or_path="/models/sd_xl_base_1.0.safetensors" \
  --train_data_dir=./img --resolution="1024,1024" --output_name=xl-loha \
  --network_module=lycoris.kohya --network_dim 16 --network_alpha 1 \
  --network_args "algo=loha" "conv_dim=8" "conv_alpha=1" \
  --optimizer_type=Prodigy --learning_r 1.0 --optimizer_args weight_decay=0.05 betas=0.9,0.98 \
  --max_train_epochs 12 --mixed_precision bf16 --save_precision=bf16 --xformers --cache_latents \
  --gradient_checkpointing --noise_offset=-0.0 --log_prefix=xl-loha
"""


def test_bash_launch_line(tmp_path: Path) -> None:
    path = tmp_path / "train.sh"
    path.write_text(LAUNCH)
    result = import_config(path)
    n, o, t = result.full["network"], result.full["optimizer"], result.full["training"]
    assert (n["kind"], n["dim"], n["alpha"], n["conv_dim"], n["conv_alpha"], n["args"]) == ("loha", 16, 1, 8, 1, {})
    assert (o["name"], o["lr"], o["args"]) == ("prodigy", 1.0, {"weight_decay": 0.05, "betas": "0.9,0.98"})
    assert (t["epochs"], t["precision"], t["attention"], t["gradient_checkpointing"]) == (12, "bf16", "xformers", True)
    assert result.full["model"]["checkpoint"] == "/models/sd_xl_base_1.0.safetensors"
    assert _rows(result)["--learning_r"].target == "optimizer.lr"  # argparse's unique prefix
    assert _rows(result)["--log_prefix=xl-loha"].status == "dropped"
    assert not result.imported.blocking()


def test_printed_gui_command_follows_config_file(tmp_path: Path) -> None:
    (tmp_path / "config_lora-1.toml").write_text(OLD_GUI_TOML)
    cmd = tmp_path / "cmd.txt"
    cmd.write_text(
        "/opt/kohya_ss/venv/bin/accelerate launch --dynamo_backend no --mixed_precision fp16 --num_processes 1 "
        "/opt/kohya_ss/sd-scripts/sdxl_train_network.py --config_file config_lora-1 --network_dim 8 --bogus 1\n"
    )
    result = import_config(cmd)
    assert result.full["network"]["dim"] == 8  # the command line wins over the TOML
    assert result.full["optimizer"]["name"] == "adamw8bit"  # from the TOML
    assert [r.target for r in result.imported.blocking()] == ["--bogus is not an argument of sdxl_train_network.py"]


def test_windows_paths_keep_backslashes(tmp_path: Path) -> None:
    path = tmp_path / "run.bat"
    path.write_text(
        'accelerate launch "D:\\kohya\\sdxl_train_network.py" ^\n'
        '  --pretrained_model_name_or_path="D:\\models\\base.safetensors" --network_dim=8 --max_train_steps=100\n'
    )
    result = import_config(path)
    assert result.full["model"]["checkpoint"].endswith("D:\\models\\base.safetensors")


def test_import_then_train_dry_run(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    preset = FIXTURES / "SDXL - LoRA by malcolmrey training v1.0.json"
    res = lorakit("import", str(preset), "-o", "mine.yaml")
    assert res.code == 0, res.err
    assert "mapped" in res.out and "dropped" in res.out and "wrote mine.yaml" in res.out
    res = lorakit("import", str(preset), "-o", "mine.yaml")
    assert res.code == 2 and "mine.yaml exists" in res.err
    res = lorakit("train", "--config", "mine.yaml", "--data", str(dataset(tmp_path)), "--dry-run", "--json")
    assert res.code == 0, res.err
    argv = json.loads(res.out)["argv"]
    for flag in (
        "--network_dim=32",
        "--network_alpha=13",
        "--optimizer_type=AdamW8bit",
        "--learning_rate=0.0001",
        "--max_train_epochs=16",
        "--xformers",
        "--scale_weight_norms=2.5",
        "--min_snr_gamma=5",
        "--save_every_n_epochs=2",
        "--mixed_precision=bf16",
        "--clip_skip=1",
    ):
        assert flag in argv, flag
    assert "--sdpa" not in argv and "--persistent_data_loader_workers" not in argv


def test_json_report(lorakit, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = lorakit("import", str(FIXTURES / "SDXL - LoKR v1.0.json"), "--json", "-o", str(tmp_path / "k.yaml"))
    assert res.code == 0, res.err
    report = json.loads(res.out)
    assert report["source_kind"] == "kohya-gui" and report["family"] == "sdxl"
    assert report["config"]["network"]["kind"] == "lokr"
    assert {"key": "sdxl", "value": True, "status": "dropped"}.items() <= next(
        r for r in report["rows"] if r["key"] == "sdxl"
    ).items()


# an sd-scripts --dataset_config (library/config_util.py's schema): one dataset, two DreamBooth subsets
DATASET_TOML = """\
[general]
caption_extension = ".txt"
shuffle_caption = true
keep_tokens = 1

[[datasets]]
resolution = [1024, 768]
batch_size = 2
enable_bucket = true
bucket_no_upscale = true

  [[datasets.subsets]]
  image_dir = "img/alice"
  num_repeats = 10
  class_tokens = "alc woman"

  [[datasets.subsets]]
  image_dir = "img/bob"
  num_repeats = 5
  class_tokens = "bbo man"
  flip_aug = true
  color_aug = true
"""


def test_gui_config_with_a_dataset_config(tmp_path: Path) -> None:
    (tmp_path / "dataset.toml").write_text(DATASET_TOML)
    data = json.loads((FIXTURES / "SDXL - LoRA AI_Now prodigy v1.0.json").read_text()) | {
        "dataset_config": "dataset.toml"
    }
    (tmp_path / "gui.json").write_text(json.dumps(data))
    result = import_config(tmp_path / "gui.json")
    d, t = result.full["dataset"], result.full["training"]
    assert [(Path(c["folder"]).name, c["repeats"], c["trigger"], c["flip_aug"]) for c in d["concepts"]] == [
        ("alice", 10, "alc woman", None),
        ("bob", 5, "bbo man", True),
    ]
    assert (t["resolution"], t["batch_size"], t["keep_tokens"], t["shuffle_caption"], t["bucket_no_upscale"]) == (
        [1024, 768],
        2,
        1,
        True,
        True,
    )
    assert [r.key for r in result.imported.blocking()] == ["dataset_config: color_aug = True (subset)"]


def test_a_lorakit_command_txt_imports_to_the_same_run(tmp_path: Path) -> None:
    """lorakit's own command.txt (`cd … && ENV=… python -m accelerate.commands.launch …`) next to its
    dataset.toml: the import plans the same command and the same dataset TOML."""
    from lorakit.config.presets import preset_path
    from tests.convert.conftest import plan

    first = plan(preset_path("comic-style"), dataset(tmp_path), tmp_path / "run")
    (tmp_path / "run").mkdir()
    for name, text in first.plan.files().items():
        (tmp_path / "run" / name).write_text(text)
    result = import_config(tmp_path / "run" / "command.txt")
    assert not result.imported.blocking(), result.imported.blocking()
    back = tmp_path / "back.yaml"
    from lorakit.convert.api import to_yaml

    back.write_text(to_yaml(result, tmp_path / "run" / "command.txt"))
    again = plan(back, dataset(tmp_path), tmp_path / "run")
    assert again.plan.argv == first.plan.argv
    assert again.plan.dataset_toml == first.plan.dataset_toml
