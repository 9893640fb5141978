"""Crafted dataset files: a clear DatasetError naming file and key, and no code runs.

Covers D4RL HDF5 files (object / vlen / string / compound dtypes, external links, external
storage, virtual datasets, metadata attributes) and Minari datasets (a ``metadata.json``
that would make Minari ``gym.make`` an entry point it names; env ids that import a module).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from aaren_rl.envs import load_dataset
from aaren_rl.errors import DatasetError


@pytest.fixture
def marker_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An importable module ``aaren_marker_mod`` that creates a marker file when imported."""
    marker = tmp_path / "IMPORTED"
    pkg = tmp_path / "mods"
    pkg.mkdir()
    (pkg / "aaren_marker_mod.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).touch()\n"
    )
    monkeypatch.syspath_prepend(str(pkg))
    monkeypatch.delitem(sys.modules, "aaren_marker_mod", raising=False)
    return marker


# ----------------------------------------------------------------------------- D4RL HDF5


@pytest.mark.parametrize("key", ["observations", "rewards", "terminals", "timeouts"])
def test_object_dtype_arrays_are_refused(tmp_path: Path, synth, key: str):
    arrays = synth.arrays()
    n = len(arrays["rewards"])
    path = synth.write(tmp_path / "obj.hdf5", {k: v for k, v in arrays.items() if k != key})
    with h5py.File(path, "a") as f:  # variable-length strings: h5py hands back Python objects
        f.create_dataset(key, data=np.array([b"x"] * n, dtype=object), dtype=h5py.string_dtype())
    with pytest.raises(DatasetError, match=rf"obj\.hdf5: '{key}' has dtype object"):
        load_dataset(f"d4rl:{path}")


@pytest.mark.parametrize(
    "make",
    [
        lambda n: np.zeros(n, dtype=[("a", "f4"), ("b", "f4")]),  # compound
        lambda n: np.frombuffer(b"\x80" * 4 * n, dtype="V4"),  # opaque (e.g. pickled bytes)
        lambda n: np.array([b"abc"] * n),  # fixed-length bytes
    ],
    ids=["compound", "opaque", "bytes"],
)
def test_non_numeric_dtypes_are_refused(tmp_path: Path, synth, make):
    arrays = synth.arrays()
    arrays["rewards"] = make(len(arrays["rewards"]))
    path = synth.write(tmp_path / "bad.hdf5", arrays)
    with pytest.raises(DatasetError, match=r"bad\.hdf5: 'rewards' has dtype"):
        load_dataset(f"d4rl:{path}")


def test_vlen_float_arrays_are_refused(tmp_path: Path, synth):
    arrays = synth.arrays()
    obs = arrays.pop("observations")
    path = synth.write(tmp_path / "vlen.hdf5", arrays)
    with h5py.File(path, "a") as f:
        d = f.create_dataset("observations", (len(obs),), dtype=h5py.vlen_dtype(np.float32))
        for i, row in enumerate(obs):
            d[i] = row
    with pytest.raises(DatasetError, match="'observations' has dtype object .variable-length"):
        load_dataset(f"d4rl:{path}")


def test_external_links_are_not_followed(tmp_path: Path, synth):
    arrays = synth.arrays()
    other = synth.write(tmp_path / "other.hdf5", {"secret": arrays["observations"]})
    path = synth.write(
        tmp_path / "link.hdf5", {k: v for k, v in arrays.items() if k != "observations"}
    )
    with h5py.File(path, "a") as f:
        f["observations"] = h5py.ExternalLink(str(other), "/secret")
    with pytest.raises(DatasetError, match=r"'observations' is a ExternalLink .*other\.hdf5"):
        load_dataset(f"d4rl:{path}")


def test_external_raw_storage_is_not_read(tmp_path: Path, synth):
    arrays = synth.arrays()
    secret = tmp_path / "secret.bin"
    arrays["rewards"].tofile(secret)
    path = synth.write(tmp_path / "ext.hdf5", {k: v for k, v in arrays.items() if k != "rewards"})
    n = len(arrays["rewards"])
    with h5py.File(path, "a") as f:
        f.create_dataset("rewards", (n,), dtype="f4", external=[(str(secret), 0, 4 * n)])
    with pytest.raises(DatasetError, match="'rewards' is a dataset with external storage"):
        load_dataset(f"d4rl:{path}")


def test_virtual_datasets_are_not_read(tmp_path: Path, synth):
    arrays = synth.arrays()
    src = synth.write(tmp_path / "src.hdf5", {"r": arrays["rewards"]})
    path = synth.write(tmp_path / "vds.hdf5", {k: v for k, v in arrays.items() if k != "rewards"})
    n = len(arrays["rewards"])
    layout = h5py.VirtualLayout(shape=(n,), dtype="f4")
    layout[:] = h5py.VirtualSource(str(src), "r", shape=(n,))
    with h5py.File(path, "a") as f:
        f.create_virtual_dataset("rewards", layout)
    with pytest.raises(DatasetError, match="'rewards' is a virtual dataset"):
        load_dataset(f"d4rl:{path}")


def test_an_env_id_that_would_import_a_module_is_refused(tmp_path, synth, marker_module):
    import gymnasium as gym

    path = synth.write(tmp_path / "envid.hdf5", synth.arrays(), env_id="aaren_marker_mod:Hopper-v5")
    with pytest.raises(DatasetError, match=r"envid\.hdf5: metadata 'env_id'.*import the module"):
        load_dataset(f"d4rl:{path}")
    assert not marker_module.exists()
    gym.make("aaren_marker_mod:Hopper-v5").close()  # the control: Gymnasium imports it
    assert marker_module.exists()


@pytest.mark.parametrize(
    ("attrs", "message"),
    [
        ({"num_actions": "7"}, "'num_actions' must be an integer"),
        ({"num_actions": 10**12}, "'num_actions' must be an integer"),
        ({"env_id": 3}, "environment id must be a string"),
        ({"ref_max_score": "[1, 2]"}, "'ref_max_score' must be a number"),
        ({"observation_nvec": "[0, 3]"}, "'observation_nvec' must be positive integers"),
        ({"notes": "x" * (5 * 2**20)}, "attribute 'notes' holds"),
    ],
)
def test_metadata_attributes_are_checked(tmp_path: Path, synth, attrs: dict, message: str):
    path = synth.write(tmp_path / "attrs.hdf5", synth.arrays(), **attrs)
    with pytest.raises(DatasetError, match=message):
        load_dataset(f"d4rl:{path}")


def test_json_attributes_are_parsed_with_json_only(tmp_path: Path, synth):
    deep = "[" * 100_000 + "]" * 100_000  # too deep for json: stays text, no crash
    meta = {"checkpoints": json.dumps([{"step": 1}]), "deep": deep, "code": "{__import__('os')}"}
    path = synth.write(tmp_path / "json.hdf5", synth.arrays(), **meta)
    ds = load_dataset(f"d4rl:{path}")
    assert ds.metadata["checkpoints"] == [{"step": 1}]
    assert ds.metadata["deep"] == deep and ds.metadata["code"] == meta["code"]


def test_plain_files_still_load(h5_file: Path):
    ds = load_dataset(f"d4rl:{h5_file}")
    assert ds.num_transitions == 15 and ds.env_id == "Hopper-v5"


# ----------------------------------------------------------------------------- Minari


def _minari(synth, name: str = "evil/hop-v0") -> Path:
    from aaren_rl.envs.writers import write_minari

    return write_minari(name, synth.arrays(), "Hopper-v5", algorithm_name="x", description="x")


def _edit_metadata(ds_dir: Path, edit) -> None:
    path = ds_dir / "data" / "metadata.json"
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_minari_metadata_that_would_build_an_entry_point_is_refused(tmp_path, synth):
    marker = tmp_path / "MARKER"

    def evil(meta):  # no serialised space: Minari would gym.make the recorded env_spec
        del meta["observation_space"]
        spec = json.loads(meta["env_spec"])
        spec["entry_point"], spec["kwargs"] = "os:system", {"command": f"touch {marker}"}
        meta["env_spec"] = json.dumps(spec)

    _edit_metadata(_minari(synth), evil)
    with pytest.raises(DatasetError, match="no serialised observation_space.*runs code"):
        load_dataset("minari:evil/hop-v0")
    assert not marker.exists()


def test_the_crafted_minari_metadata_runs_code_under_minari_itself(tmp_path, synth):
    """The control for the test above: plain ``minari.load_dataset`` runs the entry point."""
    import minari

    marker = tmp_path / "MARKER"

    def evil(meta):
        del meta["observation_space"]
        spec = json.loads(meta["env_spec"])
        spec["entry_point"], spec["kwargs"] = "os:system", {"command": f"touch {marker}"}
        meta["env_spec"] = json.dumps(spec)

    _edit_metadata(_minari(synth), evil)
    with pytest.raises(Exception):  # noqa: B017 - os.system returns an int, not an Env
        minari.load_dataset("evil/hop-v0")
    assert marker.exists()


def test_minari_env_spec_ids_that_import_a_module_are_refused(synth, marker_module):
    def evil(meta):
        spec = json.loads(meta["env_spec"])
        spec["id"] = "aaren_marker_mod:Hopper-v5"
        meta["env_spec"] = json.dumps(spec)

    _edit_metadata(_minari(synth), evil)
    with pytest.raises(DatasetError, match="env_spec id.*not a plain Gymnasium id"):
        load_dataset("minari:evil/hop-v0")
    assert not marker_module.exists()


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m.update(action_space='{"type": "Box", "dtype": "object", "shape": [3], '
                            '"low": [0, 0, 0], "high": [1, 1, 1]}'), "non-numeric dtype"),
        (lambda m: m.update(action_space='{"type": "Pickle"}'), "not a serialised space"),
        (lambda m: m.update(data_format="arrow"), "HDF5 format only"),
    ],
)  # fmt: skip
def test_minari_metadata_is_checked(synth, edit, message):
    _edit_metadata(_minari(synth), edit)
    with pytest.raises(DatasetError, match=message):
        load_dataset("minari:evil/hop-v0")


def test_minari_object_dtype_episode_data_is_refused(synth):
    ds_dir = _minari(synth)
    with h5py.File(ds_dir / "data" / "main_data.hdf5", "a") as f:
        n = f["episode_0/rewards"].shape[0]
        del f["episode_0/rewards"]
        f.create_dataset("episode_0/rewards", data=np.array([b"1"] * n, dtype=object),
                         dtype=h5py.string_dtype())  # fmt: skip
    with pytest.raises(DatasetError, match="'rewards' has dtype object"):
        load_dataset("minari:evil/hop-v0")


def test_minari_external_links_are_refused(tmp_path: Path, synth):
    ds_dir = _minari(synth)
    other = synth.write(tmp_path / "other.hdf5", {"r": np.zeros(5, np.float32)})
    with h5py.File(ds_dir / "data" / "main_data.hdf5", "a") as f:
        del f["episode_0/rewards"]
        f["episode_0/rewards"] = h5py.ExternalLink(str(other), "/r")
    with pytest.raises(DatasetError, match="links to other files .episode_0/rewards"):
        load_dataset("minari:evil/hop-v0")


def test_minari_external_storage_is_refused(tmp_path: Path, synth):
    ds_dir = _minari(synth)
    secret = tmp_path / "secret.bin"
    with h5py.File(ds_dir / "data" / "main_data.hdf5", "a") as f:
        n = f["episode_0/rewards"].shape[0]
        np.zeros(n, np.float64).tofile(secret)
        del f["episode_0/rewards"]
        f.create_dataset("episode_0/rewards", (n,), dtype="f8", external=[(str(secret), 0, 8 * n)])
    with pytest.raises(
        DatasetError,
        match="'episode_0/rewards' is a dataset with external storage: it keeps its data in other",
    ):
        load_dataset("minari:evil/hop-v0")


def test_a_clean_minari_dataset_still_loads(synth):
    _minari(synth, "aaren/clean-v0")
    ds = load_dataset("minari:aaren/clean-v0")
    assert ds.num_transitions == 15 and ds.env_id == "Hopper-v5"
