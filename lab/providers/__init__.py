"""Providers: mock (SimPy service model); live adapters and a fake server come with issue 4."""
