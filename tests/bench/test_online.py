"""aaren-bench online: one grid task fine-tunes a checkpoint, a finished task is kept, and the
summary groups runs by dataset and backbone."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aaren_rl.aaren_policy import BackboneConfig
from aaren_rl.bench.arguments import check_bench_args
from aaren_rl.bench.online import (
    OnlineBenchConfig,
    _dataset_name,
    acting_comparison,
    grid_specs,
    run_one,
    summarize_online,
)
from aaren_rl.errors import ConfigError
from aaren_rl.train.config import TrainConfig
from aaren_rl.train.loop import train


def _tiny_checkpoint(run_dir: Path, dataset: Path, backbone: str = "aaren", steps: int = 3) -> Path:
    cfg = TrainConfig(
        dataset=f"d4rl:{dataset}",
        backbone=backbone,
        steps=steps,
        model=BackboneConfig(dim=16, num_layers=1),
        episode_length=40,
        threads=1,
        eval_episodes=0,
        progress=False,
        run_dir=run_dir,
    )
    return train(cfg).run_dir / "checkpoint"


def test_a_task_runs_once_and_the_summary_groups_it(tmp_path: Path, tiny_hopper_dataset: Path):
    ckpt = _tiny_checkpoint(tmp_path / "offline", tiny_hopper_dataset, steps=5)
    bench = OnlineBenchConfig(
        checkpoints=(ckpt,),
        seeds=(0,),
        env_steps=60,
        num_envs=2,
        eval_every=60,
        eval_episodes=1,
        max_episode_steps=30,
        batch_size=4,
        objective="mse",
        learning_rate=3e-5,
        train_horizon="on",
        seed_trajectories=3,
        lr_decay="cosine",
        init_std=0.05,
        replay_size=4,
        replay_eviction="lowest-return",
        memory_horizon="choose",
        out_dir=tmp_path / "online",
    )
    (spec,) = grid_specs(bench)
    assert dict(spec.settings)["train_horizon"] == "on"
    assert dict(spec.settings)["seed_trajectories"] == 3
    assert spec.name == "hopper__aaren__offline__s0"
    assert run_one(spec).startswith("done hopper__aaren__offline__s0: final")
    record = json.loads(spec.json_path.read_text())
    assert record["env_steps"] >= 60 and record["offline_eval"]["episodes"] == 1
    assert record["dataset"] == tiny_hopper_dataset.stem and record["objective"] == "mse"
    assert record["learning_rate"] == 3e-5
    run_dir = bench.out_dir / "runs" / spec.name  # the buffer started from 3 offline episodes
    config = json.loads((run_dir / "config.json").read_text())
    assert (config["seed_trajectories"], config["lr_decay"], config["init_std"]) == (
        3,
        "cosine",
        0.05,
    )
    assert config["replay_eviction"] == record["replay_eviction"] == "lowest-return"
    assert config["replay_size"] == record["replay_size"] == 4
    assert record["train_memory_horizon"] == record["acting_memory_horizon"]
    assert config["memory_horizon"] == "choose"  # played on validation episodes: online
    choice = record["memory_horizon_choice"]
    assert choice["selection"] == "online" and set(choice["validation_scores"]) == {
        "0",
        "10",
        "20",
        "40",
    }
    assert record["acting_memory_horizon"] == choice["memory_horizon"]
    clocks = [point["train_clock_s"] for point in record["curve"]]
    assert clocks[0] == 0.0 and clocks == sorted(clocks) and clocks[-1] > 0  # x axis vs time
    assert run_one(spec) == "done hopper__aaren__offline__s0 (kept)"
    (row,) = summarize_online(bench.out_dir)
    assert (row["dataset"], row["env"]) == (tiny_hopper_dataset.stem, "Hopper-v5")
    assert (row["backbone"], row["seeds"]) == ("aaren", 1)
    t = record["time_seconds"]  # the wall-clock counts acting once, not its CPU time again
    assert row["wall_s"] == pytest.approx(sum(t.values()) - t["act_cpu"])
    assert row["acting_cpu_us_per_env_step"] == record["acting_cpu_us_per_env_step"] > 0
    assert row["memory_horizons"] == [choice["memory_horizon"]] and row["horizon_chosen_online"]
    assert "chosen online" in (bench.out_dir / "summary.md").read_text()
    curves = bench.out_dir / f"curves-{tiny_hopper_dataset.stem}.png"
    assert curves.read_bytes().startswith(b"\x89PNG")
    assert _dataset_name("d4rl:runs/datasets/hopper-medium.hdf5") == "hopper-medium"
    assert _dataset_name("minari:mujoco/hopper/medium-v0") == "mujoco/hopper/medium-v0"
    with pytest.raises(ConfigError, match="--checkpoints"):
        grid_specs(OnlineBenchConfig(out_dir=tmp_path / "x"))
    # --summary-only rebuilds from the JSON files alone: no checkpoints needed.
    check_bench_args(OnlineBenchConfig(summary_only=True, out_dir=bench.out_dir))
    with pytest.raises(ConfigError, match="--checkpoints was given no values"):
        check_bench_args(OnlineBenchConfig(out_dir=bench.out_dir))


def test_acting_only_times_both_explorers_alternately(tmp_path: Path, tiny_hopper_dataset: Path):
    ckpts = tuple(
        _tiny_checkpoint(tmp_path / b, tiny_hopper_dataset, b) for b in ("transformer", "aaren")
    )
    bench = OnlineBenchConfig(
        checkpoints=ckpts,
        seeds=(0,),
        acting_only=(1, 2),
        acting_rounds=2,
        max_episode_steps=20,
        out_dir=tmp_path / "acting",
    )
    data = acting_comparison(bench)
    assert [r["num_envs"] for r in data["rows"]] == [1, 2]
    for row in data["rows"]:
        assert row["aaren"]["mode"] == "recurrent" and row["transformer"]["mode"] == "window"
        for b in ("aaren", "transformer"):
            assert len(row[b]["rounds"]) == 2 and row[b]["env_steps"] >= 2
            assert row[b]["acting_us_per_env_step"] > 0
        ratio = (
            row["transformer"]["acting_us_per_env_step"] / row["aaren"]["acting_us_per_env_step"]
        )
        assert row["ratio_transformer_over_aaren"] == pytest.approx(ratio)
        cpu = [row[b]["acting_cpu_us_per_env_step"] for b in ("aaren", "transformer")]
        assert row["cpu_ratio_transformer_over_aaren"] == pytest.approx(cpu[1] / cpu[0])
        assert all(0 < c <= 1.01 * row[b]["acting_us_per_env_step"] + 1
                   for c, b in zip(cpu, ("aaren", "transformer")))  # fmt: skip
    saved = json.loads((tmp_path / "acting" / "acting.json").read_text())
    assert saved["rows"][0]["num_envs"] == 1 and "avx2" in saved["cpu"]["flags"]
    with pytest.raises(ConfigError, match="one Aaren and one Transformer"):
        acting_comparison(OnlineBenchConfig(checkpoints=ckpts[:1], acting_only=(1,)))
    with pytest.raises(ConfigError, match=">= 1"):
        acting_comparison(OnlineBenchConfig(checkpoints=ckpts, acting_only=(0,)))


def test_train_horizon_goes_to_the_aaren_checkpoints_only(tmp_path: Path, tiny_hopper_dataset):
    ckpts = tuple(
        _tiny_checkpoint(tmp_path / b, tiny_hopper_dataset, backbone=b, steps=1)
        for b in ("aaren", "transformer")
    )
    for mode, given in {"on": ["on", None], "off": ["off", "off"], "auto": ["auto", None]}.items():
        specs = grid_specs(OnlineBenchConfig(checkpoints=ckpts, seeds=(0,), train_horizon=mode))
        assert [dict(s.settings).get("train_horizon") for s in specs] == given
    specs = grid_specs(OnlineBenchConfig(checkpoints=ckpts, seeds=(0,), memory_horizon="choose"))
    assert [dict(s.settings).get("memory_horizon") for s in specs] == ["choose", None]


def test_settings_added_later_are_passed_only_when_they_differ(tmp_path: Path, tiny_hopper_dataset):
    """A run started before a setting existed resumes: at this command's defaults the added
    settings stay out of the task (aaren-finetune then keeps the run's saved values)."""
    ckpt = (_tiny_checkpoint(tmp_path / "a", tiny_hopper_dataset, steps=1),)
    added = {"learning_rate", "seed_trajectories", "replay_size", "lr_decay", "init_std"}
    added.add("replay_eviction")
    (plain,) = grid_specs(OnlineBenchConfig(checkpoints=ckpt, seeds=(0,)))
    assert not added & dict(plain.settings).keys()
    (changed,) = grid_specs(
        OnlineBenchConfig(checkpoints=ckpt, seeds=(0,), replay_size=50, lr_decay="cosine")
    )
    assert {k: v for k, v in changed.settings if k in added} == {
        "replay_size": 50,
        "lr_decay": "cosine",
    }
