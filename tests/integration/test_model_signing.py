"""Model files in the database are used only if this machine's key signs them: a model
written into the database by someone else, or changed there, is refused before it is loaded
(loading a MACE file can run code)."""

from __future__ import annotations

from pathlib import Path

import pytest

from database import Store, UntrustedModel
from database.model_signing import KEY_FILE_VARIABLE

pytestmark = pytest.mark.integration

DOC = {"campaign": "c", "iteration": 1, "member": 0}


def test_a_changed_or_foreign_model_is_refused(
    store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store.add_model(dict(DOC), b"the real model")
    doc = store.models("c", 1)[0]
    assert store.read_model_file(doc) == b"the real model"
    assert store.trust_models("c") == []

    # someone with write access swaps the file and keeps (or copies) the signature
    swapped = {**doc, "file_id": store.put_file(b"import os; os.system('id')", "evil")}
    with pytest.raises(UntrustedModel, match="does not match"):
        store.read_model_file(swapped)
    with pytest.raises(UntrustedModel, match="has no signature"):
        store.read_model_file({k: v for k, v in doc.items() if k != "signature"})

    # another machine, another key: the same database's models are not trusted there ...
    monkeypatch.setenv(KEY_FILE_VARIABLE, str(tmp_path / "other.key"))
    with pytest.raises(UntrustedModel, match=r"other\.key"):
        store.read_model_file(doc)
    assert (tmp_path / "other.key").stat().st_mode & 0o777 == 0o600
    # ... until the user signs them there
    assert store.trust_models("c") == ["models 1/0"]
    assert store.trust_models("c", sign_now=True) == ["models 1/0"]
    assert store.read_model_file(store.models("c", 1)[0]) == b"the real model"
    assert store.trust_models("c") == []


def test_students_are_signed_too(store: Store) -> None:
    store.add_distillation("student", {"campaign": "c", "key": "k", "route": "pair"}, b"net")
    (doc,) = store.distillations("c", "student", "k")
    assert store.read_model_file(doc) == b"net"
    store.db.distillations.update_one({"_id": doc["_id"]}, {"$set": {"signature": "0" * 64}})
    with pytest.raises(UntrustedModel, match="student k of c"):
        store.read_model_file(store.distillations("c", "student", "k")[0])


def test_importing_mace_leaves_torch_load_safe(tmp_path: Path) -> None:
    """mace sets TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD for the whole process on import; al-loop
    takes it back, so a torch.load that al-loop does not mean to unpickle cannot run code."""
    import os
    import pickle

    import torch

    from calculators.models.mace_train import quiet_mace_import

    with quiet_mace_import():
        import mace.calculators  # noqa: F401

    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
    payload = tmp_path / "evil.pt"
    marker = tmp_path / "ran"
    torch.save({"x": _Boom(str(marker))}, payload)
    with pytest.raises(pickle.UnpicklingError):
        torch.load(payload)
    assert not marker.exists()


class _Boom:
    """Unpickling it would create a file: what a malicious model file could do."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple:
        return (Path.touch, (Path(self.path),))


def test_a_signature_binds_the_file_to_what_it_is(store: Store) -> None:
    """Swapping a signed file and its signature into another member's document, or changing a
    student's companion files, breaks the signature."""
    store.add_model(dict(DOC), b"member 0")
    store.add_model({**DOC, "member": 1}, b"member 1")
    zero, one = sorted(store.models("c", 1), key=lambda d: d["member"])
    swapped = {**one, "file_id": zero["file_id"], "signature": zero["signature"]}
    with pytest.raises(UntrustedModel, match="does not match"):
        store.read_model_file(swapped)
    student = {"campaign": "c", "key": "k", "route": "mliap", "companion_files": {"d": "x"}}
    store.add_distillation("student", student, b"net")
    (doc,) = store.distillations("c", "student", "k")
    assert store.read_model_file(doc) == b"net"
    with pytest.raises(UntrustedModel):
        store.read_model_file({**doc, "companion_files": {"../../x.pth": "import os"}})


def test_a_key_others_can_read_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from database.model_signing import sign

    key = tmp_path / "model.key"
    monkeypatch.setenv(KEY_FILE_VARIABLE, str(key))
    sign(b"x")  # made, mode 0600
    key.chmod(0o644)
    with pytest.raises(UntrustedModel, match="chmod 600"):
        sign(b"x")
