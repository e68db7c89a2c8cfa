"""Approximate-time synchronisation of several message streams (message_filters is not available).

No ROS import: messages are opaque objects with a stamp in integer nanoseconds, so this module is
unit-tested without rclpy.

    sync = ApproximateSync(["image", "detections", "depth"], slop_s=0.05, queue_size=10)
    matched = sync.add("image", stamp_ns, msg, t)   # None, or {"image": msg, "detections": ..}

Policy: the first name is the *pivot* (the image). A set is emitted as soon as, for one queued
pivot message, every other stream has a message whose stamp lies within ``slop_s`` of the pivot's
(the closest one is taken). After a match, every queued message with a stamp <= the matched one is
removed from its stream (older frames can no longer be completed: they are counted as dropped).
Queues are bounded (``queue_size`` per stream, the oldest message falls out and is counted).

With arrival times (``t``, any clock in seconds), every matched set also records its *wait*: the
time between the arrival of its first and its last message, and which stream came last. A frame
whose inputs arrive spread out (a slow detector, or a transport that delivers some input late)
completes late, and frames completed in a burst replace each other in the worker's slot.
"""
from __future__ import annotations

from collections import deque

__all__ = ["ApproximateSync", "LatestSlot"]


class ApproximateSync:
    """Approximate-time synchroniser (see the module docstring).

    Args:
        names: stream names; ``names[0]`` is the pivot (one output per matched pivot message).
        slop_s: largest allowed |stamp - pivot stamp| [s] (>= 0).
        queue_size: messages kept per stream (>= 1).
    Attributes:
        dropped: {name: count} messages discarded without being part of a matched set.
        matched: number of sets emitted.
    """

    def __init__(self, names, slop_s: float = 0.05, queue_size: int = 10):
        names = list(names)
        if not names or len(set(names)) != len(names):
            raise ValueError(f"names must be non-empty and unique, got {names}")
        if not (slop_s >= 0):
            raise ValueError(f"slop_s must be >= 0 seconds, got {slop_s!r}")
        if int(queue_size) < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size!r}")
        self.names = names
        self.slop_ns = int(round(slop_s * 1e9))
        self.queue_size = int(queue_size)
        self._q = {n: deque() for n in names}
        self.dropped = {n: 0 for n in names}
        self.matched = 0
        self.waits: deque = deque(maxlen=100)   # (wait [s], last stream) of recent matched sets

    def add(self, name: str, stamp_ns: int, msg, t: float | None = None) -> dict | None:
        """Queue one message (arrival time ``t`` [s], optional); returns the matched set
        {name: msg} or None."""
        q = self._q[name]
        q.append((int(stamp_ns), msg, t))
        if len(q) > self.queue_size:
            q.popleft()
            self.dropped[name] += 1
        return self._try_match()

    def _try_match(self) -> dict | None:
        pivot, others = self.names[0], self.names[1:]
        # newest pivot first: under load the freshest complete frame wins
        for p_stamp, p_msg, p_t in reversed(self._q[pivot]):
            chosen = {pivot: (p_stamp, p_msg, p_t)}
            for n in others:
                best = min(self._q[n], key=lambda sm: abs(sm[0] - p_stamp), default=None)
                if best is None or abs(best[0] - p_stamp) > self.slop_ns:
                    break
                chosen[n] = best
            else:
                for n, (stamp, _, _) in chosen.items():
                    q = self._q[n]
                    while q and q[0][0] <= stamp:
                        old = q.popleft()
                        if old[0] != stamp:
                            self.dropped[n] += 1
                self.matched += 1
                ts = {n: t for n, (_, _, t) in chosen.items() if t is not None}
                if len(ts) == len(chosen):
                    last = max(ts, key=ts.get)
                    self.waits.append((ts[last] - min(ts.values()), last))
                return {n: m for n, (_, m, _) in chosen.items()}
        return None

    def max_wait(self) -> tuple[float, str] | None:
        """(longest wait [s], the stream that came last in that set) over the recent matched
        sets with arrival times, or None."""
        return max(self.waits, default=None)

    def pending(self) -> dict:
        """{name: queued message count}."""
        return {n: len(q) for n, q in self._q.items()}

    def clear(self) -> None:
        for q in self._q.values():
            q.clear()


class LatestSlot:
    """One-slot latest-item buffer between the executor (producer) and the estimation worker.

    ``put`` replaces an item the worker has not taken yet (the stale one is dropped and counted
    in ``dropped``), so frames are never queued without bound; ``get`` blocks until an item is
    there (or ``timeout`` / :meth:`close`) and returns it, or None.
    """

    def __init__(self):
        import threading
        self._cv = threading.Condition()
        self._item = None
        self._closed = False
        self.dropped = 0
        self.put_count = 0

    def put(self, item) -> bool:
        """Store ``item``; returns True when an older item was dropped."""
        with self._cv:
            dropped = self._item is not None
            if dropped:
                self.dropped += 1
            self._item = item
            self.put_count += 1
            self._cv.notify()
            return dropped

    def get(self, timeout: float | None = None):
        with self._cv:
            self._cv.wait_for(lambda: self._item is not None or self._closed, timeout)
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        with self._cv:
            self._closed = True
            self._cv.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
