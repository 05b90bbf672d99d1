"""`s4al simulate`'s summaries: seeds folded into mean ± std per cycle, the table, the targets, the curve."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

COSTS = ("pixels", "corrected", "clicks")
# per-seed row keys folded into mean and std
NUMERIC = ("labeled_fraction", "corrected_fraction", "clicks", "clicks_fraction", "miou", "seconds")
X_AXIS = {"pixels": ("labeled_fraction", 100, "labeled pixels (% of pool)"),
          "corrected": ("corrected_fraction", 100, "corrected pixels (% of pool)"),
          "clicks": ("clicks", 1, "clicks (Cai et al. 2021)")}


def aggregate(per_seed: list[list[dict]]) -> list[dict]:
    """Rows of one arm over seeds -> one row per cycle with `key` (mean) and `key_std` (sample std) for
    the cumulative costs and mIoU, and `added`: the mean cost of the labels added for this cycle."""
    rows = []
    for cycle_rows in zip(*per_seed, strict=False):
        row: dict = {"cycle": cycle_rows[0]["cycle"], "seeds": len(cycle_rows)}
        for key in NUMERIC:
            values = np.array([r[key] for r in cycle_rows if r.get(key) is not None], dtype=np.float64)
            row[key] = float(values.mean()) if values.size else None
            row[f"{key}_std"] = float(values.std(ddof=1)) if values.size > 1 else 0.0
        added = [r["added"] for r in cycle_rows]
        row["added"] = {k: float(np.mean([a[k] for a in added])) for k in added[0]}
        row["per_class_iou"] = _mean_iou([r.get("per_class_iou") for r in cycle_rows])
        row["miou_per_seed"] = [r["miou"] for r in cycle_rows]
        rows.append(row)
    return rows


def _mean_iou(per_seed: list[list[float | None] | None]) -> list[float | None] | None:
    """Per-class IoU averaged over seeds; a class absent from val in every seed stays None."""
    ious = [[math.nan if v is None else v for v in row] for row in per_seed if row]
    if not ious:
        return None
    values = np.array(ious, dtype=np.float64)
    counts = (~np.isnan(values)).sum(0)
    means = np.where(counts > 0, np.nansum(values, 0) / np.maximum(counts, 1), math.nan)
    return [None if math.isnan(v) else float(v) for v in means]


def _reach(rows: list[dict], level: float) -> dict | None:
    """The first cycle whose mean mIoU reaches `level`, with its cumulative costs."""
    for r in rows:
        if r["miou"] is not None and r["miou"] >= level:
            return {"cycle": r["cycle"], "labeled_fraction": r["labeled_fraction"],
                    "corrected_fraction": r["corrected_fraction"], "clicks": r["clicks"]}
    return None


def targets(result: dict) -> dict | None:
    """The claims of DESIGN §1 "Measuring the saving", checked on the aggregated rows."""
    full, arms = result.get("full"), result["arms"]
    if not full or not full.get("miou") or "s4al" not in arms:
        return None
    level = 0.95 * full["miou"]
    s4al = arms["s4al"]
    best = max(s4al, key=lambda r: r["miou"])
    out: dict = {"full_miou": full["miou"], "level_95": level,
                 "s4al_best": {"cycle": best["cycle"], "share_of_full": best["miou"] / full["miou"],
                               "labeled_fraction": best["labeled_fraction"]},
                 "reach_95": {arm: _reach(rows, level) for arm, rows in arms.items()}}
    reached = out["reach_95"]["s4al"]
    out["s4al_95_with_10pct"] = bool(reached and reached["labeled_fraction"] <= 0.10)
    for other in ("random", "supervised"):
        if other in arms:
            margins = [{"cycle": a["cycle"], "difference": a["miou"] - b["miou"],
                        "std": max(a["miou_std"], b["miou_std"])}
                       for a, b in zip(s4al[1:], arms[other][1:], strict=False)]
            met = bool(margins) and all(m["difference"] > m["std"] for m in margins)
            out[f"above_{other}"] = {"met": met, "cycles": margins}
    if "random" in arms:
        for currency in ("corrected_fraction", "clicks"):
            out[f"half_of_random_{currency}"] = _half(reached, out["reach_95"]["random"], arms["random"][-1],
                                                      currency)
    return out


def _half(mine: dict | None, theirs: dict | None, their_last: dict, currency: str) -> str:
    """Is s4al's cost to reach 95% of full at most half of random's? When random never reached it, its
    cost is above what it spent by its last cycle: that bound can still decide."""
    if mine is None:
        return "s4al never reached 95% of full"
    if theirs is not None:
        return "met" if mine[currency] <= 0.5 * theirs[currency] else "NOT met"
    if mine[currency] <= 0.5 * their_last[currency]:
        return "met (random never reached 95% of full)"
    return "undecided (random never reached 95% of full)"


def format_table(result: dict) -> str:
    arms, full = result["arms"], result.get("full")
    seeds = result["config"].get("seeds", 1)
    lines = [f"{'arm':<11} {'cycle':>5} {'labeled %':>10} {'corrected %':>12} {'clicks':>9} "
             f"{'mIoU (mean ± std, ' + str(seeds) + ' seed' + ('s' if seeds > 1 else '') + ')':>28} {'s':>7}"]
    lines.append("-" * len(lines[0]))
    for arm, rows in arms.items():
        for r in rows:
            miou = "" if r["miou"] is None else f"{100 * r['miou']:6.2f} ± {100 * r['miou_std']:5.2f}"
            lines.append(f"{arm:<11} {r['cycle']:>5} {100 * r['labeled_fraction']:>10.2f} "
                         f"{100 * r['corrected_fraction']:>12.2f} {r['clicks']:>9.0f} {miou:>28} "
                         f"{r['seconds']:>7.1f}")
    if full:
        runs = ", ".join(f"{100 * r['miou']:.2f} at {r['iterations']} it" for r in full["runs"])
        lines.append(f"full supervision (100% labeled, seed {full.get('seed', 0)}): mIoU {runs}"
                     + (" (cached)" if full.get("cached") else ""))
    t = result.get("targets")
    if t:
        b = t["s4al_best"]
        lines.append(f"s4al best: {100 * b['share_of_full']:.1f}% of full at cycle {b['cycle']} "
                     f"with {100 * b['labeled_fraction']:.2f}% of pixels labeled")
        for arm, reach in t["reach_95"].items():
            lines.append(f"95% of full, {arm:<10}: " + ("not reached" if reach is None else
                         f"cycle {reach['cycle']}, {100 * reach['labeled_fraction']:.2f}% labeled, "
                         f"{100 * reach['corrected_fraction']:.2f}% corrected, {reach['clicks']:.0f} clicks"))
        for other in ("random", "supervised"):
            if f"above_{other}" in t:
                m = t[f"above_{other}"]
                diffs = ", ".join(f"c{c['cycle']} {100 * c['difference']:+.2f} (std {100 * c['std']:.2f})"
                                  for c in m["cycles"])
                lines.append(f"s4al above {other} by > 1 std after cycle 1: {_yes(m['met'])} [{diffs}]")
        lines.append(f"s4al >= 95% of full with <= 10% labeled: {_yes(t['s4al_95_with_10pct'])}")
        for currency in ("corrected_fraction", "clicks"):
            if f"half_of_random_{currency}" in t:
                lines.append(f"cost to 95% in {currency.split('_')[0]} <= half of random's: "
                             f"{t[f'half_of_random_{currency}']}")
    return "\n".join(lines)


def _yes(met: bool) -> str:
    return "met" if met else "NOT met"


def plot_curve(result: dict, path: Path, cost: str = "pixels") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    key, scale, label = X_AXIS[cost]
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    for arm, rows in result["arms"].items():
        rows = [r for r in rows if r["miou"] is not None]
        xs = np.array([scale * r[key] for r in rows])
        ys = np.array([100 * r["miou"] for r in rows])
        sd = np.array([100 * r["miou_std"] for r in rows])
        (line,) = ax.plot(xs, ys, marker="o", label=arm)
        if len(rows) and rows[0]["seeds"] > 1:
            ax.fill_between(xs, ys - sd, ys + sd, color=line.get_color(), alpha=0.2)
    full = result.get("full")
    if full:
        level = 100 * full["miou"]
        ax.axhline(level, color="k", linestyle="--", label=f"full supervision ({level:.1f})")
        ax.axhline(0.95 * level, color="gray", linestyle=":", label="95% of full")
    ax.set_xlabel(label)
    ax.set_ylabel("val mIoU (%)")
    seeds = result["config"].get("seeds", 1)
    ax.set_title(f"{Path(result['dataset']).name}" + (f" (mean ± std, {seeds} seeds)" if seeds > 1 else ""))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
