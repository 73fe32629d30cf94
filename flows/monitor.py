"""Deciding whether a stage reports to Prefect: only when a server answers, never by accident.

The server's address and health come from `flows.server_address`.

`python -m pipeline` finds this module through the `merc_pipeline.monitors` entry point that
`pyproject.toml` registers (`prefect_monitor`), so the pipeline never imports `flows/` itself.
Nothing here imports Prefect: a run without a server pays for none of it.
"""

from __future__ import annotations

from typing import Any

from flows.server_address import monitoring_api


class PrefectMonitor:
    """Runs one stage as a Prefect flow reporting to `api`, and bounds Prefect's exit-time flush."""

    def __init__(self, api: str, name: str) -> None:
        from flows.watch import ServerWatch

        self.api = api
        self.watch = ServerWatch(api, name)

    def run(self, stage: str, arg: str | None, params: dict[str, Any]) -> dict[str, Any]:
        from flows.adapter import run_stage_as_flow

        return run_stage_as_flow(stage, arg, params, self.api, watch=self.watch)

    def close(self, code: int) -> None:
        """Prefect flushes events at exit: bounded, and skipped once the server is gone."""
        from flows.adapter import cap_exit_flush

        cap_exit_flush(code, lost=self.watch.lost.is_set())


def prefect_monitor(name: str, forced: bool = False) -> PrefectMonitor | None:
    """The `merc_pipeline.monitors` entry point: a monitor for stage `name` when a server answers."""
    api = monitoring_api(forced)
    return None if api is None else PrefectMonitor(api, name)
