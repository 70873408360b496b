"""Where the tokens of real prompts go, and what to change first.

Give it the calls an application makes (chat messages, an optional system prompt, tool
definitions, and the output text or its token count). It counts tokens by part — system,
history, user, tools, framing (the per-message overhead of the chat format), output —
prices each call with genai-prices, lists the costliest calls, and ranks suggestions by
estimated saving:

- **cache repeated responses**: identical prompts answered again and again;
- **cache the system prompt**: a shared prefix above the provider's caching minimum, billed
  at the cached-input price after its first use (write premium included where charged);
- **trim history**: conversation history above a token budget, billed on every turn;
- **cap max_tokens**: outputs longer than the 95th percentile of the sample;
- **route**: the same calls on a cheaper model of the same provider whose quality score
  (lab/data/models.toml, illustrative) is within 0.1.

Savings are estimates for the calls given (scale with `calls_per_month`); each suggestion
says what it assumes. Token counts for Claude and Gemini are o200k_base estimates.

    report = analyze_calls([{"system": sys_prompt, "messages": chat, "output": answer}],
                           model="gpt-4o")
    report              # renders in a notebook; report.suggestions, report.calls
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lab import fmt
from lab.errors import ConfigError
from lab.models import _table as model_table
from lab.pricing import model_prices
from lab.provider_rules import cache_rules
from lab.tokens import count_messages, encoding_name_for_model, get_encoding, provider_for_model

PARTS = ("system", "history", "user", "tools", "framing", "output")
SYSTEM_ROLES = ("system", "developer")


@dataclass(frozen=True)
class Suggestion:
    """One recommended change with its estimated saving on the analyzed calls."""

    action: str
    detail: str
    saving_usd: float
    saving_pct: float
    calls_affected: int
    assumption: str = ""

    def as_dict(self) -> dict:
        return {"action": self.action, "detail": self.detail, "saving_usd": self.saving_usd,
                "saving_pct": self.saving_pct, "calls_affected": self.calls_affected,
                "assumption": self.assumption}


def _text(value, where: str) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        out = []
        for i, part in enumerate(value):
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                out.append(part["text"])
            elif isinstance(part, dict) and "content" in part:
                out.append(_text(part["content"], f"{where}[{i}]"))
            else:
                raise ConfigError(f"{where}[{i}]: only text parts can be counted")
        return "".join(out)
    raise ConfigError(f"{where}: expected text or a list of text parts, got {type(value).__name__}")


def _split(call: dict, k: int) -> tuple[str, list[dict], dict | None, list[dict]]:
    """(system text, history messages, last user message, messages as sent minus system)."""
    messages = call.get("messages")
    if messages is None and "prompt" in call:
        messages = [{"role": "user", "content": call["prompt"]}]
    if not isinstance(messages, list) or not messages:
        raise ConfigError(f"calls[{k}]: expected 'messages' (a list of {{role, content}}) or 'prompt'")
    system_parts = [_text(call.get("system"), f"calls[{k}].system")] if call.get("system") else []
    rest = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ConfigError(f"calls[{k}].messages[{i}]: expected {{role, content}}")
        if m.get("role") in SYSTEM_ROLES:
            system_parts.append(_text(m.get("content"), f"calls[{k}].messages[{i}].content"))
        else:
            rest.append(m)
    last_user = max((i for i, m in enumerate(rest) if m.get("role") == "user"), default=None)
    user = rest[last_user] if last_user is not None else None
    history = [m for i, m in enumerate(rest) if i != last_user]
    return "\n".join(system_parts), history, user, rest


@dataclass
class TokenReport:
    """Per-call token parts and costs, the costliest calls, and ranked suggestions."""

    calls: pd.DataFrame
    suggestions: list[Suggestion]
    calls_per_month: float | None = None
    notes: list[str] = field(default_factory=list)

    def by_part(self) -> pd.DataFrame:
        """Tokens and cost per part over all calls (input parts at the input price)."""
        rows = []
        total_cost = self.calls["cost_usd"].sum()
        for part in PARTS:
            tokens = int(self.calls[f"{part}_tokens"].sum())
            cost = float(self.calls[f"{part}_cost_usd"].sum())
            rows.append({"part": part, "tokens": tokens, "cost_usd": cost,
                         "cost_share_pct": 100.0 * cost / total_cost if total_cost else 0.0})
        out = pd.DataFrame(rows).set_index("part")
        out["token_share_pct"] = 100.0 * out["tokens"] / max(out["tokens"].sum(), 1)
        return out

    def top_calls(self, n: int = 10) -> pd.DataFrame:
        cols = ["call", "model", "input_tokens", "output_tokens", "cost_usd"] + [f"{p}_tokens" for p in PARTS[:4]]
        return self.calls.sort_values("cost_usd", ascending=False)[cols].head(n)

    def suggestions_table(self) -> pd.DataFrame:
        frame = pd.DataFrame([s.as_dict() for s in self.suggestions])
        if frame.empty:
            return frame
        frame.index = pd.RangeIndex(1, len(frame) + 1, name="priority")
        if self.calls_per_month:
            frame["saving_usd_per_month"] = frame["saving_usd"] * self.calls_per_month / len(self.calls)
        return frame

    def as_dict(self) -> dict:
        return {"calls": len(self.calls), "cost_usd": float(self.calls["cost_usd"].sum()),
                "by_part": self.by_part().reset_index().to_dict(orient="records"),
                "suggestions": self.suggestions_table().to_dict(orient="records"), "notes": self.notes}

    def _repr_html_(self) -> str:
        total = self.calls["cost_usd"].sum()
        parts = self.by_part()
        text = fmt.html_text
        sug = "".join(f"<li><b>{text(s.action)}</b>: {text(s.detail)} — saves about "
                      f"{text(fmt.usd(s.saving_usd))} ({s.saving_pct:.1f} %) on {s.calls_affected} call(s)</li>"
                      for s in self.suggestions)
        return (f"<div><p>{len(self.calls)} calls, {text(fmt.usd(total))}</p>"
                f"{fmt.html_markup(parts.to_html(float_format=lambda x: f'{x:,.4f}'))}"
                f"<p>Suggestions, biggest saving first:</p><ol>{sug or '<li>nothing to suggest</li>'}</ol>"
                f"<p>Costliest calls:</p>{fmt.html_markup(self.top_calls(5).to_html(index=False))}</div>")


def _count_call(call: dict, k: int, default_model: str, default_provider: str | None) -> dict:
    model = call.get("model", default_model)
    provider = call.get("provider") or default_provider or provider_for_model(model)
    enc = get_encoding(encoding_name_for_model(model))

    def n(text: str) -> int:
        return len(enc.encode_ordinary(text)) if text else 0

    system, history, user, rest = _split(call, k)
    tools = call.get("tools")
    tools_text = json.dumps(tools, separators=(",", ":"), sort_keys=True) if tools else ""
    if provider == "openai":
        as_sent = ([{"role": "system", "content": system}] if system else []) + rest
        chat_tokens = count_messages(as_sent, model, provider)
    else:
        chat_tokens = count_messages(rest, model, provider, system=system or None)
    sys_t = n(system)
    hist_t = sum(n(_text(m.get("content"), f"calls[{k}].history")) for m in history)
    user_t = n(_text(user.get("content"), f"calls[{k}].user")) if user else 0
    tools_t = n(tools_text)
    framing = chat_tokens - sys_t - hist_t - user_t
    if "output_tokens" in call:
        out_t = int(call["output_tokens"])
    else:
        out_t = n(_text(call.get("output", ""), f"calls[{k}].output"))
    input_t = chat_tokens + tools_t
    prices = model_prices(provider, model)
    in_price = float(prices.input.per_token(np.array([input_t]))[0])
    out_price = float(prices.output.per_token(np.array([input_t]))[0])
    row = {"call": call.get("name", call.get("id", k)), "provider": provider, "model": model,
           "system_tokens": sys_t, "history_tokens": hist_t, "user_tokens": user_t, "tools_tokens": tools_t,
           "framing_tokens": framing, "output_tokens": out_t, "input_tokens": input_t,
           "max_tokens": call.get("max_tokens"), "input_price_usd": in_price, "output_price_usd": out_price,
           "prefix_text": system + "\x00" + tools_text, "prompt_key": json.dumps([system, rest, tools_text],
                                                                                default=str, sort_keys=True)}
    for part in PARTS[:5]:
        row[f"{part}_cost_usd"] = row[f"{part}_tokens"] * in_price
    row["output_cost_usd"] = out_t * out_price
    row["cost_usd"] = float(prices.cost_usd([input_t], [out_t])[0])
    return row


def analyze_calls(calls, model: str = "gpt-4o-mini", provider: str | None = None, *,
                  history_budget_tokens: int = 1000, calls_per_month: float | None = None,
                  max_quality_drop: float = 0.1) -> TokenReport:
    """Count, price and rank savings for a list of calls (dicts; see the module docstring).

    A call: `messages` (chat messages; `role: system` ones count as system) or `prompt`;
    optional `system`, `tools` (definitions, counted as their compact JSON), `output` text
    or `output_tokens`, `max_tokens`, `model`, `provider`, `name`.
    """
    if not isinstance(calls, (list, tuple)) or not calls:
        raise ConfigError("calls: expected a non-empty list of calls")
    frame = pd.DataFrame([_count_call(c, k, model, provider) for k, c in enumerate(calls)])
    total = float(frame["cost_usd"].sum())
    suggestions = [s for s in (
        _suggest_response_cache(frame, total), _suggest_prefix_cache(frame, total),
        _suggest_trim_history(frame, total, history_budget_tokens), _suggest_cap_output(frame, total),
        _suggest_route(frame, total, max_quality_drop)) if s is not None and s.saving_usd > 0]
    suggestions.sort(key=lambda s: -s.saving_usd)
    notes = []
    if (frame["provider"] != "openai").any():
        notes.append("Claude and Gemini token counts are o200k_base estimates (their tokenizers are not public).")
    if (frame["tools_tokens"] > 0).any():
        notes.append("Tool definitions are counted as compact JSON; providers wrap them in their own format.")
    return TokenReport(frame.drop(columns=["prefix_text", "prompt_key"]), suggestions, calls_per_month, notes)


def _pct(saving: float, total: float) -> float:
    return 100.0 * saving / total if total else 0.0


def _suggest_response_cache(frame: pd.DataFrame, total: float) -> Suggestion | None:
    groups = frame.groupby(["provider", "model", "prompt_key"]).indices
    saving, affected, biggest = 0.0, 0, 0
    for idx in groups.values():
        if len(idx) > 1:
            saving += float(frame["cost_usd"].to_numpy()[idx[1:]].sum())
            affected += len(idx) - 1
            biggest = max(biggest, len(idx))
    if not affected:
        return None
    return Suggestion("cache repeated responses",
                      f"{affected} call(s) repeat an earlier prompt exactly (up to {biggest} times); "
                      f"a response cache answers them without a model call",
                      saving, _pct(saving, total), affected,
                      "deterministic prompts (temperature 0, no per-user data); cache hits cost nothing")


def _suggest_prefix_cache(frame: pd.DataFrame, total: float) -> Suggestion | None:
    saving, affected, prefix_tokens = 0.0, 0, 0
    blocked = []
    for (provider, model, _), idx in frame.groupby(["provider", "model", "prefix_text"]).indices.items():
        rows = frame.iloc[idx]
        tokens = int(rows["system_tokens"].iloc[0] + rows["tools_tokens"].iloc[0])
        if len(idx) < 2 or tokens == 0:
            continue
        rules = cache_rules(provider, model)
        if not rules.supports_caching or tokens < rules.min_cacheable_tokens:
            blocked.append(tokens)
            continue
        prices = model_prices(provider, model)
        if prices.cache_read is None:
            continue
        block = max(1, rules.increment_tokens)
        cached = (tokens // block) * block
        inp = rows["input_tokens"].to_numpy()
        read = (prices.input.per_token(inp) - prices.cache_read.per_token(inp)) * cached
        write_premium = 0.0
        if prices.cache_write is not None:
            write_premium = float((prices.cache_write.per_token(inp[:1]) - prices.input.per_token(inp[:1]))[0] * cached)
        saving += float(read[1:].sum()) - write_premium
        affected += len(idx) - 1
        prefix_tokens = max(prefix_tokens, tokens)
    if not affected:
        return None
    auto = "OpenAI and Gemini cache automatically: keep the prefix byte-identical and first" \
        if (frame["provider"] != "anthropic").all() else "mark a cache breakpoint after the system prompt (Anthropic)"
    return Suggestion("cache the system prompt",
                      f"{affected} call(s) resend a {prefix_tokens:,}-token system prompt/tool prefix; {auto}",
                      saving, _pct(saving, total), affected,
                      "calls arrive within the cache's lifetime (5 min for OpenAI/Anthropic); "
                      "one cache write per prefix")


def _suggest_trim_history(frame: pd.DataFrame, total: float, budget: int) -> Suggestion | None:
    excess = np.maximum(frame["history_tokens"].to_numpy() - budget, 0)
    affected = int((excess > 0).sum())
    if not affected:
        return None
    saving = float((excess * frame["input_price_usd"].to_numpy()).sum())
    return Suggestion("trim history",
                      f"{affected} call(s) carry more than {budget:,} tokens of history (up to "
                      f"{int(frame['history_tokens'].max()):,}); keep the recent turns and summarise the rest",
                      saving, _pct(saving, total), affected,
                      f"history cut to {budget:,} tokens per call; the summary itself is not priced")


def _suggest_cap_output(frame: pd.DataFrame, total: float) -> Suggestion | None:
    out = frame["output_tokens"].to_numpy()
    if len(out) < 5:
        return None
    cap = int(np.ceil(np.percentile(out, 95)))
    excess = np.maximum(out - cap, 0)
    affected = int((excess > 0).sum())
    uncapped = int(frame["max_tokens"].isna().sum())
    if not affected:
        return None
    saving = float((excess * frame["output_price_usd"].to_numpy()).sum())
    return Suggestion("cap max_tokens",
                      f"set max_tokens to about {cap:,} (95th percentile of these outputs) and ask for concise "
                      f"answers; {affected} call(s) ran longer" + (f", {uncapped} set no cap" if uncapped else ""),
                      saving, _pct(saving, total), affected,
                      "the longest answers would be shorter, not truncated mid-sentence: check quality")


def _suggest_route(frame: pd.DataFrame, total: float, max_drop: float) -> Suggestion | None:
    table = model_table()["models"]
    best = None
    for (provider, model), idx in frame.groupby(["provider", "model"]).indices.items():
        own = table.get(f"{provider}/{model}")
        if own is None:
            continue
        rows = frame.iloc[idx]
        current = float(rows["cost_usd"].sum())
        for key, info in table.items():
            p, m = key.split("/", 1)
            if p != provider or m == model or info["quality"] < own["quality"] - max_drop - 1e-9:
                continue
            cost = float(model_prices(p, m).cost_usd(rows["input_tokens"].to_numpy(),
                                                     rows["output_tokens"].to_numpy()).sum())
            if cost < current and (best is None or current - cost > best[0]):
                best = (current - cost, model, m, len(idx), own["quality"], info["quality"])
    if best is None:
        return None
    saving, src, dst, n, q_src, q_dst = best
    return Suggestion("route to a cheaper model",
                      f"send the {n} {src} call(s) to {dst} (quality score {q_dst:.2f} vs {q_src:.2f})",
                      saving, _pct(saving, total), n,
                      "quality scores in lab/data/models.toml are illustrative: run your own evals first")

