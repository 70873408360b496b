"""Cost analytics on the ledger: who spent what, what saved it, how sure we are, what comes next.

Every function takes a ledger DataFrame (from a simulation, a replayed trace, a live run or a
file written by `costlab run --ledger`) or a `Result`:

- `attribution`: cost, savings and requests by tenant, team, feature, model, stage, strategy;
- `baselines`: run metrics, comparisons with 95 % CIs across seeds, a store of named baselines;
- `kpi`: KPIs as safe formulas over ledger columns, with thresholds and values over time;
- `alerts`: budget, SLA, cache-hit-rate and circuit-breaker alerts with fire/clear times;
- `anomalies`, `forecast`: cost anomalies (rolling z-score, IQR) and Holt-Winters forecasts;
- `token_analyzer`: tokens by prompt part and ranked savings suggestions for real calls;
- `report`: all of it as an HTML report with charts and a JSON of the numbers.
"""

from lab.analysis.alerts import AlertRules, evaluate_alerts
from lab.analysis.anomalies import detect_cost_anomalies, measure_detector, rolling_iqr, rolling_zscore
from lab.analysis.attribution import attribute, savings_by_strategy
from lab.analysis.baselines import (
           BaselineStore,
           Comparison,
           compare,
           compare_scenarios,
           run_metrics,
           run_seeds,
)
from lab.analysis.forecast import forecast_cost, holt_winters, seasonal_naive
from lab.analysis.frame import cost_series, read_ledger, time_series
from lab.analysis.kpi import KPI, Formula, KPIError, kpi_table, standard_kpis
from lab.analysis.token_analyzer import analyze_calls

__all__ = ["KPI", "AlertRules", "BaselineStore", "Comparison", "Formula", "KPIError", "analyze_calls", "attribute",
           "compare", "compare_scenarios", "cost_series", "detect_cost_anomalies",
           "evaluate_alerts", "forecast_cost", "holt_winters", "kpi_table", "measure_detector", "read_ledger",
           "rolling_iqr", "rolling_zscore", "run_metrics", "run_seeds", "savings_by_strategy", "seasonal_naive",
           "standard_kpis", "time_series"]
