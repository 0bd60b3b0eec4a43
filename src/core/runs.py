"""The names of what a run writes that several packages read, and how its status reads.

A run folder's status.txt (written by src/tracking/run_status.py) holds the run's latest status,
`<status>[: <reason>]`, then maybe `slurm job <id>`; resume=auto (src/cli/resume.py) and the
comparison report (src/tracking/run_records.py) read it.
"""

import os
import re
import socket

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


def run_status(text: str | None, has_events: bool) -> tuple[str, str]:
    """The status and reason from a run's last status text; `running` only if confirmed."""
    if text is None:
        return ("unknown", "no status recorded") if has_events else ("not started", "no events")
    status, _, reason = (part.strip() for part in text.partition(":"))
    if status != "running":
        return status, reason
    match = re.fullmatch(r"pid (\d+) on (\S+)", reason)
    if match is None or match[2] != socket.gethostname():
        return "unknown", f"no end recorded, last seen {reason}"
    if pid_alive(int(match[1])):
        return "running", reason
    return "crashed", f"no end recorded, pid {match[1]} is gone"
