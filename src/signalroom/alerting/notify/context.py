"""What one flush of an aggregation group carries through the notification pipeline
(Alertmanager keeps it in a ``context.Context``); the pipeline's stages and every integration
read it, so it sits below both."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

__all__ = ["FlushContext"]


@dataclass
class FlushContext:
    """What Alertmanager carries in the context of one flush."""

    now: datetime
    group_key: str
    group_labels: dict[str, str]
    receiver: str
    repeat_interval: timedelta
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()
    tenant: str = "default"
    deadline: float | None = None  # loop.time() by which the flush must be done
    firing: list[int] = field(default_factory=list)
    resolved: list[int] = field(default_factory=list)
    # Work a stage started without holding up delivery (escalation bookkeeping); shared by
    # the copies FanoutStage makes, awaited by ``settle`` before the flush counts as done.
    background: list[asyncio.Task[object]] = field(default_factory=list)

    async def settle(self) -> None:
        """Wait for the background work of this flush; raises its first error."""
        if not self.background:
            return
        if len(self.background) == 1:  # the usual flush: no gathering future needed
            await self.background[0]
            return
        results = await asyncio.gather(*self.background, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException):
                raise result
