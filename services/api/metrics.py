"""Prometheus metrics of one app, in a registry of its own (tests build many apps).

Routes are labelled by their template (``/v1/pupils/{pupil_id}``), never by the
path: a pupil id in a label would be personal data in the monitoring system,
and one series per pupil.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, generate_latest


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "senflow_http_requests",
            "HTTP requests by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "senflow_http_request_seconds",
            "Time to answer, by route template",
            ["route"],
            registry=self.registry,
        )
        self.commands = Counter(
            "senflow_commands",
            "Commands by name and outcome (accepted, rejected, forbidden, not_found, invalid, "
            "conflict); rejections name their rule",
            ["command", "outcome", "rule"],
            registry=self.registry,
        )
        self.warnings = Counter(
            "senflow_command_warnings",
            "Warnings (shoulds not met) on accepted commands, by rule",
            ["command", "rule"],
            registry=self.registry,
        )

    def command(self, command: str, outcome: str, rule: str = "") -> None:
        self.commands.labels(command or "unknown", outcome, rule).inc()

    def render(self) -> bytes:
        # and the process-wide metrics (the service layer's, the process's own)
        return generate_latest(self.registry) + generate_latest(REGISTRY)
