"""The names of what a run writes that several packages read, and how its status reads.

A run's status has one store: its folder's status.txt (written by src/tracking/run_status.py),
the latest status, `<status>[: <reason>]`, then maybe `slurm job <id>`. resume=auto
(src/cli/resume.py) and the comparison report (src/tracking/run_records.py) read it here.
"""

import os
import re
import socket
from pathlib import Path

STATUS_FILE = "status.txt"
SLURM_JOB = "slurm job"
# Where a checkpoint keeps the composed config of its run (src/callbacks/run_config.py puts it
# there), which eval and predict rebuild the data and transforms from.
RUN_CONFIG_KEY = "run_config"


def pid_alive(pid: int) -> bool:
    """Whether process pid runs on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but another user's
        return True
    return True


def read_status(run_dir: Path, started: bool = False) -> tuple[str, str, str | None]:
    """The run's status and reason from its status.txt, and the SLURM job it was last seen in;
    without the file `not started`, or `unknown` when the run is known to have `started` (it
    wrote TensorBoard records)."""
    file = run_dir / STATUS_FILE
    lines = file.read_text().splitlines() if file.is_file() else []
    text = lines[0].strip() if lines else None
    job = next(
        (line.removeprefix(SLURM_JOB).strip() for line in lines[1:] if line.startswith(SLURM_JOB)),
        None,
    )
    return (*run_status(text, started), job)


def run_status(text: str | None, started: bool = False) -> tuple[str, str]:
    """The status and reason from a run's status text; `running` only if confirmed."""
    if text is None:
        return ("unknown", "no status recorded") if started else ("not started", "no status")
    status, _, reason = (part.strip() for part in text.partition(":"))
    if status != "running":
        return status, reason
    match = re.fullmatch(r"pid (\d+) on (\S+)", reason)
    if match is None or match[2] != socket.gethostname():
        return "unknown", f"no end recorded, last seen {reason}"
    if pid_alive(int(match[1])):
        return "running", reason
    return "crashed", f"no end recorded, pid {match[1]} is gone"
