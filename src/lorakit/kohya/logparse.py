# Over ~400 lines because: one table of sd-scripts output patterns and the one parser over it.
"""sd-scripts output → typed events. Stateful but pure: feed it text chunks as they arrive
(any split, ``\\r`` and ``\\n`` both end a segment), get events back; no clock, no I/O.

What it recognises (patterns taken from recorded runs in ``tests/fixtures/sdscripts/`` and
from sd-scripts' ``train_network.py`` / ``library/train_util.py``):

- the dataset summary sd-scripts prints before training (``num train images * repeats``,
  ``num batches per epoch``, ``num epochs``, ``batch size per device``, ``gradient
  accumulation steps``, ``total optimization steps``) → one ``dataset`` event;
- ``epoch N/M`` → ``epoch``;
- tqdm's ``steps:`` bar (``\\r`` updates, postfix ``avr_loss=...``) → one ``progress`` event
  per step, emitted when the step is complete (the next step, another line, or the end), so
  it carries the loss sd-scripts set after that step; :attr:`LogParser.current` shows the
  bar's latest state before that, for a live view;
- ``saving checkpoint: PATH`` → ``checkpoint``; ``save train state to DIR/train_state.json``
  → ``state``;
- a NaN/inf ``avr_loss`` → ``error`` kind ``nan`` (once);
- CUDA OOM, ``ModuleNotFoundError`` / sd-scripts' ``No bitsandbytes`` style ImportErrors,
  missing model files, "No data found" → ``error`` with kind oom / missing_package /
  missing_model / dataset (``fix`` is left empty: ``lorakit.run.diagnose`` fills it);
- rich log records (``INFO``/``WARNING``/``ERROR`` columns, wrapped over several lines when
  the terminal is 80 columns wide) are re-joined before matching; WARNING records become
  ``warning`` events.

The current loss is not printed by sd-scripts (only the moving average ``avr_loss``), so
``progress.loss`` stays None unless a future trainer prints it.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections import deque
from dataclasses import dataclass, replace

from lorakit.events import (
    Checkpoint,
    DatasetSummary,
    EpochStarted,
    ErrorEvent,
    Event,
    Progress,
    StateSaved,
    WarningEvent,
)

# --- tqdm -------------------------------------------------------------------------------------
# "steps:  10%|█         | 10/100 [00:12<01:48,  1.21s/it, avr_loss=0.123]"
_TQDM = re.compile(
    r"^steps:\s+(?P<pct>\d+)%\|[^|]*\|\s*(?P<n>\d+)/(?P<total>\d+)\s*"
    r"\[(?P<elapsed>[\d:]+)<(?P<remaining>[\d:?]+)(?:,\s*(?P<rate>[^,\]]+))?(?:,\s*(?P<postfix>[^\]]*))?\]"
)
_RATE = re.compile(r"^\s*(?P<v>[\d.]+|\?)\s*(?P<unit>s/it|it/s)\s*$")
_POSTFIX_ITEM = re.compile(r"(?P<k>[\w ]+?)=(?P<v>[^,]+)")

# --- plain prints (accelerator.print) ----------------------------------------------------------
_EPOCH = re.compile(r"^epoch (?P<epoch>\d+)/(?P<total>\d+)\s*$")
_CHECKPOINT = re.compile(r"saving checkpoint: (?P<path>.+?)\s*$")
_DATASET = {
    "images_x_repeats": re.compile(r"num train images \* repeats\b.*?:\s*(\d+)\s*$"),
    "batches_per_epoch": re.compile(r"num batches per epoch\b.*?:\s*(\d+)\s*$"),
    "epochs": re.compile(r"num epochs\b.*?:\s*(\d+)\s*$"),
    "batch_size": re.compile(r"batch size per device\b.*?:\s*([\d, ]+)\s*$"),
    "grad_accum": re.compile(r"gradient accumulation steps\b.*?=\s*(\d+)\s*$"),
    "total_steps": re.compile(r"total optimization steps\b.*?:\s*(\d+)\s*$"),
}

# --- rich log records --------------------------------------------------------------------------
# "2026-11-23 20:53:37 INFO     message ...                  train_network.py:946"
# rich renders a record as a table row: time (blank when it repeats), level, message, source.
# A message too long for its column wraps onto lines indented to the message column; words
# move whole to the next line (the space is lost) and a word longer than the column (a path)
# is folded at exactly the column width.
_RICH = re.compile(
    r"^(?P<time>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+|\[[^\]]*\]\s+|\s+)?"
    r"(?P<level>DEBUG|INFO|WARNING|ERROR|CRITICAL)(?:\s+|$)(?P<msg>.*?)"
    r"(?:\s+(?P<src>[\w.\-]+\.py:\d+))?\s*$"
)
_RICH_SRC_TAIL = re.compile(r"\s+(?P<src>[\w.\-]+\.py:\d+)\s*$")
_JUNK_BEFORE_TIME = re.compile(r"^\s+(?=\d{4}-\d\d-\d\d \d\d:\d\d:\d\d )")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# fixtures have machine paths replaced by <RUN>, <MODEL>, ...: their true length is unknown
_PLACEHOLDER = re.compile(r"<[A-Z_]+>")
# WARNING records every sd-scripts run prints that say nothing about this run
# sd-scripts' own notices that are expected, not the user's concern: lorakit's resume passes
# --initial_step on purpose (run/resume.py), so "steps from the state is ignored" is by design
BENIGN_WARNINGS = (
    "Failed to get git commit hash",
    "no regularization images",
    "steps from the state is ignored because initial_step is specified",
)
_STATE_SAVE = re.compile(
    r"save train state to (?P<file>.+?train_state\.json) at epoch (?P<epoch>\d+) step (?P<step>\d+)"
)
_STATE_LOAD = re.compile(
    r"load train state from (?P<file>.+?train_state\.json): \{'current_epoch': (?P<epoch>\d+), "
    r"'current_step': (?P<step>\d+)\}"
)
_RESUME = re.compile(r"resume training from local state: (?P<path>.+?)\s*$")

# --- failures ----------------------------------------------------------------------------------
_OOM = re.compile(r"OutOfMemoryError|CUDA out of memory|CUDA error: out of memory|out of memory\. Tried to allocate")
_NO_MODULE = re.compile(r"ModuleNotFoundError: No module named '(?P<mod>[\w.]+)'")
_NO_PACKAGE_SD = re.compile(r"ImportError: No (?P<mod>[\w-]+) / ")
_NO_MODEL = re.compile(
    r"model is not found as a file or in Hugging Face.*?: (?P<path>.+?)\s*$"
    r"|pretrained_model_name_or_path \"(?P<dpath>[^\"]+)\" is neither a valid local path nor a valid repo id"
    r"|FileNotFoundError: .*?No such file or directory: '(?P<fpath>[^']+\.(?:safetensors|ckpt|pt|pth|bin|sft|gguf))'"
    r"|(?P<tok>Can't load tokenizer for '[^']+')"
)
_NO_DATA = re.compile(r"No data found\. Please verify arguments|not directory: (?P<dir>.+?)\s*$")
_TRACEBACK = "Traceback (most recent call last):"
_EXCEPTION_LINE = re.compile(r"^(?P<exc>[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit)):?\s*(?P<msg>.*)$")


def _to_seconds(text: str) -> float | None:
    try:
        parts = [int(p) for p in text.split(":")]
    except ValueError:
        return None
    total = 0
    for p in parts:
        total = total * 60 + p
    return float(total)


def _num(text: str) -> float | None:
    try:
        return float(text.strip())
    except ValueError:
        return None


@dataclass(frozen=True)
class ExceptionInfo:
    """The exception line of a Python traceback seen in the output."""

    name: str
    message: str
    line: str


class LogParser:
    """Feed text, get events. One instance per trainer process."""

    def __init__(self, *, tail_lines: int = 200) -> None:
        self._buf = ""
        self._pending: Progress | None = None  # the step being drawn, not yet emitted
        self._last_step = -1
        self._dataset: dict[str, int] = {}
        self._dataset_done = False
        self._rich: _Record | None = None  # the rich log record being joined
        self._in_traceback = False
        self._errors_seen: set[str] = set()
        self.current: Progress | None = None
        self.epoch: int | None = None
        self.epochs: int | None = None
        self.tail: deque[str] = deque(maxlen=tail_lines)
        self.exceptions: list[ExceptionInfo] = []
        self.resumed_from: str | None = None  # "resume training from local state: X"
        self.loaded_state: tuple[int, int] | None = None  # (epoch, step) from train_state.json
        self.nan_seen = False

    # -- public ----------------------------------------------------------------------------
    def feed(self, text: str) -> list[Event]:
        """Consume a chunk (any split); return the events it completed."""
        out: list[Event] = []
        self._buf += text
        while True:
            cut = _first_break(self._buf)
            if cut < 0:
                break
            segment, self._buf = self._buf[:cut], self._buf[cut + 1 :]
            self._segment(segment, out)
        # a bar drawn after the last \r is already complete when it ends with "]"
        if self._buf.startswith("steps:") and self._buf.rstrip().endswith("]"):
            self._progress_text(self._buf.rstrip(), out, provisional=True)
        return out

    def idle(self) -> list[Event]:
        """The trainer has been quiet for a while: a rich record being joined is complete
        (rich writes a wrapped record at once), so act on it now rather than at the next line."""
        out: list[Event] = []
        if not self._buf:
            self._end_rich(out)
        return out

    def flush(self) -> list[Event]:
        """End of output: emit what is still held (the last step, a half line, a rich record)."""
        out: list[Event] = []
        if self._buf:
            segment, self._buf = self._buf, ""
            self._segment(segment, out)
        self._end_rich(out)
        self._emit_pending(out)
        return out

    # -- segments --------------------------------------------------------------------------
    def _segment(self, segment: str, out: list[Event]) -> None:
        text = _clean(segment).rstrip()
        if not text.strip():
            return
        stripped = text.lstrip()
        if stripped.startswith("steps:"):
            self._end_rich(out)
            end = self._progress_text(stripped, out, provisional=False)
            rest = stripped[end:] if end else ""
            if rest.strip():  # a log record printed right after the bar, without a line break
                self._segment(rest, out)
            return
        self.tail.append(text)
        self._emit_pending(out)
        if self._rich_line(text, out):
            return
        self._end_rich(out)
        self._plain_line(text, out)

    def _progress_text(self, text: str, out: list[Event], *, provisional: bool) -> int:
        """Parse a tqdm ``steps:`` bar at the start of ``text``; the index where it ends (0: no bar)."""
        m = _TQDM.match(text)
        if m is None:
            return 0
        n, total = int(m["n"]), int(m["total"])
        rate = _RATE.match(m["rate"] or "")
        s_per_step: float | None = None
        if rate and rate["v"] != "?":
            v = float(rate["v"])
            s_per_step = v if rate["unit"] == "s/it" else (1.0 / v if v > 0 else None)
        post = {k.strip(): v.strip() for k, v in _POSTFIX_ITEM.findall(m["postfix"] or "")}
        avr = _num(post["avr_loss"]) if "avr_loss" in post else None
        loss = _num(post["loss"]) if "loss" in post else None
        ev = Progress(
            t=0.0,
            step=n,
            total=total,
            loss=loss,
            avr_loss=avr,
            s_per_step=s_per_step,
            elapsed_s=_to_seconds(m["elapsed"]),
        )
        self.current = ev
        if n == 0:
            return m.end()  # the empty bar drawn before the first step
        if self._pending is not None and self._pending.step != n:
            self._emit_pending(out)
        if n <= self._last_step and self._pending is None:
            return m.end()  # a redraw of a step already emitted (e.g. after a sample/checkpoint pause)
        self._pending = ev
        if not provisional and avr is not None and not math.isfinite(avr):
            self._emit_pending(out)
        return m.end()

    def _emit_pending(self, out: list[Event]) -> None:
        ev = self._pending
        if ev is None:
            return
        self._pending = None
        self._last_step = ev.step
        out.append(replace(ev))
        if ev.avr_loss is not None and not math.isfinite(ev.avr_loss) and not self.nan_seen:
            self.nan_seen = True
            out.append(
                ErrorEvent(
                    t=0.0,
                    kind="nan",
                    message=f"the loss became {ev.avr_loss} at step {ev.step}/{ev.total}; the rest of the run "
                    "would train on garbage",
                    evidence=f"avr_loss={ev.avr_loss} at step {ev.step}",
                )
            )

    # -- rich log records ------------------------------------------------------------------
    def _rich_line(self, text: str, out: list[Event]) -> bool:
        line = _JUNK_BEFORE_TIME.sub("", text)
        m = _RICH.match(line)
        if m is not None:
            self._end_rich(out)
            width = None
            if m["src"]:
                width = cell_len(line[: m.start("src")]) - 1 - cell_len(line[: m.start("msg")])
            self._rich = _Record(m["level"], m.start("msg"), width, [m["msg"].rstrip()])
            return True
        rec = self._rich
        if rec is not None and len(text) > rec.indent and not text[: rec.indent].strip() and not _traceback_line(text):
            # a continuation of a wrapped record (the source column may trail it)
            rec.parts.append(_RICH_SRC_TAIL.sub("", text[rec.indent :]).rstrip())
            return True
        return False

    def _end_rich(self, out: list[Event]) -> None:
        rec = self._rich
        if rec is None:
            return
        self._rich = None
        self._record(rec.level, rec.message(), out)

    def _record(self, level: str, message: str, out: list[Event]) -> None:
        if m := _STATE_SAVE.search(message):
            state_dir = re.sub(r"[/\\]train_state\.json$", "", m["file"])
            out.append(StateSaved(t=0.0, path=state_dir, step=int(m["step"]), epoch=int(m["epoch"])))
            return
        if m := _STATE_LOAD.search(message):
            self.loaded_state = (int(m["epoch"]), int(m["step"]))
            return
        if m := _RESUME.search(message):
            self.resumed_from = m["path"]
            return
        if self._failure(message, out):
            return
        if level in ("WARNING", "ERROR", "CRITICAL") and not any(b in message for b in BENIGN_WARNINGS):
            code = "captions" if "No caption file found" in message else "trainer"
            fix = None
            if code == "captions":
                fix = "set dataset.caption_extension to your captions' extension (e.g. .txt)"
            out.append(WarningEvent(t=0.0, code=code, message=message, fix=fix))

    # -- plain lines -----------------------------------------------------------------------
    def _plain_line(self, text: str, out: list[Event]) -> None:
        line = text.strip()
        if line == _TRACEBACK:
            self._in_traceback = True
            return
        if m := _EPOCH.match(line):
            self.epoch, self.epochs = int(m["epoch"]), int(m["total"])
            out.append(EpochStarted(t=0.0, epoch=self.epoch, total=self.epochs))
            return
        if m := _CHECKPOINT.search(line):
            out.append(
                Checkpoint(
                    t=0.0,
                    path=m["path"],
                    step=self._last_step if self._last_step >= 0 else None,
                    epoch=self.epoch,
                )
            )
            return
        if not self._dataset_done and self._dataset_line(line, out):
            return
        if self._in_traceback and (m := _EXCEPTION_LINE.match(line)) and not text.startswith(" "):
            self.exceptions.append(ExceptionInfo(m["exc"], m["msg"], line))
            self._in_traceback = False
        self._failure(line, out)

    def _dataset_line(self, line: str, out: list[Event]) -> bool:
        for key, rx in _DATASET.items():
            m = rx.search(line)
            if m is None:
                continue
            value = m.group(1)
            self._dataset[key] = int(value.split(",")[0].strip())
            if key == "total_steps":
                self._dataset_done = True
                out.append(DatasetSummary(t=0.0, **self._dataset))
            return True
        return False

    def _failure(self, line: str, out: list[Event]) -> bool:
        kind: str | None = None
        message = ""
        if _OOM.search(line):
            kind, message = "oom", "CUDA ran out of GPU memory"
        elif m := (_NO_MODULE.search(line) or _NO_PACKAGE_SD.search(line)):
            kind, message = "missing_package", f"the trainer's Python lacks the package '{m['mod']}'"
        elif m := _NO_MODEL.search(line):
            path = m["path"] or m["dpath"] or m["fpath"]
            kind = "missing_model"
            message = f"the trainer could not find the model file {path}" if path else f"the trainer: {m['tok']}"
        elif m := _NO_DATA.search(line):
            kind = "dataset"
            message = (
                f"the trainer found no image folder at {m['dir']}"
                if m["dir"]
                else "the trainer found no training images"
            )
        if kind is None:
            return False
        if kind not in self._errors_seen:
            self._errors_seen.add(kind)
            out.append(ErrorEvent(t=0.0, kind=kind, message=message, evidence=line.strip()[:500]))
        return True


def _first_break(buf: str) -> int:
    r, n = buf.find("\r"), buf.find("\n")
    if r < 0:
        return n
    if n < 0:
        return r
    return min(r, n)


def _traceback_line(text: str) -> bool:
    s = text.strip()
    return s.startswith(('File "', _TRACEBACK))


def _clean(segment: str) -> str:
    """Drop ANSI escapes; when tqdm cleared its line and moved the cursor up (``\\x1b[A``),
    keep what was written after that."""
    if "\x1b" not in segment:
        return segment
    parts = _ANSI.split(segment)
    while len(parts) > 1 and not parts[0].strip():
        parts.pop(0)
    return "".join(parts)


def cell_len(text: str) -> int:
    """Terminal cells ``text`` takes (East Asian wide/full-width characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


@dataclass
class _Record:
    """A rich log record being re-joined from its wrapped lines."""

    level: str
    indent: int  # characters before the message column
    width: int | None  # the message column's width in cells (None: unknown)
    parts: list[str]

    def message(self) -> str:
        text = self.parts[0].strip()
        prev = self.parts[0]
        for part in self.parts[1:]:
            if not part.strip():
                prev = part
                continue
            if self._folded(prev):
                text += part.lstrip()
            else:
                text += (" " if text else "") + part.strip()
            prev = part
        return text

    def _folded(self, line: str) -> bool:
        """Did this line end mid-word (a word longer than the column, folded at its width)?"""
        s = line.rstrip()
        if not s or s[-1] == " ":
            return False
        if self.width is not None and cell_len(s) >= self.width:
            return True
        # a fixture line holding a <PLACEHOLDER> path and nothing else was a folded path
        return bool(_PLACEHOLDER.search(s)) and " " not in s.strip()
