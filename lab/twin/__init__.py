"""Digital twin: a scenario calibrated from real traffic, checked against it, then asked what-ifs.

    import lab.twin as twin
    fit = twin.fit("trace.csv", format="azure")         # the calibration and why it chose what it did
    scenario = twin.calibrate("trace.csv", format="azure")   # just the Scenario
    twin.validate(scenario, "trace.csv", format="azure", seeds=5)   # twin vs source, with errors
    runs = twin.what_if(scenario, {"cache": [{"stage": "cache", "ttl_s": 300}]}, seeds=5)
    twin.recommend(runs, sla_p95_ms=3000, quality_floor=0.95)

One module per job, in the order a twin is made: `sources` reads a trace, ledger or Result
into one shape; `measures` reads dispersion, clock steps, prefix reuse and duplicates off a
request stream; `arrivals` and `fitting` choose the traffic (arrival process, token lengths,
prompt catalog, prefixes) and explain each choice; `validation` compares the twin with its
source; `whatif` replays it under pipelines and recommends one; `scenario_file` writes it as
a scenario TOML.
"""

from lab.twin.arrivals import ArrivalCandidate, ArrivalFit, fit_arrivals, fit_mmpp
from lab.twin.fitting import Calibration, PrefixFit, calibrate, fit, fit_popularity, fit_prefix, fit_tokens
from lab.twin.measures import dispersion_index, duplicate_rate, ideal_prefix_reuse, timestamp_resolution_s
from lab.twin.scenario_file import scenario_toml
from lab.twin.sources import SOURCE_FORMATS, TrafficSource, guess_format, load_source
from lab.twin.validation import validate
from lab.twin.whatif import WhatIf, policy_pipeline, recommend, what_if

__all__ = ["SOURCE_FORMATS", "ArrivalCandidate", "ArrivalFit", "Calibration", "PrefixFit", "TrafficSource", "WhatIf",
           "calibrate", "dispersion_index", "duplicate_rate", "fit", "fit_arrivals", "fit_mmpp", "fit_popularity",
           "fit_prefix", "fit_tokens", "guess_format", "ideal_prefix_reuse", "load_source", "policy_pipeline",
           "recommend", "scenario_toml", "timestamp_resolution_s", "validate", "what_if"]
