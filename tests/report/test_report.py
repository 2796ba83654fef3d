"""`lorakit report RUN`: report.png / samples.png / report.html from a small events.jsonl."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lorakit.errors import LorakitError
from lorakit.events import (
    Checkpoint,
    DatasetSummary,
    EpochStarted,
    ErrorEvent,
    EventLog,
    Finished,
    Progress,
    Sample,
    Started,
    WarningEvent,
)
from lorakit.report.build import build_report, grid_layout
from lorakit.report.summary import steady_s_per_step, summarize
from lorakit.run.folder import write_state

T0 = 1_795_000_000.0
ARGV = ["python", "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes=2", "x/sdxl_train_network.py"]


def write_run(run_dir: Path, *, samples: bool = True, finished: bool = True) -> Path:
    """A 20-step run: 10 s of warm-up, then 0.5 s/step; batch 2 on 2 GPUs; two checkpoints."""
    run_dir.mkdir(parents=True)
    write_state(run_dir, {"status": "done", "name": "comic", "preset": "comic-style"})
    with EventLog(run_dir / "events.jsonl") as log:
        log.append(Started(t=T0, run_dir=str(run_dir), argv=ARGV, pid=123, total_steps=20))
        log.append(
            DatasetSummary(t=T0 + 1, images_x_repeats=40, batches_per_epoch=20, epochs=2, batch_size=2, total_steps=20)
        )
        for epoch in (1, 2):
            log.append(EpochStarted(t=T0 + 2, epoch=epoch, total=2))
            for step in range(10 * (epoch - 1) + 1, 10 * epoch + 1):
                elapsed = 10.0 + 0.5 * (step - 1) if step > 1 else 10.0
                loss = 0.2 - 0.005 * step
                log.append(
                    Progress(
                        t=T0 + 5 + elapsed, step=step, total=20, loss=loss, avr_loss=loss + 0.01,
                        s_per_step=0.5, elapsed_s=elapsed,
                    )
                )  # fmt: skip
            log.append(Checkpoint(t=T0 + 6 + 10 * epoch, path=str(run_dir / f"comic-00000{epoch}.safetensors"),
                                  step=10 * epoch, epoch=epoch))  # fmt: skip
        log.append(WarningEvent(t=T0 + 20, code="slow", message="steady s/step is high"))
        if samples:
            sample_dir = run_dir / "sample"
            sample_dir.mkdir()
            from PIL import Image

            for step in (10, 20):
                for prompt in (0, 1):
                    p = sample_dir / f"comic_{step:06d}_{prompt:02d}_20261123120000.png"
                    Image.new("RGB", (512, 384), (40 * prompt + 100, step * 5, 80)).save(p)
                    log.append(Sample(t=T0 + 21, path=str(p)))
        if finished:
            log.append(Finished(t=T0 + 30, status="done", exit_code=0, duration_s=125.0,
                                lora=str(run_dir / "comic.safetensors")))  # fmt: skip
    with (run_dir / "events.jsonl").open("a") as fh:  # a newer writer's extra keys; then a torn line
        fh.write(json.dumps({"t": T0 + 31, "type": "gpu", "peak_vram_gib": {"0": 17.25, "1": 17.5}}) + "\n")
        fh.write(json.dumps({"t": T0 + 31, "type": "finished", "peak_vram_gib": {"0": 18.0}})[:-3] + "\n")
        fh.write('{"t": 1, "type": "progr')
    return run_dir


def test_summary_figures(tmp_path: Path) -> None:
    run = write_run(tmp_path / "runs" / "comic-20261123-120000")
    files = build_report(run)
    s = files.summary
    assert (s.name, s.preset, s.status, s.exit_code) == ("comic", "comic-style", "done", 0)
    assert (s.step, s.total_steps, s.epochs, s.duration_s) == (20, 20, 2, 125.0)
    assert s.s_per_step == pytest.approx(0.5)  # warm-up (10 s before step 1) excluded
    assert (s.batch_size, s.n_gpus) == (2, 2)
    assert s.images_per_s == pytest.approx(8.0)  # 2 × 2 images per 0.5 s
    assert s.final_loss == pytest.approx(0.2 - 0.1 + 0.01)
    assert s.avg_loss == pytest.approx(sum(0.2 - 0.005 * i for i in range(1, 21)) / 20)
    assert [(c.step, c.epoch) for c in s.checkpoints] == [(10, 1), (20, 2)]
    assert dict(s.peak_vram_gib) == {"0": 17.25, "1": 17.5}
    assert s.warnings == ("steady s/step is high",)


def test_cli_writes_png_html_and_samples_grid(tmp_path: Path) -> None:
    run = write_run(tmp_path / "runs" / "comic-20261123-120000")
    (run / "train.log").write_text("steps: 100%|#####| 999/999 avr_loss=9.99\n")  # never read
    r = subprocess.run(
        [sys.executable, "-m", "lorakit", "report", "last", "--runs-dir", str(tmp_path / "runs"), "--json"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["step"] == 20 and out["report_html"] == str(run / "report.html")
    from PIL import Image

    with Image.open(run / "report.png") as im:
        assert im.format == "PNG" and im.size == (900, 450)
    with Image.open(run / "samples.png") as im:
        # 2 sampling steps (rows) × 2 prompts (columns) of 256 px thumbnails, plus the label column
        assert im.size == (110 + 2 * 256, 2 * 256)
        # step 10 / prompt 1 sample colour lands in row 0, column 1 (a 512×384 image → 256×192)
        assert im.getpixel((110 + 256 + 128, 128)) == (140, 50, 80)
    page = (run / "report.html").read_text()
    for text in (
        "<th>preset</th><td>comic-style</td>",
        "<th>steps</th><td>20 / 20, 2 epochs</td>",
        "<th>time</th><td>2m 05s</td>",
        "<th>s/step (steady)</th><td>0.500</td>",
        "<th>images/s</th><td>8.00</td>",
        "<th>batch</th><td>2 × 2 GPU(s)</td>",
        "<th>checkpoints</th><td>2</td>",
        "<th>peak VRAM</th><td>GPU 0: 17.2 GiB, GPU 1: 17.5 GiB</td>",
        '<img src="report.png"',
        '<img src="samples.png"',
        "comic-000002.safetensors",
        "steady s/step is high",
    ):
        assert text in page
    assert "9.99" not in page and "999" not in page


def test_text_output_and_no_samples(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run", samples=False, finished=False)
    (run / "samples.png").write_bytes(b"stale")
    r = subprocess.run(
        [sys.executable, "-m", "lorakit", "report", str(run)], capture_output=True, text=True, timeout=120
    )
    assert r.returncode == 0, r.stderr
    assert "images/s" in r.stdout and "8.00" in r.stdout
    assert "note: no TensorBoard logs in the run folder" in r.stdout  # the fallback is said, not silent
    assert f"wrote {run / 'report.html'}" in r.stdout
    assert not (run / "samples.png").exists()  # a regenerated report drops a stale grid
    page = (run / "report.html").read_text()
    assert "Samples" not in page
    assert "<th>status</th><td>done</td>" in page  # from state.json while no finished event


def test_failed_run_without_losses(tmp_path: Path) -> None:
    run = tmp_path / "oom-run"
    run.mkdir()
    with EventLog(run / "events.jsonl") as log:
        log.append(Started(t=T0, run_dir=str(run), argv=["python", "x.py"], total_steps=100))
        log.append(ErrorEvent(t=T0 + 40, kind="oom", message="CUDA out of memory", fix="lorakit vram-check"))
        log.append(Finished(t=T0 + 41, status="failed", exit_code=1, duration_s=41.0))
    files = build_report(run)
    assert files.png is None and files.samples is None
    assert not (run / "report.png").exists()
    page = files.html.read_text()
    assert "failed (exit code 1)" in page
    assert "oom: CUDA out of memory Fix: lorakit vram-check" in page
    assert files.summary.n_gpus == 1 and files.summary.s_per_step is None


def test_no_events_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(LorakitError, match=r"has no events\.jsonl"):
        build_report(tmp_path)


def test_steady_rate_falls_back_to_tqdm_rate() -> None:
    few = [Progress(t=T0, step=1, total=3, s_per_step=0.9), Progress(t=T0 + 1, step=2, total=3, s_per_step=1.1)]
    assert steady_s_per_step(few) == pytest.approx(1.0)
    assert summarize([]).status == "unknown"


def test_grid_layout_orders_rows_and_keeps_other_names() -> None:
    paths = [
        Path("s/comic_e000002_00_20261123120000.png"),
        Path("s/comic_e000001_01_20261123120000.png"),
        Path("s/comic_e000001_00_20261123120000.png"),
        Path("s/handmade.png"),
    ]
    rows = grid_layout(paths)
    assert [label for label, _ in rows] == ["epoch 1", "epoch 2", ""]
    assert rows[0][1] == [paths[2], paths[1]]
    assert rows[1][1] == [paths[0], None]
    assert rows[2][1] == [paths[3]]


def test_report_of_a_real_lorakit_train_run(tmp_path: Path) -> None:
    """End to end: `lorakit train` (fake trainer printing sd-scripts' lines) → events → report."""
    from tests.conftest import make_kohya_dataset
    from tests.queue.queue_fakes import FakeInstall

    fake = FakeInstall(tmp_path / "inst")
    data = make_kohya_dataset(tmp_path / "data", {"5_zzc style": 3})
    lines = [
        "  num train images * repeats / 学習画像の数×繰り返し回数: 15",
        "  num batches per epoch / 1epochのバッチ数: 15",
        "  num epochs / epoch数: 1",
        "  batch size per device / バッチサイズ: 1",
        "  total optimization steps / 学習ステップ数: 15",
        "epoch 1/1",
    ]
    for n in range(1, 16):
        mm, ss = divmod(4 + n, 60)
        lines.append(
            f"steps: {n * 100 // 15:3d}%|#  | {n}/15 [{mm:02d}:{ss:02d}<00:10,  1.00s/it, avr_loss={0.3 - n / 100:.3f}]"
        )
    fake.plan({"rep": {"lines": lines}})
    env = fake.env(tmp_path / "home")
    (tmp_path / "home").mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "lorakit", "train", "--preset", "comic-style", "--data", str(data), "--quiet",
         "--set", f"model.checkpoint={fake.checkpoint}", "--set", "output.name=rep"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "lorakit", "report", "last", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert (out["status"], out["step"], out["total_steps"], out["batch_size"]) == ("done", 15, 15, 1)
    assert out["s_per_step"] == pytest.approx(1.0)
    assert out["final_loss"] == pytest.approx(0.15)
    assert out["lora"].endswith("rep.safetensors")
    assert Path(out["report_png"]).is_file()


# -- per-step loss from the trainer's TensorBoard logs -------------------------------------------
def tb_loss(step: int) -> float:
    return 0.2 - 0.005 * step + (0.03 if step % 2 else -0.03)  # noisy per step, as real losses are


def colour_pixels(png: Path, rgb: tuple[int, int, int], tol: int = 3) -> int:
    import numpy as np
    from PIL import Image

    with Image.open(png) as im:
        px = np.asarray(im.convert("RGB"), dtype=np.int16)
    return int((np.abs(px - np.array(rgb, dtype=np.int16)) <= tol).all(axis=-1).sum())


LIGHT, DARK = (0x9E, 0xCA, 0xE1), (0x08, 0x51, 0x9C)


def test_report_plots_the_trainers_per_step_loss_and_a_smoothed_line(tmp_path: Path) -> None:
    from lorakit.kohya.tblog import smoothed
    from tests.tbwrite import write_launch

    run = write_run(tmp_path / "runs" / "comic-20261123-120000", samples=False)
    write_launch(run, "20261123120000", [(s, tb_loss(s)) for s in range(1, 21)], epoch_every=10)
    files = build_report(run)
    s = files.summary
    assert (s.loss_source, s.loss_note) == ("tensorboard", None)
    per_step = [tb_loss(i) for i in range(1, 21)]
    assert [lp.step for lp in s.losses] == list(range(1, 21))
    assert [lp.loss for lp in s.losses] == pytest.approx(per_step, rel=1e-6)  # not the events' values
    assert s.avg_loss == pytest.approx(sum(per_step) / 20, rel=1e-6)
    assert s.final_loss == pytest.approx(sum(per_step) / 20, rel=1e-6)  # loss/average at step 20
    assert s.final_smoothed_loss == pytest.approx(smoothed(per_step)[-1], rel=1e-6)
    page = files.html.read_text()
    assert "<th>loss from</th><td>tensorboard (per step)</td>" in page
    assert "tensorboard --logdir logs" in page
    # the light per-step line and the dark smoothed one are both drawn
    assert colour_pixels(run / "report.png", LIGHT) > 300 and colour_pixels(run / "report.png", DARK) > 300


def test_report_of_a_resumed_run_takes_the_later_launch_for_repeated_steps(tmp_path: Path) -> None:
    from tests.tbwrite import write_launch

    run = write_run(tmp_path / "run", samples=False)
    write_launch(run, "20261123120000", [(s, 1.0) for s in range(1, 13)], wall_start=T0)
    write_launch(run, "20261123130000", [(s, 0.5) for s in range(11, 21)], wall_start=T0 + 3600)
    s = build_report(run).summary
    assert [(lp.step, lp.loss) for lp in s.losses] == [(i, 1.0) for i in range(1, 11)] + [
        (i, 0.5) for i in range(11, 21)
    ]


def test_report_without_logs_falls_back_to_the_progress_bar_and_says_so(tmp_path: Path) -> None:
    run = tmp_path / "old-run"
    run.mkdir()
    with EventLog(run / "events.jsonl") as log:
        log.append(Started(t=T0, run_dir=str(run), argv=ARGV, total_steps=30))
        for step in range(1, 31):  # what sd-scripts' bar gives: a 3-digit running mean, no per-step loss
            log.append(Progress(t=T0 + step, step=step, total=30, avr_loss=round(0.2 - step // 10 * 0.01, 3)))
    files = build_report(run)
    s = files.summary
    assert s.loss_source == "progress bar" and s.avg_loss == pytest.approx(
        (9 * 0.2 + 10 * 0.19 + 10 * 0.18 + 0.17) / 30
    )
    assert s.loss_note is not None and "no TensorBoard logs" in s.loss_note
    page = files.html.read_text()
    assert "<th>loss from</th><td>progress bar (3 digits)</td>" in page
    assert "no TensorBoard logs in the run folder" in page
    # only the dark running-mean line: no light per-step line (a few anti-aliased edge pixels at most)
    assert colour_pixels(run / "report.png", LIGHT) < 30 and colour_pixels(run / "report.png", DARK) > 300


def test_report_without_the_reader_package_says_how_to_get_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.tbwrite import write_launch

    run = write_run(tmp_path / "run", samples=False)
    write_launch(run, "20261123120000", [(s, tb_loss(s)) for s in range(1, 21)])
    monkeypatch.setitem(sys.modules, "tensorboard.backend.event_processing.event_accumulator", None)
    files = build_report(run)
    assert files.summary.loss_source == "progress bar"
    assert "pip install tensorboard" in files.html.read_text()
