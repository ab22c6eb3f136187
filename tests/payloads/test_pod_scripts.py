"""The scripts the pods run (weights fetch, weights gate, drain), run here as the pods run them, and their
waits driven by an injected clock instead of real sleeps."""

from __future__ import annotations

import hashlib
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llm_mesh.payloads import drain_server, fetch_model
from llm_mesh.plan.config import ModelVersion, RoutingConfig
from llm_mesh.plan.inference import (
    DRAIN_SOURCE,
    FETCH_SOURCE,
    WEIGHTS_WAIT_SECONDS,
    drain_command,
    fetch_command,
    weights_gate_command,
)
from tests.helpers import prop, resource

WEIGHTS = b"\x01" * 4096
WEIGHTS_SHA = hashlib.sha256(WEIGHTS).hexdigest()
# How often a test server's loop looks for shutdown(): the default (0.5 s) is what each shutdown waits.
POLL = 0.01


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def model_store(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    """A static HTTP server over a folder, like the model store: (base URL, its folder, a local target)."""
    root = tmp_path / "store"
    version = root / "models" / "m" / "v1"
    (version / "sub").mkdir(parents=True)
    (version / "config.json").write_bytes(b"{}")
    (version / "sub" / "weights.bin").write_bytes(WEIGHTS)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(root)))
    thread = threading.Thread(target=server.serve_forever, args=(POLL,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/models/m/v1", version, tmp_path / "local"
    server.shutdown()


class FakeClock:
    """A clock that moves only when the code under test sleeps; runs a callback at chosen sleeps."""

    def __init__(self, on_sleep: dict[int, Any] | None = None):
        self.now = 0.0
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep or {}

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        action = self.on_sleep.get(len(self.sleeps))
        if action:
            action()


def run_fetch(
    base_url: str, target: Path, files: list[dict[str, Any]], deadline: str = "0"
) -> subprocess.CompletedProcess[str]:
    version = ModelVersion.model_validate({"version": "v1", "files": files})
    command = fetch_command(base_url, version)
    assert command[:3] == ["python3", "-c", FETCH_SOURCE]
    assert command[6] == str(WEIGHTS_WAIT_SECONDS)
    # The init container's exact command, with the target folder moved from /models and the wait shortened.
    args = [sys.executable, "-c", FETCH_SOURCE, command[3], str(target), command[5], deadline]
    return subprocess.run(args, capture_output=True, text=True, timeout=60)


def test_fetch_downloads_and_checks_each_file(model_store: tuple[str, Path, Path]) -> None:
    base_url, _, target = model_store
    result = run_fetch(base_url, target, [{"path": "config.json"}, {"path": "sub/weights.bin", "sha256": WEIGHTS_SHA}])
    assert result.returncode == 0, result.stderr
    assert (target / "sub" / "weights.bin").read_bytes() == WEIGHTS
    assert not list(target.rglob("*.part"))
    assert result.stdout.splitlines() == ["fetched config.json", "fetched sub/weights.bin"]


def test_fetch_refuses_a_corrupt_file_at_once(model_store: tuple[str, Path, Path]) -> None:
    base_url, _, target = model_store
    result = run_fetch(base_url, target, [{"path": "sub/weights.bin", "sha256": "0" * 64}], deadline="600")
    assert result.returncode != 0
    assert result.stderr.strip() == f"sub/weights.bin: sha256 {WEIGHTS_SHA} does not match the configured {'0' * 64}"
    assert not (target / "sub" / "weights.bin").exists(), "a corrupt file never takes the real name"


def test_fetch_gives_up_on_a_missing_file_at_its_deadline(model_store: tuple[str, Path, Path]) -> None:
    base_url, _, target = model_store
    result = run_fetch(base_url, target, [{"path": "missing.safetensors"}])
    assert result.returncode != 0
    assert result.stderr.startswith(
        "missing.safetensors: HTTP 404 (not in the model store yet); gave up after 0s. Put the file in the model store"
    )


def test_fetch_waits_with_backoff_until_the_weights_arrive(model_store: tuple[str, Path, Path]) -> None:
    base_url, folder, target = model_store
    late = folder / "late.safetensors"
    clock = FakeClock(on_sleep={3: lambda: late.write_bytes(WEIGHTS)})
    lines: list[str] = []
    fetch_model.fetch(base_url, str(target), [{"path": "late.safetensors"}], 600, clock, clock.sleep, lines.append)
    assert clock.sleeps == [2, 4, 8]
    assert lines == [
        "waiting for late.safetensors: HTTP 404 (not in the model store yet); next try in 2s",
        "waiting for late.safetensors: HTTP 404 (not in the model store yet); next try in 4s",
        "waiting for late.safetensors: HTTP 404 (not in the model store yet); next try in 8s",
        "fetched late.safetensors",
    ]
    assert (target / "late.safetensors").read_bytes() == WEIGHTS


def test_fetch_backoff_is_capped_and_bounded_by_the_deadline(model_store: tuple[str, Path, Path]) -> None:
    base_url, _, target = model_store
    clock = FakeClock()
    with pytest.raises(SystemExit) as stopped:
        fetch_model.fetch(base_url, str(target), [{"path": "never.bin"}], 100, clock, clock.sleep, lambda _: None)
    assert clock.sleeps == [2, 4, 8, 16, 30, 30]
    assert str(stopped.value).startswith("never.bin: HTTP 404 (not in the model store yet); gave up after 100s.")


def test_fetch_waits_for_a_store_that_does_not_answer_yet(tmp_path: Path) -> None:
    clock = FakeClock()
    lines: list[str] = []
    with pytest.raises(SystemExit):
        fetch_model.fetch(
            "http://127.0.0.1:9/models/m/v1", str(tmp_path), [{"path": "w.bin"}], 3, clock, clock.sleep, lines.append
        )
    assert lines[0].startswith("waiting for w.bin: model store not reachable (")


def test_fetch_keeps_a_file_an_earlier_attempt_fetched(tmp_path: Path) -> None:
    (tmp_path / "w.bin").write_bytes(WEIGHTS)
    lines: list[str] = []
    # The store is down: a kept file must not be downloaded again.
    fetch_model.fetch(
        "http://127.0.0.1:9", str(tmp_path), [{"path": "w.bin", "sha256": WEIGHTS_SHA}], 0, log=lines.append
    )
    assert lines == ["kept w.bin (already fetched)"]


def run_gate(base_url: str, files: list[str], deadline: int) -> subprocess.CompletedProcess[str]:
    version = ModelVersion.model_validate({"version": "v1", "files": [{"path": f} for f in files]})
    command = weights_gate_command(base_url, version)
    assert command[:2] == ["sh", "-c"] and command[5] == str(WEIGHTS_WAIT_SECONDS)
    command[5] = str(deadline)
    env = {**os.environ, "WEIGHTS_GATE_POLL_SECONDS": "0"}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


def test_weights_gate_passes_when_every_file_is_served(model_store: tuple[str, Path, Path]) -> None:
    base_url, _, _ = model_store
    result = run_gate(base_url, ["config.json", "sub/weights.bin"], 60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["present: config.json", "present: sub/weights.bin"]


def test_weights_gate_fails_naming_the_missing_file(model_store: tuple[str, Path, Path]) -> None:
    base_url, _, _ = model_store
    result = run_gate(base_url, ["config.json", "missing.safetensors"], 0)
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "missing in the model store: missing.safetensors (llm-mesh models push, or the version's import job, puts it there)"
    )


VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 3.0
# HELP vllm:num_requests_waiting Number of requests waiting to be processed.
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 2.0
vllm:num_requests_swapped{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 7.0
vllm:prompt_tokens_total{engine="0",model_name="meta-llama/Llama-3.1-8B-Instruct"} 1234.0
"""


def test_in_flight_sums_running_and_waiting_only() -> None:
    assert drain_server.in_flight(VLLM_METRICS) == 5.0
    assert drain_server.in_flight("") == 0.0


def test_drain_waits_out_the_propagation_then_until_nothing_is_in_flight() -> None:
    answers = iter(
        [VLLM_METRICS, VLLM_METRICS.replace(" 3.0", " 1.0").replace(" 2.0", " 0.0"), "vllm:num_requests_running 0\n"]
    )
    clock = FakeClock()
    lines: list[str] = []
    left = drain_server.drain(lambda: next(answers), 10, 600, clock, clock.sleep, lines.append)
    assert left == 0.0
    assert clock.sleeps == [10, 2, 2]
    assert lines == ["drain: 5 requests in flight", "drain: 1 requests in flight", "drain: no requests in flight"]


def test_drain_stops_at_the_route_timeout() -> None:
    clock = FakeClock()
    lines: list[str] = []
    left = drain_server.drain(lambda: VLLM_METRICS, 10, 6, clock, clock.sleep, lines.append)
    assert left == 5.0
    assert clock.sleeps == [10, 2, 2, 2]
    assert lines[-1] == "drain: 5 requests still in flight after 6s; stopping anyway"


def test_drain_stops_when_the_server_is_gone() -> None:
    def gone() -> str:
        raise ConnectionRefusedError("refused")

    lines: list[str] = []
    assert drain_server.drain(gone, 0, 600, sleep=lambda _: None, log=lines.append) == 0.0
    assert lines == ["drain: metrics unreadable (refused); stopping"]


def test_drain_command_runs_as_the_pre_stop_hook(tmp_path: Path) -> None:
    """The hook's exact command, against a server that answers /metrics with nothing in flight."""
    root = tmp_path / "srv"
    root.mkdir()
    (root / "metrics").write_text("vllm:num_requests_running 0\nvllm:num_requests_waiting 0\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(root)))
    threading.Thread(target=server.serve_forever, args=(POLL,), daemon=True).start()
    try:
        command = drain_command(RoutingConfig())
        assert command[:3] == ["python3", "-c", DRAIN_SOURCE] and command[3:] == ["8000", "10", "600"]
        args = [sys.executable, "-c", DRAIN_SOURCE, str(server.server_address[1]), "0", "600"]
        result = subprocess.run(args, capture_output=True, text=True, timeout=30)
    finally:
        server.shutdown()
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["drain: no requests in flight"]


@pytest.mark.parametrize("script", ["fetch_model.py", "drain_server.py"])
def test_a_comment_or_docstring_edit_changes_nothing_the_pod_runs_and_a_code_edit_does(script: str) -> None:
    """Editing a payload's comment would otherwise roll every GPU Deployment."""
    from llm_mesh import payloads

    source = (Path(payloads.__file__).parent / script).read_text()
    commented = source.replace("\ndef ", "\n# a new comment\ndef ", 1).replace('"""', '"""Reworded. ', 1)
    assert commented != source
    assert payloads.shipped(commented) == payloads.shipped(source)
    changed = source.replace("\ndef ", "\nNEW_CONSTANT = 1\n\n\ndef ", 1)
    assert payloads.shipped(changed) != payloads.shipped(source)
    assert "a new comment" not in payloads.shipped(commented) and "Reworded" not in payloads.shipped(commented)


def test_the_pods_run_the_shipped_payloads(previews: dict[str, Any]) -> None:
    from llm_mesh import payloads

    deployment = resource(previews["prod"], "kubernetes:apps/v1:Deployment", "model-llama-31-8b-stable")
    init = prop(deployment, "spec.template.spec.initContainers")[0]["command"]
    assert init[:3] == ["python3", "-c", payloads.FETCH_MODEL]
    hook = prop(deployment, "spec.template.spec.containers")[0]["lifecycle"]["preStop"]["exec"]["command"]
    assert hook[:3] == ["python3", "-c", payloads.DRAIN_SERVER]


def test_a_weights_gate_name_fits_the_job_name_label() -> None:
    """Kubernetes copies a Job's name into its pods' `job-name` label: 63 characters at most."""
    from llm_mesh.plan.inference import weights_gate_name

    assert weights_gate_name("llama-31-8b", "canary", "v2") == "llama-31-8b-canary-weights-v2"
    long = weights_gate_name("m" * 40, "mirror", "v" * 40)
    other = weights_gate_name("m" * 40, "mirror", "v" * 39 + "w")
    assert len(long) <= 63 and len(other) <= 63 and long != other
    assert long.startswith("m" * 40 + "-mirror-weight")
