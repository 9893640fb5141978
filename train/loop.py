"""``train(config)``: the training loop, top to bottom.

The pieces (data, model, optimiser, checkpoints, evaluation) live in
:class:`~aaren_rl.train.trainer.Trainer`; this module only orders them, CleanRL-style: build
and check everything, open the run directory (or restore its checkpoint), then step, log,
evaluate and checkpoint on their schedules, and finish with a checkpoint and an evaluation.
The run directory's layout is described in ``train/run_dir.py`` and docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aaren_rl.errors import TrainError
from aaren_rl.train.config import TrainConfig
from aaren_rl.train.trainer import Trainer, masked_action_loss
from aaren_rl.train.trainer_state import TRAINER_JSON

__all__ = ["TRAINER_STATE", "TrainError", "TrainResult", "masked_action_loss", "train"]

# The file whose presence in ``RUN/checkpoint`` marks a checkpoint that --resume can continue.
TRAINER_STATE = TRAINER_JSON


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    final_loss: float
    seconds_per_step: float
    eval: dict[str, Any] | None = None
    metrics: list[dict[str, Any]] = field(default_factory=list)
    precision: str = "fp32"
    """The training precision used (``fp32`` or ``bf16``; ``--precision auto`` resolved)."""
    memory_horizon: dict[str, Any] | None = None
    """The acting memory horizon chosen at the end of training and every candidate's
    validation score (``HorizonChoice.to_dict``), or None when it was not chosen."""


def train(cfg: TrainConfig) -> TrainResult:
    """Run (or, with ``cfg.resume``, continue) training as configured; returns a summary.

    Every check (flags, dataset, environment, run directory, a resumed run's config, data
    and checkpoint) runs before the first file is written. With ``cfg.resume`` the given
    config must equal the run's saved one except for ``--steps`` and the W&B/progress flags.

    Raises:
        aaren_rl.errors.AarenError: a bad flag, dataset, run directory or checkpoint.
        OSError: a checkpoint could not be written (the previous one is intact; the
            exception's note says how to continue).
        KeyboardInterrupt: interrupted; its note says how to continue.
    """
    cfg.validate()
    trainer = Trainer.build(cfg)  # data, model, optimiser, sampler: checked, nothing written
    try:
        trainer.start()  # a new run directory, or the checkpoint of --resume
        if cfg.progress and trainer.ctx.is_main:
            print(trainer.compute_path(), flush=True)
        _loop(trainer)
        trainer.save(cfg.steps)  # the trained weights are safe before the horizon is chosen
        horizon = trainer.choose_memory_horizon(cfg.steps)  # None on ranks other than 0
        if cfg.chooses_memory_horizon(trainer.model.config.discrete):  # alike on every rank
            trainer.save(cfg.steps)  # the same checkpoint, with the chosen horizon
        final_eval = trainer.evaluate(cfg.steps) if cfg.eval_episodes else None
        trainer.ctx.barrier()  # rank 0 may still be writing or evaluating
    except KeyboardInterrupt as e:
        e.add_note(trainer.resume_hint())
        raise
    finally:
        trainer.close()
    return TrainResult(
        run_dir=trainer.run_dir,
        steps=cfg.steps,
        final_loss=trainer.last_loss,
        seconds_per_step=trainer.seconds_per_step,
        eval=final_eval,
        memory_horizon=horizon,
        metrics=trainer.metrics_log.read() if trainer.ctx.is_main and trainer.metrics_log else [],
        precision=trainer.precision,
    )


def _loop(trainer: Trainer) -> None:
    """Steps ``start_step + 1 .. cfg.steps`` with logging, evaluation and checkpoints."""
    cfg = trainer.cfg
    bar = _progress_bar(trainer)
    last_eval = None
    for step in range(trainer.start_step + 1, cfg.steps + 1):
        stats = trainer.train_step()
        if step % cfg.log_every == 0 or step == cfg.steps:
            trainer.log_train(step, stats)
        if (
            cfg.eval_every
            and cfg.eval_episodes
            and step % cfg.eval_every == 0
            and step != cfg.steps
        ):
            last_eval = trainer.evaluate(step)
        if step % cfg.checkpoint_every == 0 and step != cfg.steps:
            trainer.save(step)
        if bar is not None:
            post = {"loss": f"{stats.loss:.4f}"}
            score = _score(last_eval)
            if score is not None:
                post["eval"] = f"{score:.1f}"
            bar.set_postfix(post, refresh=False)
            bar.update(1)
    if bar is not None:
        bar.close()


def _progress_bar(trainer: Trainer) -> Any:
    if not (trainer.cfg.progress and trainer.ctx.is_main):
        return None
    from tqdm.auto import tqdm

    return tqdm(
        total=trainer.cfg.steps,
        initial=trainer.start_step,
        desc=trainer.cfg.backbone,
        unit="step",
        dynamic_ncols=True,
    )


def _score(result: dict[str, Any] | None) -> float | None:
    if result is None:
        return None
    score = result.get("normalized_mean")
    return score if score is not None else result.get("return_mean")
