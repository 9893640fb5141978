"""The results grid's report, rebuilt from its JSON files alone (``bench/returns.py``).

For each task (dataset): one table (final score and best-during-training score, mean ± std
over seeds, the behaviour policy's score beside), the targets (Aaren acting recurrently vs
the Transformer acting through a window, vs d3rlpy's DT, vs the behaviour policy) with the
paired per-seed differences behind them, and one PNG of learning curves; first, one table
across every dataset (Aaren recurrent against each rival, seed by seed, with a sign test).
Peers' JSON files (``bench/peer/``, same schema) found in the folder become rows like ours.

Writes ``summary.md``, ``summary.json`` and ``curves-{dataset}.png`` into the folder and, when
asked, replaces the section between ``<!-- returns-grid:FOLDER:begin -->`` and
``<!-- returns-grid:FOLDER:end -->`` of a markdown page (appending it when the markers are
absent), so the CPU grid (returns-10k) and the GPU grid (returns-100k) keep a section each.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from aaren_rl.fileio import atomic_write_json, atomic_write_text

__all__ = ["load_records", "markers", "summarize_returns"]


def markers(out_dir: Path) -> tuple[str, str]:
    """The comments around a grid's section of a page (one section per results folder)."""
    name = Path(out_dir).name
    return f"<!-- returns-grid:{name}:begin -->", f"<!-- returns-grid:{name}:end -->"


ROW_ORDER = (
    "aaren/recurrent",
    "aaren/recurrent-online",
    "aaren/window",
    "aaren/recurrent-full",
    "transformer/window",
    "transformer/kv-cache",
)
MAIN = "aaren/recurrent"
# Aaren acting through a window is a rival too: recurrent acting should lose nothing to it;
# so is Aaren acting with the horizon chosen online (in the env), when the main row chose
# it offline: the offline choice should lose little to it.
RIVALS = ("transformer/window", "d3rlpy-dt/window", "aaren/window", "aaren/recurrent-online")
SELECTION_LABEL = {
    "offline": "H chosen offline",
    "online": "H chosen online, in the env",
    "trained": "H trained with (offline)",
    "mixed": "H chosen offline and online: mixed runs",
}


def selection_of(r: dict[str, Any]) -> str | None:
    """How a record's memory horizon was chosen: offline, online, trained (fixed before
    training and trained with), or None (fixed or none).
    Records written before offline selection existed chose theirs online."""
    if r.get("horizon_selection"):
        return str(r["horizon_selection"])
    choice = r.get("horizon_choice")
    return (choice.get("selection") or "online") if choice else None


def _criterion_of(r: dict[str, Any]) -> str | None:
    """The held-out action error that chose an offline horizon (own-actions, ...), else None."""
    choice = r.get("horizon_choice") or {}
    return str(choice["criterion"]) if choice.get("criterion") else None


def _row_selection(runs: list[dict[str, Any]]) -> str | None:
    found = {selection_of(r) for r in runs} - {None}
    return None if not found else found.pop() if len(found) == 1 else "mixed"


def main_name(row: dict[str, Any] | None) -> str:
    """ "Aaren recurrent", with how its horizon was chosen where it was."""
    how = SELECTION_LABEL.get(str((row or {}).get("horizon_selection")))
    return f"Aaren recurrent ({how})" if how else "Aaren recurrent"


DEFAULT_RECIPE = {"aaren": "episode", "transformer": "window"}  # what --recipe auto trains


def _is_default(r: dict[str, Any]) -> bool:
    return r.get("recipe", "-") == DEFAULT_RECIPE.get(r["backbone"], r.get("recipe", "-"))


def load_records(out_dir: Path) -> list[dict[str, Any]]:
    """Every run record in the folder (ours and peers'), acting mode filled in for old files."""
    records = []
    for path in sorted(Path(out_dir).glob("*.json")):
        if path.name.startswith("summary"):
            continue
        r = json.loads(path.read_text())
        if not isinstance(r, dict) or "backbone" not in r or r.get("normalized_mean") is None:
            continue
        r.setdefault("acting", "kv-cache" if r["backbone"] == "transformer" and
                     r.get("mode") == "recurrent" else r.get("mode", "window"))  # fmt: skip
        records.append(r)
    return records


def _best(r: dict[str, Any]) -> float:
    if r.get("best_normalized_mean") is not None:
        return float(r["best_normalized_mean"])
    points = [
        c["normalized_mean"] for c in r.get("curve", []) if c.get("normalized_mean") is not None
    ]
    return float(max([*points, r["normalized_mean"]]))


def _key(r: dict[str, Any]) -> str:
    return f"{r['backbone']}/{r['acting']}"


def _mean_std(x: list[float]) -> tuple[float, float]:
    a = np.asarray(x, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else 0.0


def _file(r: dict[str, Any]) -> str:
    """The dataset file a run trained on, by its sha256 ("None" if not recorded); a slim copy
    counts as the dataset it was made from."""
    return str(r.get("dataset_source_sha256") or r.get("dataset_sha256"))


def _rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple, list[dict]] = {}
    for r in records:
        key = (r["dataset"], r["backbone"], r.get("recipe", "-"), r["acting"], r["steps"])
        groups.setdefault(key, []).append(r)
    rows = []
    for (ds, bb, rec, acting, steps), rs in groups.items():
        rs = sorted(rs, key=lambda r: r["seed"])
        final, best = [r["normalized_mean"] for r in rs], [_best(r) for r in rs]
        wall = [(r.get("timing") or {}).get("wall_seconds") for r in rs]
        sps = [(r.get("timing") or {}).get("train_seconds_per_step") or
               r.get("train_seconds_per_step") for r in rs]  # fmt: skip
        behaviour = [r.get("behaviour_normalized_score") for r in rs]
        known = [b for b in behaviour if b is not None]
        file_by_seed = {r["seed"]: _file(r) for r in rs}
        rows.append(
            {
                "dataset": ds,
                "backbone": bb,
                "recipe": rec,
                "acting": acting,
                "steps": steps,
                "seeds": [r["seed"] for r in rs],
                "final_mean": _mean_std(final)[0],
                "final_std": _mean_std(final)[1],
                "best_mean": _mean_std(best)[0],
                "best_std": _mean_std(best)[1],
                "final_per_seed": [round(float(v), 1) for v in final],
                "wall_seconds_mean": float(np.mean(wall)) if all(wall) else None,
                "train_seconds_per_step": float(np.mean(sps)) if all(sps) else None,
                # seeds on other files of the dataset: the mean of their behaviour scores
                "behaviour": float(np.mean(known)) if known else None,
                "dataset_sha256": sorted(set(file_by_seed.values())),
                "file_by_seed": file_by_seed,
                "behaviour_by_file": {_file(r): b for r, b in zip(rs, behaviour) if b is not None},
                "device": sorted({str(r.get("device", "cpu")) for r in rs}),
                "precision": sorted({str(r.get("precision", "float32")) for r in rs}),
                "memory_horizon": [r.get("memory_horizon") for r in rs],
                "horizon_chosen": any(r.get("horizon_choice") for r in rs),
                "horizon_selection": _row_selection(rs),
                "offline_criterion": [_criterion_of(r) for r in rs],
                "curve_notes": _notes_by_seeds(rs),
            }
        )
    order = {k: i for i, k in enumerate(ROW_ORDER)}
    rows.sort(key=lambda r: not _is_default(r))  # stable: default recipes first
    rows.sort(
        key=lambda r: (r["dataset"], r["steps"], order.get(f"{r['backbone']}/{r['acting']}", 99))
    )
    return rows


def _targets(ds_rows: list[dict], records: list[dict]) -> list[dict[str, Any]]:
    """Aaren recurrent vs each rival (within one seed-std) and vs the behaviour policy."""
    main = next((r for r in ds_rows if _key(r) == MAIN and _is_default(r)), None)
    if main is None:
        return []
    out = []

    def runs_of(row: dict[str, Any]) -> list[dict[str, Any]]:
        """The run records behind a table row (its agent, acting mode, recipe and budget)."""
        return [
            r for r in records
            if _key(r) == _key(row) and r.get("recipe", "-") == row["recipe"]
            and r["steps"] == row["steps"]
        ]  # fmt: skip

    def seeds_of(row: dict[str, Any]) -> dict[int, float]:
        return {r["seed"]: r["normalized_mean"] for r in runs_of(row)}

    def curve_of(row: dict[str, Any]) -> dict[tuple[int, int], float]:
        """(seed, step) -> score at every periodic evaluation of the row's runs."""
        return {
            (r["seed"], c["step"]): c["normalized_mean"]
            for r in runs_of(row)
            for c in r.get("curve", []) if c.get("normalized_mean") is not None
        }  # fmt: skip

    for rival in RIVALS:
        candidates = [r for r in ds_rows if _key(r) == rival and _is_default(r)]
        # the same budget as Aaren's when there is one, else the rival's longest run
        other = next((r for r in candidates if r["steps"] == main["steps"]), None) or max(
            candidates, key=lambda r: r["steps"], default=None
        )
        if other is None:
            continue
        a, b = seeds_of(main), seeds_of(other)
        # a pair is one seed on one file: a seed the two ran on different files is no pair
        same = {s for s in set(a) & set(b) if main["file_by_seed"][s] == other["file_by_seed"][s]}
        paired = [a[s] - b[s] for s in sorted(same)]
        diff, diff_std = _mean_std(paired) if paired else (float("nan"), float("nan"))
        ca, cb = curve_of(main), curve_of(other)
        every = [ca[k] - cb[k] for k in sorted(set(ca) & set(cb)) if k[0] in same]
        every_diff, every_std = _mean_std(every) if every else (float("nan"), float("nan"))
        slack = max(main["final_std"], other["final_std"])
        out.append(
            {
                "rival": rival,
                "main_selection": main["horizon_selection"],
                "paired_values": paired,
                "steps": main["steps"],
                "rival_steps": other["steps"],
                "target": f"{main_name(main)} >= {rival.replace('/', ' ')} (within one seed-std)"
                + ("" if other["steps"] == main["steps"] else f" [{other['steps']} steps]"),
                "aaren": main["final_mean"],
                "other": other["final_mean"],
                "paired_difference": diff,
                "paired_difference_std": diff_std,
                "paired_seeds": len(paired),
                "every_evaluation_difference": every_diff,
                "every_evaluation_difference_std": every_std,
                "every_evaluation_pairs": len(every),
                "every_evaluation_wins": sum(d > 0 for d in every),
                "met": bool(main["final_mean"] >= other["final_mean"] - slack),
                "margin": main["final_mean"] - other["final_mean"],
            }
        )
    if main["behaviour"] is not None:
        out.append(
            {
                "target": f"{main_name(main)} > behaviour policy",
                "aaren": main["final_mean"],
                "other": main["behaviour"],
                "met": bool(main["final_mean"] > main["behaviour"]),
                "margin": main["final_mean"] - main["behaviour"],
            }
        )
    return out


def sign_test(wins: int, losses: int) -> float:
    """Two-sided sign test: the chance of a split at least this uneven if either side were
    as likely to be ahead (ties left out)."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2**n
    return min(1.0, 2 * tail)


def signed_rank_test(diffs: list[float]) -> float:
    """Two-sided Wilcoxon signed-rank test, exact: the chance, if each difference were as
    likely positive as negative, of a rank sum at least this far from the middle.

    Unlike the sign test it weighs each pair by the rank of its size, so a 0.1-point loss
    counts for less than a 30-point win. Zeros are left out; tied sizes share their mean rank
    (the exact distribution is taken over those ranks, doubled to integers).
    """
    sizes = sorted(abs(d) for d in diffs if d != 0)
    if not sizes:
        return 1.0
    ranks2: dict[float, int] = {}  # |d| -> 2 x its mean rank
    i = 0
    while i < len(sizes):
        j = i
        while j < len(sizes) and sizes[j] == sizes[i]:
            j += 1
        ranks2[sizes[i]] = i + j + 1  # 2 x mean of ranks i+1 .. j
        i = j
    w_plus = sum(ranks2[abs(d)] for d in diffs if d > 0)
    counts = [1] + [0] * sum(ranks2[x] for x in sizes)  # sign patterns giving each W+ (x2)
    for x in sizes:
        r = ranks2[x]
        for total in range(len(counts) - 1, r - 1, -1):
            counts[total] += counts[total - r]
    n = 2 ** len(sizes)
    low, high = sum(counts[: w_plus + 1]) / n, sum(counts[w_plus:]) / n
    return min(1.0, 2 * min(low, high))


def _across(targets: dict[str, list[dict[str, Any]]]) -> list[str]:
    """One table over every dataset: Aaren recurrent against each rival, seed by seed."""
    by_rival: dict[str, list[dict[str, Any]]] = {}  # rival -> its target on each dataset
    for ts in targets.values():
        for t in ts:
            if t.get("paired_values"):
                by_rival.setdefault(t["rival"], []).append(t)
    if not by_rival:
        return []
    found = {t.get("main_selection") for ts in by_rival.values() for t in ts} - {None}
    name = main_name({"horizon_selection": found.pop() if len(found) == 1 else "mixed"}
                     if found else None)  # fmt: skip
    lines = [
        "### Across datasets",
        "",
        "Aaren acting recurrently against each rival, one pair per (dataset, seed): the final "
        "scores of the two runs with the same seed (against Aaren's own window: one run acting "
        "both ways). Different pairs are independent runs; the sign test asks how often a coin "
        "would give a split at least this uneven, the signed-rank test (Wilcoxon, exact) also "
        "weighs each pair by the size of its difference.",
        "",
        f"| {name} vs | datasets | pairs | Aaren ahead / behind / tied | paired diff "
        "(mean ± std) | sign test p (two-sided) | signed-rank p (two-sided) | targets met |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for rival in RIVALS:
        items = by_rival.get(rival, [])
        if not items:
            continue
        diffs = [d for t in items for d in t["paired_values"]]
        wins, losses = sum(d > 0 for d in diffs), sum(d < 0 for d in diffs)
        mean, std = _mean_std(diffs)
        met = sum(t["met"] for t in items)
        other_budget = sorted({t["rival_steps"] for t in items if t["rival_steps"] != t["steps"]})
        name = rival.replace("/", " ") + (
            f" [{', '.join(map(str, other_budget))} steps on some datasets]" if other_budget else ""
        )
        lines.append(
            f"| {name} | {len(items)} | {len(diffs)} | {wins} / {losses} / {len(diffs) - wins - losses} | "
            f"{mean:+.1f} ± {_fmt(std if len(diffs) > 1 else None)} | "
            f"{sign_test(wins, losses):.3f} | {signed_rank_test(diffs):.3f} | "
            f"{met} of {len(items)} |"
        )
    return [*lines, ""]


def _fmt(x: float | None, digits: int = 1) -> str:
    return "-" if x is None or (isinstance(x, float) and np.isnan(x)) else f"{x:.{digits}f}"


def _notes_by_seeds(runs: list[dict[str, Any]]) -> dict[str, str]:
    """Each distinct ``curve_note`` of a row's runs -> the seeds it applies to ("0, 1")."""
    seeds: dict[str, list[int]] = {}
    for r in runs:
        if r.get("curve_note"):
            seeds.setdefault(r["curve_note"], []).append(r["seed"])
    return {
        note: ", ".join(map(str, sorted(s)))
        for note, s in sorted(seeds.items(), key=lambda x: min(x[1]))
    }


def _horizon_label(row: dict[str, Any]) -> str:
    """How an Aaren recurrent row attended: the horizon per seed (chosen on validation
    episodes, or fixed), or the whole episode; empty for other rows."""
    hs = row.get("memory_horizon") or []
    if not hs or all(h is None for h in hs):
        return ""
    if not any(hs):
        return " (whole episode)"
    names = ", ".join("whole episode" if h == 0 else str(h) for h in hs)
    criteria = [c for c in row.get("offline_criterion") or [] if c]
    if criteria:  # which held-out error decided: the default changed mid-grid (2026-12-07)
        names += "; by the " + (
            f"{criteria[0]} error"
            if len(set(criteria)) == 1
            else "error on " + ", ".join(c or "-" for c in row["offline_criterion"])
        )
    how = {
        "offline": "chosen offline, on held-out dataset episodes",
        "online": "chosen online, on validation episodes in the env",
        "trained": "the one it trained with (offline, fixed before training)",
        "mixed": "chosen offline for some seeds, online for others",
    }.get(str(row.get("horizon_selection")), "chosen" if row.get("horizon_chosen") else "fixed")
    return f" (memory horizon {how}, per seed: {names})"


def _mixed_files_warning(ds_rows: list[dict]) -> str:
    """One line saying which rows ran on which file, where a dataset's rows disagree."""
    by_file: dict[str, list[str]] = {}
    for r in ds_rows:  # a row whose seeds disagree is listed under each of its files
        for s in r["dataset_sha256"]:
            name = "not recorded" if s == "None" else f"`{s[:16]}…`"
            by_file.setdefault(name, []).append(f"{r['backbone']} {r['recipe']} {r['acting']}")
    count = sum(name != "not recorded" for name in by_file)
    files = "; ".join(f"{s}: {', '.join(rows)}" for s, rows in sorted(by_file.items()))
    return (
        f"**Warning: these rows ran on {count} different files of this dataset, so they are "
        f"not comparable** ({files})."
    )


def _files_by_seed(ds_rows: list[dict]) -> dict[int, str] | None:
    """seed -> file where every row ran each seed on one and the same file (the seeds of a
    grid that moved between CPU kinds, whose collections differ: docs/data.md); else None."""
    files: dict[int, set[str]] = {}
    for r in ds_rows:
        for seed, f in r["file_by_seed"].items():
            files.setdefault(seed, set()).add(f)
    if any(len(f) > 1 or "None" in f for f in files.values()):
        return None
    return {seed: next(iter(f)) for seed, f in sorted(files.items())}


def _seeds_on_files_note(by_seed: dict[int, str]) -> str:
    """One line: which seeds ran on which file, and what that means for the table."""
    seeds: dict[str, list[int]] = {}
    for seed, f in by_seed.items():
        seeds.setdefault(f, []).append(seed)
    files = "; ".join(
        f"seed{'s' * (len(ss) > 1)} {', '.join(map(str, ss))}: `{f[:16]}…`"
        for f, ss in sorted(seeds.items(), key=lambda x: min(x[1]))
    )
    return (
        f"**Note: the seeds ran on {len(seeds)} different files of this dataset** ({files}). "
        "Every agent ran each seed on that seed's file, so each pair below (same seed) is "
        "compared on one file; a mean over seeds mixes files, and the behaviour policy's "
        "score is the mean over the seeds' files."
    )


def _behaviour_text(ds_rows: list[dict], behaviour: float | None) -> str:
    by_file: dict[str, float] = {}
    for r in ds_rows:
        by_file.update(r["behaviour_by_file"])
    if len({round(b, 1) for b in by_file.values()}) <= 1:
        return f"**{_fmt(behaviour)}**"
    each = ", ".join(f"{_fmt(b)} on `{f[:16]}…`" for f, b in sorted(by_file.items()))
    return f"**{_fmt(behaviour)}** ({each})"


def _table(ds: str, ds_rows: list[dict], targets: list[dict], png: str) -> list[str]:
    behaviour = next((r["behaviour"] for r in ds_rows if r["behaviour"] is not None), None)
    sha = sorted({s for r in ds_rows for s in r["dataset_sha256"] if s != "None"})
    lines = [
        f"### {ds}",
        "",
        f"Behaviour policy (the dataset's episodes): {_behaviour_text(ds_rows, behaviour)}. "
        f"Dataset sha256: {', '.join(f'`{s[:16]}…`' for s in sha) or 'not recorded'}.",
        "",
        "| agent | recipe | acting | steps | seeds | **final** (mean ± std) | best during training† "
        "(mean ± std) | final per seed | wall-clock per run (min) | train s/step |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    if len(sha) > 1:
        by_seed = _files_by_seed(ds_rows)
        # seeds on files of their own (pairs intact), or rows on other files (e.g. a peer's
        # JSON copied in from a grid on other files): nothing to compare
        note = _seeds_on_files_note(by_seed) if by_seed else _mixed_files_warning(ds_rows)
        lines[4:4] = [note, ""]
    notes = []
    for r in ds_rows:
        wall = None if r["wall_seconds_mean"] is None else r["wall_seconds_mean"] / 60
        acting = r["acting"] + _horizon_label(r)
        if r["curve_notes"]:
            notes.append(
                f"{r['backbone']} acting {r['acting']}: "
                + "; ".join(f"seed(s) {seeds}: {note}" for note, seeds in r["curve_notes"].items())
            )
            acting += " §"
        lines.append(
            f"| {r['backbone']} | {r['recipe']} | {acting} | {r['steps']} | {len(r['seeds'])} | "
            f"**{_fmt(r['final_mean'])} ± {_fmt(r['final_std'])}** | "
            f"{_fmt(r['best_mean'])} ± {_fmt(r['best_std'])} | "
            f"{', '.join(map(str, r['final_per_seed']))} | {_fmt(wall)} | "
            f"{_fmt(r['train_seconds_per_step'], 3)} |"
        )
    lines.append(f"| behaviour policy | - | - | - | - | {_fmt(behaviour)} | - | - | - | - |")
    lines += [f"\n§ {n}: its best during training is over the steps scored." for n in notes]
    if targets:
        lines += ["", "| target | Aaren recurrent | other | margin | paired diff, final (mean ± std, n) "
                  "| paired diff, every evaluation‡ (mean ± std, n, Aaren ahead) | met |",
                  "|---|---|---|---|---|---|---|"]  # fmt: skip
        for t in targets:
            paired = (
                f"{_fmt(t['paired_difference'])} ± {_fmt(t['paired_difference_std'])}, "
                f"n={t['paired_seeds']}"
                if "paired_seeds" in t
                else "-"
            )
            every = (
                f"{_fmt(t['every_evaluation_difference'])} ± "
                f"{_fmt(t['every_evaluation_difference_std'])}, n={t['every_evaluation_pairs']}, "
                f"{t['every_evaluation_wins']}"
                if t.get("every_evaluation_pairs")
                else "-"
            )
            lines.append(
                f"| {t['target']} | {_fmt(t['aaren'])} | {_fmt(t['other'])} | "
                f"{t['margin']:+.1f} | {paired} | {every} | {'yes' if t['met'] else '**no**'} |"
            )
    lines += ["", f"![learning curves, {ds}]({png})", ""]
    return lines


def summarize_returns(out_dir: Path, docs: Path | None = None) -> list[dict[str, Any]]:
    """Tables, targets and curves from the JSON files in ``out_dir``; returns the rows."""
    out_dir = Path(out_dir)
    records = load_records(out_dir)
    rows = _rows(records)
    datasets = sorted({r["dataset"] for r in rows})
    summary: dict[str, Any] = {"rows": rows, "targets": {}}
    body = [
        "Scores are D4RL-normalised (100 = D4RL's expert, 0 = random). **final** = the score "
        "at the end of training (the main number); † best during training = the best of the "
        "periodic evaluations (CORL's convention: optimistic, it selects on the evaluation "
        "episodes). Mean ± std over training seeds; each seed's score is the mean over its "
        "evaluation episodes. Targets: Aaren recurrent within one seed-std (the larger of the "
        "two rows') of the rival or above it, and above the behaviour policy. ‡ the paired "
        "difference over every periodic evaluation of every seed (same seed, same step): more "
        "pairs than the final scores, but neighbouring evaluations of one run are correlated. "
        "Aaren recurrent acts with a memory horizon H chosen per checkpoint: *offline* = by "
        "the action error on held-out dataset episodes never trained on (no environment "
        "used); *online* = by return on validation episodes played in the environment "
        "(model selection in the env); recurrent-online, where present, is the same "
        "checkpoint acting with the online choice; recurrent-full = the whole episode.",
        "",
    ]
    tables = []
    for ds in datasets:
        ds_rows = [r for r in rows if r["dataset"] == ds]
        ds_records = [r for r in records if r["dataset"] == ds]
        targets = _targets(ds_rows, ds_records)
        summary["targets"][ds] = targets
        png = out_dir / f"curves-{ds}.png"
        _plot_curves(ds, ds_records, png)
        tables += _table(ds, ds_rows, targets, png.name)
    body += _across(summary["targets"]) + tables
    atomic_write_json(out_dir / "summary.json", summary, indent=1)
    atomic_write_text(out_dir / "summary.md", "\n".join(body) + "\n")
    print("\n".join(body), flush=True)
    if docs is not None:
        rel = os.path.relpath(out_dir, Path(docs).parent)
        text = "\n".join(body).replace("](curves-", f"]({rel}/curves-")
        _write_section(Path(docs), text, *markers(out_dir))
    return rows


def _write_section(page: Path, text: str, begin: str, end: str) -> None:
    """Replace the marked section of a markdown page (append it when there is none)."""
    old = page.read_text() if page.exists() else ""
    block = f"{begin}\n{text}\n{end}"
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        new = head + block + rest.split(end, 1)[1]
    else:
        new = old.rstrip("\n") + ("\n\n" if old else "") + block + "\n"
    atomic_write_text(page, new)


def _plot_curves(ds: str, records: list[dict[str, Any]], path: Path) -> None:
    """Score vs gradient steps, mean over seeds with a ± std band, one line per row."""
    from aaren_rl.bench.plots import plt, save_figure  # pyplot on the Agg backend

    curves: dict[str, list[dict[int, float]]] = {}
    for r in records:
        points = {c["step"]: c["normalized_mean"] for c in r.get("curve", [])
                  if c.get("normalized_mean") is not None}  # fmt: skip
        if points:
            label = f"{r['backbone']} ({r.get('recipe', '-')}) acting {r['acting']}"
            curves.setdefault(label, []).append(points)
    if not curves:
        return
    fig, ax = plt.subplots(figsize=(10.5, 4.5))
    for i, (label, runs) in enumerate(sorted(curves.items())):
        steps = sorted(set.intersection(*(set(p) for p in runs)))
        vals = np.array([[p[s] for s in steps] for p in runs])
        mean, std = vals.mean(0), vals.std(0)
        # each agent's main acting mode solid, the others (Aaren window and whole-episode
        # recurrent, the KV cache) dashed
        main = label.endswith("acting recurrent") or label.startswith(("transformer", "d3rlpy"))
        ls = "--" if not main or label.endswith("acting kv-cache") else "-"
        ax.plot(
            steps, mean, ls=ls, marker="o", ms=3, color=f"C{i}", label=f"{label} (n={len(runs)})"
        )
        ax.fill_between(steps, mean - std, mean + std, color=f"C{i}", alpha=0.15)
    behaviour = next((r.get("behaviour_normalized_score") for r in records
                      if r.get("behaviour_normalized_score") is not None), None)  # fmt: skip
    if behaviour is not None:
        ax.axhline(behaviour, color="grey", ls=":", label="behaviour policy (dataset)")
    ax.set(title=ds, xlabel="gradient steps", ylabel="D4RL-normalised score")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1))  # beside, off the curves
    save_figure(fig, path)
