"""The state of one request as it moves through the pipeline."""

from __future__ import annotations

from aiohttp.web import BaseRequest


class Exchange:
    """One request and what the pipeline stages learned about it.

    Each stage reads what earlier stages set and adds its own part; the
    access log reads the finished exchange.
    """

    __slots__ = (
        "request",
        "request_id",
        "stage",
        "route_key",
        "path_params",
        "integration_latency",
    )

    def __init__(self, request: BaseRequest, request_id: str) -> None:
        self.request = request
        self.request_id = request_id
        self.stage = "-"
        self.route_key = "-"
        self.path_params: dict[str, str] = {}
        # Milliseconds spent in the integration; None when none ran.
        self.integration_latency: float | None = None
