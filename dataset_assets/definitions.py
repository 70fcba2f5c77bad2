"""The code location: every module under `defs/` (one per stage), plus the policy that spans them.

`load_from_defs_folder` collects the assets, checks and sensors each `defs` module defines and the
resources and executor `defs/resources.py` builds for the deployment profile (DAGSTER_DEPLOYMENT:
`local` embedded default, `prod` S3 + Kubernetes + GPUs). What applies to the whole graph is added
here, in one place: the automation sensor that runs every asset's automation condition.
"""

from __future__ import annotations

from pathlib import Path

from dagster import AutomationConditionSensorDefinition, DefaultSensorStatus, Definitions, load_from_defs_folder

# Assets with an automation condition (new shards flowing downstream) run from this one sensor.
automation = AutomationConditionSensorDefinition(
    "automation", target="*", default_status=DefaultSensorStatus.RUNNING, minimum_interval_seconds=60
)

# The project root holds pyproject.toml's [tool.dg] section, which names `dataset_assets.defs`.
defs = Definitions.merge(
    load_from_defs_folder(project_root=Path(__file__).resolve().parent.parent), Definitions(sensors=[automation])
)

__all__ = ["defs"]
