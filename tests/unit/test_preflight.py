"""What a campaign needs of this machine is checked before `al-loop run` writes anything: the
label physics' files, a GPU for device: cuda, a named foundation model (al_loop/preflight.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from al_loop.config import ConfigError, load_campaign
from al_loop.preflight import preflight

AL_LOOP = str(Path(sys.executable).parent / "al-loop")
MINIMAL = "name: t\nsystem:\n  elements: [Cu, Ni]\n"
ESPRESSO = (
    "name: t\nsystem:\n  elements: [Fe, Ni]\noracle:\n  code: espresso\n  preset: fast\n"
    "  overrides:\n    pseudo_dir: pseudos\n"
)


def _campaign(folder: Path, text: str) -> Path:
    path = folder / "campaign.yaml"
    path.write_text(text)
    return path


def _preflight_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        preflight(load_campaign(path))
    return info.value


def test_an_emt_campaign_on_the_cpu_passes(tmp_path: Path) -> None:
    assert len(preflight(load_campaign(_campaign(tmp_path, MINIMAL)))) == 64  # the identity


def test_missing_pseudopotentials_name_the_folder_setting(tmp_path: Path) -> None:
    (tmp_path / "pseudos").mkdir()
    err = _preflight_error(_campaign(tmp_path, ESPRESSO))
    assert err.key_path == "oracle.overrides.pseudo_dir"
    assert err.file == tmp_path / "campaign.yaml" and "Fe" in err.message


def test_a_pseudo_dir_that_does_not_exist_is_named(tmp_path: Path) -> None:
    """Checked here, not when the file is loaded: read-only commands (status, db query) on a
    machine without the pseudopotentials still work."""
    config = load_campaign(_campaign(tmp_path, ESPRESSO))  # loads
    with pytest.raises(ConfigError) as info:
        preflight(config)
    assert info.value.key_path == "oracle.overrides.pseudo_dir"
    assert "pseudos does not exist on this machine" in info.value.message


def test_device_cuda_needs_a_gpu(tmp_path: Path) -> None:
    path = _campaign(tmp_path, MINIMAL + "committee:\n  device: cuda\n")
    if torch.cuda.is_available():  # on a GPU machine the same file passes
        preflight(load_campaign(path))
        return
    err = _preflight_error(path)
    assert err.key_path == "committee.device" and "sees no GPU" in err.message


def test_a_named_model_in_the_cache_needs_no_network(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mace's cache holds the file under its URL's name, without '-' and '.'."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")  # a download would fail here
    (tmp_path / "cache" / "mace").mkdir(parents=True)
    (tmp_path / "cache" / "mace" / "20231210mace128L0_energy_epoch249model").write_bytes(b"")
    named = MINIMAL + "committee:\n  foundation_model: small\n"
    preflight(load_campaign(_campaign(tmp_path, named)))


def test_a_named_model_that_cannot_be_downloaded_is_refused_before_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No network: the download goes to a closed port on this machine, and fails at once."""
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("https_proxy", "http://127.0.0.1:9")
    path = _campaign(tmp_path, MINIMAL + "committee:\n  foundation_model: small\n")
    err = _preflight_error(path)
    assert err.key_path == "committee.foundation_model"
    assert "cannot download MACE model 'small'" in err.message and "~/.cache/mace" in err.message


def test_a_refused_run_leaves_nothing_behind(tmp_path: Path) -> None:
    (tmp_path / "pseudos").mkdir()
    path = _campaign(tmp_path, ESPRESSO)
    before = sorted(tmp_path.rglob("*"))
    done = subprocess.run([AL_LOOP, "run", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "oracle.overrides.pseudo_dir" in done.stderr
    assert sorted(tmp_path.rglob("*")) == before  # no workdir, no database, no LaunchPad files
