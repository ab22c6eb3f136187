"""benchmarks/balancing.py: the replicas' engine, the balancers and the simulation that compares them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from benchmarks.balancing import (
    EPP_REFRESH_SECONDS,
    POLICIES,
    Engine,
    InferenceAware,
    LeastRequest,
    Outcome,
    Replica,
    Request,
    RoundRobin,
    Workload,
    highest_rate_within,
    run_rate,
    served,
    simulate,
)
from llm_mesh.plan.gpu_fit import PRESETS, Gpu, choose_fit

L4_ENGINE = Engine.of(choose_fit(PRESETS["llama-3.1-8b"], Gpu.of("nvidia-l4"), 8192, gpus_available=1))
# A replica whose cache a few requests fill: the cache, not the batch or the budget, decides who runs.
SMALL = Engine(
    cache_tokens=512,
    context=256,
    weight_bytes=1e9,
    kv_bytes_per_token=1e5,
    parameters=1e9,
    bytes_per_s=1e11,
    flops=1e13,
)


class Draws(random.Random):
    """randrange answers in a stated order: the endpoints a balancer draws."""

    def __init__(self, *draws: int) -> None:
        super().__init__(0)
        self.draws = list(draws)

    def randrange(self, *args: int, **kwargs: int) -> int:  # type: ignore[override]
        return self.draws.pop(0)


def test_the_replicas_are_prods_as_the_stack_sizes_them(fixture_project: Path) -> None:
    model = served("prod", root=fixture_project)
    assert (model.model, model.min_replicas, model.max_replicas, model.gateways) == ("llama-31-8b", 2, 6, 2)
    engine = Engine.of(model.fit)
    # One L4, bf16 llama-3.1-8b at context 8192: gpu_fit's 21,152 tokens of KV cache, 128 KiB a token.
    assert (engine.cache_tokens, engine.context, engine.kv_bytes_per_token) == (21152, 8192, 131072)
    # A lone decode step streams the weights at 80% of 300 GB/s; 2,048 prompt tokens take 50% of 121 TFLOPS.
    assert engine.step_seconds(1, 0) == pytest.approx(8.03e9 * 2 / 240e9)
    assert engine.step_seconds(2048, 2048) == pytest.approx(2 * 8.03e9 * 2048 / 60.5e12)


def test_the_workload_has_the_cited_means_within_the_context() -> None:
    requests = Workload(8192).requests(rate=100.0, duration=200.0, gateways=2, rng=random.Random(1))
    assert len(requests) == pytest.approx(20000, rel=0.05)
    assert sum(r.prompt for r in requests) / len(requests) == pytest.approx(161.31, rel=0.03)
    assert sum(r.output for r in requests) / len(requests) == pytest.approx(337.99, rel=0.03)
    assert {r.gateway for r in requests} == {0, 1}, "each request through one of the gateway pods"
    short = Workload(64).requests(rate=100.0, duration=20.0, gateways=1, rng=random.Random(1))
    assert all(r.prompt >= 1 and r.output >= 1 and r.prompt + r.output <= 64 for r in short)
    assert any(r.prompt + r.output == 64 for r in short), "the cap was reached"


def test_a_replica_never_holds_more_kv_than_its_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    peaks: list[int] = []
    scheduled = Replica.start_step

    def checked(replica: Replica) -> float:
        seconds = scheduled(replica)
        step = {id(r): n for r, n in replica._step}
        # Counted from the sequences themselves, not from the replica's own tally.
        holding = sum(r.computed + step.get(id(r), 0) for r in replica.running)
        assert holding == replica.held <= replica.engine.cache_tokens
        peaks.append(holding)
        return seconds

    monkeypatch.setattr(Replica, "start_step", checked)
    workload = Workload(SMALL.context, mean_prompt=40, mean_output=120)
    outcomes = run_rate(SMALL, workload, rate=4.0, replicas=2, gateways=1, seed=3, duration=60.0, warmup=0.0)

    assert max(peaks) > SMALL.cache_tokens - SMALL.context, "the cache was full: the limit was tested"
    assert all(o.preemptions > 0 for o in outcomes.values()), "growth past the cache preempts, as vLLM does"
    assert all(len(o.ttfts) == len(outcomes["round-robin"].ttfts) for o in outcomes.values())
    assert outcomes["round-robin"].blind_picks > 0, "a balancer blind to the caches sends work to a full one"


def test_a_preempted_request_is_prefilled_again_with_what_it_generated() -> None:
    replica = Replica(SMALL)
    first, second = Request(0, 0.0, 200, 100, 0), Request(1, 0.0, 200, 100, 0)
    replica.waiting.extend([first, second])
    replica.start_step()
    replica.end_step(1.0)
    while first.computed + second.computed < SMALL.cache_tokens:
        replica.start_step()
        replica.end_step(2.0)
    replica.start_step()  # both cannot grow: the later one gives way
    assert replica.running == [first] and list(replica.waiting) == [second]
    assert second.computed == 0 and second.target == 200 + second.generated and second.generated > 1
    assert replica.held == first.computed + 1


def test_with_one_replica_every_policy_gives_the_same_ttfts() -> None:
    # Past what one replica sustains: its cache fills, and there is no other replica to send anything to.
    outcomes = run_rate(L4_ENGINE, Workload(8192), rate=3.0, replicas=1, gateways=2, seed=5, duration=60.0, warmup=0)
    ttfts = [o.ttfts for o in outcomes.values()]
    assert len(ttfts[0]) > 100 and all(t == ttfts[0] for t in ttfts)
    assert max(ttfts[0]) > 5 and outcomes["least-request"].peak_held[0] > 0.9 * L4_ENGINE.cache_tokens
    assert all(o.blind_picks == 0 for o in outcomes.values()), "no pick is blind when there is no other choice"


def test_well_below_capacity_the_ttft_is_the_prefill_time() -> None:
    workload = Workload(8192)
    requests = workload.requests(0.2, 300.0, 1, random.Random(7))
    lone = sorted(L4_ENGINE.lone_prefill_seconds(r.prompt) for r in requests)
    decode_step = L4_ENGINE.step_seconds(1, L4_ENGINE.cache_tokens)
    for policy in POLICIES:
        outcome = simulate(L4_ENGINE, policy, requests, replicas=2, gateways=1, seed=7)
        for request, ttft in zip(requests, outcome.ttfts, strict=True):
            assert ttft >= L4_ENGINE.lone_prefill_seconds(request.prompt) - 1e-9
        # At most the end of a step under way, and a step shared with others' decodes, on top of the prefill.
        assert outcome.percentile(50) <= lone[len(lone) // 2] + decode_step
        assert outcome.percentile(99) <= lone[-1] + decode_step


def test_the_seeded_run_is_deterministic() -> None:
    def run(seed: int) -> dict[str, list[float]]:
        outcomes = run_rate(SMALL, Workload(SMALL.context, 40, 120), 3.0, 3, 2, seed, duration=30.0, warmup=0.0)
        return {name: o.ttfts for name, o in outcomes.items()}

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_least_request_keeps_the_first_draw_unless_the_second_has_fewer_active_requests() -> None:
    balancer = LeastRequest(replicas=3, gateways=2, rng=Draws(0, 1, 1, 0, 2, 2, 0, 1))
    replicas = [Replica(SMALL) for _ in range(3)]
    balancer.active = [[3, 1, 0], [0, 0, 0]]

    def pick(gateway: int) -> int:
        return balancer.pick(Request(0, 0.0, 1, 1, gateway), replicas)

    assert pick(0) == 1  # second draw has fewer
    assert pick(0) == 1  # first draw kept: the second (3) has more
    assert pick(0) == 2  # the same endpoint drawn twice
    assert pick(1) == 0, "a gateway pod counts only its own requests: ties keep the first draw"
    assert balancer.active == [[3, 3, 1], [1, 0, 0]]
    finished = Request(0, 0.0, 1, 1, 0, replica=2)
    balancer.finished(finished)
    assert balancer.active[0] == [3, 3, 0]


def test_round_robin_turns_per_gateway_pod() -> None:
    balancer = RoundRobin(replicas=3, gateways=2, rng=Draws(2, 0))
    replicas = [Replica(SMALL) for _ in range(3)]
    picks = [balancer.pick(Request(0, 0.0, 1, 1, g), replicas) for g in (0, 0, 1, 0, 1)]
    assert picks == [2, 0, 0, 1, 1]


def test_the_inference_aware_picker_scores_queue_and_kv_cache_from_its_last_scrape() -> None:
    replicas = [Replica(SMALL) for _ in range(3)]
    picker = InferenceAware(replicas=3, gateways=1, rng=random.Random(0))
    for replica, queued, held in zip(replicas, (0, 4, 2), (461, 0, 256), strict=True):
        replica.waiting.extend(Request(i, 0.0, 1, 1, 0) for i in range(queued))
        replica.held = held
    picker.refresh(replicas)
    # queue-scorer 1, 0, 0.5; kv-cache-utilization-scorer 0.1, 1, 0.5: the idle queue wins.
    assert picker.scores() == pytest.approx([1.1, 1.0, 1.0], abs=0.01)
    assert picker.pick(Request(9, 0.0, 1, 1, 0), replicas) == 0
    replicas[0].waiting.extend(Request(i, 0.0, 1, 1, 0) for i in range(10))
    assert picker.pick(Request(9, 0.0, 1, 1, 0), replicas) == 0, "what it has not scraped yet, it does not see"
    for replica in replicas:
        replica.waiting.clear()
    picker.refresh(replicas)
    # Equal queues score 1 each: the emptiest KV cache decides.
    assert picker.pick(Request(9, 0.0, 1, 1, 0), replicas) == 1


def test_the_inference_aware_picker_scrapes_every_50_ms(monkeypatch: pytest.MonkeyPatch) -> None:
    scrapes = 0
    scrape = InferenceAware.refresh

    def counted(picker: InferenceAware, replicas: list[Replica]) -> None:
        nonlocal scrapes
        scrapes += 1
        scrape(picker, replicas)

    monkeypatch.setattr(InferenceAware, "refresh", counted)
    requests = Workload(SMALL.context, 40, 120).requests(20.0, 10.0, 1, random.Random(2))
    outcome = simulate(SMALL, "inference-aware", requests, replicas=2, gateways=1, seed=2)
    # At most one a 50 ms tick, though the replicas' 10 ms steps make events far more often than that.
    end = max(r.arrival + ttft for r, ttft in zip(requests, outcome.ttfts, strict=True))
    assert SMALL.step_seconds(1, 0) == 0.01
    assert 0 < scrapes <= end / EPP_REFRESH_SECONDS + 1


def test_the_highest_rate_within_the_limit_holds_at_every_lower_rate() -> None:
    def at(p99: float) -> dict[str, Outcome]:
        return {"least-request": Outcome(ttfts=[], peak_held=[], preemptions=0, measured=[p99])}

    results = {1.0: at(0.5), 2.0: at(3.0), 3.0: at(1.0)}
    assert highest_rate_within(results, "least-request", 2.0) == 1.0
    assert highest_rate_within({1.0: at(2.5)}, "least-request", 2.0) is None
