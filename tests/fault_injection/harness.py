"""Kill real training runs at random moments, resume them with resume=auto, check nothing was lost.

    python tests/fault_injection/harness.py --kills 8 --seed 0
    python tests/fault_injection/harness.py --kills 6 --every-n-train-steps 3 --out /tmp/faults

Runs a short deterministic `python src/train.py ... resume=auto` on the digits (CPU) once without
interruption (the reference), then the same command in other log folders, killed `--kills` times
by SIGTERM and SIGKILL during training, during validation and during a checkpoint save, each kill
followed by the same command again until the run finishes. The callback in phase_marker.py
(added to each run by an override) writes the run's phase, epoch and step to a small file; the
watcher freezes the process (SIGSTOP) at the moment drawn, reads where it is, and sends the
signal. For a save, it waits for the hidden `.partial-...` file of the checkpoint being written
and signals while that file is there.

Then it checks, prints a table and exits 1 if a check failed:
  - every *.ckpt loads with torch.load(weights_only=True) and is a Lightning checkpoint; every
    CSV, YAML, JSON, text and TensorBoard event file parses (`.partial-...` leftovers of a killed
    save are listed, not broken: the next save in that folder deletes them);
  - a run resumed only from epoch-end checkpoints ends with the reference's weights and
    TensorBoard curves; a run resumed mid-epoch (whose rest of the epoch draws a new shuffle)
    ends with every epoch and step;
  - a kill loses at most one interval of work (the global step at the kill minus the step the
    resume started from): an epoch, or --every-n-train-steps; after SIGTERM the run stops at the
    next safe point (at most one step later) with exit code 143.

A full disk or a read-only logs/ folder is covered by tests/test_atomic_files.py (one error line,
the previous checkpoint kept), not here.
"""

import argparse
import csv
import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from src.core.files import PARTIAL_PREFIX, is_partial  # noqa: E402
from tests.fault_injection.phase_marker import MARKER_ENV  # noqa: E402

PHASES = ("train", "val", "save")
SIGNALS = ("SIGTERM", "SIGKILL")
# A short deterministic run of a small network on the digits, as the tests run it.
BASE_COMMAND = [
    "extras.print_config=false",
    "trainer.accelerator=cpu",
    "~callbacks.rich_progress_bar",
    "~callbacks.rich_model_summary",
    "~callbacks.augmented_images",
    "~callbacks.test_figures",
    "~callbacks.loss_chart",
    "trainer.enable_progress_bar=false",
    "model.net.channels=[8,8,16]",
    "model.net.hidden_dim=32",
    "data.batch_size=32",
    "trainer.limit_test_batches=2",
    "trainer.deterministic=true",
    "+callbacks.phase_marker._target_=tests.fault_injection.phase_marker.PhaseMarker",
]
# The tags compared with the uninterrupted run, as TensorBoard shows them (purged steps hidden).
COMPARED = ("train/loss", "val/acc", "val/loss", "val/acc_best", "test/acc", "test/loss")
RESUMED = re.compile(
    r"resume=auto: continuing (.+?) from \S+ \(saved in epoch \d+, at step (\d+)\)"
)
NEW_RUN = "resume=auto: no unfinished run"
ERROR_LINE = re.compile(r"^[\w.]*(Error|Exception): ")  # a traceback's last line
LIGHTNING_KEYS = ("state_dict", "global_step", "epoch", "pytorch-lightning_version")
RUN_STATUSES = ("running", "finished", "interrupted", "failed", "pruned")
PROCESS_LIMIT = 600  # seconds a run may take before it counts as hung


# ---------------------------------------------------------------------------------------------
# The plan and its figures


@dataclass
class Kill:
    """One planned kill, and what happened."""

    signal: str
    phase: str
    run: int
    tried: bool = False
    moment: str = ""  # the moment drawn, e.g. "step 18" or "epoch 2, val batch 1"
    epoch: int | None = None  # the epoch (from 1) and global step at the kill
    step: int | None = None
    exit_code: int | None = None
    stopped_at: int | None = None  # SIGTERM: the step of the checkpoint the run stopped with
    resumed_from: int | None = None  # the step of the checkpoint the resume started from (0: new)
    mid_epoch: bool = False  # the resume started from a checkpoint within an epoch
    note: str = ""  # what went wrong, if anything

    @property
    def steps_lost(self) -> int | None:
        return lost_steps(self.step, self.resumed_from)

    @property
    def steps_after_signal(self) -> int | None:
        """SIGTERM: the steps trained after the signal before the run stopped."""
        if self.signal != "SIGTERM" or self.step is None or self.stopped_at is None:
            return None
        return self.stopped_at - self.step

    @property
    def resumed_kind(self) -> str:
        if self.resumed_from is None:
            return "-"
        return (
            "new run" if self.resumed_from == 0 else "mid-epoch" if self.mid_epoch else "epoch end"
        )


def lost_steps(kill_step: int | None, resumed_from: int | None) -> int | None:
    """Steps trained before the kill that the resumed run trains again."""
    if kill_step is None or resumed_from is None:
        return None
    return max(0, kill_step - resumed_from)


def interval_steps(steps_per_epoch: int, every_n_train_steps: int | None) -> int:
    """The most a kill may lose: an epoch, or the step interval of last.ckpt if shorter."""
    return min(steps_per_epoch, every_n_train_steps or steps_per_epoch)


def plan_kills(kills: int, seed: int, per_run: int, interval: bool) -> list[list[Kill]]:
    """The kills, each signal and phase at least once where there are 6 or more, in runs of at
    most per_run kills. Kills expected to resume mid-epoch (SIGTERM in training; with a step
    interval, also SIGKILL in training) get runs of their own, so the others compare exactly."""
    rng = random.Random(seed)
    pairs = [(s, p) for s in SIGNALS for p in PHASES]
    rng.shuffle(pairs)
    chosen = pairs[: min(kills, len(pairs))]
    chosen += [rng.choice(pairs) for _ in range(kills - len(chosen))]

    def mid(pair: tuple[str, str]) -> bool:
        return pair[1] == "train" and (pair[0] == "SIGTERM" or interval)

    runs: list[list[Kill]] = []
    for group in ([p for p in chosen if not mid(p)], [p for p in chosen if mid(p)]):
        for start in range(0, len(group), per_run):
            number = len(runs) + 1
            runs.append([Kill(s, p, number) for s, p in group[start : start + per_run]])
    return runs


# ---------------------------------------------------------------------------------------------
# Checking the files a run wrote


def checkpoint_problem(path: Path) -> str | None:
    """Why path is not a whole Lightning checkpoint that the safe loader reads, or None."""
    import torch

    try:
        content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many kinds for a cut-off or foreign file
        first = (str(exc).strip().splitlines() or [""])[0]
        return f"does not load: {type(exc).__name__}: {first[:120]}"
    if not isinstance(content, dict) or not all(key in content for key in LIGHTNING_KEYS):
        return "is not a Lightning checkpoint (no state_dict, global_step, epoch or version)"
    return None


def csv_problem(path: Path) -> str | None:
    rows = list(csv.reader(path.read_text(encoding="utf-8").splitlines()))
    widths = sorted({len(row) for row in rows})
    return "is empty" if not rows else None if len(widths) == 1 else f"has rows of {widths} fields"


def text_problem(path: Path) -> str | None:
    text = path.read_text(encoding="utf-8")
    status = text.split("\n", 1)[0].split(":")[0]
    if path.name == "status.txt" and (not text.endswith("\n") or status not in RUN_STATUSES):
        return f"is not a run status: {text[:60]!r}"
    return None


def events_problem(path: Path) -> str | None:
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    for _ in EventFileLoader(str(path)).Load():  # a torn last record ends the file, as in TB
        pass
    return None


def yaml_problem(path: Path) -> str | None:
    import yaml

    yaml.safe_load(path.read_text(encoding="utf-8"))
    return None


def json_problem(path: Path) -> str | None:
    json.loads(path.read_text(encoding="utf-8"))
    return None


CHECKS = {
    ".ckpt": checkpoint_problem,
    ".csv": csv_problem,
    ".yaml": yaml_problem,
    ".yml": yaml_problem,
    ".json": json_problem,
    ".txt": text_problem,
}


def file_problem(path: Path) -> str | None:
    """Why the file does not parse as its kind; None where it does, or is of no checked kind."""
    check = events_problem if "tfevents" in path.name else CHECKS.get(path.suffix)
    try:
        return check(path) if check else None
    except Exception as exc:
        return f"does not parse: {type(exc).__name__}: {str(exc).strip()[:120]}"


def check_files(folder: Path) -> tuple[int, dict[str, str], list[str]]:
    """Under folder: how many files were checked, the broken ones (path: why) and the
    `.partial-...` leftovers of killed writes (not broken: the next save deletes them)."""
    checked, broken, partial = 0, {}, []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        if is_partial(path):
            partial.append(str(path))
            continue
        checked += 1
        if (problem := file_problem(path)) is not None:
            broken[str(path)] = problem
    return checked, broken, partial


# ---------------------------------------------------------------------------------------------
# What a run ended with


def shown_scalars(run_dir: Path) -> dict[str, list[tuple[int, float]]]:
    """Each compared tag's (step, value) points as TensorBoard shows the run: all its event
    files in order, the points a resumed run purged (purge_step) left out."""
    import logging

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logging.getLogger("tensorboard").setLevel(logging.ERROR)  # not each purge it applies
    accumulator = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0})
    accumulator.Reload()
    tags = set(accumulator.Tags()["scalars"])
    return {t: [(e.step, e.value) for e in accumulator.Scalars(t)] for t in COMPARED if t in tags}


def load_checkpoint(path: Path | None) -> dict[str, Any] | None:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True) if path else None
    except Exception:
        return None


def checkpoint_step(path: Path | None) -> int | None:
    content = load_checkpoint(path)
    return None if content is None else int(content["global_step"])


def resumable(run_dir: Path | None) -> Path | None:
    """The checkpoint resume=auto continues run_dir from, if any."""
    from src.cli.resume import checkpoint_to_resume

    return checkpoint_to_resume(run_dir) if run_dir is not None else None


def differences(run_dir: Path, reference: Path) -> list[str]:
    """How a finished run differs from the uninterrupted one: curves and final weights."""
    import torch

    found = []
    ours, theirs = shown_scalars(run_dir), shown_scalars(reference)
    for tag in COMPARED:
        if ours.get(tag) != theirs.get(tag):
            found.append(f"{tag}: {ours.get(tag)} != {theirs.get(tag)}")
    mine = load_checkpoint(run_dir / "checkpoints" / "last.ckpt") or {}
    other = load_checkpoint(reference / "checkpoints" / "last.ckpt") or {}
    weights, expected = mine.get("state_dict", {}), other.get("state_dict", {})
    if weights.keys() != expected.keys() or not all(
        torch.equal(weights[k], expected[k]) for k in expected
    ):
        found.append("final weights differ")
    return found


# ---------------------------------------------------------------------------------------------
# Starting, watching and killing runs


@dataclass
class Marker:
    """Where the watched run is, as phase_marker.py last wrote it."""

    phase: str
    epoch: int
    step: int
    batch: int
    saves: int
    run_dir: Path


def read_marker(path: Path) -> Marker | None:
    """The marker's content, or None before the run wrote one."""
    try:
        fields = path.read_bytes().rstrip(b" \n\x00").decode().split(" ", 5)
        return Marker(fields[0], *map(int, fields[1:5]), Path(fields[5]))
    except (OSError, ValueError, IndexError, UnicodeDecodeError, TypeError):
        return None


@dataclass
class Setup:
    """What every run of this injection shares."""

    out: Path
    epochs: int
    steps_per_epoch: int
    val_batches: int
    every_n_train_steps: int | None
    rng: random.Random

    def command(self, log_dir: Path) -> list[str]:
        command = [
            *BASE_COMMAND,
            f"trainer.limit_train_batches={self.steps_per_epoch}",
            f"trainer.limit_val_batches={self.val_batches}",
            f"trainer.max_epochs={self.epochs}",
            f"paths.log_dir={log_dir}",
        ]
        if self.every_n_train_steps:
            every = self.every_n_train_steps
            command.append(f"callbacks.last_checkpoint.every_n_train_steps={every}")
        return [*command, "resume=auto"]


def python_path() -> str:
    """PYTHONPATH with the repository root first, so the run finds tests.fault_injection."""
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)


def start(setup: Setup, log_dir: Path, marker: Path, output: Path) -> subprocess.Popen:
    """`python src/train.py <command> resume=auto`, its output into the file `output`."""
    marker.unlink(missing_ok=True)
    Path(f"{marker}.arm").unlink(missing_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    with open(output, "w") as file:
        return subprocess.Popen(
            [sys.executable, "src/train.py", *setup.command(log_dir)],
            cwd=ROOT,
            env={**os.environ, MARKER_ENV: str(marker), "PYTHONPATH": python_path()},
            stdout=file,
            stderr=subprocess.STDOUT,
        )


def where_resumed(process: subprocess.Popen, output: Path) -> tuple[int | None, Path | None]:
    """From the run's log: the step its resume=auto started from (0: a new run) and the folder
    it continued (None: a new one); (None, None) if it ended before saying."""
    deadline = time.monotonic() + PROCESS_LIMIT
    while time.monotonic() < deadline:
        text = output.read_text(errors="replace")
        if match := RESUMED.search(text):
            return int(match[2]), Path(match[1])
        if NEW_RUN in text:
            return 0, None
        if process.poll() is not None:
            return None, None
        time.sleep(0.05)
    return None, None


def _state(pid: int) -> str:
    """The process's state letter from /proc (T: stopped), or "?" where there is none."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def freeze(process: subprocess.Popen) -> None:
    """Stop the process (SIGSTOP) and wait until it has stopped, so its marker stays put."""
    os.kill(process.pid, signal.SIGSTOP)
    deadline = time.monotonic() + 5
    while _state(process.pid) not in ("T", "t", "?") and time.monotonic() < deadline:
        time.sleep(0.001)
    if _state(process.pid) == "?":  # no /proc: give the signal time to land
        time.sleep(0.2)


def thaw(process: subprocess.Popen) -> None:
    os.kill(process.pid, signal.SIGCONT)


def _partial_in(folder: Path) -> bool:
    try:
        return any(entry.name.startswith(PARTIAL_PREFIX) for entry in os.scandir(folder))
    except OSError:
        return False


class Target:
    """When to fire a kill: a moment in its phase drawn from what is left of the run."""

    def __init__(self, kill: Kill, setup: Setup, start_step: int, kills_after: int) -> None:
        n, rng = setup.steps_per_epoch, setup.rng
        first = start_step // n + 1  # the epoch the run starts in, from 1
        last = max(first, setup.epochs - kills_after)  # room for the run's later kills
        self.kill, self.epoch = kill, rng.randint(first, last)
        self.step = self.batch = 0
        self.delay, self.skip, self.saves_seen = 0.0, False, None
        if kill.phase == "train":
            self.step = rng.randint(max(start_step, (self.epoch - 1) * n), self.epoch * n - 1)
            self.delay = rng.uniform(0, 0.005)  # somewhere in the step
            kill.moment = f"step {self.step}"
        elif kill.phase == "val":
            self.batch, self.delay = rng.randrange(setup.val_batches), rng.uniform(0, 0.005)
            kill.moment = f"epoch {self.epoch}, val batch {self.batch}"
        else:
            self.skip = rng.random() < 0.5  # the epoch's first save (best.ckpt) or the next
            kill.moment = f"epoch {self.epoch}, {'second' if self.skip else 'first'} save"

    def reached(self, marker: Marker) -> bool:
        """Whether the run is at the moment, or past it (a moment passed is taken next)."""
        if self.kill.phase == "train":
            return marker.phase == "train" and marker.step >= self.step
        if self.kill.phase == "val":
            ahead = marker.epoch > self.epoch or marker.batch >= self.batch
            return marker.phase == "val" and marker.epoch >= self.epoch and ahead
        if marker.phase != "save" or marker.epoch < self.epoch:
            return False
        if self.saves_seen is None:
            self.saves_seen = marker.saves
        return not self.skip or marker.saves > self.saves_seen


def fire(kill: Kill, process: subprocess.Popen, marker: Marker) -> None:
    """Send the kill's signal to the frozen process, noting where it was."""
    kill.tried, kill.epoch, kill.step = True, marker.epoch, marker.step
    os.kill(process.pid, getattr(signal, kill.signal))
    if kill.signal != "SIGKILL":
        thaw(process)  # its handler runs once the process goes on


def inject(kill: Kill, target: Target, process: subprocess.Popen, marker_file: Path) -> bool:
    """Watch the run and fire the kill at the target; False if the run ended first."""
    deadline = time.monotonic() + PROCESS_LIMIT
    while process.poll() is None and time.monotonic() < deadline:
        marker = read_marker(marker_file)
        if kill.phase == "save" and marker is not None and marker.epoch >= target.epoch:
            Path(f"{marker_file}.arm").touch()  # from here each save waits a moment for us
        if marker is None or not target.reached(marker):
            time.sleep(0.005)
            continue
        if kill.phase == "save":  # the save is held: wait for its file, stop it mid-write
            checkpoints, until = marker.run_dir / "checkpoints", time.monotonic() + 5
            while not _partial_in(checkpoints) and time.monotonic() < until:
                if process.poll() is not None:
                    return False
            freeze(process)
            if _partial_in(checkpoints):
                fire(kill, process, read_marker(marker_file) or marker)
                return True
            thaw(process)  # the save ended before the process stopped: take the next one
            target.skip, target.saves_seen = True, marker.saves
            continue
        time.sleep(target.delay)
        freeze(process)
        now = read_marker(marker_file)
        if now is not None and now.phase == kill.phase:
            fire(kill, process, now)
            return True
        thaw(process)  # it left the phase meanwhile: the next time it is there
    return False


@dataclass
class RunResult:
    """One run (its own log folder): its kills and how it ended."""

    number: int
    kills: list[Kill]
    run_dir: str = ""
    exit_code: int | None = None
    error: str = ""  # the last `error:` line of the last start, if any
    finished: bool = False  # exit 0 and status finished
    final_step: int | None = None
    val_points: int | None = None
    exact: bool = False  # every resume started from an epoch's end (or anew)
    matched: bool | None = None  # exact runs: equal to the uninterrupted run
    differences: list[str] = field(default_factory=list)
    starts: int = 0


def _note_resume(
    kill: Kill,
    setup: Setup,
    start_step: int | None,
    continued: Path | None,
    killed_dir: Path | None,
) -> None:
    """Record where the resume after kill started, and whether it continued the right run."""
    kill.resumed_from = start_step
    kill.mid_epoch = bool(start_step and start_step % setup.steps_per_epoch)
    if continued is not None and killed_dir is not None and continued != killed_dir:
        kill.note += f" resumed {continued}, not the killed {killed_dir};"
    if continued is None and checkpoint_step(resumable(killed_dir)) is not None:
        kill.note += " started a new run although the killed one had a checkpoint;"


def _wait(process: subprocess.Popen) -> int:
    try:
        return process.wait(timeout=PROCESS_LIMIT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -1


def run_with_kills(setup: Setup, number: int, kills: list[Kill], log_dir: Path) -> RunResult:
    """Start the command, kill it as planned, resume it after each kill until it finishes."""
    result = RunResult(number, kills)
    marker = setup.out / f"marker-{number}"
    previous: Kill | None = None
    run_dir: Path | None = None
    process: subprocess.Popen | None = None
    try:
        while True:
            output = setup.out / "processes" / f"run{number}-start{result.starts + 1}.out"
            process = start(setup, log_dir, marker, output)
            result.starts += 1
            start_step, continued = where_resumed(process, output)
            if previous is not None:
                _note_resume(previous, setup, start_step, continued, run_dir)
            pending = [k for k in kills if not k.tried and not k.note]
            if start_step is None:
                for left in pending:
                    left.note = f"missed: the run ended before training (see {output})"
            if start_step is None or not pending:
                break
            kill = pending[0]
            target = Target(kill, setup, start_step, len(pending) - 1)
            if not inject(kill, target, process, marker):
                for left in pending:
                    left.note = "missed: the run ended first"
                break
            run_dir = getattr(read_marker(marker), "run_dir", run_dir)
            kill.exit_code = _wait(process)
            if kill.signal == "SIGTERM":
                kill.stopped_at = checkpoint_step(resumable(run_dir))
            print(
                f"run {number}: {kill.signal} during {kill.phase} at {kill.moment}: epoch "
                f"{kill.epoch}, step {kill.step}, exit code {kill.exit_code}",
                flush=True,
            )
            previous = kill
        result.exit_code = _wait(process)
    except BaseException:
        if process is not None and process.poll() is None:
            process.kill()  # stopped (SIGSTOP) or running: do not leave it behind
        raise
    lines = output.read_text(errors="replace").splitlines()
    errors = [line for line in lines if line.startswith("error:") or ERROR_LINE.match(line)]
    result.error = errors[-1] if errors else ""
    run_dir = getattr(read_marker(marker), "run_dir", run_dir)
    if run_dir is not None:
        result.run_dir = str(run_dir)
        status = run_dir / "status.txt"
        status_text = status.read_text() if status.is_file() else ""
        result.finished = result.exit_code == 0 and status_text == "finished\n"
        result.final_step = checkpoint_step(run_dir / "checkpoints" / "last.ckpt")
        result.val_points = len(shown_scalars(run_dir).get("val/acc", []))
    tried = [k for k in kills if k.tried]
    result.exact = len(tried) == len(kills) and not any(k.mid_epoch for k in tried)
    return result


# ---------------------------------------------------------------------------------------------
# The report


def failures(results: list[RunResult], broken: dict[str, str], setup: Setup) -> list[str]:
    """Every check that failed, one line each."""
    found = [f"broken file: {path} {why}" for path, why in broken.items()]
    interval = interval_steps(setup.steps_per_epoch, setup.every_n_train_steps)
    total = setup.epochs * setup.steps_per_epoch
    for result in results:
        run = f"run {result.number}" if result.number else "the uninterrupted run"
        if not result.finished:
            found.append(
                f"{run} did not finish (exit code {result.exit_code}"
                + (f", {result.error}" if result.error else "")
                + f") in {result.run_dir}"
            )
        if result.final_step != total or result.val_points != setup.epochs:
            found.append(
                f"{run} ended at step {result.final_step} with {result.val_points} val/acc "
                f"points, not {total} and {setup.epochs}"
            )
        if result.exact and result.matched is False:
            found.append(f"{run} differs: {'; '.join(result.differences)[:400]}")
        for kill in result.kills:
            name = f"{run}: {kill.signal} during {kill.phase}"
            if not kill.tried:
                found.append(f"{name}: not tried ({kill.note or 'no moment found'})")
                continue
            if kill.note:
                found.append(f"{name}:{kill.note}")
            if kill.steps_lost is None or kill.steps_lost > interval:
                found.append(f"{name}: lost {kill.steps_lost} steps, more than {interval}")
            if kill.signal == "SIGTERM":
                if kill.exit_code not in (0, 128 + signal.SIGTERM):
                    found.append(f"{name}: exit code {kill.exit_code}, not 143")
                after = kill.steps_after_signal
                if after is None or after > 1:
                    found.append(
                        f"{name}: stopped {after} steps after the signal (at step "
                        f"{kill.stopped_at}, signal at {kill.step}), not at the next safe point"
                    )
    return found


def summary_rows(results: list[RunResult]) -> list[dict[str, Any]]:
    """One row per signal and phase: kills tried, where they resumed from, runs matched..."""
    by_number = {r.number: r for r in results}
    kills = [k for r in results for k in r.kills]
    rows = []
    for name in SIGNALS:
        for phase in PHASES:
            group = [k for k in kills if k.signal == name and k.phase == phase]
            tried = [k for k in group if k.tried]
            kinds = [k.resumed_kind for k in tried]
            compared = [by_number[k.run] for k in tried if by_number[k.run].exact]
            lost = [k.steps_lost for k in tried if k.steps_lost is not None]
            after = [k.steps_after_signal for k in tried if k.steps_after_signal is not None]
            rows.append(
                {
                    "signal": name,
                    "phase": phase,
                    "planned": len(group),
                    "tried": len(tried),
                    "resumed_from": {kind: kinds.count(kind) for kind in dict.fromkeys(kinds)},
                    "compared": len(compared),
                    "matched": sum(bool(r.matched) for r in compared),
                    "completed": sum(by_number[k.run].finished for k in tried),
                    "steps_lost_max": max(lost, default=None),
                    "steps_after_sigterm_max": max(after, default=None),
                }
            )
    return rows


def print_report(report: dict[str, Any], results: list[RunResult]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=150)
    kills = Table(title="Each kill")
    for column in ("run", "signal", "phase", "moment drawn", "epoch", "step", "exit", "resumed"):
        kills.add_column(column)
    kills.add_column("steps lost", justify="right")
    for kill in (k for r in results for k in r.kills):
        resumed = f"{kill.resumed_kind} (step {kill.resumed_from})" if kill.tried else kill.note
        kills.add_row(
            str(kill.run), kill.signal, kill.phase, kill.moment, str(kill.epoch),
            str(kill.step), str(kill.exit_code), resumed, str(kill.steps_lost),
        )  # fmt: skip
    console.print(kills)
    table = Table(title=f"Fault injection: {report['kills']} kills (seed {report['seed']})")
    for column in ("signal", "phase", "kills tried", "resumed from", "resumes matched", "finished"):
        table.add_column(column)
    table.add_column("steps lost (max)", justify="right")
    table.add_column("steps after SIGTERM (max)", justify="right")
    for row in report["table"]:
        lost, after = row["steps_lost_max"], row["steps_after_sigterm_max"]
        table.add_row(
            row["signal"],
            row["phase"],
            f"{row['tried']}/{row['planned']}",
            ", ".join(f"{n} {kind}" for kind, n in row["resumed_from"].items()) or "-",
            f"{row['matched']}/{row['compared']}" if row["compared"] else "- (run mid-epoch)",
            f"{row['completed']}/{row['tried']}",
            "-" if lost is None else str(lost),
            "-" if after is None else str(after),
        )
    console.print(table)
    console.print(
        f"runs: {len(results)} killed and resumed ({report['starts']} starts); "
        f"{report['matched']}/{report['exact_runs']} resumed from epoch ends equal the "
        f"uninterrupted run; {report['finished']}/{len(results)} finished every epoch and step"
    )
    console.print(
        f"files checked: {report['files_checked']}, broken: {len(report['broken'])}; "
        f".partial- leftovers of killed saves (not broken): {len(report['partial'])}",
        highlight=False,
    )
    for path in report["partial"]:
        console.print(f"  {path}", highlight=False)
    console.print(
        f"steps lost at most: {report['steps_lost_max']} (interval: {report['interval']} steps)"
    )
    for line in report["failures"]:
        console.print(f"[red]FAILED[/red] {line}", highlight=False)
    failed = len(report["failures"])
    console.print("all checks passed" if not failed else f"{failed} checks failed")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=6, help="kills in all (6 cover each pair)")
    parser.add_argument("--seed", type=int, default=0, help="draws the kills and their moments")
    parser.add_argument("--out", type=Path, help="default: logs/fault_injection/<time>")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--steps-per-epoch", type=int, default=8)
    parser.add_argument("--val-batches", type=int, default=3)
    parser.add_argument("--kills-per-run", type=int, default=3, help="kills before a run ends")
    parser.add_argument(
        "--every-n-train-steps",
        type=int,
        help="also save last.ckpt every N steps (callbacks.last_checkpoint.every_n_train_steps)",
    )
    args = parser.parse_args(argv)
    out = args.out or ROOT / "logs" / "fault_injection" / time.strftime("%Y-%m-%d_%H-%M-%S")
    out = out.absolute()
    out.mkdir(parents=True, exist_ok=True)
    setup = Setup(
        out,
        args.epochs,
        args.steps_per_epoch,
        args.val_batches,
        args.every_n_train_steps,
        random.Random(args.seed),
    )
    plan = plan_kills(args.kills, args.seed, args.kills_per_run, bool(args.every_n_train_steps))
    print(f"command: python src/train.py {' '.join(setup.command(out / '<run>'))}", flush=True)
    reference = run_with_kills(setup, 0, [], out / "reference")
    reference.matched = True  # what the others are compared with
    results = [
        run_with_kills(setup, i + 1, kills, out / f"run{i + 1}") for i, kills in enumerate(plan)
    ]
    for result in results:
        if result.exact and result.run_dir and reference.run_dir:
            result.differences = differences(Path(result.run_dir), Path(reference.run_dir))
            result.matched = not result.differences
    checked, broken, partial = 0, {}, []
    for folder in [out / "reference", *(out / f"run{r.number}" for r in results)]:
        count, bad, left = check_files(folder)
        checked, partial = checked + count, partial + left
        broken.update(bad)
    all_kills = [k for r in results for k in r.kills]
    exact = [r for r in results if r.exact]
    report = {
        "kills": args.kills,
        "seed": args.seed,
        "table": summary_rows(results),
        "starts": sum(r.starts for r in [reference, *results]),
        "exact_runs": len(exact),
        "matched": sum(bool(r.matched) for r in exact),
        "finished": sum(r.finished for r in results),
        "files_checked": checked,
        "broken": broken,
        "partial": partial,
        "steps_lost_max": max((k.steps_lost or 0 for k in all_kills), default=0),
        "interval": interval_steps(args.steps_per_epoch, args.every_n_train_steps),
        "failures": failures([reference, *results], broken, setup),
        "each_kill": [asdict(k) | {"steps_lost": k.steps_lost} for k in all_kills],
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    print_report(report, results)
    return 1 if report["failures"] else 0


if __name__ == "__main__":
    sys.exit(main())
