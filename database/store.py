"""The dataset in MongoDB: collections, indexes, structures, labels and GridFS arrays.

Collections: ``structures``, ``labels``, ``models``, ``campaigns``, ``metrics`` (+ GridFS ``fs``).
Uniqueness: a structure is stored once (``_id`` = geometry hash); a label once per
(structure, settings hash), also when two workers race for it (:meth:`Store.claim_label`).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import gridfs
import numpy as np
import pymongo
from ase import Atoms
from bson import ObjectId
from pymongo import ASCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError

from database.documents import (
    INLINE_ARRAY_LIMIT_BYTES,
    arrays_nbytes,
    atoms_from_arrays,
    composition_fields,
    decode_npz,
    encode_npz,
    label_to_atoms,
    software_versions,
    structure_arrays,
    structure_id,
    utcnow,
)
from database.model_signing import sign, verify
from database.queries import LabelQuery

log = logging.getLogger(__name__)

#: Statuses after which a label may be computed again (by a rerun of its Firework).
RETRYABLE = ("unconverged", "killed", "input_error", "crashed")
#: A ``running`` label whose worker has not beaten its heartbeat for this long is taken over
#: (seconds; workers beat every tenth of it: launchers.tasks).
CLAIM_EXPIRY_S = 600.0


def signed_context(document: dict[str, Any]) -> dict[str, Any]:
    """What a model or student file's signature binds it to besides its bytes: its campaign,
    iteration and member (a model), kind and key (a distillation), and its companion files."""
    keys = ("campaign", "iteration", "member", "kind", "key", "companion_files")
    return {k: document[k] for k in keys if k in document}


def claim_expired(label: dict[str, Any], now: datetime, expiry_s: float) -> bool:
    """Whether a ``running`` label's claim expired at ``now`` (the server's clock): its last
    heartbeat (or, from before heartbeats, its claim) older than ``expiry_s``, or than its
    holder's own expiry (``claimed_by.expiry_s``) when that is longer."""
    last = label.get("heartbeat_at") or label.get("claimed_at")
    if last is None:
        return True
    theirs = float((label.get("claimed_by") or {}).get("expiry_s") or 0)
    return (now - last).total_seconds() > max(expiry_s, theirs)


def _expired(now: datetime, expiry_s: float) -> dict[str, Any]:
    """Match a claim whose last heartbeat (or, from before heartbeats, its claim) is older
    than ``expiry_s``."""
    cutoff = now - timedelta(seconds=expiry_s)
    return {
        "$or": [
            {"heartbeat_at": {"$lt": cutoff}},
            {"heartbeat_at": {"$exists": False}, "claimed_at": {"$lt": cutoff}},
        ]
    }


#: Fields of an earlier outcome kept in a label's ``history`` when it is computed again.
HISTORY_KEYS = ("status", "error", "updated_at", "claimed_by", "wall_time_s")

INDEXES: dict[str, list[tuple[list[tuple[str, int]], dict[str, Any]]]] = {
    "structures": [
        ([("requests.campaign", ASCENDING), ("requests.iteration", ASCENDING)], {}),
        ([("chemsys", ASCENDING)], {}),
    ],
    "labels": [
        ([("structure_id", ASCENDING), ("physics_hash", ASCENDING)], {"unique": True}),
        (
            [
                ("requests.campaign", ASCENDING),
                ("requests.iteration", ASCENDING),
                ("status", ASCENDING),
            ],
            {},
        ),
        (
            [("requests.campaign", ASCENDING), ("status", ASCENDING), ("pressure_GPa", ASCENDING)],
            {},
        ),
        ([("elements", ASCENDING)], {}),
        ([("chemsys", ASCENDING)], {}),
        ([("physics_hash", ASCENDING)], {}),
        ([("status", ASCENDING)], {}),
    ],
    "models": [
        (
            [("campaign", ASCENDING), ("iteration", ASCENDING), ("member", ASCENDING)],
            {"unique": True},
        )
    ],
    "metrics": [
        (
            [("campaign", ASCENDING), ("iteration", ASCENDING), ("stage", ASCENDING)],
            {"unique": True},
        )
    ],
    "distillations": [
        ([("campaign", ASCENDING), ("kind", ASCENDING), ("key", ASCENDING)], {"unique": True})
    ],
    "phases": [
        ([("campaign", ASCENDING), ("key", ASCENDING), ("name", ASCENDING)], {"unique": True})
    ],
}


class Store:
    """The al-loop dataset on one MongoDB database (the LaunchPad uses its own database)."""

    def __init__(
        self,
        client: pymongo.MongoClient,
        database: str,
        launchpad_database: str = "al_loop_fireworks",
        uri: str | None = None,
    ) -> None:
        self.client = client
        self.db = client[database]
        self.database_name = database
        self.launchpad_database = launchpad_database
        self.uri = uri
        self.fs = gridfs.GridFS(self.db)
        self.ensure_indexes()

    @classmethod
    def connect(
        cls,
        uri: str,
        database: str,
        launchpad_database: str = "al_loop_fireworks",
        timeout_s: float = 10.0,
    ) -> Store:
        """Connect to ``uri`` and check that the server answers."""
        client = pymongo.MongoClient(
            uri, serverSelectionTimeoutMS=int(timeout_s * 1000), tz_aware=True
        )
        client.admin.command("ping")
        return cls(client, database, launchpad_database=launchpad_database, uri=uri)

    def close(self) -> None:
        self.client.close()

    def ensure_indexes(self) -> None:
        for collection, indexes in INDEXES.items():
            for keys, options in indexes:
                self.db[collection].create_index(keys, **options)

    # -- arrays ----------------------------------------------------------------------------------
    def pack_arrays(self, arrays: dict[str, np.ndarray], name: str) -> dict[str, Any]:
        """Fields that hold ``arrays``: inline lists, or a GridFS file when they are large."""
        if arrays_nbytes(arrays) <= INLINE_ARRAY_LIMIT_BYTES:
            return {
                "arrays": {k: np.asarray(v).tolist() for k, v in arrays.items()},
                "arrays_file": None,
            }
        file_id = self.fs.put(encode_npz(arrays), filename=f"{name}.npz")
        return {"arrays": None, "arrays_file": file_id}

    def unpack_arrays(self, doc: dict[str, Any]) -> dict[str, np.ndarray]:
        """The arrays of a document, wherever they are stored."""
        if doc.get("arrays_file") is not None:
            return decode_npz(self.fs.get(doc["arrays_file"]).read())
        return {k: np.asarray(v) for k, v in (doc.get("arrays") or {}).items()}

    # -- structures ------------------------------------------------------------------------------
    def add_structure(
        self, atoms: Atoms, campaign: str, iteration: int, source: dict[str, Any] | None = None
    ) -> str:
        """Store a structure once; record that ``campaign`` asked for it. Returns its id."""
        sid = structure_id(atoms)
        request = {"campaign": campaign, "iteration": iteration, **(source or {})}
        if self.db.structures.count_documents({"_id": sid}, limit=1) == 0:
            doc = {
                "_id": sid,
                **composition_fields(atoms),
                **self.pack_arrays(structure_arrays(atoms), f"structure-{sid}"),
                "requests": [request],
                "created_at": utcnow(),
            }
            try:
                self.db.structures.insert_one(doc)
                return sid
            except DuplicateKeyError:  # another worker stored it first
                if doc["arrays_file"] is not None:
                    self.fs.delete(doc["arrays_file"])
        self.db.structures.update_one({"_id": sid}, {"$addToSet": {"requests": request}})
        return sid

    def add_structures(
        self,
        structures: Iterable[Atoms],
        campaign: str,
        iteration: int,
        source: dict[str, Any] | None = None,
    ) -> list[str]:
        return [self.add_structure(a, campaign, iteration, source) for a in structures]

    def _structure_doc(self, sid: str) -> dict[str, Any]:
        doc = self.db.structures.find_one({"_id": sid})
        if doc is None:
            raise KeyError(f"no structure {sid} in database {self.database_name}")
        return doc

    def get_structure(self, sid: str) -> Atoms:
        return atoms_from_arrays(self.unpack_arrays(self._structure_doc(sid)))

    def structure_ids(self, campaign: str, iteration: int | None = None) -> list[str]:
        match: dict[str, Any] = {"campaign": campaign}
        if iteration is not None:
            match["iteration"] = iteration
        cursor = self.db.structures.find({"requests": {"$elemMatch": match}}, {"_id": 1})
        return [d["_id"] for d in cursor.sort("created_at", ASCENDING)]

    def unlabelled_structure_ids(self, campaign: str, physics_hashes: list[str]) -> list[str]:
        """The campaign's structures that have no label (of any status) with any of
        ``physics_hashes``, oldest first."""
        ids = self.structure_ids(campaign)
        match = {"structure_id": {"$in": ids}, "physics_hash": {"$in": physics_hashes}}
        labelled = {d["structure_id"] for d in self.db.labels.find(match, {"structure_id": 1})}
        return [sid for sid in ids if sid not in labelled]

    # -- labels ----------------------------------------------------------------------------------
    def claim_label(
        self,
        sid: str,
        physics_hash: str,
        campaign: str,
        iteration: int,
        worker: dict[str, Any],
        expiry_s: float = CLAIM_EXPIRY_S,
    ) -> dict[str, Any] | None:
        """Reserve the label of ``sid`` under ``physics_hash`` for ``worker``.

        Returns the claimed document, or ``None`` when the label is done (``ok``) or being
        computed by another worker. A failed label, one left ``running`` by an earlier launch
        of the same job (``worker["job_id"]``: a Firework's batch key, stable across reruns),
        or one whose claim expired (no heartbeat, :meth:`beat_label`, for ``expiry_s``: its
        worker is gone) is taken over.
        """
        request = {"campaign": campaign, "iteration": iteration}
        worker = {**worker, "token": uuid.uuid4().hex}  # this claim, and no other, completes it
        structure = self.db.structures.find_one({"_id": sid}, {"arrays": 0})
        if structure is None:
            raise KeyError(f"no structure {sid} to label in database {self.database_name}")
        now = self.server_now()  # claims of several hosts compare on one clock
        doc = {
            "structure_id": sid,
            "physics_hash": physics_hash,
            "status": "running",
            "requests": [request],
            **{
                k: structure[k]
                for k in (
                    "formula",
                    "elements",
                    "chemsys",
                    "natoms",
                    "composition",
                    "volume_per_atom_A3",
                )
                if k in structure
            },
            "claimed_by": worker,
            "claimed_at": now,
            "heartbeat_at": now,
            "created_at": now,
            "attempts": 1,
            "history": [],
        }
        try:
            self.db.labels.insert_one(doc)
            return doc
        except DuplicateKeyError:
            pass
        key = {"structure_id": sid, "physics_hash": physics_hash}
        self.db.labels.update_one(key, {"$addToSet": {"requests": request}})
        takeover: dict[str, Any] = {"$or": [{"status": {"$in": list(RETRYABLE)}}]}
        takeover["$or"].append({"status": "running", **_expired(now, expiry_s)})
        if worker.get("job_id") is not None:  # its own earlier launch's claim
            takeover["$or"].append({"status": "running", "claimed_by.job_id": worker["job_id"]})
        while True:
            current = self.db.labels.find_one({**key, **takeover}, {"arrays": 0})
            if current is None:
                return None
            other = current["claimed_by"].get("job_id") != worker.get("job_id")
            if (
                current["status"] == "running"
                and other
                and not claim_expired(current, now, expiry_s)
            ):
                return None  # its holder's own expiry, longer than ours, has not passed
            operation: dict[str, Any] = {
                "$set": {
                    "status": "running",
                    "claimed_by": worker,
                    "claimed_at": now,
                    "heartbeat_at": now,
                },
                "$inc": {"attempts": 1},
            }
            if current["status"] != "running":  # keep the failed outcome being replaced
                operation["$push"] = {"history": {k: current.get(k) for k in HISTORY_KEYS}}
                operation["$unset"] = {"error": ""}  # now in history; not the new attempt's
            # compare-and-set on the attempt counter: of two racing claims, one wins
            claimed = self.db.labels.find_one_and_update(
                {"_id": current["_id"], "attempts": current.get("attempts"), **takeover},
                operation,
                return_document=ReturnDocument.AFTER,
            )
            if claimed is not None:
                return claimed

    def beat_label(self, claim: dict[str, Any]) -> bool:
        """Refresh the heartbeat of a claim still held (from :meth:`claim_label`), on the
        server's clock; returns whether it is still held."""
        mine = {
            "_id": claim["_id"],
            "status": "running",
            "claimed_by.token": claim["claimed_by"]["token"],
        }
        beat = {"$currentDate": {"heartbeat_at": True}}
        return self.db.labels.update_one(mine, beat).matched_count > 0

    def server_now(self) -> datetime:
        """The database server's clock (UTC): heartbeats written by several hosts are aged on
        it, whatever their own clocks say."""
        now = self.client.admin.command("hello")["localTime"]  # commands decode naive
        return now.replace(tzinfo=UTC) if now.tzinfo is None else now

    def label_claims(
        self, structure_ids: list[str], physics_hashes: list[str]
    ) -> dict[str, dict[str, Any]]:
        """The label of each of ``structure_ids`` with one of ``physics_hashes`` (status,
        claim and heartbeat; no results), by structure id; unlabelled ones are absent."""
        match = {"structure_id": {"$in": structure_ids}, "physics_hash": {"$in": physics_hashes}}
        fields = {"structure_id": 1, "status": 1, "claimed_by": 1, "claimed_at": 1}
        fields["heartbeat_at"] = 1
        return {d["structure_id"]: d for d in self.db.labels.find(match, fields)}

    def complete_label(
        self,
        claim: dict[str, Any],
        atoms: Atoms,
        fields: dict[str, Any],
        forces: np.ndarray | None = None,
    ) -> bool:
        """Write the outcome of a claim (from :meth:`claim_label`): status, results, arrays.

        Only the claim that holds the label writes it: if another claim took the label over
        meanwhile (a rerun of a Firework whose first launch was still alive), this outcome goes
        to ``history`` marked ``stale`` and the label is left as it is. Returns whether the
        label was written.
        """
        label_id = claim["_id"]
        arrays = structure_arrays(atoms)
        if forces is not None:
            arrays["forces"] = np.asarray(forces, dtype=float)
        packed = self.pack_arrays(arrays, f"label-{label_id}")
        update: dict[str, Any] = {
            **fields,
            **packed,
            "software": software_versions(),
            "updated_at": utcnow(),
        }
        mine = {
            "_id": label_id,
            "status": "running",
            "claimed_by.token": claim["claimed_by"]["token"],
        }
        # read, then update conditionally: only this claim's holder changes the arrays, so the
        # file read here is the one replaced (no find_one_and_update pre-image: secantusdb's
        # can be stale under concurrent writes, see launchers/fireworks_compat.py)
        previous = self.db.labels.find_one(mine, {"arrays_file": 1})
        if (
            previous is not None
            and self.db.labels.update_one(mine, {"$set": update}).matched_count == 0
        ):
            previous = None
        if previous is None:
            log.warning(
                "label %s was taken over by another claim; this outcome (%s) is kept "
                "in its history only",
                label_id,
                fields.get("status"),
            )
            stale = {k: fields.get(k) for k in (*HISTORY_KEYS, "energy_eV")}
            stale.update(stale=True, claimed_by=claim["claimed_by"], updated_at=utcnow())
            self.db.labels.update_one({"_id": label_id}, {"$push": {"history": stale}})
            if packed["arrays_file"] is not None:
                self.fs.delete(packed["arrays_file"])
            return False
        if previous.get("arrays_file") is not None:
            self.fs.delete(previous["arrays_file"])
        return True

    def find_label(self, sid: str, physics_hash: str) -> dict[str, Any] | None:
        """The label of structure ``sid`` under ``physics_hash`` (any status), or None."""
        return self.db.labels.find_one({"structure_id": sid, "physics_hash": physics_hash})

    def find_labels(
        self, query: LabelQuery | None = None, limit: int = 0, with_arrays: bool = True
    ) -> Iterator[dict[str, Any]]:
        """Label documents matching ``query`` (oldest first); arrays unpacked on request."""
        pipeline = [*(query or LabelQuery()).to_pipeline(), {"$sort": {"_id": ASCENDING}}]
        if limit:
            pipeline.append({"$limit": limit})
        if not with_arrays:
            pipeline.append({"$project": {"arrays": 0}})
        for doc in self.db.labels.aggregate(pipeline):
            if with_arrays:
                doc["arrays"] = self.unpack_arrays(doc)
            yield doc

    def count_labels(self, query: LabelQuery | None = None) -> int:
        pipeline = [*(query or LabelQuery()).to_pipeline(), {"$count": "n"}]
        counted = list(self.db.labels.aggregate(pipeline))
        return counted[0]["n"] if counted else 0

    def label_counts(self, structure_ids: list[str], physics_hashes: list[str]) -> dict[str, int]:
        """How many of ``structure_ids`` have a label with one of ``physics_hashes``, by status
        (``unlabelled``: no label document at all)."""
        match = {"structure_id": {"$in": structure_ids}, "physics_hash": {"$in": physics_hashes}}
        pipeline = [
            {"$match": match},
            {"$group": {"_id": "$status", "n": {"$sum": 1}}},
        ]
        counts = {d["_id"]: d["n"] for d in self.db.labels.aggregate(pipeline)}
        missing = len(set(structure_ids)) - sum(counts.values())
        if missing:
            counts["unlabelled"] = missing
        return counts

    def labels_by_id(self, label_ids: list[str]) -> list[dict[str, Any]]:
        """The label documents ``label_ids`` (``info["label_id"]`` of their atoms), in that
        order, arrays unpacked; a missing one is an error (it was deleted since)."""
        keys = [ObjectId(i) if ObjectId.is_valid(i) else i for i in label_ids]
        found = {str(d["_id"]): d for d in self.db.labels.find({"_id": {"$in": keys}})}
        missing = [i for i in label_ids if i not in found]
        if missing:
            raise KeyError(f"labels not in the database (deleted?): {missing[:5]}")
        for doc in found.values():
            doc["arrays"] = self.unpack_arrays(doc)
        return [found[i] for i in label_ids]

    def label_atoms(self, doc: dict[str, Any]) -> Atoms:
        """An ``Atoms`` with the label's energy, forces and stress attached (ASE units)."""
        arrays = doc["arrays"] if isinstance(doc.get("arrays"), dict) else self.unpack_arrays(doc)
        if "numbers" not in arrays:  # a label still running has no arrays yet: its structure has
            arrays = {**self.unpack_arrays(self._structure_doc(doc["structure_id"])), **arrays}
        return label_to_atoms(doc, arrays)

    # -- files and models ------------------------------------------------------------------------
    def put_file(self, data: bytes, filename: str, **metadata: Any) -> Any:
        """Store bytes in GridFS; returns the file id."""
        return self.fs.put(data, filename=filename, metadata=metadata)

    def read_file(self, file_id: Any) -> bytes:
        return self.fs.get(file_id).read()

    def add_model(self, document: dict[str, Any], model_file: bytes) -> Any:
        """Store a trained model: its file in GridFS, then its provenance document (``campaign``,
        ``iteration``, ``member`` are its key: storing the same member again replaces it)."""
        key = {k: document[k] for k in ("campaign", "iteration", "member")}
        name = "{campaign}-{iteration:03d}-{member}.model".format(**key)
        # database/model_signing.py: the file and what it is
        document = {**document, "signature": sign(model_file, signed_context(document))}
        return self._replace_with_file("models", key, document, model_file, name)

    def set_model_metrics(self, document: dict[str, Any], metrics: dict[str, Any]) -> None:
        """Record a stored member's ``metrics`` (its errors, measured by the train stage)."""
        key = {k: document[k] for k in ("campaign", "iteration", "member")}
        self.db.models.update_one(
            {**key, "sha256": document["sha256"]}, {"$set": {"metrics": metrics}}
        )
        document["metrics"] = metrics

    def add_distillation(self, kind: str, document: dict[str, Any], data: bytes) -> Any:
        """Store a distillation artefact, ``kind`` ``sample`` (the teacher-labelled frames as
        extxyz) or ``student`` (a student model file): the bytes in GridFS, then the document
        (``campaign``, ``key`` identify it: storing the same key again replaces it)."""
        key = {"kind": kind, "campaign": document["campaign"], "key": document["key"]}
        name = f"{document['campaign']}-{kind}-{document['key']}"
        signed = {**document, **key}
        signed["signature"] = sign(data, signed_context(signed))
        return self._replace_with_file("distillations", key, signed, data, name)

    def trust_models(self, campaign: str, sign_now: bool = False) -> list[str]:
        """The model and student files of ``campaign`` that this machine's key does not sign
        (stored elsewhere, or before signatures); with ``sign_now``, sign them: the caller
        trusts everyone who could write to this database."""
        found = []
        for collection, match in (("models", {}), ("distillations", {"kind": "student"})):
            for doc in self.db[collection].find({"campaign": campaign, **match}):
                signature = sign(self.read_file(doc["file_id"]), signed_context(doc))
                if doc.get("signature") == signature:
                    continue
                found.append(
                    f"{collection} {doc.get('iteration', doc.get('key'))}"
                    f"/{doc.get('member', doc.get('kind'))}"
                )
                if sign_now:
                    self.db[collection].update_one(
                        {"_id": doc["_id"]}, {"$set": {"signature": signature}}
                    )
        return found

    def read_model_file(self, document: dict[str, Any]) -> bytes:
        """The file of a model or student ``document``, checked against its signature:
        :class:`database.model_signing.UntrustedModel` if it does not match this machine's key
        (loading a model file can run code)."""
        if "member" in document:
            what = f"model {document['member']} of {document['campaign']} iteration "
            what += str(document["iteration"])
        else:
            what = f"{document.get('kind', 'file')} {document.get('key')} of {document['campaign']}"
        data = self.read_file(document["file_id"])
        return verify(data, document.get("signature"), what, signed_context(document))

    def _replace_with_file(
        self, collection: str, key: dict[str, Any], document: dict[str, Any], data: bytes, name: str
    ) -> Any:
        """``data`` to GridFS, then ``document`` (with the file's id) in place of the one with
        ``key``, whose old file is deleted; returns the new file's id."""
        file_id = self.put_file(data, name, **key)
        old = self.db[collection].find_one_and_replace(
            key, {**document, "file_id": file_id, "created_at": utcnow()}, upsert=True
        )
        if old is not None and old.get("file_id") not in (None, file_id):
            self.fs.delete(old["file_id"])
        return file_id

    def distillations(
        self, campaign: str, kind: str, key: str | None = None
    ) -> list[dict[str, Any]]:
        """The campaign's stored samples or students (newest first), or the one with ``key``."""
        query: dict[str, Any] = {"campaign": campaign, "kind": kind}
        if key is not None:
            query["key"] = key
        return list(self.db.distillations.find(query).sort("created_at", -1))

    def add_phase_curve(self, document: dict[str, Any]) -> None:
        """Store one candidate's enthalpy curve (``campaign``, ``key``, ``name`` identify it:
        storing it again replaces it)."""
        key = {k: document[k] for k in ("campaign", "key", "name")}
        self.db.phases.find_one_and_replace(key, {**document, "created_at": utcnow()}, upsert=True)

    def phase_curves(self, campaign: str, key: str) -> list[dict[str, Any]]:
        """The enthalpy curves stored for a phase calculation ``key`` of ``campaign``."""
        return list(self.db.phases.find({"campaign": campaign, "key": key}).sort("name", 1))

    def add_dynamics(self, document: dict[str, Any]) -> None:
        """Store one MD result (``campaign``, ``kind``, ``key`` identify it: storing it again
        replaces it)."""
        key = {k: document[k] for k in ("campaign", "kind", "key")}
        self.db.dynamics.find_one_and_replace(
            key, {**document, "created_at": utcnow()}, upsert=True
        )

    def dynamics(self, campaign: str, kind: str) -> list[dict[str, Any]]:
        """The MD results of ``kind`` (``liquid``) stored for ``campaign``."""
        return list(self.db.dynamics.find({"campaign": campaign, "kind": kind}))

    def models(self, campaign: str, iteration: int) -> list[dict[str, Any]]:
        """The committee of ``campaign`` trained at ``iteration``, ordered by member."""
        cursor = self.db.models.find({"campaign": campaign, "iteration": iteration})
        return sorted(cursor, key=lambda d: d["member"])

    def stats(self, campaign: str | None = None) -> dict[str, Any]:
        """Counts of structures and labels (by status, chemical system, iteration)."""
        match: dict[str, Any] = {"requests.campaign": campaign} if campaign else {}

        def grouped(field: str, collection: str = "labels") -> dict[str, int]:
            pipeline = [{"$match": match}, {"$group": {"_id": f"${field}", "n": {"$sum": 1}}}]
            return {str(d["_id"]): d["n"] for d in self.db[collection].aggregate(pipeline)}

        by_iteration: dict[str, int] = {}
        if campaign:
            pipeline = [
                {"$match": match},
                {"$unwind": "$requests"},
                {"$match": {"requests.campaign": campaign}},
                {"$group": {"_id": "$requests.iteration", "n": {"$sum": 1}}},
            ]
            by_iteration = {str(d["_id"]): d["n"] for d in self.db.labels.aggregate(pipeline)}
        ok = {**match, "status": "ok"}
        pressures = [d.get("pressure_GPa") for d in self.db.labels.find(ok, {"pressure_GPa": 1})]
        pressures = [p for p in pressures if p is not None]
        wall = [d.get("wall_time_s") or 0.0 for d in self.db.labels.find(match, {"wall_time_s": 1})]
        return {
            "structures": self.db.structures.count_documents(match),
            "labels": self.db.labels.count_documents(match),
            "labels_by_status": grouped("status"),
            "labels_by_chemsys": grouped("chemsys"),
            "labels_by_iteration": by_iteration,
            "pressure_range_GPa": [min(pressures), max(pressures)] if pressures else None,
            "wall_time_s": float(sum(wall)),
            "models": self.db.models.count_documents({"campaign": campaign} if campaign else {}),
        }
