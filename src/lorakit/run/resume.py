# Over ~400 lines because: the resume mapping (states, offsets, launch names, renaming) is one algorithm.
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
from lorakit.events import (
    Checkpoint,
    DatasetSummary,
    EpochStarted,
    Event,
    Progress,
    StateSaved,
    WarningEvent,
    read_events,
)
from lorakit.fs import atomic_write, move_no_replace
from lorakit.run.folder import SPEC_FILE, read_state, refuse_if_running

if TYPE_CHECKING:
    from lorakit.kohya.install import Trainer
    from lorakit.kohya.logparse import LogParser
    from lorakit.planning import PlannedRun, PlanRequest
    from lorakit.run.runner import Options

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
    refuse_if_running(run_dir)  # lorakit, or the trainer of a lost run, still at work there
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


def trainer_step_offset(state_step: int, steps_per_epoch: int | None) -> int:
    """run step − sd-scripts' ``global_step`` in a launch resumed at ``state_step``.

    lorakit resumes with ``--skip_until_initial_step --initial_step=S``. sd-scripts 48d368fa then
    skips ``S // L`` whole epochs (L = optimizer steps per epoch) and sets ``global_step`` to what
    is left, ``S mod L`` (train_network.py, "global_step = initial_step" after the epoch-skip loop;
    reported upstream as kohya-ss/sd-scripts#1406). Its step-named files and its TensorBoard steps
    are therefore ``S − S mod L`` behind the run's own count; inside the first epoch they agree."""
    if not steps_per_epoch or state_step < steps_per_epoch:
        return 0
    return state_step - state_step % steps_per_epoch


def launch_name(run_dir: Path, output_name: str, launch: int) -> str:
    """The ``--output_name`` of a resumed launch: its own prefix, so the trainer (which names step
    files by its own counter, see :func:`trainer_step_offset`) can never write over a file an
    earlier launch finished. lorakit renames each file to the run's name once it is complete."""
    n = max(1, launch - 1)
    while True:
        name = f"{output_name}-resume{n}"
        if not any(p.name.startswith((name + ".", name + "-")) for p in run_dir.iterdir()):
            return name
        n += 1


_STEP_FILE = re.compile(r"-step(\d{8})(?=\.)")


@dataclass
class ResumeCheck:
    """The runner's event transform for a resumed launch (see the module docstring).

    It also renames what the launch writes (``<launch name>…`` → ``<output name>…``, step numbers
    in the run's own count) once the file is complete: a checkpoint event is held back until the
    trainer moves on (the next progress line) or exits, then written with the final path. A name
    that already exists is never replaced: the file keeps its launch name and a warning says so."""

    state: SavedState
    planned_total: int | None
    steps_per_epoch: int | None
    run_dir: Path | None = None
    output_name: str | None = None
    launch_name: str | None = None
    ok: bool | None = None  # None until the trainer has shown whether it continued
    problems: list[str] = field(default_factory=list)
    renamed: dict[str, str] = field(default_factory=dict)  # trainer's path → final path
    _checked_epoch: bool = False
    _checked_load: bool = False
    _checked_total: bool = False
    _warned_past: bool = False
    _held: list[Checkpoint] = field(default_factory=list)

    @property
    def offset(self) -> int:
        """run step − trainer global_step (step-named files, states, TensorBoard)."""
        return trainer_step_offset(self.state.step or 0, self.steps_per_epoch)

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
        if isinstance(ev, DatasetSummary) and ev.batches_per_epoch:
            self.steps_per_epoch = ev.batches_per_epoch  # the trainer's own count wins over the plan's
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
        start = self.state.step or 0
        if isinstance(ev, Progress) and not self._checked_total and start and self.planned_total:
            # the bar counts max_train_steps − (its initial global_step); a trainer that did not
            # skip ahead shows the whole run again (seen on the H200: 40 more steps after 20)
            self._checked_total = True
            want_total = self.planned_total - (start - self.offset)
            if ev.total != want_total:
                out.append(
                    self._restart(
                        ev,
                        f"the trainer plans {ev.total} steps for this launch, not the {want_total} that continue "
                        f"the run from step {start}",
                    )
                )
        if start and self.ok is not False:
            if isinstance(ev, Progress):
                ev = replace(ev, step=ev.step + start, total=self.planned_total or (ev.total + start))
            elif isinstance(ev, Checkpoint) and ev.step is not None:
                ev = replace(ev, step=ev.step + start)  # the bar's count
            elif isinstance(ev, StateSaved) and ev.step is not None:
                ev = replace(ev, step=ev.step + self.offset)  # train_state.json: the trainer's global_step
        if isinstance(ev, Progress) and self.planned_total and ev.step > self.planned_total and not self._warned_past:
            self._warned_past = True
            out.append(
                WarningEvent(
                    t=ev.t,
                    code="past_plan",
                    message=f"the trainer is at step {ev.step}, past the run's planned {self.planned_total}",
                    fix=RESTART_FIX,
                )
            )
        if isinstance(ev, Checkpoint) and self._renames():
            self._held.append(ev)
            return out
        if isinstance(ev, Progress) and self._held:
            return [*self.release(complete=True), ev, *out]
        return [ev, *out]

    def _renames(self) -> bool:
        return bool(self.run_dir and self.output_name and self.launch_name)

    def release(self, *, complete: bool) -> list[Event]:
        """Rename the held checkpoints and emit their events. ``complete`` is False when the
        trainer exited with an error: the newest held file may be half-written, so it keeps its
        launch name (and is not announced as a finished checkpoint)."""
        held, self._held = self._held, []
        out: list[Event] = []
        for i, ev in enumerate(held):
            src = Path(ev.path)
            if not src.is_absolute() and self.run_dir is not None:
                src = self.run_dir / src
            if not complete and i == len(held) - 1:
                if src.exists():
                    out.append(
                        WarningEvent(
                            t=ev.t,
                            code="checkpoint_incomplete",
                            message=f"{src.name} was being written when the trainer stopped; it is kept "
                            "under that name and not counted as a checkpoint",
                        )
                    )
                continue
            if not src.is_file():
                continue  # the trainer announced it but never wrote it
            dest = src.with_name(self.final_name(src.name))
            if dest == src:
                out.append(ev)
                continue
            if move_no_replace(src, dest):
                self.renamed[str(src)] = str(dest)
                out.append(replace(ev, path=str(dest)))
            else:
                out.append(
                    WarningEvent(
                        t=ev.t,
                        code="kept_aside",
                        message=f"{dest.name} already exists (an earlier launch wrote it); this launch's file "
                        f"is kept as {src.name}, nothing was overwritten",
                    )
                )
                out.append(ev)
        return out

    def final_name(self, name: str) -> str:
        """``<launch>-step00000010.safetensors`` → ``<output>-step000000NN.safetensors`` (run steps);
        ``<launch>-000002.safetensors`` → ``<output>-000002…``; ``<launch>.safetensors`` → ``<output>…``."""
        assert self.launch_name is not None and self.output_name is not None
        if not name.startswith(self.launch_name):
            return name
        rest = name[len(self.launch_name) :]
        if not rest.startswith((".", "-")):
            return name
        offset = self.offset
        rest = _STEP_FILE.sub(lambda m: f"-step{int(m.group(1)) + offset:08d}", rest, count=1)
        return self.output_name + rest

    def _restart(self, ev: Event, message: str) -> WarningEvent:
        self.ok = False
        self.problems.append(message)
        return WarningEvent(
            t=ev.t, code="resume_restarted", message="RESUME DID NOT CONTINUE: " + message, fix=RESTART_FIX
        )


def _path_keys() -> tuple[tuple[str, str], ...]:
    """(section, key) of every single-path setting of the schema (``Path`` or ``Path | None``):
    derived from TrainSpec, so a new path key is made absolute without a second list."""
    from pydantic import BaseModel

    from lorakit.config.schema import TrainSpec

    out = []
    for section, field_ in TrainSpec.model_fields.items():
        model = field_.annotation
        if isinstance(model, type) and issubclass(model, BaseModel):
            out += [(section, k) for k, f in model.model_fields.items() if f.annotation in (Path, Path | None)]
    return tuple(out)


PATH_KEYS = _path_keys()


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

    path = run_dir / SPEC_FILE
    if not path.is_file():
        raise ConfigError([f"{run_dir} has no {SPEC_FILE}; it is not a lorakit run folder"])
    spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    base = Path(str(read_state(run_dir).get("cwd") or Path.cwd()))
    resolved = run_dir / RESUME_SPEC
    atomic_write(resolved, yaml.safe_dump(absolute_spec(spec, base), sort_keys=False))
    return PlanRequest(config=resolved)


RESUME_SPEC = ".resume-spec.yaml"


def prepare_resume(
    run_ref: str | Path,
    trainer: Trainer,
    *,
    runs_dir: Path = Path("runs"),
) -> tuple[PlannedRun, Options, list[str], ResumeCheck]:
    """Plan the relaunch of a run from its last saved state, in its own folder: the plan, the
    runner options, the extra argv and the check of whether the trainer really continued
    (``lorakit.training.resume_run`` runs it).

    The launch gets ``--resume=STATE --skip_until_initial_step --initial_step=S`` (S: the run's
    own step at the state, so a chained resume continues from the right step even though
    sd-scripts' ``train_state.json`` of a resumed launch holds its shifted counter) and an
    output name of its own (:func:`launch_name`); files are renamed to the run's names when
    complete, never over an existing one."""
    from lorakit.planning import plan_run
    from lorakit.run.folder import find_run, update_state
    from lorakit.run.runner import ChildResult, Options

    run_dir = find_run(str(run_ref), runs_dir).absolute()
    state = last_state(run_dir)
    req = resume_request(run_dir)
    planned = plan_run(req, trainer, run_dir)
    (run_dir / RESUME_SPEC).unlink(missing_ok=True)
    steps = planned.plan.steps
    per_epoch = steps.steps_per_epoch
    start = state.step or 0
    offset = trainer_step_offset(start, per_epoch)
    if start >= steps.total_steps:
        raise ConfigError(
            [f"run {run_dir.name}: its newest state is at step {start} of {steps.total_steps}; nothing is left"],
            fix="its checkpoints are in the run folder; to train longer, start a new run",
        )
    if offset and steps.total_steps % per_epoch:
        # the trainer's counter is `offset` behind after the epoch skip (trainer_step_offset), so
        # its max_train_steps stop would come `offset` steps late: it would train to the end of
        # the last epoch instead of stopping at the planned total
        raise ConfigError(
            [
                f"run {run_dir.name} cannot be resumed exactly: it stops inside an epoch "
                f"({steps.total_steps} steps, {per_epoch} per epoch) and the state is past the first epoch; "
                "sd-scripts 48d368fa would train past the planned total (kohya-ss/sd-scripts#1406)"
            ],
            fix="start it again with a step count that is a multiple of the steps per epoch, or with epochs "
            "instead of max_steps (--set training.epochs=N --set ~training.max_steps)",
        )
    launches = int(read_state(run_dir).get("launches") or 1) + 1
    name = launch_name(run_dir, planned.spec.output.name, launches)
    check = ResumeCheck(
        state,
        steps.total_steps,
        per_epoch,
        run_dir=run_dir,
        output_name=planned.spec.output.name,
        launch_name=name,
    )
    offsets = dict(read_state(run_dir).get("trainer_step_offsets") or {})
    offsets[name] = offset
    update_state(run_dir, launches=launches, trainer_step_offsets=offsets)

    def after_exit(result: ChildResult) -> list[Event]:
        return check.release(complete=result.returncode == 0)

    opts = Options(resumed_from=str(state.path), transform=check, after_exit=after_exit)
    extra = [f"--resume={state.path}", "--skip_until_initial_step", f"--initial_step={start}", f"--output_name={name}"]
    return planned, opts, extra, check


def finish_resume(run_dir: Path, check: ResumeCheck) -> None:
    """Record whether the resumed trainer really continued (state.json ``resume_check``)."""
    from lorakit.run.folder import update_state

    update_state(run_dir, resume_check="ok" if check.ok else ("restarted" if check.ok is False else "unknown"))
