# %% [markdown]
# # 11 · Analytics: KPIs, anomalies, forecasts and a report
#
# Once traffic is flowing, the questions change: is the cache still hitting? Did last night's
# deploy make calls dearer? What will next month cost? costlab's analytics work on any ledger —
# simulated, replayed or recorded live: **KPIs** as safe formulas, **alerts**, **anomaly
# detection**, **forecasts**, and a self-contained **report**.
#
# **After this lesson you can**
# - define KPIs as formulas and watch them over time against thresholds
# - detect a cost anomaly and forecast the next day
# - produce the report a cost review starts from
#
# *How to use it:* run the cells in order (Shift-Enter). Before each experiment, answer its
# question in your head; then run it and compare. Every number comes from a simulation you can
# re-run with another `seed`.

# %% tags=["parameters"]
# Parameters (papermill sets these when it runs the notebook headless; keep the "parameters" tag).
requests = 2000   # requests per simulation: small, so every cell runs in a second or two
seed = 0          # the same seed gives the same numbers, bit for bit

# %%
# %matplotlib inline
import lab.plots as plots
from lab import lessons
from lab.analysis import KPI, detect_cost_anomalies, forecast_cost, kpi_table, standard_kpis

# %% [markdown]
# Three days of the support chatbot with a day-night rhythm (about `4 x requests` requests in all).

# %%
days = 3
history = lessons.variant("support-chatbot", {"duration_s": days * 86400,
                                              "traffic.arrivals": {"process": "diurnal", "rate_per_s": 4 * requests / (days * 86400)}})
result = lessons.run(history, seed)
ledger = result.ledger
len(ledger)

# %% [markdown]
# ## Experiment 1: KPIs
# **Question:** which of these would you alert on, and at what level: cost per 1,000 requests,
# cache hit rate, p95 latency, error rate?

# %%
kpi_table(standard_kpis(sla_ms=8000), ledger)[["value", "unit", "status", "warning", "critical", "formula"]]

# %%
hit_rate = KPI("cache hit rate", 'share(outcome == "cache_hit")', "share", warning=0.15, critical=0.1)
plots.kpi_over_time(hit_rate, ledger, bucket_s=3600)

# %% [markdown]
# The hit rate dips at night: fewer requests, so fewer repeats inside the TTL. A threshold that
# ignores the daily cycle alerts every night.

# %% [markdown]
# ## Experiment 2: an incident
# **Question:** a deploy on day 2 tripled prompt sizes for two hours. Would you see it in the
# daily total? Would a detector on hourly cost see it?

# %%
incident = lessons.with_incident(ledger, 36 * 3600, 38 * 3600, factor=3.0)
anomalies = detect_cost_anomalies(incident, bucket_s=3600)
anomalies[anomalies["anomaly"]]

# %%
plots.cost_over_time(incident, bucket_s=3600, anomalies=anomalies, title="Hourly cost, with the incident")

# %% [markdown]
# ## Experiment 3: tomorrow
# **Question:** with a daily cycle in the history, will a forecast be a flat line or a wave? How
# wide should its interval be?

# %%
forecast = forecast_cost(ledger, bucket_s=3600, horizon=24, period_s=86400)
mean_usd, low_usd, high_usd = forecast.total()
print(f"next 24 h: ${mean_usd:.4f} (95 % interval ${low_usd:.4f} to ${high_usd:.4f}), {forecast.method}")

# %%
plots.cost_over_time(ledger, bucket_s=3600, forecast=forecast, title="Hourly cost and the next day")

# %% [markdown]
# ## Experiment 4: the report
# **Question:** what would you put on the first page for a manager?

# %%
import tempfile
from pathlib import Path

from lab.report import build_report

teams = {"retail": "commerce", "travel": "leisure"}
report = build_report(result, frontier=False, teams=teams)
out_dir = report.write(Path(tempfile.mkdtemp(prefix="costlab-")) / "report")
print("open", out_dir / "report.html", "in a browser; the numbers are in report.json")
report

# %%
plots.attribution_bars(result, by="team", teams=teams)

# %% [markdown]
# ## Try it
# The task is shown by the next cell. Change the value(s) below, run the check, repeat until it
# passes. `ex.measure(...)` runs the same small simulation the check runs, so you can explore first.

# %%
ex = lessons.exercise("11")
ex

# %%
formula = "mean(cost_usd)"      # your answer: a KPI formula
ex.check(formula=formula)

# %% [markdown]
# <details><summary>A solution (open after trying)</summary>
#
# ```python
# formula = 'mean(cost_usd where outcome == "ok")'
# ```
# </details>

# %% [markdown]
# ## What to remember
# - KPIs are formulas over the ledger; thresholds must respect daily cycles
# - anomaly detectors look at buckets a daily total hides
# - forecasts need a season in the history, and come with an interval
#
# **Next:** [12 · Live providers: replay by default, live with keys and a budget](12_live_providers.ipynb)
