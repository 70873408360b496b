"""Cascades: try a cheap model first and escalate only when its answer is not good enough.

The story: request i goes to the first model of `models`; when the answer comes back, a
judge scores it (the quality model's score, plus `judge_noise` if set); below `threshold`
the answer is discarded — but paid for — and the request goes to the next model, and so
on. The last model's answer is always kept. Raising the threshold buys quality with
money: sweeping it traces a cost–quality curve like RouteLLM's (its README reports up to
85 % cost reduction on MT-Bench at 95 % of GPT-4's quality with learned routers).
Needs the quality model: give the traffic a `difficulty` distribution.
"""

from __future__ import annotations

from dataclasses import dataclass

from lab.config import Table
from lab.ledger import OK
from lab.stages.base import Options, Stage

NAME = "cascade"
#: fields that describe the world, not a policy choice (graders lock them)
WORLD_FIELDS = ("judge_noise",)


@dataclass(frozen=True)
class Config(Options):
    stage: str = NAME
    models: tuple[str, ...] = ()      # "provider/model" or model ids of listed providers, cheap first
    threshold: float = 0.8
    judge_noise: float = 0.0          # sd of the judge's error on the quality score


def parse(t: Table) -> Config:
    raw = t.raw("models")
    if not isinstance(raw, list) or len(raw) < 2 or not all(isinstance(m, str) for m in raw):
        t.fail("models", "expected at least two model names of listed providers, cheapest first")
    return Config(models=tuple(raw), threshold=t.probability("threshold", Config.threshold),
                  judge_noise=t.number("judge_noise", Config.judge_noise, min=0.0))


def validate(config: Config, scenario) -> tuple[str, str] | None:
    """(field, problem) when the scenario cannot run this cascade."""
    names = {f"{p.name}/{p.model}" for p in scenario.providers} | {p.model for p in scenario.providers}
    for m in config.models:
        if m not in names:
            return "models", f"{m!r} is not one of the scenario's providers ({', '.join(sorted(names))})"
    if scenario.traffic.difficulty is None:
        return "stage", "a cascade judges answers with the quality model: add [traffic] difficulty = {...}"
    return None


class CascadeStage(Stage):
    name = NAME

    def __init__(self, config: Config, sim, index: int, rng):
        super().__init__(config, sim, index, rng)
        self.chain = [self._provider_index(m) for m in config.models]
        self.step: dict[int, int] = {}
        self.escalations = 0
        self.kept_at = [0] * len(self.chain)

    def _provider_index(self, name: str) -> int:
        for k, p in enumerate(self.sim.providers):
            if name in (p.model, f"{p.name}/{p.model}"):
                return k
        raise ValueError(f"cascade model {name!r} is not a provider")  # validate() prevents this

    def on_request(self, i: int) -> bool:
        self.step[i] = 0
        self.sim.target[i] = self.chain[0]
        return False

    def on_response(self, i: int) -> bool:
        step = self.step.get(i)
        if step is None:
            return False
        sim, run = self.sim, self.sim.run
        if run.outcome[i] != OK or step == len(self.chain) - 1:
            del self.step[i]
            self.kept_at[step] += 1
            if step:
                self.touch(i)
            return False
        score = float(run.quality[i])
        if self.config.judge_noise:
            score += float(self.rng.normal(0.0, self.config.judge_noise))
        if score >= self.config.threshold:
            del self.step[i]
            self.kept_at[step] += 1
            return False
        # not good enough: pay for this answer, then ask the next model
        provider = sim.providers[int(run.provider[i])]
        s = slice(i, i + 1)
        run.extra_cost_usd[i] += float(sim.price_of(provider).cost_usd(
            run.input_tokens[s], run.output_tokens[s], run.cached_input_tokens[s], run.cache_write_tokens[s],
            write_1h=sim.cache_write_1h)[0])
        run.cached_input_tokens[i] = run.cache_write_tokens[i] = 0
        self.step[i] = step + 1
        self.escalations += 1
        self.touch(i)
        sim.target[i] = self.chain[step + 1]
        sim.dispatch(i)
        return True

    def saved_usd(self, result) -> float:
        """Baseline cost minus what the cascade paid (every attempt), over the requests it served."""
        run, base = result.run, result.baseline
        m = (run.answered_by < 0) & (run.outcome == OK)
        return float(base.cost_usd[m].sum() - run.cost_usd[m].sum()) - self._others_saved(result)

    def _others_saved(self, result) -> float:
        """Savings on the same rows already claimed by prompt caching (so nothing is counted twice)."""
        total = 0.0
        for stage in result.stages:
            if stage is not self and stage.name == "prompt_cache":
                total += stage.saved_usd(result)
        return total

    def stats(self) -> dict:
        return {"escalations": self.escalations, "threshold": self.config.threshold,
                "answered_by_step": {m: n for m, n in zip(self.config.models, self.kept_at)}}


Stage = CascadeStage
