"""Tables, JSON and the plot of simulation outcomes."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from tools.scaling_sim.engine import Outcome

COLUMNS = (
    ("policy", "policy"),
    ("max age", "max_age_s"),
    ("p99 age", "p99_age_s"),
    ("over SLA", "over_sla"),
    ("GPU-h", "gpu_hours"),
    ("x oracle", None),
    ("cost USD", "cost_usd"),
    ("scale events", "scale_events"),
    ("peak tasks", "peak_tasks"),
)


def table(profile: str, description: str, outcomes: Sequence[Outcome], sla_seconds: int) -> str:
    """A Markdown table for one profile: one row per policy, the oracle last."""
    oracle = next((o for o in outcomes if o.policy == "oracle"), None)
    header = "| " + " | ".join(title for title, _ in COLUMNS) + " |"
    rule = "|" + "|".join("---" if key == "policy" else "---:" for _, key in COLUMNS) + "|"
    lines = [f"**{profile}**: {description} (SLA {sla_seconds // 60} min)", "", header, rule]
    for outcome in outcomes:
        row = outcome.row()
        cells = []
        for _, key in COLUMNS:
            if key is None:
                ratio = outcome.gpu_hours / oracle.gpu_hours if oracle and oracle.gpu_hours else None
                cells.append(f"{ratio:.2f}" if ratio is not None else "-")
            elif key in ("max_age_s", "p99_age_s"):
                cells.append(_duration(float(row[key])))  # type: ignore[arg-type]
            elif key == "policy" and outcome.tasks_needed is not None:
                cells.append(f"oracle (needs {outcome.tasks_needed} task{'s' if outcome.tasks_needed != 1 else ''})")
            elif isinstance(row[key], float):
                cells.append(f"{row[key]:,.2f}")
            elif isinstance(row[key], int) and key != "policy":
                cells.append(f"{row[key]:,}")
            else:
                cells.append(str(row[key]))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s"


def to_json(outcomes: Sequence[Outcome]) -> str:
    return json.dumps([outcome.row() for outcome in outcomes], indent=2)


def plot(path: Path, runs: Sequence[tuple[str, Sequence[Outcome]]], sla_seconds: int) -> None:
    """One column per profile: age of the oldest photo against the SLA line (top), running tasks (bottom)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, len(runs), figsize=(4.2 * len(runs), 6.5), squeeze=False, sharex="col")
    colors = {"age-step": "tab:orange", "backlog-target": "tab:blue", "deployed": "tab:green", "oracle": "0.5"}
    for column, (profile, outcomes) in enumerate(runs):
        age_ax, task_ax = axes[0][column], axes[1][column]
        for outcome in outcomes:
            series = outcome.series
            if series is None:
                continue
            hours = series.seconds / 3600
            style = {"color": colors.get(outcome.policy, "k"), "linewidth": 1.0, "label": outcome.policy}
            if outcome.policy == "oracle":
                style["linestyle"] = ":"
            age_ax.plot(hours, series.age / 60, **style)
            task_ax.plot(hours, series.running, **style)
        age_ax.axhline(sla_seconds / 60, color="red", linewidth=1.0, linestyle="--", label="SLA")
        age_ax.set_title(profile)
        task_ax.set_xlabel("hours")
        if column == 0:
            age_ax.set_ylabel("age of oldest photo (min)")
            task_ax.set_ylabel("running tasks (oracle: busy)")
    axes[0][0].legend(loc="upper left", fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
