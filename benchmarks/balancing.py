"""Why inference-aware routing matters, in numbers: a stack's model replicas under three balancers, simulated.

A model, not a measurement. A discrete-event simulation (seeded, pure Python) of the replicas of a model as the
stack sizes them (by default prod's llama-31-8b: llama-3.1-8b in bf16, context 8192, one nvidia-l4 a replica, at
its maxReplicas), each a vLLM engine in outline: continuous batching, a KV cache of the size
llm_mesh/plan/gpu_fit.py computes, a FCFS queue of what does not fit, and engine steps timed by a roofline of the
GPU's datasheet figures. Requests arrive as a Poisson process with ShareGPT-like lengths and are spread over the
replicas by:

  least-request    Envoy's LEAST_REQUEST, what the project's DestinationRule asks of Istio: of two endpoints
                   drawn at random (with replacement), the one with fewer active requests as this Envoy counts
                   them (each gateway pod counts only the requests it sent).
  round-robin      Envoy's ROUND_ROBIN: each gateway pod takes the endpoints in turn from a random start.
  inference-aware  the Gateway API Inference Extension's endpoint picker with its default scorers: the waiting
                   queue (vllm:num_requests_waiting) and the KV-cache utilisation (vllm:kv_cache_usage_perc) at
                   equal weights, as it scraped them at most 50 ms ago; the highest score wins, ties at random.

For each rate it prints the time to first token (P50, P99) under each policy, and the highest simulated rate at
which each keeps P99 within --ttft-limit. At each rate the three policies serve the same requests.

    .venv/bin/python benchmarks/balancing.py [--stack prod] [--replicas N] [--rates 3,4.5,6] [--seed 1]
        [--duration 1200]

What would calibrate it: vLLM's benchmark_serving (`vllm bench serve`, ShareGPT dataset) against one replica on
one L4. The inter-token latency of a lone request fixes --bandwidth-efficiency, the time to first token of a lone
2,000-token prompt fixes --flops-efficiency, and a --request-rate sweep gives the TTFT curve that `--replicas 1`
must reproduce before the comparison of balancers means anything.
"""

from __future__ import annotations

import argparse
import heapq
import math
import random
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from llm_mesh.plan.gpu_fit import Fit

ROOT = Path(__file__).resolve().parent.parent

# vLLM's defaults for `vllm serve` on a GPU with less than 70 GiB (vllm/engine/arg_utils.py, get_batch_defaults);
# the project sets neither flag (llm_mesh/plan/inference.py).
MAX_NUM_SEQS = 256
MAX_NUM_BATCHED_TOKENS = 2048  # the tokens one engine step computes: decodes first, then prefill chunks


@dataclass(frozen=True)
class Datasheet:
    memory_bytes_per_s: float
    bf16_dense_flops: float
    source: str


DATASHEETS = {
    "nvidia-l4": Datasheet(300e9, 121e12, "NVIDIA L4 datasheet: 300 GB/s, 121 TFLOPS dense bf16 (242 with sparsity)"),
}
# Assumed, not measured: the share of peak that vLLM's decode (weight-streaming) and prefill (GEMM) kernels reach.
# What calibrates them is in the module's docstring.
BANDWIDTH_EFFICIENCY = 0.8
FLOPS_EFFICIENCY = 0.5

# ShareGPT's mean prompt and output lengths in tokens, from Kwon et al., "Efficient Memory Management for Large
# Language Model Serving with PagedAttention" (SOSP 2023), figure 11 (Alpaca's: 19.31 and 58.45). The lengths
# are drawn from log-normals with these means and an assumed spread (sigma of the log) of 1.0, capped so that a
# request fits the context. The paper counted its models' tokens, not Llama 3's (whose larger vocabulary makes
# the same text some tokens shorter): the workload is a shape, not this dataset under this tokenizer.
SHAREGPT_MEAN_PROMPT = 161.31
SHAREGPT_MEAN_OUTPUT = 337.99
LENGTH_SIGMA = 1.0

# The Inference Extension's endpoint picker scrapes each model server's metrics every 50 ms
# (--refresh-metrics-interval); it picks from that snapshot, not from the engine's state of the moment.
EPP_REFRESH_SECONDS = 0.05

POLICIES = ("least-request", "round-robin", "inference-aware")
# A blind pick: a request sent to a replica whose KV cache is more than FULL used while another's is below ROOMY.
FULL, ROOMY = 0.9, 0.7
TTFT_LIMIT_SECONDS = 2.0
# Rates per replica (requests/s) of the default sweep: from light load to past what a replica sustains.
RATES_PER_REPLICA = (0.5, 0.75, 0.875, 1.0, 1.125, 1.25, 1.375, 1.5)


@dataclass(frozen=True)
class Served:
    """A model as a stack serves it: how one replica fits its GPUs, how many replicas, how many gateway pods."""

    stack: str
    model: str
    fit: Fit
    min_replicas: int
    max_replicas: int
    gateways: int


def served(stack: str, model: str | None = None, root: Path = ROOT) -> Served:
    """The model (default: the stack's first) as the stack's config sizes it: the fit the servers run with
    (StackConfig.fit_for, gpu_fit.choose_fit on the model's pool), its autoscaler's range, the gateway's pods."""
    from llm_mesh.engine.stackfile import Project, read_stack_settings
    from llm_mesh.plan.config import config_from_pulumi

    project = Project.find(root)
    config = config_from_pulumi(read_stack_settings(project, stack).config)
    chosen = next((m for m in config.models if model in (None, m.name)), None)
    if chosen is None:
        raise SystemExit(f"stack {stack} serves no model {model!r}: {[m.name for m in config.models]}")
    return Served(
        stack,
        chosen.name,
        config.fit_for(chosen),
        chosen.min_replicas,
        chosen.max_replicas,
        config.gateway.min_replicas,
    )


@dataclass(frozen=True)
class Engine:
    """One replica: its KV cache, its batch limits and how long one engine step takes."""

    cache_tokens: int
    context: int
    weight_bytes: float  # per GPU
    kv_bytes_per_token: float  # per GPU
    parameters: float
    bytes_per_s: float  # achieved memory bandwidth of one GPU
    flops: float  # achieved bf16 throughput of the replica's GPUs together
    max_num_seqs: int = MAX_NUM_SEQS
    max_batched_tokens: int = MAX_NUM_BATCHED_TOKENS

    def __post_init__(self) -> None:
        # vLLM refuses to start unless one full-length sequence fits; the simulation relies on it (a lone sequence
        # always fits, so a preemption always frees room for someone).
        if self.context > self.cache_tokens:
            raise ValueError(f"context {self.context} exceeds the KV cache of {self.cache_tokens} tokens")

    @classmethod
    def of(
        cls, fit: Fit, bandwidth_efficiency: float = BANDWIDTH_EFFICIENCY, flops_efficiency: float = FLOPS_EFFICIENCY
    ) -> Engine:
        sheet = DATASHEETS.get(fit.gpu.accelerator)
        if sheet is None:
            raise SystemExit(f"no datasheet figures for {fit.gpu.accelerator}: add them to DATASHEETS")
        return cls(
            cache_tokens=fit.cache_tokens,
            context=fit.context,
            weight_bytes=fit.weights_per_gpu,
            kv_bytes_per_token=fit.kv_bytes_per_token_per_gpu,
            parameters=fit.shape.parameters,
            bytes_per_s=sheet.memory_bytes_per_s * bandwidth_efficiency,
            flops=sheet.bf16_dense_flops * flops_efficiency * fit.tensor_parallel,
        )

    def step_seconds(self, tokens: int, kv_tokens: int) -> float:
        """A roofline: every step streams each GPU's share of the weights and of the batch's KV cache from its
        memory, and computes 2 FLOPs per parameter per token; whichever takes longer is the step. Attention's own
        FLOPs (small at these lengths), tensor-parallel communication, CPU overhead and sampling are left out."""
        memory = (self.weight_bytes + kv_tokens * self.kv_bytes_per_token) / self.bytes_per_s
        compute = 2 * self.parameters * tokens / self.flops
        return max(memory, compute)

    def lone_prefill_seconds(self, prompt: int) -> float:
        """The time to first token of a request alone on an idle replica (in steps of at most the token budget)."""
        seconds, done = 0.0, 0
        while done < prompt:
            chunk = min(prompt - done, self.max_batched_tokens)
            done += chunk
            seconds += self.step_seconds(chunk, done)
        return seconds


@dataclass(frozen=True)
class Workload:
    """Request lengths: log-normal prompt and output lengths with the given means, capped to fit the context."""

    context: int
    mean_prompt: float = SHAREGPT_MEAN_PROMPT
    mean_output: float = SHAREGPT_MEAN_OUTPUT
    sigma: float = LENGTH_SIGMA

    def lengths(self, rng: random.Random) -> tuple[int, int]:
        prompt = min(self.context - 1, max(1, round(_lognormal(rng, self.mean_prompt, self.sigma))))
        output = min(self.context - prompt, max(1, round(_lognormal(rng, self.mean_output, self.sigma))))
        return prompt, output

    def requests(self, rate: float, duration: float, gateways: int, rng: random.Random) -> list[Request]:
        """Poisson arrivals at `rate` per second for `duration` seconds, each through a gateway pod at random."""
        requests: list[Request] = []
        now = rng.expovariate(rate)
        while now < duration:
            prompt, output = self.lengths(rng)
            requests.append(Request(len(requests), now, prompt, output, rng.randrange(gateways)))
            now += rng.expovariate(rate)
        return requests


def _lognormal(rng: random.Random, mean: float, sigma: float) -> float:
    return rng.lognormvariate(math.log(mean) - sigma**2 / 2, sigma)


@dataclass(eq=False, slots=True)
class Request:
    id: int
    arrival: float
    prompt: int
    output: int
    gateway: int
    replica: int = -1
    target: int = 0  # tokens to prefill: the prompt, or after a preemption the prompt and what was generated
    computed: int = 0  # tokens whose KV the replica holds
    generated: int = 0
    first_token: float | None = None

    def __post_init__(self) -> None:
        self.target = self.prompt


class Replica:
    """vLLM's scheduler in outline (its V1 engine): each step first gives every running sequence its next token
    (or its next prefill chunk), preempting the most recently admitted sequence when the KV cache cannot hold the
    step (recompute: it goes back to the front of the queue and is prefilled again, what it generated included),
    then admits waiting requests in arrival order while the token budget, the sequence limit and the cache allow;
    the first that does not fit stops the queue. A request's first token comes at the end of the step that
    completes its prefill. KV is counted in tokens (vLLM allocates 16-token blocks: a few tokens more a sequence)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.held = 0  # KV tokens of the running sequences
        self.peak_held = 0
        self.preemptions = 0
        self.busy = False
        self._step: list[tuple[Request, int]] = []

    def start_step(self) -> float:
        """Schedule one step; return how long it takes (0: nothing to do, the replica goes idle)."""
        engine, step, running = self.engine, self._step, self.running
        budget, tokens, preempted = engine.max_batched_tokens, 0, False
        step.clear()
        i = 0
        while i < len(running) and budget > 0:
            request = running[i]
            n = 1 if request.computed >= request.target else min(request.target - request.computed, budget)
            while self.held + n > engine.cache_tokens and running[-1] is not request:
                self._preempt(running.pop())
                preempted = True
            if self.held + n > engine.cache_tokens:  # nothing left to preempt but itself
                self._preempt(running.pop())
                preempted = True
                break
            self.held += n
            budget -= n
            tokens += n
            step.append((request, n))
            i += 1
        # As vLLM's scheduler: no admission in a step that had to preempt.
        while not preempted and self.waiting and budget > 0 and len(running) < engine.max_num_seqs:
            request = self.waiting[0]
            n = min(request.target - request.computed, budget)
            if self.held + n > engine.cache_tokens:
                break
            self.waiting.popleft()
            running.append(request)
            self.held += n
            budget -= n
            tokens += n
            step.append((request, n))
        self.peak_held = max(self.peak_held, self.held)
        if not tokens and (running or self.waiting):
            # A lone sequence always fits (Engine's own check): work left undone here is a scheduler bug.
            raise RuntimeError(
                f"a replica with {len(running)} running and {len(self.waiting)} waiting scheduled nothing"
            )
        return engine.step_seconds(tokens, self.held) if tokens else 0.0

    def _preempt(self, request: Request) -> None:
        self.held -= request.computed
        request.target = request.prompt + request.generated
        request.computed = 0
        self.waiting.appendleft(request)
        self.preemptions += 1

    def end_step(self, now: float) -> tuple[int, list[Request]]:
        """Account the step that ends `now`: how many requests got their first token, and which finished."""
        firsts, finished = 0, []
        for request, n in self._step:
            request.computed += n
            if request.computed < request.target:
                continue  # a prefill chunk: no token yet
            request.generated += 1
            if request.first_token is None:
                request.first_token = now
                firsts += 1
            if request.generated >= request.output:
                finished.append(request)
        for request in finished:
            self.running.remove(request)
            self.held -= request.computed
        return firsts, finished

    @property
    def kv_usage(self) -> float:
        return self.held / self.engine.cache_tokens


class LeastRequest:
    """Envoy's LEAST_REQUEST with equal weights: two endpoints drawn with replacement, the first kept unless the
    second has strictly fewer active requests (`rq_active`, from the request's start to its response's end, as
    this gateway pod's Envoy counts them: it does not see what the other pods sent)."""

    def __init__(self, replicas: int, gateways: int, rng: random.Random) -> None:
        self.active = [[0] * replicas for _ in range(gateways)]
        self.rng = rng

    def pick(self, request: Request, replicas: Sequence[Replica]) -> int:
        active = self.active[request.gateway]
        first = self.rng.randrange(len(replicas))
        second = self.rng.randrange(len(replicas))
        chosen = second if active[second] < active[first] else first
        active[chosen] += 1
        return chosen

    def finished(self, request: Request) -> None:
        self.active[request.gateway][request.replica] -= 1


class RoundRobin:
    """Envoy's ROUND_ROBIN with equal weights: each gateway pod's own turn, from a random first endpoint."""

    def __init__(self, replicas: int, gateways: int, rng: random.Random) -> None:
        self.next = [rng.randrange(replicas) for _ in range(gateways)]

    def pick(self, request: Request, replicas: Sequence[Replica]) -> int:
        chosen = self.next[request.gateway]
        self.next[request.gateway] = (chosen + 1) % len(replicas)
        return chosen

    def finished(self, request: Request) -> None:
        pass


class InferenceAware:
    """The Inference Extension's endpoint picker as its inferencepool chart configures it by default
    (config/charts/inferencepool/templates/epp-config.yaml): queue-scorer and kv-cache-utilization-scorer at
    equal weight, summed, the highest score picked (max-score-picker: shuffled, then sorted, so ties are
    random). queue-scorer: (max queue − queue) / (max queue − min queue) over the endpoints, 1 for all when the
    queues are equal; kv-cache-utilization-scorer: 1 − utilisation. Both read the snapshot refreshed every
    EPP_REFRESH_SECONDS. Its prefix-cache-scorer is left out: these requests share no prefixes, so it would
    score every endpoint the same. Its saturation detector and flow control are off (requests are critical)."""

    def __init__(self, replicas: int, gateways: int, rng: random.Random) -> None:
        self.rng = rng
        self.queues = [0] * replicas
        self.usage = [0.0] * replicas

    def refresh(self, replicas: Sequence[Replica]) -> None:
        self.queues = [len(r.waiting) for r in replicas]
        self.usage = [r.kv_usage for r in replicas]

    def scores(self) -> list[float]:
        low, high = min(self.queues), max(self.queues)
        queue = [1.0 if high == low else (high - q) / (high - low) for q in self.queues]
        return [q + (1 - u) for q, u in zip(queue, self.usage, strict=True)]

    def pick(self, request: Request, replicas: Sequence[Replica]) -> int:
        scores = self.scores()
        best = max(scores)
        return self.rng.choice([i for i, s in enumerate(scores) if s == best])

    def finished(self, request: Request) -> None:
        pass


Policy = LeastRequest | RoundRobin | InferenceAware
POLICY_CLASSES: dict[str, type[Policy]] = {
    "least-request": LeastRequest,
    "round-robin": RoundRobin,
    "inference-aware": InferenceAware,
}


@dataclass
class Outcome:
    ttfts: list[float]  # per request, in arrival order
    peak_held: list[int]  # per replica: the most KV tokens it held at once
    preemptions: int
    measured: list[float] = field(default_factory=list)  # the TTFTs of requests after the warm-up
    blind_picks: int = 0  # requests sent to a nearly full KV cache while another replica had room (FULL, ROOMY)

    def percentile(self, p: float) -> float:
        """Nearest rank."""
        ordered = sorted(self.measured)
        return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def simulate(
    engine: Engine,
    policy_name: str,
    requests: Sequence[Request],
    replicas: int,
    gateways: int,
    seed: int,
    warmup: float = 0.0,
) -> Outcome:
    """Run `requests` (not modified: each run copies them) through `replicas` replicas until every request has
    its first token."""
    pending = [Request(r.id, r.arrival, r.prompt, r.output, r.gateway) for r in requests]
    servers = [Replica(engine) for _ in range(replicas)]
    policy = POLICY_CLASSES[policy_name](replicas, gateways, random.Random(f"{seed}:{policy_name}"))
    refresh = policy.refresh if isinstance(policy, InferenceAware) else None
    next_refresh = 0.0
    steps: list[tuple[float, int]] = []  # (end time, replica): the steps under way
    firsts, arrivals, blind = 0, 0, 0

    def start(index: int, now: float) -> None:
        seconds = servers[index].start_step()
        servers[index].busy = seconds > 0
        if seconds:
            heapq.heappush(steps, (now + seconds, index))

    while firsts < len(pending):
        arrival = pending[arrivals].arrival if arrivals < len(pending) else math.inf
        now = min(arrival, steps[0][0]) if steps else arrival
        if refresh is not None and now >= next_refresh:
            # The state since the last event is the state at every scrape before `now`.
            refresh(servers)
            next_refresh = (math.floor(now / EPP_REFRESH_SECONDS) + 1) * EPP_REFRESH_SECONDS
        if arrival <= now:
            request = pending[arrivals]
            arrivals += 1
            request.replica = policy.pick(request, servers)
            if servers[request.replica].kv_usage > FULL and any(s.kv_usage < ROOMY for s in servers):
                blind += 1
            servers[request.replica].waiting.append(request)
            if not servers[request.replica].busy:
                start(request.replica, now)
            continue
        _, index = heapq.heappop(steps)
        first_tokens, finished = servers[index].end_step(now)
        firsts += first_tokens
        for request in finished:
            policy.finished(request)
        start(index, now)

    ttfts = [r.first_token - r.arrival for r in pending if r.first_token is not None]
    return Outcome(
        ttfts=ttfts,
        peak_held=[s.peak_held for s in servers],
        preemptions=sum(s.preemptions for s in servers),
        measured=[r.first_token - r.arrival for r in pending if r.first_token is not None and r.arrival >= warmup],
        blind_picks=blind,
    )


def run_rate(
    engine: Engine,
    workload: Workload,
    rate: float,
    replicas: int,
    gateways: int,
    seed: int,
    duration: float,
    warmup: float,
    policies: Sequence[str] = POLICIES,
) -> dict[str, Outcome]:
    """The same requests through each policy."""
    requests = workload.requests(rate, duration, gateways, random.Random(f"{seed}:{rate}"))
    return {name: simulate(engine, name, requests, replicas, gateways, seed, warmup) for name in policies}


def highest_rate_within(results: dict[float, dict[str, Outcome]], policy: str, limit: float) -> float | None:
    """The highest rate up to which (every lower rate included) the policy keeps P99 TTFT within `limit`."""
    best = None
    for rate in sorted(results):
        if results[rate][policy].percentile(99) > limit:
            break
        best = rate
    return best


def assumptions(served: Served, engine: Engine, replicas: int, gateways: int, sample: Sequence[Request]) -> str:
    fit, sheet = served.fit, DATASHEETS[served.fit.gpu.accelerator]
    decode = engine.step_seconds(1, 0)
    workload = Workload(engine.context)
    prompts = sum(r.prompt for r in sample) / len(sample)
    outputs = sum(r.output for r in sample) / len(sample)
    return "\n".join(
        [
            "A model, not a measurement: vLLM's benchmark_serving on one replica would calibrate it "
            "(benchmarks/balancing.py's docstring says how).",
            f"replicas: {replicas} of {served.stack}'s {served.model} (minReplicas {served.min_replicas}, maxReplicas "
            f"{served.max_replicas}), each {fit.tensor_parallel} × {fit.gpu.accelerator}, context {fit.context}; "
            f"{gateways} gateway pods, each an Envoy of its own",
            f"  KV cache {engine.cache_tokens} tokens a replica (llm_mesh/plan/gpu_fit.py), at most "
            f"{engine.max_num_seqs} sequences and {engine.max_batched_tokens} tokens a step (vLLM's defaults)",
            f"engine step: max(memory, compute) = max((weights {engine.weight_bytes / 1e9:.2f} GB + KV held × "
            f"{engine.kv_bytes_per_token / 1024:.0f} KiB) / {engine.bytes_per_s / 1e9:.0f} GB/s, "
            f"2 × {engine.parameters / 1e9:.2f}e9 FLOPs × tokens / {engine.flops / 1e12:.1f} TFLOPS)",
            f"  {sheet.source}; assumed efficiencies {engine.bytes_per_s / sheet.memory_bytes_per_s:.2f} "
            f"and {engine.flops / (sheet.bf16_dense_flops * fit.tensor_parallel):.2f}: a lone decode step "
            f"{decode * 1000:.0f} ms ({1 / decode:.1f} tokens/s), prefill {engine.flops / (2 * engine.parameters):.0f} "
            "tokens/s",
            f"lengths: log-normal, means {workload.mean_prompt:g} prompt / {workload.mean_output:g} output tokens "
            f"(ShareGPT, Kwon et al. SOSP 2023, fig. 11), sigma {workload.sigma:g} (assumed), capped at the "
            f"context; this run's means {prompts:.0f} / {outputs:.0f}",
            "arrivals: Poisson; TTFT: arrival at the gateway to the end of the step that completes the prefill "
            "(no network, gateway or picker latency; no autoscaling, canary split or prefix caching)",
        ]
    )


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="TTFT under three balancers: a model of a stack's replicas")
    parser.add_argument("--stack", default="prod")
    parser.add_argument("--model", help="a model of the stack (default: its first)")
    parser.add_argument("--replicas", type=int, help="default: the model's maxReplicas")
    parser.add_argument("--gateways", type=int, help="gateway pods, each its own Envoy (default: the stack's)")
    parser.add_argument("--rates", help="requests/s, comma-separated (default: per-replica rates × replicas)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--duration", type=float, default=1200.0, help="seconds of arrivals at each rate")
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds of arrivals left out of the figures")
    parser.add_argument("--ttft-limit", type=float, default=TTFT_LIMIT_SECONDS, help="P99 TTFT limit, seconds")
    parser.add_argument("--bandwidth-efficiency", type=float, default=BANDWIDTH_EFFICIENCY)
    parser.add_argument("--flops-efficiency", type=float, default=FLOPS_EFFICIENCY)
    options = parser.parse_args(argv)
    if not 0 <= options.warmup < options.duration:
        parser.error("--warmup must be at least 0 and less than --duration: the figures are of what arrives between")

    started = time.perf_counter()
    model = served(options.stack, options.model)
    replicas = options.replicas or model.max_replicas
    gateways = options.gateways or model.gateways
    if options.rates:
        rates = [float(r) for r in options.rates.split(",")]
    else:
        rates = [round(r * replicas, 2) for r in RATES_PER_REPLICA]
    engine = Engine.of(model.fit, options.bandwidth_efficiency, options.flops_efficiency)
    workload = Workload(engine.context)
    sample = workload.requests(max(rates), options.duration, gateways, random.Random(f"{options.seed}:{max(rates)}"))
    print(assumptions(model, engine, replicas, gateways, sample))
    print()
    print(
        f"TTFT in seconds, P50 / P99 of the requests arriving from {options.warmup:g} s to {options.duration:g} s "
        f"(seed {options.seed})"
    )
    print(f"{'rate/s':>7} {'/replica':>8}" + "".join(f"  {name:>19}" for name in POLICIES))
    results: dict[float, dict[str, Outcome]] = {}
    for rate in rates:
        outcomes = run_rate(engine, workload, rate, replicas, gateways, options.seed, options.duration, options.warmup)
        results[rate] = outcomes
        cells = "".join(
            f"  {_seconds(o.percentile(50)):>9} / {_seconds(o.percentile(99)):>7}" for o in outcomes.values()
        )
        print(f"{rate:>7g} {rate / replicas:>8.3g}{cells}", flush=True)
    print()
    print(f"highest simulated rate with P99 TTFT within {options.ttft_limit:g} s (and at every lower rate):")
    for name in POLICIES:
        best = highest_rate_within(results, name, options.ttft_limit)
        print(f"  {name:<16} " + (f"{best:g} requests/s" if best is not None else "none"))
    print()
    print(
        f"why: requests sent to a replica whose KV cache was over {FULL:.0%} full while another's was under "
        f"{ROOMY:.0%}, of all requests"
    )
    print(f"{'rate/s':>7} {'/replica':>8}" + "".join(f"  {name:>19}" for name in POLICIES))
    for rate, outcomes in results.items():
        shares = "".join(f"  {o.blind_picks / len(o.ttfts):>19.1%}" for o in outcomes.values())
        print(f"{rate:>7g} {rate / replicas:>8.3g}{shares}")
    print(f"simulated in {time.perf_counter() - started:.0f} s")


def _seconds(value: float) -> str:
    return f"{value:.2f}" if value < 100 else f"{value:.0f}"


if __name__ == "__main__":
    main()
