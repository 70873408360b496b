"""Who spent what, and which strategy saved it: cost, savings and requests by any ledger column.

Every ledger row carries what it cost (`cost_usd`) and what it would have cost with no
optimization (`baseline_cost_usd`), so its saving is the difference. Each row's saving goes
to exactly one *responsible stage*, read from the `stage_<name>` flags and the outcome:

- a `cache_hit` row to the cache (or semantic cache) that answered it;
- a `deduplicated` row to dedup; a `batched` row to the batch stage;
- an `ok` row to the last stage that changed it (the one closest to the provider: router,
  budget downgrade, retry/fallback); an unflagged `ok` row to the cascade if there is one
  (its cheap model kept the answer);
- a prompt-cached row is split: the prompt cache gets the discount on the served model
  (that model's uncached price, from genai-prices, minus the cost) and the stage that
  chose a different model — or "other" — gets the rest (usually zero);
- an `error`/`rejected` row with no rejecting stage (budget, rate limit, breaker) to
  "not served", and anything else that differs from its baseline to "other".

So savings by strategy always add up to the total saving (`sum(baseline) - sum(cost)`).
"""

from __future__ import annotations

import difflib

import numpy as np
import pandas as pd

from lab.analysis.frame import as_ledger, served_mask, stage_columns
from lab.errors import ConfigError
from lab.pricing import model_prices

NOT_SERVED = "not served"
OTHER = "other"
NO_STAGE = "none"

#: stage base name -> the strategy it belongs to, as a team lead would name it
STRATEGY_OF_STAGE = {
    "cache": "cache", "semantic_cache": "semantic cache", "dedup": "dedup", "batch_api": "batch",
    "batch": "batch", "prompt_cache": "prompt cache", "router": "routing", "budget": "budget",
    "rate_limit": "rate limit", "circuit_breaker": "circuit breaker", "breaker": "circuit breaker",
    "retry": "retry",
}
#: which stages may claim a row with this outcome, by stage base name
_CLAIMS = {
    "cache_hit": ("cache", "semantic_cache"),
    "deduplicated": ("dedup", "cache"),          # a coalescing cache also holds requests
    "batched": ("batch_api", "batch"),
    "rejected": ("budget", "rate_limit", "circuit_breaker", "breaker"),
    "ok": None,                                   # any stage that touched it
    "error": (),                                  # a failure saves nothing on purpose
}
#: every grouping `attribute` understands besides plain ledger columns
DERIVED_KEYS = ("team", "stage", "strategy")


def base_stage_name(name: str) -> str:
    """`cache_2` -> `cache` (the second cache in a pipeline), `prompt_cache` stays."""
    head, _, tail = name.rpartition("_")
    return head if head and tail.isdigit() else name


def strategy_of(stage: str) -> str:
    """The strategy a stage belongs to (`prompt_cache` -> "prompt cache")."""
    if stage in (NOT_SERVED, OTHER, NO_STAGE):
        return stage
    base = base_stage_name(stage)
    return STRATEGY_OF_STAGE.get(base, base.replace("_", " "))


def savings_usd(ledger) -> np.ndarray:
    """What each row saved: its baseline cost minus its cost (negative when it cost more)."""
    ledger = as_ledger(ledger)
    return ledger["baseline_cost_usd"].to_numpy(np.float64) - ledger["cost_usd"].to_numpy(np.float64)


def _uncached_cost_usd(ledger: pd.DataFrame, rows: np.ndarray) -> np.ndarray:
    """What `rows` would cost on their served model with no prompt caching (genai-prices)."""
    out = ledger["cost_usd"].to_numpy(np.float64)[rows].copy()
    sub = ledger.iloc[rows]
    for (provider, model), idx in sub.groupby(["provider", "model"], observed=True).indices.items():
        prices = model_prices(str(provider), str(model))
        part = sub.iloc[idx]
        out[idx] = prices.cost_usd(part["input_tokens"].to_numpy(), part["output_tokens"].to_numpy())
    return out


def responsible_stages(ledger) -> pd.DataFrame:
    """Per row: the stage its saving is attributed to, and the amount (`stage`, `saved_usd`).

    Rows whose saving is split (a prompt cache plus a model change) appear twice, one row per
    share, so the result can have more rows than the ledger; `saved_usd` sums to the total.
    """
    ledger = as_ledger(ledger)
    n = len(ledger)
    cols = stage_columns(ledger)
    names = [c.removeprefix("stage_") for c in cols]
    bases = [base_stage_name(s) for s in names]
    saved = savings_usd(ledger)
    flags = (np.column_stack([ledger[c].to_numpy(bool) for c in cols]) if cols
             else np.zeros((n, 0), dtype=bool))
    outcome = ledger["outcome"].astype(str).to_numpy()
    owner = np.full(n, -1, dtype=np.int64)           # index into names, -1 none
    for out_value, claimers in _CLAIMS.items():
        rows = outcome == out_value
        if not rows.any() or not cols:
            continue
        allowed = np.array([claimers is None or b in claimers for b in bases])
        owner[rows] = _last_flagged(flags[rows] & allowed)
    cascade = _first_index(bases, "cascade")
    if cascade >= 0:  # a cascade saves on every request its cheap model kept, flagged or not
        owner[(owner < 0) & (outcome == "ok") & served_mask(ledger)] = cascade
    amount = saved.copy()
    extra_stage, extra_amount, extra_index = [], [], []

    # prompt-cached rows: the cache gets the discount on the served model, the rest (a cheaper
    # model chosen by a router, budget downgrade or cascade) goes to the stage that chose it
    pc_cols = [k for k, b in enumerate(bases) if b == "prompt_cache"]
    if pc_cols:
        pc_rows = np.flatnonzero(flags[:, pc_cols].any(axis=1) & (outcome == "ok") & served_mask(ledger))
        if len(pc_rows):
            pc_share = _uncached_cost_usd(ledger, pc_rows) - ledger["cost_usd"].to_numpy(np.float64)[pc_rows]
            rest = saved[pc_rows] - pc_share
            non_pc = flags[pc_rows] & ~np.isin(np.arange(len(names)), pc_cols)
            rest_owner = _last_flagged(non_pc)
            if cascade >= 0:
                rest_owner = np.where(rest_owner < 0, cascade, rest_owner)
            pc_idx = np.array(pc_cols)
            pc_owner = pc_idx[np.argmax(flags[np.ix_(pc_rows, pc_idx)], axis=1)]      # the first prompt cache flagged
            tol = 1e-12 * np.maximum(1.0, np.abs(saved[pc_rows]))
            split = np.abs(rest) > tol
            owner[pc_rows] = np.where(split, rest_owner, pc_owner)
            amount[pc_rows] = np.where(split, rest, saved[pc_rows])
            unowned = split & (rest_owner < 0)
            owner_labels_rest = np.where(unowned, -2, rest_owner)   # -2: "other"
            owner[pc_rows] = np.where(split, owner_labels_rest, owner[pc_rows])
            extra_index = pc_rows[split]
            extra_stage = np.array(names, dtype=object)[pc_owner[split]]
            extra_amount = pc_share[split]

    labels = np.array(names + [NO_STAGE], dtype=object)[np.where(owner >= 0, owner, len(names))]
    failed = np.isin(outcome, ["error", "rejected"])
    labels[(owner == -1) & failed] = NOT_SERVED
    labels[((owner == -1) & ~failed & (amount != 0)) | (owner == -2)] = OTHER
    main = pd.DataFrame({"stage": labels, "saved_usd": amount}, index=ledger.index)
    if not len(extra_index):
        return main
    extra = pd.DataFrame({"stage": extra_stage, "saved_usd": extra_amount}, index=ledger.index[extra_index])
    return pd.concat([main, extra])


def _last_flagged(flags: np.ndarray) -> np.ndarray:
    """Per row, the index of the last True column (the stage closest to the provider), or -1."""
    if flags.shape[1] == 0:
        return np.full(flags.shape[0], -1, dtype=np.int64)
    last = flags.shape[1] - 1 - np.argmax(flags[:, ::-1], axis=1)
    return np.where(flags.any(axis=1), last, -1).astype(np.int64)


def _first_index(items: list[str], value: str) -> int:
    return items.index(value) if value in items else -1


def savings_by_strategy(ledger, by: str = "strategy") -> pd.DataFrame:
    """Saving per strategy (or per stage with `by="stage"`), adding up to the total saving.

    Columns: `saved_usd`, `requests` (rows it claimed), `share_pct` of the total saving.
    Strategies appear in pipeline order, then "not served", "other" and "none" (rows no stage
    touched) when present, so `requests` also adds up to the ledger's rows (bar split rows).
    """
    ledger = as_ledger(ledger)
    if by not in ("strategy", "stage"):
        raise ConfigError(f"by: expected 'strategy' or 'stage', got {by!r}")
    resp = responsible_stages(ledger)
    codes, names = pd.factorize(resp["stage"])             # map the few distinct names, not every row
    labels = np.array([str(n) if by == "stage" else strategy_of(str(n)) for n in names], dtype=object)
    grouped = resp["saved_usd"].groupby(labels[codes], sort=False).agg(["sum", "size"])
    grouped.columns = ["saved_usd", "requests"]
    order = [s.removeprefix("stage_") for s in stage_columns(ledger)]
    if by == "strategy":
        order = list(dict.fromkeys(strategy_of(s) for s in order))
    order += [NOT_SERVED, OTHER, NO_STAGE]
    grouped = grouped.reindex([k for k in order if k in grouped.index])
    total = float(savings_usd(ledger).sum())
    grouped["share_pct"] = 100.0 * grouped["saved_usd"] / total if total else 0.0
    grouped.index.name = by
    grouped["requests"] = grouped["requests"].astype(np.int64)
    return grouped


def team_column(ledger: pd.DataFrame, teams: dict[str, str] | None) -> pd.Series:
    """Each row's team from a tenant -> team mapping; tenants not in it are "unassigned"."""
    if not teams:
        raise ConfigError("by='team' needs a mapping tenant -> team, e.g. teams={'retail': 'commerce'}")
    tenant = ledger["tenant"].astype(str)
    unknown = sorted(set(teams) - set(tenant.unique()))
    if unknown and len(unknown) == len(teams):
        raise ConfigError(f"teams: none of the tenants {', '.join(unknown)} is in the ledger "
                          f"(its tenants: {', '.join(sorted(tenant.unique()))})")
    return tenant.map(lambda t: teams.get(t, "unassigned")).astype("category").rename("team")


def attribute(ledger, by="tenant", teams: dict[str, str] | None = None) -> pd.DataFrame:
    """Requests, provider calls, tokens, cost, baseline cost and saving per group.

    `by` is a ledger column (`tenant`, `feature`, `provider`, `model`, `outcome`, ...),
    `"team"` (needs `teams`, a tenant -> team mapping), `"stage"` or `"strategy"` (the
    responsible stage of each row's saving), or a list of these. Every numeric column sums
    to the ledger's total, so the table is a partition of the bill.
    """
    ledger = as_ledger(ledger)
    keys = [by] if isinstance(by, str) else list(by)
    if not keys:
        raise ConfigError("by: name at least one column")
    if ("stage" in keys or "strategy" in keys) and len(keys) > 1:
        raise ConfigError("by: 'stage' and 'strategy' cannot be combined with other columns")
    if keys[0] in ("stage", "strategy"):
        return _attribute_by_stage(ledger, keys[0])
    groups = []
    for k in keys:
        if k == "team":
            groups.append(team_column(ledger, teams))
        elif k in ledger.columns:
            groups.append(ledger[k].rename(k))
        else:
            hint = difflib.get_close_matches(k, list(ledger.columns) + list(DERIVED_KEYS), n=1)
            raise ConfigError(f"by: unknown column {k!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                              + f"; expected a ledger column or one of {', '.join(DERIVED_KEYS)}")
    frame = pd.DataFrame({
        "requests": np.ones(len(ledger), dtype=np.int64),
        "provider_calls": served_mask(ledger).astype(np.int64),
        "input_tokens": ledger["input_tokens"].to_numpy(np.int64) if "input_tokens" in ledger else 0,
        "output_tokens": ledger["output_tokens"].to_numpy(np.int64) if "output_tokens" in ledger else 0,
        "cost_usd": ledger["cost_usd"].to_numpy(np.float64),
        "baseline_cost_usd": ledger["baseline_cost_usd"].to_numpy(np.float64),
    }, index=ledger.index)
    out = frame.groupby([g.to_numpy() for g in groups], observed=True, sort=True).sum()
    out.index.names = keys
    return _finish(out)


def _attribute_by_stage(ledger: pd.DataFrame, key: str) -> pd.DataFrame:
    table = savings_by_strategy(ledger, by=key)
    out = pd.DataFrame({"requests": table["requests"], "saved_usd": table["saved_usd"],
                        "share_pct": table["share_pct"]})
    out.index.name = key
    return out


def _finish(out: pd.DataFrame) -> pd.DataFrame:
    out["saved_usd"] = out["baseline_cost_usd"] - out["cost_usd"]
    with np.errstate(divide="ignore", invalid="ignore"):
        out["reduction_pct"] = np.where(out["baseline_cost_usd"] > 0,
                                        100.0 * out["saved_usd"] / out["baseline_cost_usd"], 0.0)
    total = out["cost_usd"].sum()
    out["cost_share_pct"] = 100.0 * out["cost_usd"] / total if total else 0.0
    return out.sort_values("cost_usd", ascending=False)
