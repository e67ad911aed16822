"""The pure core: statistics, placement planning and metric aggregation. No I/O, no model calls.

Public names:
    wilson_interval, BetaPosterior, Rate      -- adversary.core.stats
    Placement, plan_placements, trial_seed    -- adversary.core.placement
    Outcome, summarize_target, summarize_attempts -- adversary.core.metrics
"""

from adversary.core.metrics import Outcome, summarize_attempts, summarize_target
from adversary.core.placement import Placement, plan_placements, trial_seed
from adversary.core.stats import BetaPosterior, Rate, wilson_interval

__all__ = [
    "BetaPosterior",
    "Outcome",
    "Placement",
    "Rate",
    "plan_placements",
    "summarize_attempts",
    "summarize_target",
    "trial_seed",
    "wilson_interval",
]
