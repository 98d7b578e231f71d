"""FireWorks' id counters, made safe on the embedded server.

FireWorks takes new Firework and launch ids with ``find_one_and_update({}, {"$inc": ...})`` and
reads the document *before* the update. secantusdb 0.7.0b3 returns a stale pre-image when
several clients increment at once (measured: 3 processes x 300 increments gave 576 distinct
pre-images, though the counter itself ended right at 901); the post-image is always right.
Two launches then share a launch id and one launch record overwrites the other (seen in the
dispatch benchmark: 199 launches for 200 Fireworks). These replacements read the post-image
and subtract, which is correct on any MongoDB-protocol server; ``bulk_add_wfs``, which reads the
same pre-image for a block of ids, takes its block the same way. :func:`patch` applies them to
this process; local rocket launchers run through ``python -m launchers.rlaunch``, which
applies them before FireWorks' own ``rlaunch``.
"""

from __future__ import annotations

from fireworks import Firework, Workflow
from fireworks.core.launchpad import LaunchPad
from pymongo import ReturnDocument

from database import resolve_uri


def _next(lp: LaunchPad, field: str, quantity: int) -> int:
    doc = lp.fw_id_assigner.find_one_and_update(
        {}, {"$inc": {field: quantity}}, return_document=ReturnDocument.AFTER
    )
    if doc is None:
        raise ValueError(
            f"Could not get the next {field}: initialise the LaunchPad first "
            "(`lpad reset`, or any al-loop command that opens it)"
        )
    return int(doc[field]) - quantity


def get_new_fw_id(self: LaunchPad, quantity: int = 1) -> int:
    """The first of ``quantity`` new Firework ids."""
    return _next(self, "next_fw_id", quantity)


def get_new_launch_id(self: LaunchPad) -> int:
    """A new launch id."""
    return _next(self, "next_launch_id", 1)


def bulk_add_wfs(self: LaunchPad, wfs: list[Workflow | Firework]) -> None:
    """FireWorks' ``bulk_add_wfs`` (workflows, then their Fireworks, each in one
    ``insert_many``) with its block of ids taken from the post-image: FireWorks' own reads the
    pre-image of the same counter, stale on secantusdb under concurrent writers."""
    wfs = [Workflow.from_firework(wf) if isinstance(wf, Firework) else wf for wf in wfs]
    counter = get_new_fw_id(self, quantity=sum(len(wf) for wf in wfs))
    for wf in wfs:
        old_new = dict(zip(wf.id_fw, range(counter, counter + len(wf)), strict=True))
        for fw in wf:
            fw.fw_id = old_new[fw.fw_id]
        wf._reassign_ids(old_new)
        counter += len(wf)
        for fw_id in wf.root_fw_ids:
            wf.id_fw[fw_id].state = "READY"
            wf.fw_states[fw_id] = "READY"
    # workflows first, so that no Firework can be checked out without its workflow
    self.workflows.insert_many(wf.to_db_dict() for wf in wfs)
    self.fireworks.insert_many(fw.to_db_dict() for wf in wfs for fw in wf)


_FROM_DICT = LaunchPad.from_dict.__func__  # FireWorks' own


#: Keys of al-loop's ``my_launchpad.yaml`` that say where the full URI (with its password)
#: is, written instead of it (launchers.launchpad).
URI_FILE_KEY, URI_ENV_KEY = "al_loop_uri_file", "al_loop_uri_env"


def launchpad_host(content: dict) -> str:
    """The URI a ``my_launchpad.yaml`` stands for: read from the file or variable it names."""
    if content.get(URI_FILE_KEY):
        uri = resolve_uri(uri_file=content[URI_FILE_KEY])
    elif content.get(URI_ENV_KEY):
        uri = resolve_uri(uri_env=content[URI_ENV_KEY])
    else:
        return content["host"]
    assert uri is not None
    return uri


def from_dict(cls: type[LaunchPad], d: dict) -> LaunchPad:
    """FireWorks' ``LaunchPad.from_dict``, with the URI read from the file or variable that
    al-loop's ``my_launchpad.yaml`` names instead of a password."""
    return _FROM_DICT(cls, {**d, "host": launchpad_host(d)})


def patch() -> None:
    """Use the post-image counters in every LaunchPad of this process, and read the URI of
    al-loop's launchpad files where they say (idempotent)."""
    LaunchPad.get_new_fw_id = get_new_fw_id
    LaunchPad.get_new_launch_id = get_new_launch_id
    LaunchPad.bulk_add_wfs = bulk_add_wfs
    LaunchPad.from_dict = classmethod(from_dict)
