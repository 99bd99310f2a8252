"""Break-even (issue 12): when MAML's extra training pays for itself. Beside the spec's cost figures; no decision
depends on it.

With the spec's ``extra_gpu_cost_usd_per_run`` and ``gpu_hour_usd`` and three ``cost_profile`` keys (a policy may
set them too): ``minutes_per_adaptation_step`` (GPU minutes one adaptation step costs), ``adaptations_per_month``
(new project adaptations a month) and ``training_runs_per_month`` (how often the priced training repeats, default 1).
"""

from __future__ import annotations

import math

from maml_evidence.gate.metrics import saturated
from maml_evidence.gate.record import TYPE_CHECKING
from maml_evidence.gate.thresholds import ECONOMICS_KEYS

if TYPE_CHECKING:
    from maml_evidence.gate.thresholds import Settings

INPUT_KEYS = ("gpu_hour_usd", *ECONOMICS_KEYS)
# Which key answers a figure that is null for want of it.
NEEDS = {
    "saving_per_adaptation_usd": ("minutes_per_adaptation_step",),
    "breakeven_adaptations_per_run": ("minutes_per_adaptation_step",),
    "monthly_net_usd": ("minutes_per_adaptation_step", "adaptations_per_month"),
}


def economics(mean_step_reduction: float, extra_gpu_cost_usd_per_run: float, settings: Settings) -> dict[str, object]:
    """The break-even figures (unrounded) and the inputs they used, each with where it came from.

    ``breakeven_adaptations_per_run`` is null when an adaptation saves nothing (or costs more); a figure whose
    inputs are not given is null, and ``missing`` names the keys that would answer it.
    """
    values, sources = settings.values, settings.sources
    price, step_minutes = settings.gpu_hour_usd, values["minutes_per_adaptation_step"]
    adaptations, runs = values["adaptations_per_month"], float(values["training_runs_per_month"] or 0.0)
    saving = None if step_minutes is None else saturated(mean_step_reduction * step_minutes / 60.0 * price)
    breakeven = None
    if saving is not None and saving > 0:
        breakeven = math.ceil(saturated(extra_gpu_cost_usd_per_run / saving))
    monthly = None
    if saving is not None and adaptations is not None:
        monthly = saturated(adaptations * saving - runs * extra_gpu_cost_usd_per_run)
    figures = {
        "saving_per_adaptation_usd": saving,
        "breakeven_adaptations_per_run": breakeven,
        "monthly_net_usd": monthly,
    }
    missing = sorted(
        {key for name, value in figures.items() if value is None for key in NEEDS[name] if values[key] is None}
    )
    return {
        **figures,
        "missing": missing,
        "inputs": {key: {"value": values[key], "source": sources[key]} for key in INPUT_KEYS},
    }


def economics_in_force(settings: Settings) -> bool:
    """Whether a policy or the payload gives any break-even input (then every report carries the section)."""
    return any(settings.sources[key] != "default" for key in ECONOMICS_KEYS)
