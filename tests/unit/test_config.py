"""The campaign-file schema: the demo loads, and every bad file gives one clear ConfigError."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from ase.build import bulk
from ase.io import write

from al_loop.config import CampaignConfig, ConfigError, load_campaign

DEMO = Path(__file__).resolve().parents[2] / "configs" / "demo-emt.yaml"
MINIMAL = "name: t\nsystem:\n  elements: [Cu, Ni]\n"


def _write(folder: Path, text: str, name: str = "campaign.yaml") -> Path:
    path = folder / name
    path.write_text(text)
    return path


def _listing(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


def _load_error(path: Path) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_campaign(path)
    return info.value


# --------------------------------------------------------------------------- (1) the demo


@pytest.fixture
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the demo with the stand-in foundation model file it names (which `make demo`
    builds beside it; the schema only checks that it exists)."""
    folder = tmp_path_factory.mktemp("demo")
    (folder / "demo.yaml").write_text(DEMO.read_text())
    (folder / "al-loop-runs").mkdir()
    (folder / "al-loop-runs" / "standin-cu-ni-al.model").write_bytes(b"")
    return folder / "demo.yaml"


def test_demo_loads_with_its_values(demo: Path) -> None:
    config = load_campaign(demo)
    assert config.name == "demo-emt"
    assert config.source_file == demo
    assert config.system.elements == ["Cu", "Ni", "Al"]
    assert config.system.pressures_GPa == [0.0, 50.0]
    assert config.system.temperatures_K == [300.0, 1200.0, 2000.0]
    assert config.committee.foundation_model.endswith("al-loop-runs/standin-cu-ni-al.model")
    assert config.seeds.prototypes == ["fcc", "bcc", "hcp"]
    assert (config.seeds.n_structures, config.seeds.max_atoms) == (24, 8)
    assert (config.oracle.code, config.oracle.preset) == ("emt", "default")
    assert config.store.uri is None and config.store.uri_file is None
    assert (config.launcher.workers, config.launcher.batch_size) == (2, 4)


@pytest.mark.parametrize("name", ["demo-emt.yaml", "demo-500gpa.yaml"])
def test_shipped_campaign_files_load(name: str, tmp_path: Path) -> None:
    """Every EMT campaign file in configs/ loads (beside the stand-in file it names)."""
    (tmp_path / name).write_text((DEMO.parent / name).read_text())
    (tmp_path / "al-loop-runs").mkdir()
    (tmp_path / "al-loop-runs" / "standin-cu-ni-al.model").write_bytes(b"")
    config = load_campaign(tmp_path / name)
    assert config.committee.e0s == "foundation"  # EMT: the stand-in's own level of theory
    assert max(config.system.pressures_GPa) <= max(config.committee.error_pressure_bins_GPa)


def test_the_demo_is_ca_fe_ni_labelled_by_another_model_than_its_foundation(
    tmp_path: Path,
) -> None:
    (tmp_path / "demo.yaml").write_text((DEMO.parent / "demo.yaml").read_text())
    (tmp_path / "al-loop-runs").mkdir()
    (tmp_path / "al-loop-runs" / "foundation-cafeni-chgnet.model").write_bytes(b"")
    config = load_campaign(tmp_path / "demo.yaml")
    assert config.system.elements == ["Ca", "Fe", "Ni"]
    assert (config.oracle.code, config.oracle.settings.model) == ("chgnet", "r2scan")
    assert config.committee.e0s == "estimated"  # r2SCAN's energy zero is not PBE's
    makefile = (DEMO.parents[1] / "Makefile").read_text()
    assert "--source chgnet --preset pbe" in makefile  # the foundation's source: another model


def test_the_ca_fe_ni_campaign_files_load(tmp_path: Path) -> None:
    """cafeni-small.yaml beside what its header builds; cafeni.yaml once the user's two paths
    (the MongoDB URI file, the pseudopotential folder) exist."""
    upf = ["Ca.pbe-spn-rrkjus.UPF", "Fe.pbe-nd-rrkjus.UPF", "Ni.pbe-nd-rrkjus.UPF"]
    semicore = [upf[0], "Fe.pbe-spn-rrkjus_psl.0.2.1.UPF", "Ni.pbe-spn-kjpaw_psl.1.0.0.UPF"]
    for folder, names in (("pseudos-fast", upf), ("pseudos", semicore)):
        (tmp_path / "al-loop-runs" / folder).mkdir(parents=True)
        for name in names:
            (tmp_path / "al-loop-runs" / folder / name).write_text(name)
    (tmp_path / "al-loop-runs" / "foundation-cafeni-chgnet.model").write_bytes(b"")
    (tmp_path / "al-loop-runs" / "foundation-cafeni-chgnet.replay.xyz").write_text("")
    (tmp_path / "uri").write_text("mongodb://localhost:27017")
    small_file = tmp_path / "cafeni-small.yaml"
    small_file.write_text((DEMO.parent / "cafeni-small.yaml").read_text())
    small = load_campaign(small_file)
    assert (small.oracle.code, small.oracle.preset) == ("espresso", "fast")
    assert small.committee.e0s == "estimated" and small.seeds.max_atoms == 4
    text = (DEMO.parent / "cafeni.yaml").read_text()
    text = text.replace("~/.al-loop/mongo-uri", str(tmp_path / "uri"))
    text = text.replace("/path/to/pseudos", str(tmp_path / "al-loop-runs" / "pseudos"))
    (tmp_path / "cafeni.yaml").write_text(text)
    full = load_campaign(tmp_path / "cafeni.yaml")
    assert full.committee.foundation_model.endswith("foundation-cafeni-chgnet.model")
    assert str(full.committee.replay_file).endswith("foundation-cafeni-chgnet.replay.xyz")
    assert (full.oracle.preset, max(full.system.pressures_GPa)) == ("production", 500)
    assert max(full.phase.pressures_GPa or []) == 500


def test_every_campaign_file_in_configs_is_tested() -> None:
    assert sorted(p.name for p in DEMO.parent.glob("*.yaml")) == [
        "cafeni-small.yaml",
        "cafeni.yaml",
        "demo-500gpa.yaml",
        "demo-emt.yaml",
        "demo.yaml",
    ]


def test_minimal_campaign_gets_the_defaults(tmp_path: Path) -> None:
    config = load_campaign(_write(tmp_path, MINIMAL))
    assert config.description == "" and config.workdir is None and config.seed == 0
    assert config.system.pressures_GPa == [0.0]
    assert config.system.temperatures_K == [300.0]
    s = config.seeds
    assert s.prototypes == ["fcc", "bcc", "hcp"] and s.n_structures == 20 and s.max_atoms == 16
    assert s.rattle_A == 0.05 and s.volume_scale_range == (0.75, 1.05) and s.files == []
    assert config.oracle.model_dump() == {"code": "emt", "preset": "default", "overrides": {}}
    assert config.committee.model_dump() == {
        "n_models": 4,
        "foundation_model": None,
        "replay_file": None,
        "replay_samples": 1000,
        "device": "auto",
        "dtype": "float64",
        "max_epochs": 50,
        "batch_size": 10,
        "learning_rate": 0.01,
        "energy_weight": 100.0,
        "forces_weight": 10.0,
        "stress_weight": 1000.0,
        "ema_decay": 0.99,
        "e0s": "estimated",
        "bootstrap": True,
        "parallel_trainings": None,
        "held_out_fraction": 0.1,
        "held_out_fixed_after": 1,
        "error_pressure_bins_GPa": [0.0, 10.0, 25.0, 50.0, 100.0, 200.0, 300.0, 400.0, 500.0],
        "num_channels": 32,
        "max_L": 1,
        "r_max_A": 5.0,
        "mace_args": {},
        "queue": None,
    }
    assert config.exploration.model_dump() == {
        "ensembles": ["npt"],
        "steps": 1000,
        "timestep_fs": 1.0,
        "frame_interval": 10,
        "max_spread_eV_A": 1.0,
        "heat_factor": 2.0,
        "driver": "first",
        "starts": "seeds",
        "trajectories_per_condition": 1,
        "dtype": "float32",
    }
    assert config.selection.model_dump() == {
        "strategy": "window_fps",
        "top_spread_pool": 2,
        "trust_lo_eV_A": 0.05,
        "trust_hi_eV_A": 0.30,
        "adaptive_percentile": None,
        "max_per_iteration": 50,
        "converged_fraction": 0.95,
        "converged_energy_spread_meV_atom": None,
        "converged_iterations": 2,
        "max_iterations": 10,
    }
    assert config.store.model_dump() == {
        "uri": None,
        "uri_file": None,
        "uri_env": None,
        "database": "al_loop",
        "launchpad_database": "al_loop_fireworks",
    }
    assert config.launcher.model_dump() == {
        "workers": 2,
        "batch_size": 10,
        "fworker_name": "al-loop-local",
        "category": None,
        "claim_expiry_s": 600.0,
        "queue": None,
    }


def test_empty_sections_mean_defaults(tmp_path: Path) -> None:
    config = load_campaign(_write(tmp_path, MINIMAL + "seeds:\nstore:\n"))
    assert config.seeds.n_structures == 20 and config.store.database == "al_loop"


# --------------------------------------------------------------------------- (2) bad files

# (id, text appended to or replacing the minimal campaign, expected key path, expected substring)
ESPRESSO = (
    "name: t\nsystem:\n  elements: [Fe, Ni]\noracle:\n  code: espresso\n  preset: fast\n"
    "  overrides:\n"
)

BAD = [
    (
        "phase-unknown-prototype",
        MINIMAL + "phase:\n  prototypes: [fcc, A15]\n",
        "phase.prototypes[1]",
        "beta-Sn",
    ),
    (
        "phase-one-pressure",
        MINIMAL + "phase:\n  pressures_GPa: [10]\n",
        "phase.pressures_GPa",
        "at least 2",
    ),
    (
        "student-clip-zero",
        MINIMAL + "student:\n  clip_grad_norm: 0\n",
        "student.clip_grad_norm",
        "> 0",
    ),
    (
        "pressure-bins-out-of-order",
        MINIMAL + "committee:\n  error_pressure_bins_GPa: [0, 50, 10]\n",
        "committee.error_pressure_bins_GPa",
        "must be in ascending order",
    ),
    (
        "e0s-unknown",
        MINIMAL + "committee:\n  e0s: average\n",
        "committee.e0s",
        "estimated",
    ),
    (
        "e0s-set-in-mace-args",
        MINIMAL + "committee:\n  mace_args: {E0s: average}\n",
        "committee.mace_args",
        "'E0s' is set by al-loop; set committee.e0s instead",
    ),
    (
        "energy-spread-not-positive",
        MINIMAL + "selection:\n  converged_energy_spread_meV_atom: 0\n",
        "selection.converged_energy_spread_meV_atom",
        "must be > 0, got 0",
    ),
    (
        "mace-arg-typo",
        MINIMAL + "committee:\n  mace_args: {emma: true}\n",
        "committee.mace_args",
        "'emma' is not an option of mace_run_train; did you mean 'ema'?",
    ),
    (
        "mace-arg-set-by-al-loop",
        MINIMAL + "committee:\n  mace_args: {ema: false}\n",
        "committee.mace_args",
        "'ema' is set by al-loop; set committee.ema_decay instead",
    ),
    (
        "missing-foundation-file",
        MINIMAL + "committee:\n  foundation_model: models/none.model\n",
        "committee.foundation_model",
        "al-loop foundation PATH --elements A,B --source chgnet",
    ),
    (
        "missing-replay-file",
        MINIMAL + "committee:\n  replay_file: pretrain.xyz\n",
        "committee.replay_file",
        "file not found",
    ),
    (
        "unknown-ensemble",
        MINIMAL + "exploration:\n  ensembles: [nve]\n",
        "exploration.ensembles[0]",
        "must be one of nvt, npt, heat; got 'nve'",
    ),
    (
        "held-out-half",
        MINIMAL + "committee:\n  held_out_fraction: 0.5\n",
        "committee.held_out_fraction",
        "must be < 0.5, got 0.5",
    ),
    ("seed-negative", MINIMAL + "seed: -1\n", "seed", ">= 0"),
    (
        "converged-iterations-above-max",
        MINIMAL + "selection:\n  converged_iterations: 5\n  max_iterations: 3\n",
        "selection.converged_iterations",
        "must be <= max_iterations (3), or the campaign can never converge",
    ),
    (
        "max-atoms-below-fcc",
        MINIMAL + "seeds:\n  max_atoms: 3\n",
        "seeds.max_atoms",
        "must be at least 4, the atoms of the smallest fcc cell",
    ),
    (
        "foundation-name-unknown",
        MINIMAL + "committee:\n  foundation_model: medium-mpa-9\n",
        "committee.foundation_model",
        "neither a file nor a MACE-MP model; did you mean 'medium-mpa-0'?",
    ),
    ("missing-name", "system:\n  elements: [Cu]\n", "name", "required key is missing"),
    ("bad-name", "name: my run\nsystem:\n  elements: [Cu]\n", "name", "invalid name 'my run'"),
    ("name-not-text", "name: [a]\nsystem:\n  elements: [Cu]\n", "name", "expected text"),
    ("missing-system", "name: t\n", "system", "required key is missing"),
    ("missing-elements", "name: t\nsystem:\n  pressures_GPa: [1]\n", "system.elements", "missing"),
    ("typo-top-key", "name: t\nsytem:\n  elements: [Cu]\n", "sytem", "did you mean 'system'?"),
    ("key-in-wrong-section", "name: t\nelements: [Cu]\n", "elements", "under system"),
    ("unknown-seed-key", MINIMAL + "seeds:\n  n_struct: 3\n", "seeds.n_struct", "allowed keys"),
    ("kbar", MINIMAL + "  pressures_kbar: [10]\n", "system.pressures_kbar", "'pressures_GPa'"),
    ("celsius", MINIMAL + "  temperatures_C: [25]\n", "system.temperatures_C", "temperatures_K"),
    (
        "unit-in-value",
        MINIMAL + "  pressures_GPa: [0, 50 GPa]\n",
        "system.pressures_GPa[1]",
        "give a plain number in GPa; units are in the key name",
    ),
    (
        "unit-in-scalar",
        MINIMAL + "exploration:\n  timestep_fs: 2 fs\n",
        "exploration.timestep_fs",
        "give a plain number in fs",
    ),
    ("scalar-not-list", MINIMAL + "  pressures_GPa: 50\n", "system.pressures_GPa", "write [50]"),
    (
        "unknown-element",
        "name: t\nsystem:\n  elements: [Cu, Xx]\n",
        "system.elements[1]",
        "unknown element symbol 'Xx'",
    ),
    ("lowercase-element", "name: t\nsystem:\n  elements: [cu]\n", "system.elements[0]", "'Cu'"),
    ("element-name", "name: t\nsystem:\n  elements: [Copper]\n", "system.elements[0]", "'Cu'"),
    ("elements-string", "name: t\nsystem:\n  elements: Cu Ni\n", "system.elements", "[Cu, Ni]"),
    (
        "duplicate-element",
        "name: t\nsystem:\n  elements: [Cu, Ni, Cu]\n",
        "system.elements[2]",
        "duplicate",
    ),
    ("no-elements", "name: t\nsystem:\n  elements: []\n", "system.elements", "must not be empty"),
    (
        "negative-pressure",
        MINIMAL + "  pressures_GPa: [-5]\n",
        "system.pressures_GPa[0]",
        ">= 0 GPa",
    ),
    ("huge-pressure", MINIMAL + "  pressures_GPa: [2000]\n", "system.pressures_GPa[0]", "<= 1000"),
    ("zero-temperature", MINIMAL + "  temperatures_K: [0]\n", "system.temperatures_K[0]", "> 0 K"),
    (
        "nan-temperature",
        MINIMAL + "  temperatures_K: [.nan]\n",
        "system.temperatures_K[0]",
        "finite",
    ),
    ("empty-temperatures", MINIMAL + "  temperatures_K: []\n", "system.temperatures_K", "empty"),
    (
        "bad-prototype",
        MINIMAL + "seeds:\n  prototypes: [fcc, FCC2]\n",
        "seeds.prototypes[1]",
        "one of",
    ),
    (
        "volume-range-order",
        MINIMAL + "seeds:\n  volume_scale_range: [1.1, 0.9]\n",
        "seeds.volume_scale_range",
        "lo must be <= hi",
    ),
    (
        "volume-range-one-value",
        MINIMAL + "seeds:\n  volume_scale_range: [0.9]\n",
        "seeds.volume_scale_range",
        "two numbers [lo, hi]",
    ),
    ("rattle-too-big", MINIMAL + "seeds:\n  rattle_A: 0.5\n", "seeds.rattle_A", "< 0.5 Å"),
    ("int-as-float", MINIMAL + "seeds:\n  max_atoms: 8.5\n", "seeds.max_atoms", "whole number"),
    ("quoted-number", MINIMAL + "seeds:\n  max_atoms: '8'\n", "seeds.max_atoms", "without quotes"),
    ("no-seeds", MINIMAL + "seeds:\n  n_structures: 0\n", "seeds.n_structures", "no initial"),
    (
        "missing-seed-file",
        MINIMAL + "seeds:\n  files: [nope.xyz]\n",
        "seeds.files[0]",
        "file not found",
    ),
    (
        "seed-file-suffix",
        MINIMAL + "seeds:\n  files: [notes.txt]\n",
        "seeds.files[0]",
        "not a structure",
    ),
    (
        "unknown-oracle",
        MINIMAL + "oracle:\n  code: siesta\n",
        "oracle.code",
        "unknown oracle code 'siesta'",
    ),
    ("oracle-typo", MINIMAL + "oracle:\n  code: EMT\n", "oracle.code", "did you mean 'emt'?"),
    (
        "unknown-preset",
        MINIMAL + "oracle:\n  preset: fast\n",
        "oracle.preset",
        "available presets: default",
    ),
    ("preset-file", MINIMAL + "oracle:\n  preset: my.yaml\n", "oracle.preset", "my.yaml"),
    (
        "oracle-elements",
        "name: t\nsystem:\n  elements: [Ca, Fe, Ni]\n",
        "oracle.code",
        "cannot handle Ca, Fe",
    ),
    ("one-model", MINIMAL + "committee:\n  n_models: 1\n", "committee.n_models", ">= 2"),
    (
        "n-models-text",
        MINIMAL + "committee:\n  n_models: four\n",
        "committee.n_models",
        "whole number",
    ),
    (
        "bool-as-int",
        MINIMAL + "committee:\n  max_epochs: true\n",
        "committee.max_epochs",
        "boolean",
    ),
    ("bad-device", MINIMAL + "committee:\n  device: gpu\n", "committee.device", "auto, cpu, cuda"),
    (
        "missing-model-file",
        MINIMAL + "committee:\n  foundation_model: models/mace.model\n",
        "committee.foundation_model",
        "file not found",
    ),
    (
        "timestep",
        MINIMAL + "exploration:\n  timestep_fs: 10\n",
        "exploration.timestep_fs",
        "<= 5 fs",
    ),
    (
        "ensemble",
        MINIMAL + "exploration:\n  ensembles: [NPT]\n",
        "exploration.ensembles[0]",
        "'npt'",
    ),
    (
        "frames",
        MINIMAL + "exploration:\n  steps: 5\n",
        "exploration.frame_interval",
        "must be <= steps",
    ),
    (
        "trust-window",
        MINIMAL + "selection:\n  trust_lo_eV_A: 0.3\n  trust_hi_eV_A: 0.2\n",
        "selection.trust_lo_eV_A",
        "must be below trust_hi_eV_A",
    ),
    (
        "trust-equal",
        MINIMAL + "selection:\n  trust_lo_eV_A: 0.3\n  trust_hi_eV_A: 0.3\n",
        "selection.trust_lo_eV_A",
        "must be below",
    ),
    (
        "spread-below-window",
        MINIMAL + "exploration:\n  max_spread_eV_A: 0.01\n",
        "exploration.max_spread_eV_A",
        "selection.trust_lo_eV_A",
    ),
    (
        "percentile",
        MINIMAL + "selection:\n  adaptive_percentile: 100\n",
        "selection.adaptive_percentile",
        "< 100",
    ),
    (
        "fraction",
        MINIMAL + "selection:\n  converged_fraction: 0\n",
        "selection.converged_fraction",
        "> 0",
    ),
    (
        "password-in-uri",
        MINIMAL + "store:\n  uri: mongodb://alice:s3cret@db.example.org/al\n",
        "store.uri",
        "store.uri_file",
    ),
    ("uri-scheme", MINIMAL + "store:\n  uri: http://db.example.org\n", "store.uri", "mongodb://"),
    (
        "uri-and-uri-file",
        MINIMAL + "store:\n  uri: mongodb://db.example.org\n  uri_file: uri.txt\n",
        "store.uri_file",
        "only one of",
    ),
    (
        "uri-file-missing",
        MINIMAL + "store:\n  uri_file: nowhere.txt\n",
        "store.uri_file",
        "file not found",
    ),
    ("uri-env-is-uri", MINIMAL + "store:\n  uri_env: mongodb://h/x\n", "store.uri_env", "NAME"),
    (
        "same-databases",
        MINIMAL + "store:\n  database: x\n  launchpad_database: x\n",
        "store.launchpad_database",
        "must differ",
    ),
    ("workers", MINIMAL + "launcher:\n  workers: 0\n", "launcher.workers", ">= 1"),
    ("section-not-mapping", MINIMAL + "seeds: 5\n", "seeds", "expected a mapping"),
    ("duplicate-key", MINIMAL + "seed: 1\nseed: 2\n", "seed", "duplicate key 'seed'"),
    (
        "vasp-own-incar-tag",
        MINIMAL + "oracle:\n  code: vasp\n  preset: fast\n  overrides:\n    incar: {NSW: 5}\n",
        "oracle.overrides.incar.NSW",
        "NSW is set by al-loop",
    ),
    (
        "vasp-lower-case-tag",
        MINIMAL + "oracle:\n  code: vasp\n  preset: fast\n  overrides:\n    incar: {encut: 500}\n",
        "oracle.overrides.incar.encut",
        "upper case: ENCUT",
    ),
    (
        "vasp-unknown-setting",
        MINIMAL + "oracle:\n  code: vasp\n  preset: fast\n  overrides:\n    kspacing: 0.3\n",
        "oracle.overrides.kspacing",
        "did you mean 'kspacing_A'",
    ),
    (
        "vasp-potcar-of-another-element",
        MINIMAL + "oracle:\n  code: vasp\n  preset: fast\n  overrides:\n    potcars: {Fe: Ni_pv}\n",
        "oracle.overrides.potcars.Fe",
        "not a POTCAR of Fe",
    ),
    (
        "vasp-element-without-potcar",
        "name: t\nsystem:\n  elements: [Fe, Mg]\noracle:\n  code: vasp\n  preset: fast\n",
        "oracle.preset",
        "no potcars entry for Mg",
    ),
    (
        "espresso-element-without-upf",
        "name: t\nsystem:\n  elements: [Fe, Mg]\noracle:\n  code: espresso\n  preset: fast\n"
        "  overrides:\n    pseudopotentials: {Fe: Fe.UPF}\n",
        "oracle.overrides.pseudopotentials",
        "no pseudopotentials entry for Mg",
    ),
    (
        "overrides-not-mapping",
        MINIMAL + "oracle:\n  overrides: [a]\n",
        "oracle.overrides",
        "mapping",
    ),
    (
        "espresso-wall-time-as-text",
        ESPRESSO + "    wall_time_s: 1h\n",
        "oracle.overrides.wall_time_s",
        "give a plain number in s",
    ),
    (
        "espresso-zero-k-spacing",
        ESPRESSO + "    kspacing_A: 0\n",
        "oracle.overrides.kspacing_A",
        "must be > 0 Å",
    ),
    (
        "espresso-unknown-setting",
        ESPRESSO + "    ecutwfcc_Ry: 40\n",
        "oracle.overrides.ecutwfcc_Ry",
        "did you mean 'ecutwfc_Ry'",
    ),
    (
        "espresso-physics-in-a-retry",
        ESPRESSO + "    retries: [{degauss_Ry: 0.04}]\n",
        "oracle.overrides.retries[0].degauss_Ry",
        "execution settings only",
    ),
    (
        "espresso-smearing-name",
        ESPRESSO + "    smearing: marzari\n",
        "oracle.overrides.smearing",
        "must be one of",
    ),
]


@pytest.mark.parametrize(
    ("text", "key_path", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_campaign(tmp_path: Path, text: str, key_path: str, expected: str) -> None:
    (tmp_path / "uri.txt").write_text("mongodb://localhost\n")
    (tmp_path / "notes.txt").write_text("not a structure\n")
    path = _write(tmp_path, text)
    err = _load_error(path)
    assert err.key_path == key_path, str(err)
    assert err.file == path
    assert expected in err.message, str(err)
    first = str(err).splitlines()[0]
    assert first == f"{path}: {key_path}: {err.message}"
    assert key_path in first and expected in first


def test_bad_campaign_table_is_big() -> None:
    assert len(BAD) >= 20


def test_password_is_never_echoed(tmp_path: Path) -> None:
    for uri in ("mongodb://alice:s3cret@db/al", "mongo://alice:s3cret@db/al"):
        err = _load_error(_write(tmp_path, MINIMAL + f"store:\n  uri: {uri}\n"))
        assert err.key_path == "store.uri"
        assert "s3cret" not in str(err)


def test_error_gives_the_line(tmp_path: Path) -> None:
    err = _load_error(_write(tmp_path, "name: t\nsystem:\n  elements:\n    - Cu\n    - Qq\n"))
    assert err.key_path == "system.elements[1]"
    assert err.line == 5 and "(line 5)" in err.message


def test_a_preset_file_with_a_bad_value_names_the_file_and_key(tmp_path: Path) -> None:
    preset = tmp_path / "mine.yaml"
    preset.write_text("asap_cutoff: maybe\n")
    path = _write(tmp_path, MINIMAL + f"oracle:\n  code: emt\n  preset: {preset}\n")
    err = _load_error(path)
    assert err.key_path == "oracle.preset"
    assert str(preset) in err.message and "asap_cutoff" in err.message


def test_every_settings_problem_is_listed(tmp_path: Path) -> None:
    text = ESPRESSO + "    wall_time_s: 1h\n    kspacing_A: 0\n    mixing_beta: 2\n"
    err = _load_error(_write(tmp_path, text))
    keys = {key for key, _ in err.problems}
    assert {f"oracle.overrides.{k}" for k in ("wall_time_s", "kspacing_A", "mixing_beta")} <= keys


def test_settings_are_resolved_once_when_the_file_is_loaded(tmp_path: Path) -> None:
    path = _write(tmp_path, ESPRESSO + "    pseudo_dir: pseudos\n    ecutwfc_Ry: 35\n")
    settings = load_campaign(path).oracle.settings
    assert settings.ecutwfc_Ry == 35 and settings.ecutrho_Ry == 240  # the preset's
    assert settings.pseudo_dir == str(tmp_path / "pseudos")  # relative to the campaign file


def test_several_problems_one_error_one_line_each(tmp_path: Path) -> None:
    text = "name: t\nsystem:\n  elements: [Cu]\n  pressures_GPa: [-1]\n  temperatures_K: [-1]\n"
    err = _load_error(_write(tmp_path, text))
    lines = str(err).splitlines()
    assert len(lines) == 2
    assert "system.pressures_GPa[0]" in lines[0] and "system.temperatures_K[0]" in lines[1]
    assert [p for p, _ in err.problems] == ["system.pressures_GPa[0]", "system.temperatures_K[0]"]


def test_unknown_key_lists_allowed_keys(tmp_path: Path) -> None:
    err = _load_error(_write(tmp_path, MINIMAL + "  pressures_kbar: [10]\n"))
    assert "allowed keys: elements, pressures_GPa, temperatures_K" in err.message
    assert "units are part of the key name" in err.message


# (id, how to make the file, expected substring); the key path is empty for file-level problems
FILE_PROBLEMS = [
    ("missing", None, "campaign file not found"),
    ("empty", "", "the file is empty"),
    ("only-comments", "# nothing yet\n", "the file is empty"),
    ("yaml-syntax", "name: t\nsystem:\n  elements: [Cu, Ni\n", "invalid YAML at line"),
    ("yaml-mapping", "name: t\n  system: x\n", "line 2, column 9"),
    ("tabs", "name: t\nsystem:\n\telements: [Cu]\n", "not tabs"),
    ("top-list", "- name: t\n", "top level must be a mapping"),
    ("top-text", "hello\n", "top level must be a mapping"),
    ("two-documents", "name: t\n---\nname: u\n", "invalid YAML"),
    (
        "alias-bomb",  # ten levels of ten aliases: 10^10 values from 300 bytes
        "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 10))
        + "name: t\nsystem:\n  elements: [Cu]\n",
        "expands to more than 100,000 values",
    ),
]


@pytest.mark.parametrize(
    ("content", "expected"), [c[1:] for c in FILE_PROBLEMS], ids=[c[0] for c in FILE_PROBLEMS]
)
def test_bad_file(tmp_path: Path, content: str | None, expected: str) -> None:
    path = tmp_path / "campaign.yaml"
    if content is not None:
        path.write_text(content)
    err = _load_error(path)
    assert err.key_path == "" and err.file == path
    assert expected in err.message, str(err)
    assert str(err).startswith(f"{path}: ")


def test_an_oversized_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = _write(tmp_path, MINIMAL + "description: '" + "x" * 1_100_000 + "'\n")
    err = _load_error(path)
    assert err.key_path == "" and "1.1 MB is too large for a settings file" in err.message


def test_a_recursive_alias_is_counted_once(tmp_path: Path) -> None:
    """A self-referencing alias is not a bomb: it fails validation like any wrong value."""
    err = _load_error(_write(tmp_path, MINIMAL + "description: &d [*d]\n"))
    assert err.key_path == "description"


def test_an_alias_bomb_in_a_preset_file_is_refused(tmp_path: Path) -> None:
    bomb = "a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 8)
    )
    preset = tmp_path / "mine.yaml"
    preset.write_text(bomb)
    err = _load_error(_write(tmp_path, MINIMAL + f"oracle:\n  preset: {preset}\n"))
    assert err.key_path == "oracle.preset" and "expands to more than" in err.message


def test_folder_instead_of_file(tmp_path: Path) -> None:
    _write(tmp_path, MINIMAL, "a.yaml")
    err = _load_error(tmp_path)
    assert "is a folder" in str(err) and "a.yaml" in str(err)


def test_config_error_str_omits_empty_parts() -> None:
    assert str(ConfigError("boom")) == "boom"
    assert str(ConfigError("boom", key_path="a.b[1]")) == "a.b[1]: boom"
    assert str(ConfigError("boom", file="x.yaml")) == "x.yaml: boom"


# --------------------------------------------------------------------------- (3) no writes


def test_loading_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, demo: Path
) -> None:
    camp = tmp_path / "camp"
    camp.mkdir()
    (camp / "a.xyz").write_text("1\n\nCu 0 0 0\n")
    _write(camp, MINIMAL + "seeds:\n  files: [a.xyz]\n")
    _write(camp, "name: t\nsystem:\n  elements: [Xx]\n", "bad.yaml")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = _listing(tmp_path)
    config = load_campaign(camp / "campaign.yaml")
    assert config.resolved_workdir() == camp / "al-loop-runs" / "t"  # beside the file
    load_campaign(demo).resolved_workdir()
    with pytest.raises(ConfigError):
        load_campaign(camp / "bad.yaml")
    assert _listing(tmp_path) == before
    assert not (cwd / "al-loop-runs").exists()
    assert not (camp / "al-loop-runs").exists()


# --------------------------------------------------------------------------- (4) relative paths


def test_relative_paths_resolve_against_the_campaign_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    camp = tmp_path / "camp"
    (camp / "structures").mkdir(parents=True)
    (camp / "structures" / "a.xyz").write_text("1\n\nCu 0 0 0\n")
    write(str(camp / "POSCAR"), bulk("Cu"), format="vasp")
    (camp / "mace.model").write_text("")
    (camp / "uri.txt").write_text("mongodb://localhost\n")
    (camp / "preset.yaml").write_text("asap_cutoff: true\n")
    text = (
        MINIMAL
        + "workdir: runs\n"
        + "seeds:\n  files: [structures/a.xyz, POSCAR]\n"
        + "committee:\n  foundation_model: mace.model\n"
        + "store:\n  uri_file: uri.txt\n"
        + "oracle:\n  preset: preset.yaml\n"
    )
    _write(camp, text)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = load_campaign(Path("..") / "camp" / "campaign.yaml")
    assert config.source_file == camp / "campaign.yaml"
    assert config.workdir == camp / "runs" == config.resolved_workdir()
    assert config.seeds.files == [camp / "structures" / "a.xyz", camp / "POSCAR"]
    assert config.committee.foundation_model == str(camp / "mace.model")
    assert config.store.uri_file == camp / "uri.txt"
    assert config.oracle.preset == str(camp / "preset.yaml")


def test_named_foundation_model_is_kept(tmp_path: Path) -> None:
    config = load_campaign(
        _write(tmp_path, MINIMAL + "committee:\n  foundation_model: medium-mpa-0\n")
    )
    assert config.committee.foundation_model == "medium-mpa-0"


# --------------------------------------------------------------------------- (5) document, hash


def test_document_and_hash(tmp_path: Path, demo: Path) -> None:
    (tmp_path / "a.xyz").write_text("1\n\nCu 0 0 0\n")
    text = MINIMAL + "workdir: runs\nseeds:\n  files: [a.xyz]\n"
    first = load_campaign(_write(tmp_path, text))
    document = first.to_document()
    assert json.loads(json.dumps(document)) == document
    assert "source_file" not in document
    assert document["workdir"] == str(tmp_path / "runs")
    assert document["seeds"]["files"] == [str(tmp_path / "a.xyz")]
    assert len(first.config_hash()) == 64
    assert load_campaign(tmp_path / "campaign.yaml").config_hash() == first.config_hash()
    assert load_campaign(demo).config_hash() == load_campaign(demo).config_hash()
    changed = load_campaign(_write(tmp_path, text.replace("[Cu, Ni]", "[Cu, Al]"), "b.yaml"))
    assert changed.config_hash() != first.config_hash()
    assert CampaignConfig.model_validate(document).to_document() == document
