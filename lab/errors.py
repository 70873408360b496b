"""Errors a user can act on: each names the file, field or row and what was expected."""

from __future__ import annotations


class CostlabError(Exception):
    """Base of every error costlab raises on purpose; the CLI prints its message on one line."""


class ScenarioError(CostlabError):
    """A scenario file is missing, not TOML, or has a field with a wrong value."""

    def __init__(self, path: str, field: str, expected: str):
        self.path, self.field, self.expected = str(path), field, expected
        where = f"{self.path}: {field}" if field else self.path
        super().__init__(f"{where}: {expected}")


class TraceError(CostlabError):
    """A trace file cannot be read, or one of its rows is corrupt."""


class PricingError(CostlabError):
    """A model cannot be priced (unknown to genai-prices), so no cost is guessed."""


class ConfigError(CostlabError):
    """Missing environment (an API key, a data file) or a bad argument."""


class BudgetExceeded(CostlabError):
    """A live call was refused because its worst-case cost could take spend past the budget."""
