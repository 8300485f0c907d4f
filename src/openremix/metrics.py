"""Prometheus metrics shared by the API and the worker (one registry per process).

`openremix serve` exposes both sets at `/metrics`; a separate `openremix worker` process
exposes its own with `--metrics-port`.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

_SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

http_requests = Counter(
    "openremix_http_requests_total", "HTTP requests by route template, method and status code",
    ["route", "method", "code"],
)
http_latency = Histogram(
    "openremix_http_request_seconds", "HTTP request latency by route template", ["route"],
    buckets=_SECONDS,
)
queue_depth = Gauge("openremix_queue_depth", "Jobs QUEUED now")
oldest_queued_age = Gauge(
    "openremix_queue_oldest_age_seconds", "How long the oldest QUEUED job has waited"
)
job_phase_seconds = Histogram(
    "openremix_job_seconds", "Job durations by phase (queue, inference, total)", ["phase"],
    buckets=_SECONDS,
)
jobs_finished = Counter(
    "openremix_jobs_finished_total", "Jobs finished by a worker, by outcome", ["outcome"]
)
batch_size = Histogram(
    "openremix_batch_size", "Jobs per engine call", buckets=(1, 2, 3, 4, 6, 8, 12, 16)
)
engine_step_seconds = Histogram(
    "openremix_engine_step_seconds", "Time between engine progress steps", buckets=_SECONDS
)
outputs_unreadable = Counter(
    "openremix_outputs_unreadable_total",
    "Outputs that could not be served as the image, by reason (missing, damaged)", ["reason"],
)
images_blocked = Counter(
    "openremix_images_blocked_total",
    "Images blocked by the image safety screen, by where (input, output)", ["where"],
)
