"""Run logging: metrics.jsonl always, Weights & Biases only with --track (CleanRL-style).

``wandb`` is imported only when tracking is on, so training never requires it. Without
network access or credentials the run goes to W&B offline mode (sync later with
``wandb sync``), and the user is told so; the connectivity probe has a short timeout, so
nothing hangs.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any

from aaren_rl.errors import AarenError, ConfigError, DependencyNotInstalled, RunDirError
from aaren_rl.fileio import atomic_write_text
from aaren_rl.folders import open_file, read_bytes
from aaren_rl.untrusted import parse_json_text

__all__ = ["MetricsLog", "WandbTracker", "wandb_online_possible"]


MAX_METRICS_BYTES = 256 * 2**20  # metrics.jsonl of a 1M-step run logged every 50: ~10 MB


class MetricsLog:
    """Append-only JSON lines: one ``{"step": ..., "train/loss": ...}`` record per line.

    The file lives in the run directory and is held to its folder policy
    (:mod:`aaren_rl.folders`): never a symlink, never a FIFO or device, read with a size cap
    and each line through the capped JSON parser.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.root = path.parent

    def _lines(self) -> list[str]:
        if not (self.path.exists() or self.path.is_symlink()):
            return []
        data = read_bytes(self.path, RunDirError, MAX_METRICS_BYTES, root=self.root)
        return data.decode("utf-8", errors="replace").splitlines()

    def _record(self, line: str) -> dict[str, Any] | None:
        try:
            record = parse_json_text(line, str(self.path), RunDirError)
        except AarenError:
            return None  # a line cut by a crash
        return record if isinstance(record, dict) else None

    def truncate_after(self, step: int) -> None:
        """Drop records logged after ``step`` (they belong to work a resume will redo)."""
        lines = self._lines()
        if not lines and not self.path.exists():
            return
        kept = []
        for line in lines:
            record = self._record(line)
            s = record.get("step", 0) if record is not None else None
            if isinstance(s, (int, float)) and s <= step:
                kept.append(line)
        atomic_write_text(self.path, "".join(k + "\n" for k in kept))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        with open_file(self.path, RunDirError, "ab", root=self.root) as f:
            f.write((json.dumps({"step": step, **metrics}) + "\n").encode())

    def read(self) -> list[dict[str, Any]]:
        return [r for line in self._lines() if line.strip() and (r := self._record(line))]


def wandb_online_possible(timeout: float = 3.0) -> tuple[bool, str]:
    """Whether an online W&B run can start: credentials present and the API host reachable."""
    if os.environ.get("WANDB_MODE") in ("offline", "disabled", "dryrun"):
        return False, f"WANDB_MODE={os.environ['WANDB_MODE']}"
    has_key = bool(os.environ.get("WANDB_API_KEY")) or (Path.home() / ".netrc").exists()
    if not has_key:
        return False, "no W&B credentials (run `wandb login` or set WANDB_API_KEY)"
    host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1].split("/")[0]
    try:
        socket.create_connection((host.split(":")[0], 443), timeout=timeout).close()
    except OSError as e:
        return False, f"{host} unreachable ({e.__class__.__name__})"
    return True, "online"


class WandbTracker:
    """A W&B run; metrics already namespaced (``train/...``, ``eval/...``)."""

    def __init__(
        self,
        config: dict[str, Any],
        run_dir: Path,
        name: str,
        project: str,
        entity: str | None,
        group: str | None,
        resume_id: str | None = None,
    ) -> None:
        try:
            import wandb
        except ImportError as e:
            raise DependencyNotInstalled(
                "--track needs Weights & Biases: pip install 'aaren-rl[track]' (or wandb), "
                "or train without --track"
            ) from e
        online, why = wandb_online_possible()
        mode = "online" if online else "offline"
        if not online:
            print(f"[aaren-rl] W&B: {why}; logging offline to {run_dir / 'wandb'}.")
            print("[aaren-rl] Upload later with: wandb sync " + str(run_dir / "wandb"))
        os.environ.setdefault("WANDB_DIR", str(run_dir))
        self._wandb = wandb

        def init(mode: str) -> Any:
            return wandb.init(
                project=project,
                entity=entity,
                group=group,
                name=name,
                config=config,
                dir=str(run_dir),
                mode=mode,
                id=resume_id,
                resume="allow" if resume_id else None,
                settings=wandb.Settings(init_timeout=60, silent=True),
            )

        try:
            self.run = init(mode)
        except Exception as e:  # noqa: BLE001  wandb raises CommError, UsageError, timeouts...
            if mode == "offline":
                raise ConfigError(
                    f"--track: W&B could not start even offline ({type(e).__name__}: "
                    f"{str(e)[:200]}); train without --track"
                ) from None
            # the probe reached the host, but the server did not answer as W&B: never block
            print(f"[aaren-rl] W&B: the server did not answer ({type(e).__name__}: "
                  f"{str(e)[:200]}); logging offline to {run_dir / 'wandb'}.")  # fmt: skip
            print("[aaren-rl] Upload later with: wandb sync " + str(run_dir / "wandb"))
            try:
                self.run = init("offline")
            except Exception as e2:  # noqa: BLE001
                raise ConfigError(
                    f"--track: W&B could not start ({type(e2).__name__}: {str(e2)[:200]}); "
                    "train without --track"
                ) from None
        self.id = self.run.id

    def log(self, step: int, metrics: dict[str, Any]) -> None:
        self.run.log(metrics, step=step)

    def finish(self) -> None:
        self.run.finish()
