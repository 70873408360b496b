"""Exercise 14: read a token report: which part of the bill costs the most, and its share."""

from __future__ import annotations

import functools
import math

from lab.analysis.token_analyzer import analyze_calls
from lab.lessons.bills import support_calls
from lab.lessons.checks import Exercise, require, require_number, self_check

#: the model lesson 14 prices its calls on
BILL_MODEL = "gpt-4o"


@functools.cache
def _by_part():
    return analyze_calls(support_calls(), model=BILL_MODEL).by_part()


class TokenBill(Exercise):
    lesson, title = "15", "where the bill goes"
    task = ("Analyze lessons.bills.support_calls() on gpt-4o: which part (system, history, user, tools, framing, "
            "output) costs the most, and what share of the cost does it take, in percent? "
            "Call check(part=..., cost_share_pct=...).")

    @property
    def reference(self) -> dict:
        parts = _by_part()
        top = parts["cost_usd"].idxmax()
        return {"part": str(top), "cost_share_pct": float(parts.loc[top, "cost_share_pct"])}

    @property
    def wrong(self) -> dict:          # the tempting answer: output tokens are the dearest per token
        parts = _by_part()
        return {"part": "output", "cost_share_pct": float(parts.loc["output", "cost_share_pct"])}

    @self_check
    def check(self, part=None, cost_share_pct=None):
        ref = self.reference
        require_number(cost_share_pct, "cost_share_pct")
        require(str(part) == ref["part"], f"{part!r} is not the costliest part: sort report.by_part() by cost_usd "
                "(a token of output costs more, but count how many tokens each part sends)", {"your part": str(part)})
        require(math.isclose(float(cost_share_pct), ref["cost_share_pct"], abs_tol=0.5),
                "right part; its share is the cost_share_pct column of report.by_part() (percent, not a fraction)",
                {"your cost_share_pct": float(cost_share_pct)})
        return f"{ref['part']} takes {ref['cost_share_pct']:.1f} % of the bill.", {}
