"""Record evaluation episodes to MP4 with Gymnasium's ``RecordVideo``.

MuJoCo picks its OpenGL backend when it is first imported: :func:`use_headless_gl` must run
before that (``aaren-eval`` calls it first thing when ``--video`` is given). EGL renders
without a display; a user's own ``MUJOCO_GL`` is respected.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from aaren_rl.eval.rollout import Agent, EvalError, run_episodes

__all__ = ["check_video_dir", "record_video", "use_headless_gl"]


def use_headless_gl() -> None:
    """Set ``MUJOCO_GL=egl`` unless the user chose a backend."""
    os.environ.setdefault("MUJOCO_GL", "egl")


def check_video_dir(directory: str | Path) -> Path:
    """Create ``directory`` if needed and check that it is writable; return it.

    Raises:
        EvalError: it cannot be created or written, or moviepy (needed by Gymnasium's
            ``RecordVideo``) is not installed.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-test-"):
            pass
    except OSError as e:
        raise EvalError(
            f"cannot write videos to {directory}: {e.strerror or e}; pass a writable --video DIR"
        ) from e
    try:
        import moviepy  # noqa: F401
    except ImportError as e:
        raise EvalError(
            "--video needs moviepy (Gymnasium's RecordVideo writes MP4 with it): "
            "pip install moviepy"
        ) from e
    return directory


def record_video(
    agent: Agent,
    env: str,
    directory: str | Path,
    seed: int = 0,
    episodes: int = 1,
    max_episode_steps: int | None = None,
    name_prefix: str = "eval",
) -> list[Path]:
    """Run ``episodes`` episodes (seeds ``seed + i``, one env) and write one MP4 each.

    Returns:
        The video files written.
    """
    import gymnasium as gym

    from aaren_rl.envs import make_env

    directory = check_video_dir(directory)
    before = set(directory.glob("*.mp4"))
    base = make_env(env, render_mode="rgb_array")
    venv = gym.wrappers.RecordVideo(
        base,
        str(directory),
        episode_trigger=lambda _: True,
        name_prefix=name_prefix,
        disable_logger=True,
    )
    try:
        run_episodes(agent, [venv], episodes, seed, max_episode_steps)
    finally:
        venv.close()  # flushes the last video
    return sorted(set(directory.glob("*.mp4")) - before)
