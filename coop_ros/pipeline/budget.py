"""Time budget and cancellation of one :meth:`PoseEstimator.estimate` call.

    budget = Budget(deadline=time.monotonic() + 2.0, should_stop=stop_event.is_set,
                    times=estimator.stage_times)
    budget.stop_reason("coarse", "selection")   # None, or (Reason.BUDGET_EXHAUSTED, "...")

The estimator asks before each detection whether its coarse stage and selection still fit, and
before each hypothesis whether its refinement still fits; a stage that has started runs to its end
(the stages are not interruptible), so a call overshoots its deadline by at most the error of the
prediction. The prediction is a running mean of the stage's measured durations plus twice their
running deviation (:class:`StageTimes`, kept by the estimator across calls; unknown stages count
0 s).
"""
from __future__ import annotations

import math
import time
from typing import Callable

from coop_ros.errors import Reason

__all__ = ["Budget", "StageTimes"]


class StageTimes:
    """Predicted seconds of each named stage: an exponential moving average of the measured
    durations (alpha = weight of the newest sample) plus twice their mean absolute deviation, as
    TCP predicts its retransmission timeout (RFC 6298, with 2 instead of 4 deviations): a stage
    whose time varies is given room, so a budget is overrun by less than a plain mean allows.
    Stages: "coarse" (per detection), "refine" (per hypothesis), "selection" (per detection)."""

    def __init__(self, alpha: float = 0.3, beta: float = 0.25, k: float = 2.0):
        self.alpha, self.beta, self.k = float(alpha), float(beta), float(k)
        self._mean: dict[str, float] = {}
        self._dev: dict[str, float] = {}

    def record(self, stage: str, seconds: float) -> None:
        x = float(seconds)
        old = self._mean.get(stage)
        if old is None:
            self._mean[stage], self._dev[stage] = x, 0.25 * x
            return
        self._dev[stage] = (1.0 - self.beta) * self._dev[stage] + self.beta * abs(x - old)
        self._mean[stage] = (1.0 - self.alpha) * old + self.alpha * x

    def expected(self, stage: str) -> float:
        """Predicted seconds of one run of ``stage``: mean + k x deviation (0.0 when never
        measured)."""
        return self._mean.get(stage, 0.0) + self.k * self._dev.get(stage, 0.0)


class Budget:
    """Deadline + cancel flag of one estimate call.

    Args:
        deadline: ``time.monotonic()`` value after which no new stage starts (None: no limit).
        should_stop: called at every check; True cancels the rest of the call (None: never).
        times: the estimator's :class:`StageTimes` used to predict whether a stage still fits.
        clock: monotonic clock [s] (tests pass their own).
    """

    def __init__(self, deadline: float | None = None,
                 should_stop: Callable[[], bool] | None = None,
                 times: StageTimes | None = None, clock: Callable[[], float] = time.monotonic):
        self.deadline = deadline
        self.should_stop = should_stop
        self.times = times if times is not None else StageTimes()
        self.clock = clock

    def cancelled(self) -> bool:
        return bool(self.should_stop is not None and self.should_stop())

    def remaining(self) -> float:
        """Seconds left before the deadline (inf without one; negative when overrun)."""
        return math.inf if self.deadline is None else self.deadline - self.clock()

    def stop_reason(self, *stages: str) -> tuple[Reason, str] | None:
        """None when the named stages (predicted from :attr:`times`) still fit and nothing
        cancelled the call; else ``(Reason.CANCELLED or Reason.BUDGET_EXHAUSTED, detail)``."""
        if self.cancelled():
            return Reason.CANCELLED, "estimation stopped (node shutting down)"
        left = self.remaining()
        need = sum(self.times.expected(s) for s in stages)
        if left <= 0 or left < need:
            return (Reason.BUDGET_EXHAUSTED, f"{max(left, 0.0):.2f} s of the time budget left, "
                    f"{' + '.join(stages) or 'work'} needs ~{need:.2f} s")
        return None

    def record(self, stage: str, seconds: float) -> None:
        self.times.record(stage, seconds)
