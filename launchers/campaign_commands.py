"""Campaign commands run in a queue job: ``al-loop distil``, ``phase``, ``melting`` and
``liquid`` with ``--queue NAME`` (a GPU partition) become one Firework of that queue's category,
whose task runs the same command on the node.

The Firework carries the command line, the folder it was given in and the SHA-256 of the
campaign file, signed with the campaign machine's model-signing key (database/model_signing.py):
the node runs its own ``al-loop`` on that file only if the signature matches and the file is
unchanged, for a campaign file names model files that are loaded, and anyone who can write to
the LaunchPad could write a Firework. The command takes its own campaign lock and stores its
results in the dataset as it does anywhere; its output is kept in the launch folder.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from fireworks import FiretaskBase, Firework, FWAction, Workflow, explicit_serialize

from database.model_signing import sign, verify

log = logging.getLogger(__name__)

#: The al-loop commands a queue job may run.
QUEUE_COMMANDS = ("distil", "phase", "melting", "liquid")
#: The command's output, in its launch folder.
OUTPUT_FILE = "al-loop-command.log"


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclasses.dataclass(frozen=True)
class CommandJob:
    """``al-loop <argv>`` run in ``cwd`` for campaign ``campaign`` (its file's SHA-256)."""

    campaign: str
    argv: list[str]
    cwd: str
    campaign_file: str
    campaign_sha256: str
    signature: str | None = None

    def __post_init__(self) -> None:
        if not self.argv or self.argv[0] not in QUEUE_COMMANDS:
            raise ValueError(f"a queue job runs one of {QUEUE_COMMANDS}, not {self.argv[:1]}")

    @property
    def key(self) -> str:
        """The same command on the same campaign file: the same key."""
        text = "\0".join([*self.argv, self.cwd, self.campaign_sha256])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def _context(self) -> dict[str, Any]:
        return {"kind": "campaign-command", **dataclasses.asdict(self), "signature": None}

    def signed(self) -> CommandJob:
        return dataclasses.replace(self, signature=sign(b"", self._context()))

    def check(self) -> CommandJob:
        """This job, if its signature matches this machine's key and its campaign file is the
        one signed; else UntrustedModel or RuntimeError."""
        what = f"the queue job `al-loop {' '.join(self.argv)}`"
        verify(b"", self.signature, what, self._context())
        if file_sha256(Path(self.campaign_file)) != self.campaign_sha256:
            raise RuntimeError(
                f"{self.campaign_file} changed since `al-loop {self.argv[0]} --queue` was run: "
                "submit it again"
            )
        return self


def command_workflow(job: CommandJob, category: str | None) -> Workflow:
    """One Firework running ``job`` (signed here) in a job of ``category``'s queue."""
    spec: dict[str, Any] = {
        "al_loop": {"campaign": job.campaign, "stage": job.argv[0], "command_key": job.key}
    }
    if category:
        spec["_category"] = category
    name = f"{job.argv[0]} {job.campaign} {job.key[:8]}"
    task = CampaignCommandTask(job=dataclasses.asdict(job.signed()))
    metadata = {"al_loop_campaign": job.campaign, "al_loop_stage": job.argv[0]}
    return Workflow([Firework([task], spec=spec, name=name)], name=name, metadata=metadata)


@explicit_serialize
class CampaignCommandTask(FiretaskBase):
    """Run a signed :class:`CommandJob` with this worker's ``al-loop``; FIZZLE with the end of
    its output when it fails."""

    required_params = ["job"]

    def run_task(self, fw_spec: dict[str, Any]) -> FWAction:
        job = CommandJob(**dict(self["job"])).check()
        beside = Path(sys.executable).parent / "al-loop"  # this worker's own al-loop
        al_loop = str(beside) if beside.exists() else shutil.which("al-loop")
        if al_loop is None:
            raise RuntimeError(f"al-loop is not installed beside {sys.executable} nor on PATH")
        output = Path.cwd() / OUTPUT_FILE
        with open(output, "w") as out:
            done = subprocess.run(
                [al_loop, *job.argv],
                cwd=job.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "COLUMNS": "160"},
            )
        if done.returncode != 0:
            tail = output.read_text(errors="replace").splitlines()[-15:]
            raise RuntimeError(
                f"al-loop {job.argv[0]} exited with {done.returncode} (output: {output}):\n"
                + "\n".join(tail)
            )
        return FWAction(stored_data={"command": job.argv[0], "output": str(output)})
