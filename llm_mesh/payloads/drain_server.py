"""The inference server's preStop hook: stop taking new work, then wait for the requests in flight.

Runs in the server container as `python3 -c <this file> PORT PROPAGATION_SECONDS DEADLINE_SECONDS`, with the
image's own Python (standard library only). When a pod starts terminating, Kubernetes removes it from the
Service's endpoints and every Envoy stops sending it new requests: that takes a few seconds to propagate,
so the hook first waits PROPAGATION_SECONDS. Then it polls vLLM's own gauges (requests running and waiting)
until both are zero, or until DEADLINE_SECONDS (the longest a route lets a request run) have passed; only
then does the kubelet send SIGTERM, so a long generation is finished, not cut.
"""

import sys
import time
import urllib.request
from collections.abc import Callable

IN_FLIGHT_GAUGES = ("vllm:num_requests_running", "vllm:num_requests_waiting")
POLL_SECONDS = 2


def in_flight(metrics_text: str) -> float:
    """Requests running or waiting, summed over every series of vLLM's two gauges."""
    total = 0.0
    for line in metrics_text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in IN_FLIGHT_GAUGES:
            total += float(line.rsplit(" ", 1)[-1])
    return total


def drain(
    read_metrics: Callable[[], str],
    propagation_seconds: float,
    deadline_seconds: float,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
    log: Callable[[str], None] = lambda line: print(line, flush=True),
) -> float:
    """Wait until nothing is in flight or the deadline passes; returns what was still in flight (0 when drained)."""
    sleep(propagation_seconds)
    give_up = clock() + deadline_seconds
    while True:
        try:
            busy = in_flight(read_metrics())
        except OSError as error:
            # The server is gone or not answering: nothing left to wait for.
            log(f"drain: metrics unreadable ({error}); stopping")
            return 0.0
        if busy == 0:
            log("drain: no requests in flight")
            return 0.0
        if clock() >= give_up:
            log(f"drain: {busy:.0f} requests still in flight after {deadline_seconds:.0f}s; stopping anyway")
            return busy
        log(f"drain: {busy:.0f} requests in flight")
        sleep(POLL_SECONDS)


def _metrics(port: int) -> Callable[[], str]:
    def read() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    return read


if __name__ == "__main__":
    drain(_metrics(int(sys.argv[1])), float(sys.argv[2]), float(sys.argv[3]))
