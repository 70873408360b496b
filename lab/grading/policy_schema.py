"""Policy schema: what a submission may hand the grader — the pipeline (stages and their parameters).

A policy is data, never code: a JSON object

    {"costlab_policy": 1, "challenge": "b1-first-cache",
     "pipeline": [{"stage": "cache", "capacity": 5000}], "model": "gpt-4o-mini"}

checked here against the stage registry (`lab.stages`) by building the challenge's scenario
with the policy's pipeline (`lab.scenario_from_dict`), so every stage another part of costlab
registers is accepted with its own validation. Fields that describe the world rather than a
choice (how slow a cache hit is, how often a semantic hit is wrong, a provider's cache TTL)
are locked: a policy may not set them. Each stage declares its own (`WORLD_FIELDS` in its
module, read through `lab.stages.world_fields`).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path

from lab.config import did_you_mean
from lab.errors import CostlabError, PricingError, ScenarioError
from lab.fmt import plain_text
from lab.loader import scenario_from_dict
from lab.pricing import model_prices
from lab.stages import stage_names, world_fields
from lab.stages.prompt_cache import PROVIDER_RULES

POLICY_VERSION = 1
MAX_POLICY_BYTES = 64 * 1024
MAX_NESTING = 16            # a policy is a list of flat stage tables; deeper is refused before decoding
MAX_INT_DIGITS = 30
MAX_KEY_CHARS = 100
MAX_TEXT_CHARS = 1000
MAX_MESSAGE_CHARS = 400
POLICY_KEYS = ("costlab_policy", "challenge", "pipeline", "model", "note")


class PolicyError(CostlabError):
    """A policy the grader cannot accept: one line saying which field and what was expected.

    The message quotes the learner's text, so it is escaped and cut (`lab.fmt.plain_text`) here.
    """

    def __init__(self, message: str):
        super().__init__(plain_text(message, MAX_MESSAGE_CHARS))


@dataclass(frozen=True)
class Policy:
    """A validated policy: the pipeline (as TOML-shaped tables) and an optional model choice."""

    pipeline: tuple[dict, ...]
    model: str | None = None

    def as_dict(self, challenge_id: str | None = None) -> dict:
        out = {"costlab_policy": POLICY_VERSION}
        if challenge_id:
            out["challenge"] = challenge_id
        out["pipeline"] = [dict(s) for s in self.pipeline]
        if self.model:
            out["model"] = self.model
        return out

    @property
    def stages(self) -> list[str]:
        return [s["stage"] for s in self.pipeline]


def read_policy_file(path, challenge) -> Policy:
    """Read a policy file (size-capped JSON), then validate it."""
    p = Path(path)
    if not p.is_file():
        raise PolicyError(no_policy_message(p))
    if p.stat().st_size > MAX_POLICY_BYTES:
        raise PolicyError(f"policy: file is {p.stat().st_size:,} bytes, over the {MAX_POLICY_BYTES:,}-byte limit")
    return parse_policy_bytes(p.read_bytes(), challenge)


def no_policy_message(path) -> str:
    return (f"no policy: the notebook wrote no file at {path} (call lab.policy.submit(pipeline, path=policy_path); "
            "policy_path is the papermill parameter the grader sets)")


def _nesting(text: str) -> int:
    """How deep arrays and objects nest (brackets inside strings counted too: an upper bound)."""
    depth = deepest = 0
    for ch in text:
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def _whole_number(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise PolicyError(f"policy: a number of {len(text):,} digits: at most {MAX_INT_DIGITS} are accepted")
    return int(text)


def _no_constant(name: str):
    raise PolicyError(f"policy: {name} is not a number a policy may use")


def _check_values(obj, where: str = "policy") -> None:
    """Keys short and text free of lone surrogates, everywhere in the decoded policy."""
    if isinstance(obj, str):
        if len(obj) > MAX_TEXT_CHARS:
            raise PolicyError(f"{where}: a text of {len(obj):,} characters: at most {MAX_TEXT_CHARS:,}")
        if any("\ud800" <= c <= "\udfff" for c in obj):
            raise PolicyError(f"{where}: text holds a lone surrogate ({plain_text(obj, 40)}): not valid Unicode")
    elif isinstance(obj, dict):
        for key, value in obj.items():
            if len(key) > MAX_KEY_CHARS:
                raise PolicyError(f"{where}: a key of {len(key):,} characters ({plain_text(key, 40)}): "
                                  f"keys have at most {MAX_KEY_CHARS}")
            _check_values(key, where)
            _check_values(value, f"{where}.{plain_text(key, 40)}")
    elif isinstance(obj, list):
        for k, value in enumerate(obj):
            _check_values(value, f"{where}[{k}]")


def parse_policy_bytes(data: bytes, challenge) -> Policy:
    """Decode a policy file's bytes as JSON (bounded: size, nesting, digits, key length) and validate it."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(f"policy: not UTF-8 text (byte {exc.start})") from None
    if _nesting(text) > MAX_NESTING:
        raise PolicyError(f"policy: nested more than {MAX_NESTING} levels deep: a policy is a flat list of stages")
    try:
        obj = json.loads(text, parse_int=_whole_number, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise PolicyError(f"policy: not valid JSON (line {exc.lineno} column {exc.colno}: {exc.msg})") from None
    except (ValueError, RecursionError) as exc:
        raise PolicyError(f"policy: not valid JSON ({plain_text(exc, 120)})") from None
    _check_values(obj)
    return parse_policy(obj, challenge)


def parse_policy(data, challenge) -> Policy:
    """Check a policy dict against the challenge's rules and the stage registry."""
    if isinstance(data, list):
        data = {"pipeline": data}
    if not isinstance(data, dict):
        raise PolicyError(f"policy: expected a JSON object with a pipeline, got {type(data).__name__}")
    for key in data:
        if key not in POLICY_KEYS:
            raise PolicyError(f"policy: {key}: unknown field{did_you_mean(key, POLICY_KEYS)} "
                              f"(a policy has {', '.join(POLICY_KEYS)})")
    if data.get("challenge") not in (None, challenge.id):
        raise PolicyError(f"policy: challenge: this policy is for {data['challenge']!r}, not {challenge.id!r}")
    pipeline = data.get("pipeline")
    if not isinstance(pipeline, list):
        raise PolicyError("policy: pipeline: expected an array of stage tables, e.g. [{\"stage\": \"cache\"}]")
    if len(pipeline) > challenge.max_stages:
        raise PolicyError(f"policy: pipeline: {len(pipeline)} stages, this challenge allows at most "
                          f"{challenge.max_stages}")
    for k, stage in enumerate(pipeline):
        _check_stage(k, stage, challenge)
    model = data.get("model")
    if model is not None:
        _check_model(model, challenge)
    policy = Policy(pipeline=tuple(copy.deepcopy(s) for s in pipeline), model=model)
    build_scenario(challenge, policy)      # every stage's own validation, via the scenario reader
    return policy


def _check_stage(k: int, stage, challenge) -> None:
    where = f"policy: pipeline[{k}]"
    if not isinstance(stage, dict):
        raise PolicyError(f"{where}: expected a table like {{\"stage\": \"cache\"}}, got {stage!r:.60}")
    name = stage.get("stage")
    known = stage_names()
    if not isinstance(name, str) or name not in known:
        raise PolicyError(f"{where}.stage: unknown stage {name!r}: expected one of {', '.join(known)}"
                          f"{did_you_mean(str(name), known)}")
    if challenge.allowed_stages and name not in challenge.allowed_stages:
        raise PolicyError(f"{where}.stage: {name!r} is not allowed in this challenge "
                          f"(allowed: {', '.join(challenge.allowed_stages)})")
    locked = set(world_fields(name))
    locked |= {f.split(".", 1)[1] for f in challenge.locked_fields if f.startswith(f"{name}.")}
    for key in stage:
        if key in locked:
            raise PolicyError(f"{where}.{key}: describes the world, not your policy: the challenge fixes it "
                              "(remove it)")
    for key, limit in challenge.max_values:
        sname, fname = key.split(".", 1)
        if sname == name:
            value = stage.get(fname)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value > limit:
                raise PolicyError(f"{where}.{fname}: this challenge requires it, at most {limit:g} "
                                  f"(got {value!r})")
    for key, allowed in _allowed_values(challenge).items():
        sname, fname = key.split(".", 1)
        if sname == name and fname in stage and stage[fname] not in allowed:
            raise PolicyError(f"{where}.{fname}: expected one of {', '.join(map(repr, allowed))} in this "
                              f"challenge, got {stage[fname]!r}")


def _allowed_values(challenge) -> dict[str, tuple]:
    """Prompt caching must follow the serving providers' published rules (or "auto")."""
    providers = challenge.scenario.get("providers") or [{}]
    rules = sorted({PROVIDER_RULES.get(p.get("name"), "") for p in providers} - {""})
    out = {"prompt_cache.rules": ("auto", *rules)}
    out.update(dict(challenge.allowed_values))
    return out


def _check_model(model, challenge) -> None:
    provider = (challenge.scenario.get("providers") or [{}])[0]
    if not isinstance(model, str):
        raise PolicyError(f"policy: model: expected a model id string, got {model!r:.60}")
    try:
        model_prices(provider.get("name", "openai"), model)
    except PricingError as exc:
        raise PolicyError(f"policy: model: unknown model {model!r}: {exc}") from None
    if model != provider.get("model") and model not in challenge.models:
        allowed = ", ".join(challenge.models) if challenge.models else f"it is fixed to {provider.get('model')!r}"
        raise PolicyError(f"policy: model: {model!r} is not allowed in this challenge ({allowed})")


def scenario_dict(challenge, policy: Policy) -> dict:
    """The challenge's scenario with the policy's pipeline, model and the challenge's SLA."""
    data = copy.deepcopy(challenge.scenario)
    data["pipeline"] = [dict(s) for s in policy.pipeline]
    data["sla"] = {"p95_ms": challenge.goal.sla_p95_ms}
    data.setdefault("name", challenge.id)
    if policy.model:
        data["providers"] = [dict(p) for p in data.get("providers", [])]
        data["providers"][0]["model"] = policy.model
    return data


def build_scenario(challenge, policy: Policy):
    """A `lab.Scenario` for this policy; a bad stage field becomes a PolicyError naming it."""
    try:
        return scenario_from_dict(scenario_dict(challenge, policy), path=challenge.scenario_path)
    except ScenarioError as exc:
        if exc.field.startswith(("pipeline", "providers")):
            raise PolicyError(f"policy: {exc.field}: {exc.expected}") from None
        raise
