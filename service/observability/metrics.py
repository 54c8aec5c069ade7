"""Prometheus metrics of the process."""

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

REQUESTS = Counter(
    "loss_service_requests_total",
    "HTTP requests by route, loss and status",
    ["route", "loss", "status"],
    registry=REGISTRY,
)
LATENCY = Histogram(
    "loss_service_request_seconds",
    "Time from request start to response, by route and loss",
    ["route", "loss"],
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
QUEUE_DEPTH = Gauge("loss_service_queue_depth", "Jobs waiting for the compute worker", registry=REGISTRY)
INFLIGHT_BYTES = Gauge("loss_service_inflight_bytes", "Tensor bytes admitted and not yet answered", registry=REGISTRY)
BATCH_SIZE = Histogram(
    "loss_service_batch_size",
    "Requests that shared one compute call",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
    registry=REGISTRY,
)
QUEUE_WAIT = Histogram(
    "loss_service_queue_wait_seconds", "Time a job waited in the queue", buckets=_LATENCY_BUCKETS, registry=REGISTRY
)
COMPUTE_TIME = Histogram(
    "loss_service_compute_seconds", "Time of one compute call", buckets=_LATENCY_BUCKETS, registry=REGISTRY
)
REJECTIONS = Counter(
    "loss_service_rejections_total", "Requests refused or dropped, by cause", ["cause"], registry=REGISTRY
)


_children: dict[tuple, tuple] = {}


def observe_request(route: str, loss: str, status: int, seconds: float) -> None:
    """Count one request and its latency (label children cached: this runs on every request)."""
    key = (route, loss, status)
    child = _children.get(key)
    if child is None:
        child = _children[key] = (REQUESTS.labels(route, loss, str(status)), LATENCY.labels(route, loss))
    child[0].inc()
    child[1].observe(seconds)


def watch_engine(engine) -> None:
    """Queue depth and in-flight bytes are read from the engine when scraped, not set per request."""
    QUEUE_DEPTH.set_function(lambda: engine.queue_depth)
    INFLIGHT_BYTES.set_function(lambda: engine.inflight_bytes)
