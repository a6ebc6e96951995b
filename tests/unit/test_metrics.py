"""The statsd client: names after the prefix, timers, and no client without a host."""
import socket

import pytest

from imageserver.core.metrics import NullMetrics, StatsdMetrics, build_metrics
from imageserver.core.settings import Settings


def test_statsd_names_and_prefix():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(10)
        metrics = build_metrics(Settings(statsd_port=listener.getsockname()[1]))
        assert isinstance(metrics, StatsdMetrics)
        metrics.incr("image_request.jpg")
        assert listener.recv(100) == b"image_server.image_request.jpg:1|c"
        with pytest.raises(ValueError):
            with metrics.timer("processing.time.jpg"):
                raise ValueError("a failed block is not timed")
        with metrics.timer("processing.time.png"):
            pass
        assert listener.recv(100).startswith(b"image_server.processing.time.png:")
        metrics.client.close()


def test_no_statsd_host_means_no_client():
    assert type(build_metrics(Settings(statsd_host=""))) is NullMetrics
