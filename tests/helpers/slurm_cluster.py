"""A real single-node SLURM cluster on this machine (Debian's slurm-wlm and munge, installed by
scripts/setup.sh), started without systemd as docs/ENVIRONMENT.md's recipe says. Root only.

``start_cluster()`` writes /etc/slurm/slurm.conf (only if absent, or if it is this module's),
starts munged, slurmctld and slurmd unless they answer already, and waits until the node is
idle. The daemons are left running: the next test session finds them.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import time
from pathlib import Path

CONF = Path("/etc/slurm/slurm.conf")
MARK = "# written by al-loop's tests/helpers/slurm_cluster.py"
MUNGE_SOCKET = Path("/run/munge/munge.socket.2")


def slurm_conf(cpus: int, memory_mb: int) -> str:
    return f"""{MARK}
ClusterName=al-loop-test
SlurmctldHost=localhost
SlurmUser=slurm
SlurmdUser=root
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
KillWait=5
OverTimeLimit=0
InactiveLimit=0
MinJobAge=30
NodeName=localhost NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb}
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
"""


def _answers(*cmd: str) -> bool:
    return subprocess.run(cmd, capture_output=True, timeout=30).returncode == 0


def _munge_up() -> bool:
    return MUNGE_SOCKET.exists() and _answers("bash", "-c", "munge -n | unmunge")


def start_cluster(timeout_s: float = 60.0) -> None:
    """Start the cluster (or find it running); raise RuntimeError saying what is missing."""
    missing = [c for c in ("sbatch", "slurmctld", "slurmd", "munged") if not shutil.which(c)]
    if missing:
        raise RuntimeError(
            f"SLURM is not installed ({', '.join(missing)} missing): run scripts/setup.sh as root, "
            "which installs slurm-wlm and munge"
        )
    if os.geteuid() != 0:
        raise RuntimeError("starting the test SLURM cluster needs root")
    if not CONF.exists() or CONF.read_text().startswith(MARK):
        memory_mb = int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**20 * 0.8)
        CONF.write_text(slurm_conf(os.cpu_count() or 1, memory_mb))
    slurm, munge = pwd.getpwnam("slurm"), pwd.getpwnam("munge")
    for folder, owner in (
        ("/var/spool/slurmctld", slurm),
        ("/var/spool/slurmd", slurm),
        ("/var/log/slurm", slurm),
        ("/run/munge", munge),
        ("/var/log/munge", munge),
        ("/var/lib/munge", munge),
    ):
        Path(folder).mkdir(parents=True, exist_ok=True)
        os.chown(folder, owner.pw_uid, owner.pw_gid)
    if not _munge_up():
        key = Path("/etc/munge/munge.key")
        if not key.exists():
            subprocess.run(["mungekey", "--create"], check=True)
            os.chown(key, munge.pw_uid, munge.pw_gid)
        subprocess.run(["runuser", "-u", "munge", "--", "munged", "--force"], check=True)
    if not _answers("scontrol", "ping"):
        subprocess.run(["slurmctld"], check=True)
    if not _answers("pgrep", "-x", "slurmd"):
        subprocess.run(["slurmd", "-N", "localhost"], check=True)
    deadline = time.monotonic() + timeout_s
    state = ""
    while time.monotonic() < deadline:
        done = subprocess.run(
            ["sinfo", "-h", "-n", "localhost", "-o", "%T"], capture_output=True, text=True
        )
        state = done.stdout.strip()
        if state in ("idle", "mixed", "allocated"):
            return
        if state.startswith("down") or state.startswith("drain"):
            subprocess.run(["scontrol", "update", "nodename=localhost", "state=resume"])
        time.sleep(0.5)
    raise RuntimeError(f"the SLURM node did not become idle (state {state!r}); see /var/log/slurm")
