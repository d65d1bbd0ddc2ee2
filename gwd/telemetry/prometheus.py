"""Prometheus metrics: one exposition for the whole daemon, whichever worker counted.

prometheus-client's multiprocess mode keeps each process's values in
memory-mapped files in one directory; the admin endpoint sums them.  The
directory (``metrics.PID`` under the runtime or state directory) is made
empty when the daemon starts and removed when it exits, and set in
``PROMETHEUS_MULTIPROC_DIR`` before prometheus-client is imported, which
is when it picks its storage.  Counters of a worker that exits stay in its
files, so a total never goes down when a worker dies and never counts
twice when it is replaced; its live gauges are dropped
(:func:`forget_process`).

Workers do not write these files per request: they count in plain dicts
and add what they counted every ``FLUSH_INTERVAL`` (see
:mod:`gwd.telemetry.metrics`), so a worker killed with SIGKILL loses at most
its last interval of counts.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gwd.stores.buckets import BucketTable

FLUSH_INTERVAL = 1.0
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
"""Seconds; requests and integrations share them (1 ms to AWS's 29 s integration limit)."""

_ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("gwd.metrics")


def prepare_directory(base: str) -> str:
    """Create an empty ``base/metrics.PID`` for this daemon, remove ones of daemons no longer running, and export it."""
    os.makedirs(base, mode=0o700, exist_ok=True)
    for stale in glob.glob(os.path.join(base, "metrics.*")):
        pid = stale.rsplit(".", 1)[1]
        if pid.isdigit() and not os.path.exists(f"/proc/{pid}"):
            shutil.rmtree(stale, ignore_errors=True)
    directory = os.path.join(base, f"metrics.{os.getpid()}")
    shutil.rmtree(directory, ignore_errors=True)
    os.mkdir(directory, 0o700)
    os.environ[_ENV] = directory
    return directory


def preload() -> None:
    """Import the parts of prometheus-client used later, now: after a privilege drop the install may be unreadable."""
    import prometheus_client.exposition  # noqa: F401
    import prometheus_client.multiprocess  # noqa: F401
    import prometheus_client.openmetrics.exposition  # noqa: F401


def remove_directory() -> None:
    directory = os.environ.get(_ENV)
    if directory:
        shutil.rmtree(directory, ignore_errors=True)


def forget_process(pid: int) -> None:
    """Drop an exited worker's live gauges (its counters and histograms stay counted)."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)


def exposition(accept: str | None, buckets: BucketTable | None = None) -> tuple[bytes, str]:
    """The text of every process's metrics, in the format ``accept`` asks for (OpenMetrics or Prometheus text).

    ``buckets``: the daemon's shared throttle table, whose fill is read now.
    """
    from prometheus_client import CollectorRegistry
    from prometheus_client.exposition import choose_encoder

    registry = CollectorRegistry()
    registry.register(_ReadableFiles(os.environ[_ENV]))
    if buckets is not None:
        registry.register(_BucketFill(buckets))
    encode, content_type = choose_encoder(accept or "")
    return encode(registry), content_type


_MIN_FILE_BYTES = 8
"""A values file's header: a shorter one is being created (or its worker died creating it) and holds no values."""
_unreadable_reported: set[str] = set()


class _ReadableFiles:
    """prometheus-client's multiprocess merge over the files that can be read.

    A worker creates each values file empty and sizes it a moment later; its
    first flush of a new kind of metric can do that while a scrape reads the
    directory, and a worker killed in between leaves the empty file for good.
    prometheus-client's own collector fails the whole scrape on such a file
    (client_python#1199), so this one leaves out files without a header; a
    file that cannot be merged is named once in the log and left out rather
    than blanking every other process's counts.
    """

    def __init__(self, directory: str) -> None:
        self._directory = directory

    def collect(self) -> Any:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = []
        for path in glob.glob(os.path.join(self._directory, "*.db")):
            try:
                if os.stat(path).st_size >= _MIN_FILE_BYTES:
                    files.append(path)
            except FileNotFoundError:  # a dead worker's live gauges, removed since the glob
                pass
        try:
            return MultiProcessCollector.merge(files, accumulate=True)
        except Exception:
            return MultiProcessCollector.merge([path for path in files if _merges(path)], accumulate=True)


class _BucketFill:
    """The shared throttle table's size and fill, read from shared memory at the scrape."""

    def __init__(self, buckets: BucketTable) -> None:
        self._buckets = buckets

    def collect(self) -> Any:
        from prometheus_client.core import GaugeMetricFamily

        yield GaugeMetricFamily("gwd_throttle_buckets", "Token buckets held in the shared table.", value=self._buckets.occupied())
        yield GaugeMetricFamily("gwd_throttle_table_slots", "Slots of the shared table ([throttle] table_size).", value=self._buckets.slots)


def _merges(path: str) -> bool:
    """Whether one values file merges on its own; the first time one does not, say so."""
    from prometheus_client.multiprocess import MultiProcessCollector

    try:
        MultiProcessCollector.merge([path], accumulate=True)
    except FileNotFoundError:
        return False
    except Exception as exc:
        if path not in _unreadable_reported:
            _unreadable_reported.add(path)
            log.error("metrics: leaving out %s, which cannot be read (%s: %s)", path, type(exc).__name__, exc)
        return False
    return True


def _counter(name: str, documentation: str, labels: tuple[str, ...] = ()) -> Any:
    from prometheus_client import Counter

    return Counter(name, documentation, labels, registry=None)


def _gauge(name: str, documentation: str, labels: tuple[str, ...] = (), mode: str = "livesum") -> Any:
    from prometheus_client import Gauge

    return Gauge(name, documentation, labels, multiprocess_mode=mode, registry=None)


def _histogram(name: str, documentation: str, labels: tuple[str, ...]) -> Any:
    from prometheus_client import Histogram

    return Histogram(name, documentation, labels, buckets=DURATION_BUCKETS, registry=None)


class WorkerMetrics:
    """What workers count (created in each worker, after :func:`prepare_directory`)."""

    def __init__(self) -> None:
        self.requests = _counter("gwd_requests", "Requests answered.", ("api", "stage", "route", "method", "code"))
        self.request_duration = _histogram(
            "gwd_request_duration_seconds", "Time from a request's arrival to its response.", ("api", "stage", "route")
        )
        self.integration_duration = _histogram(
            "gwd_integration_duration_seconds", "Time from sending a request to its backend to the response head.", ("api", "stage", "route")
        )
        self.integration_errors = _counter("gwd_integration_errors", "Backend failures, by kind.", ("api", "stage", "route", "kind"))
        self.throttled = _counter("gwd_throttled_requests", "Requests refused by a limit or quota.", ("api", "stage", "route", "reason"))
        self.cache_requests = _counter("gwd_cache_requests", "Response cache look-ups.", ("api", "stage", "route", "result"))
        self.cache_evictions = _counter("gwd_cache_evictions", "Cached responses evicted to make room.")
        self.cache_entries = _gauge("gwd_cache_entries", "Responses held in the workers' memory caches.")
        self.cache_bytes = _gauge("gwd_cache_stored_bytes", "Bytes the workers' memory caches hold (counted toward max_bytes).")
        self.api_key_requests = _counter("gwd_api_key_requests", "Requests by API key id ([metrics] per_key).", ("key_id",))
        self.inflight = _gauge("gwd_inflight_requests", "Requests being answered.")
        self.upstream_connections = _gauge("gwd_upstream_connections", "Open connections to backends.", ("backend",))
        target = ("upstream", "target")
        self.target_healthy = _gauge(
            "gwd_upstream_target_healthy", "1 while no worker has the upstream's target ejected.", target, mode="livemin"
        )
        self.target_inflight = _gauge("gwd_upstream_target_inflight", "Requests in flight to an upstream's target.", target)
        self.target_requests = _counter("gwd_upstream_requests", "Attempts sent to an upstream's target.", target)
        self.target_errors = _counter(
            "gwd_upstream_errors", "Failed attempts: no connection, a broken one, a timeout or a 5xx.", target
        )
        self.target_ejections = _counter("gwd_upstream_ejections", "Times a worker ejected the target.", target)
        self.target_retries = _counter("gwd_upstream_retries", "Failed attempts on the target tried again elsewhere.", target)
        self.function_invocations = _counter(
            "gwd_function_invocations", "Function invocations, by outcome.", ("function", "outcome")
        )
        self.function_duration = _histogram(
            "gwd_function_duration_seconds", "Time a function's handler took, from its call to its answer.", ("function",)
        )
        self.function_cold_starts = _counter(
            "gwd_function_cold_starts", "First invocations of a function in a worker (or a new runtime process).", ("function",)
        )
        self.function_concurrency = _gauge("gwd_function_concurrency", "Function invocations running now.", ("function",))


class SupervisorMetrics:
    """What the supervisor counts: workers, restarts, reloads, the build."""

    def __init__(self, version: str) -> None:
        self.workers = _gauge("gwd_workers", "Worker processes accepting requests.", mode="livemax")
        self.worker_restarts = _counter("gwd_worker_restarts", "Workers that died and were started again.", ("reason",))
        self.config_reloads = _counter("gwd_config_reloads", "SIGHUP reloads, by result.", ("result",))
        self.last_reload = _gauge(
            "gwd_config_last_reload_success_timestamp_seconds", "When the config now served was loaded (Unix time).", mode="livemax"
        )
        _gauge("gwd_build_info", "The running gwd's version.", ("version",), mode="livemax").labels(version).set(1)
        # Every known label value from 0, so that a first restart or reload is an increase, not a new series.
        for reason in ("signal", "exit", "boot_error"):
            self.worker_restarts.labels(reason)
        for result in ("success", "failure"):
            self.config_reloads.labels(result)


class SupervisorEvents:
    """Counts what the supervisor reports (see :class:`gwd.supervisor.Events`)."""

    def __init__(self, version: str) -> None:
        self._metrics = SupervisorMetrics(version)
        self._metrics.last_reload.set(time.time())

    def worker_exited(self, pid: int, restarted_because: str | None) -> None:
        forget_process(pid)
        if restarted_because is not None:
            self._metrics.worker_restarts.labels(restarted_because).inc()

    def workers_ready(self, count: int) -> None:
        self._metrics.workers.set(count)

    def reloaded(self, succeeded: bool) -> None:
        self._metrics.config_reloads.labels("success" if succeeded else "failure").inc()
        if succeeded:
            self._metrics.last_reload.set(time.time())
