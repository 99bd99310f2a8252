"""The evidence across history in pictures: one unpartitioned asset that every ingest and re-evaluation refreshes."""

from typing import Any

import dagster as dg

from maml_evidence.defs.assets import OWNERS, decision_report
from maml_evidence.defs.reevaluation import decision_reevaluation
from maml_evidence.defs.resources import EvidenceStoreResource
from maml_evidence.pictures import DECISION_MIX_FILE, EFFECT_SIZES_FILE, markdown_image, write_overview


@dg.asset(
    deps=[decision_report, decision_reevaluation],
    group_name="overview",
    owners=OWNERS,
    kinds={"duckdb", "matplotlib"},
    tags={"layer": "overview"},
)
def evidence_overview(context: dg.AssetExecutionContext, evidence: EvidenceStoreResource) -> dg.MaterializeResult:
    """The decision mix by week and each spike run's effect size across history (overview/*.png)."""
    store = evidence.store()
    try:
        files = write_overview(store)
    except Exception as exc:  # noqa: BLE001 - pictures explain decisions already committed: never fail their run
        context.log.warning(f"the overview pictures could not be drawn: {type(exc).__name__}: {exc}")
        return dg.MaterializeResult(metadata={"not_drawn": f"{type(exc).__name__}: {exc}"})
    mix: dict[str, int] = {}
    for _, decision, runs in files.overview.mix:
        mix[decision] = mix.get(decision, 0) + runs
    metadata: dict[str, Any] = {
        "spike_runs": files.overview.spike_runs,
        "decision_mix_now": dg.MetadataValue.json(mix),
        "weeks": len({week for week, _, _ in files.overview.mix}),
    }
    for name, title in ((DECISION_MIX_FILE, "decision mix by week"), (EFFECT_SIZES_FILE, "effect sizes")):
        key = name.removesuffix(".png")
        metadata[key] = dg.MetadataValue.md(markdown_image(files.folder / name, title))
        metadata[f"{key}_path"] = dg.MetadataValue.path(str(files.folder / name))
    for name, error in files.failed.items():
        context.log.warning(f"overview picture {name} not drawn: {error}")
        metadata[f"{name.removesuffix('.png')}_error"] = error
    return dg.MaterializeResult(metadata=metadata)
