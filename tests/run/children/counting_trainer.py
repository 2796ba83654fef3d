"""A stand-in trainer that counts steps, names files and resumes the way sd-scripts 48d368fa's
train_network.py does (read there: the ``initial_step`` / ``epoch_to_start`` /
``global_step = initial_step`` block before the training loop, ``get_step_ckpt_name``,
``save_and_remove_state_stepwise``, the train_state.json save/load hooks), printing its log
lines in the shapes the recorded real logs have (tests/fixtures/sdscripts/).

Not a replay: a resume's behaviour depends on the flags lorakit passes, so this follows them.
What it reproduces on purpose is sd-scripts' own counting, the bug included (after skipping
whole epochs ``global_step`` is only ``S mod L``: kohya-ss/sd-scripts#1406), which is what made
a real resumed run overwrite its step-10/20 checkpoints on the H200.

Flags read: --output_dir --output_name (last one wins, as with argparse) --max_train_steps
--save_every_n_steps --save_state --resume --initial_step --skip_until_initial_step.
Environment: FAKE_STEPS_PER_EPOCH (L), FAKE_STOP_AFTER=k (exit 130 after k steps of this
launch, as an interrupted sd-scripts does), FAKE_ARGV=path (append argv as JSON).
"""

from __future__ import annotations

import json
import math
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_trainer import write_lora


def flag(argv: list[str], name: str) -> str | None:
    value = None
    for a in argv:
        if a == f"--{name}":
            value = ""
        elif a.startswith(f"--{name}="):
            value = a.split("=", 1)[1]
    return value


def log(message: str, source: str = "train_network.py:946") -> None:
    print(f"2026-11-23 20:55:08 INFO     {message}    {source}", flush=True)


def main() -> int:
    argv = sys.argv[1:]
    if os.environ.get("FAKE_ARGV"):
        with open(os.environ["FAKE_ARGV"], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(argv) + "\n")
    out = Path(flag(argv, "output_dir") or ".")
    name = flag(argv, "output_name") or "lora"
    max_steps = int(flag(argv, "max_train_steps") or 0)
    every = int(flag(argv, "save_every_n_steps") or 0)
    save_state = flag(argv, "save_state") is not None
    per_epoch = int(os.environ["FAKE_STEPS_PER_EPOCH"])
    stop_after = int(os.environ.get("FAKE_STOP_AFTER", "0"))
    dim, alpha = int(flag(argv, "network_dim") or 4), flag(argv, "network_alpha") or "1"
    unet_only = flag(argv, "network_train_unet_only") is not None
    epochs = math.ceil(max_steps / per_epoch)

    steps_from_state = None
    resume = flag(argv, "resume")
    if resume:
        log(f"resume training from local state: {resume}", "train_util.py:4777")
        data = json.loads((Path(resume) / "train_state.json").read_text(encoding="utf-8"))
        steps_from_state = int(data["current_step"])
        log(f"load train state from {resume}/train_state.json: {data}", "train_network.py:969")
    initial_step = 0
    if flag(argv, "initial_step") is not None:
        initial_step = int(flag(argv, "initial_step") or 0)
    elif steps_from_state is not None:
        initial_step = steps_from_state
    epoch_to_start = 0
    if initial_step > 0:
        epoch_to_start = initial_step // per_epoch
        if flag(argv, "skip_until_initial_step") is None:
            initial_step = 0  # only the epoch number is skipped
    print(f"  num batches per epoch / 1epochのバッチ数: {per_epoch}", flush=True)
    print(f"  total optimization steps / 学習ステップ数: {max_steps}", flush=True)
    global_step = 0
    if initial_step > 0:
        for _ in range(epoch_to_start):
            initial_step -= per_epoch
        global_step = initial_step  # sd-scripts 48d368fa: the remainder, not the state's step
    bar_total = max_steps - initial_step
    done = 0
    sys.stdout.write(f"steps:   0%|          | 0/{bar_total} [00:00<?, ?it/s]\r")
    for epoch in range(epoch_to_start, epochs):
        print(f"\nepoch {epoch + 1}/{epochs}\n", flush=True)
        for _batch in range(per_epoch):
            if initial_step > 0:
                initial_step -= 1
                continue
            global_step += 1
            done += 1
            sys.stdout.write(f"steps:  50%|█████     | {done}/{bar_total} [00:01<00:01,  0.50s/it, avr_loss=0.1]\r")
            sys.stdout.flush()
            if every and global_step % every == 0:
                ckpt = out / f"{name}-step{global_step:08d}.safetensors"
                print(f"\nsaving checkpoint: {ckpt}", flush=True)
                write_lora(ckpt, dim, alpha, "networks.lora", unet_only)
                if save_state:
                    state = out / f"{name}-step{global_step:08d}-state"
                    state.mkdir(exist_ok=True)
                    log(f"save train state to {state}/train_state.json at epoch {epoch + 1} step {global_step}")
                    (state / "train_state.json").write_text(
                        json.dumps({"current_epoch": epoch + 1, "current_step": global_step}), encoding="utf-8"
                    )
            if stop_after and done >= stop_after:
                print("\nKeyboardInterrupt", flush=True)
                return 130
            if global_step >= max_steps:
                break
        if global_step >= max_steps:
            break
    final = out / f"{name}.safetensors"
    print(f"\nsaving checkpoint: {final}", flush=True)
    write_lora(final, dim, alpha, "networks.lora", unet_only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
