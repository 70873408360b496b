"""Providers: what serves a request once it has passed the pipeline.

`mock` (a SimPy service model), `sdk` (the official SDKs, and `LiveProvider`, which calls
them during a simulation) and `fake_server` (local fakes of the three APIs, for tests and
offline lessons). Both simulation providers satisfy the `Provider` protocol in `base`.
"""
