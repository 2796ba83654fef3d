"""`lorakit resume RUN`: continue a run that saved its training state (``saving.save_state``).

The run is re-planned from its own ``spec.yaml`` into the same folder (so argv is what it was)
and relaunched with ``--resume=<last state dir>``; ``train.log`` and ``events.jsonl`` are
appended to, behind a new ``started`` event whose ``resumed_from`` names the state.

sd-scripts' own step counter is not trustworthy here: its tqdm bar starts at 0 again on resume
(with a total of ``max_train_steps``, or ``max_train_steps - S`` with
``--skip_until_initial_step``), and what tells whether the state was really used is the
``load train state from …: {'current_epoch': E, 'current_step': S}`` log record and the
epoch it continues at. :class:`ResumeCheck` (the runner's event transform) therefore

- rewrites the resumed progress events to the run's own counter: step = S + tqdm's n, total
  = the planned total, so the events of one run read as one continuous curve;
- checks that the trainer said it loaded the state and that the first epoch is the one after
  the state's (or the same one when the state is from mid-epoch);
- warns loudly (``warning`` event, code ``resume_restarted``) when it restarted from epoch 1 /
  step 0 instead, or when it never reported loading the state — users report "resumed" LoRAs
  identical to a fresh start, and this is how that shows.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lorakit.errors import ConfigError
from lorakit.run.events import Checkpoint, EpochStarted, Event, Progress, StateSaved, WarningEvent, read_events
from lorakit.run.folder import SPEC_FILE, is_active, read_state

if TYPE_CHECKING:
    from lorakit.kohya.install import Trainer
    from lorakit.kohya.logparse import LogParser
    from lorakit.planning import PlanRequest
    from lorakit.run.runner import Observer, RunOutcome

RESTART_FIX = (
    "the trainer did not continue from the saved state: check that the state folder holds "
    "train_state.json and the optimizer files, and that the run's command still matches; the LoRA "
    "from this relaunch is trained from scratch"
)


@dataclass(frozen=True)
class SavedState:
    path: Path
    epoch: int | None  # train_state.json's current_epoch
    step: int | None  # the run's own step count when it was saved (from the events, else the file)
    file_step: int | None = None  # train_state.json's current_step (what sd-scripts will load)

    @property
    def kind(self) -> str:
        """epoch (saved at an epoch's end), step (mid-epoch), last (at the end of training)."""
        name = self.path.name
        if _EPOCH_STATE.search(name):
            return "epoch"
        if _STEP_STATE.search(name):
            return "step"
        return "last"


_EPOCH_STATE = re.compile(r"-(\d{6})-state$")  # sd-scripts' EPOCH_STATE_NAME "{}-{:06d}-state"
_STEP_STATE = re.compile(r"-step(\d{8})-state$")  # STEP_STATE_NAME "{}-step{:08d}-state"


def _train_state(path: Path) -> tuple[int | None, int | None]:
    try:
        data = json.loads((path / "train_state.json").read_text(encoding="utf-8"))
        return int(data["current_epoch"]), int(data["current_step"])
    except (OSError, ValueError, KeyError, TypeError):
        return None, None


def saved_states(run_dir: Path) -> list[SavedState]:
    """State folders of a run that still exist, oldest first (events first, then the disk)."""
    seen: dict[str, SavedState] = {}
    for ev in read_events(run_dir):
        if isinstance(ev, StateSaved):
            p = Path(ev.path)
            if not p.is_absolute():
                p = run_dir / p
            if p.is_dir():
                epoch, step = _train_state(p)
                logical = ev.step if ev.step is not None else step
                seen[str(p.resolve())] = SavedState(p, epoch if epoch is not None else ev.epoch, logical, step)
    for p in sorted(run_dir.glob("*-state")):
        key = str(p.resolve())
        if p.is_dir() and key not in seen:
            epoch, step = _train_state(p)
            seen[key] = SavedState(p, epoch, step, step)
    return sorted(seen.values(), key=lambda s: (s.step or 0, s.epoch or 0))


def last_state(run_dir: Path) -> SavedState:
    """The state to resume from, or a ConfigError saying why there is none."""
    state = read_state(run_dir)
    if is_active(run_dir):
        raise ConfigError([f"run {run_dir.name} is still running"], fix="wait for it, or stop it with Ctrl-C first")
    if state.get("status") == "done":
        raise ConfigError([f"run {run_dir.name} finished; there is nothing to resume"])
    states = saved_states(run_dir)
    if not states:
        saved = state.get("save_state")
        why = "it was started without saving.save_state" if saved is False else "no training state was saved yet"
        raise ConfigError(
            [f"run {run_dir.name} cannot be resumed: {why}"],
            fix="start it again with --set saving.save_state=true (states are saved with each checkpoint)",
        )
    if states[-1].kind == "last":
        raise ConfigError(
            [
                f"run {run_dir.name} reached the end of training (its newest state, {states[-1].path.name}, "
                "was saved when training finished); there is nothing left to resume"
            ],
            fix="its LoRA is in the run folder; to train longer, start a new run",
        )
    return states[-1]


@dataclass
class ResumeCheck:
    """The runner's event transform for a resumed launch (see the module docstring)."""

    state: SavedState
    planned_total: int | None
    steps_per_epoch: int | None
    ok: bool | None = None  # None until the trainer has shown whether it continued
    problems: list[str] = field(default_factory=list)
    _checked_epoch: bool = False
    _checked_load: bool = False

    def expected_epoch(self) -> int | None:
        """The epoch sd-scripts should print first: the next one after a state saved at an
        epoch's end, the state's own for one saved mid-epoch."""
        e, s, spe = self.state.epoch, self.state.step, self.steps_per_epoch
        if self.state.kind == "epoch" and e is not None:
            return e + 1
        if s is not None and spe:
            return s // spe + 1
        return e

    def __call__(self, ev: Event, parser: LogParser) -> list[Event]:
        out: list[Event] = []
        if isinstance(ev, EpochStarted | Progress) and not self._checked_load:
            self._checked_load = True
            if parser.loaded_state is None:
                out.append(
                    self._restart(
                        ev,
                        f"the trainer never reported loading the saved state {self.state.path.name} "
                        "(no 'load train state' line before training started)",
                    )
                )
            elif self.state.file_step is not None and parser.loaded_state[1] != self.state.file_step:
                out.append(
                    self._restart(
                        ev,
                        f"the trainer loaded step {parser.loaded_state[1]}, but the state lorakit resumed "
                        f"from is at step {self.state.file_step}",
                    )
                )
        if isinstance(ev, EpochStarted) and not self._checked_epoch:
            self._checked_epoch = True
            want = self.expected_epoch()
            if want is not None and ev.epoch < want:
                out.append(
                    self._restart(
                        ev,
                        f"the trainer restarted at epoch {ev.epoch}/{ev.total}, not at epoch {want} where the "
                        f"saved state (step {self.state.step}) left off",
                    )
                )
            elif self.ok is None:
                self.ok = True
        offset = self.state.step or 0
        if offset and self.ok is not False:
            if isinstance(ev, Progress):
                ev = replace(ev, step=ev.step + offset, total=self.planned_total or (ev.total + offset))
            elif isinstance(ev, Checkpoint | StateSaved) and ev.step is not None:
                ev = replace(ev, step=ev.step + offset)
        return [ev, *out]

    def _restart(self, ev: Event, message: str) -> WarningEvent:
        self.ok = False
        self.problems.append(message)
        return WarningEvent(
            t=ev.t, code="resume_restarted", message="RESUME DID NOT CONTINUE: " + message, fix=RESTART_FIX
        )


PATH_KEYS = (
    ("model", "checkpoint"),
    ("model", "vae"),
    ("model", "clip_l"),
    ("model", "clip_g"),
    ("model", "t5xxl"),
    ("model", "tokenizer_cache_dir"),
    ("dataset", "folder"),
    ("output", "folder"),
)


def absolute_spec(spec: dict[str, Any], base: Path) -> dict[str, Any]:
    """The run's spec with relative paths made absolute against ``base`` (the folder lorakit
    was started from), so a resume from another folder finds the same files."""

    def fix(value: Any) -> Any:
        if isinstance(value, str) and value and not Path(value).expanduser().is_absolute():
            return str(base / value)
        return value

    for section, key in PATH_KEYS:
        sec = spec.get(section)
        if isinstance(sec, dict) and sec.get(key) is not None:
            sec[key] = fix(sec[key])
    ds = spec.get("dataset")
    if isinstance(ds, dict):
        for concept in ds.get("concepts") or []:
            if isinstance(concept, dict) and concept.get("folder"):
                concept["folder"] = fix(concept["folder"])
    out = spec.get("output")
    if isinstance(out, dict) and out.get("lora_folders"):
        out["lora_folders"] = [fix(v) for v in out["lora_folders"]]
    return spec


def resume_request(run_dir: Path) -> PlanRequest:
    """A PlanRequest that re-plans the run from its own spec.yaml (paths made absolute)."""
    import yaml

    from lorakit.planning import PlanRequest
    from lorakit.run.folder import atomic_write_text

    path = run_dir / SPEC_FILE
    if not path.is_file():
        raise ConfigError([f"{run_dir} has no {SPEC_FILE}; it is not a lorakit run folder"])
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    base = Path(str(read_state(run_dir).get("cwd") or Path.cwd()))
    resolved = run_dir / RESUME_SPEC
    atomic_write_text(resolved, yaml.safe_dump(absolute_spec(spec, base), sort_keys=False))
    return PlanRequest(config=resolved)


RESUME_SPEC = ".resume-spec.yaml"


def resume_run(
    run_ref: str | Path,
    trainer: Trainer,
    *,
    runs_dir: Path = Path("runs"),
    observer: Observer | None = None,
) -> tuple[RunOutcome, ResumeCheck]:
    """Relaunch a run from its last saved state, in its own folder; the outcome and the check
    of whether the trainer really continued (``check.ok``; warnings are in events.jsonl)."""
    from lorakit.planning import plan_run
    from lorakit.run.folder import find_run, update_state
    from lorakit.run.runner import Options, run_planned

    run_dir = find_run(str(run_ref), runs_dir).absolute()
    state = last_state(run_dir)
    req = resume_request(run_dir)
    planned = plan_run(req, trainer, run_dir)
    (run_dir / RESUME_SPEC).unlink(missing_ok=True)
    steps = planned.plan.steps
    check = ResumeCheck(state, steps.total_steps, steps.batches_per_epoch)
    launches = int(read_state(run_dir).get("launches") or 1) + 1
    update_state(run_dir, launches=launches)
    opts = Options(resumed_from=str(state.path), transform=check)
    outcome = run_planned(planned, observer=observer, options=opts, extra_argv=[f"--resume={state.path}"])
    update_state(run_dir, resume_check="ok" if check.ok else ("restarted" if check.ok is False else "unknown"))
    return outcome, check
