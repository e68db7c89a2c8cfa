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

Unmatchable frames are reported: once another stream has delivered a message stamped later than
``pivot + slop`` and none of its queued messages lies within the slop, the pivot cannot be matched
any more if that stream arrives in stamp order; it is recorded (once) in
:attr:`ApproximateSync.mismatches` with the nearest stamp of the stream that failed it (the
commonest wiring mistake: a detector that stamps its output with its own clock). A detector that
skips frames produces such records too, between its matches: the node warns only when records
come while nothing matches.

:class:`CameraInfoCache` picks the camera_info of an image by stamp and tells whether waiting for
it makes sense (a camera_info stream whose stamps never match the images is not waited for).
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass

__all__ = ["ApproximateSync", "LatestSlot", "Mismatch", "CameraInfoCache"]


@dataclass(frozen=True)
class Mismatch:
    """A pivot message that cannot be matched: ``stream`` has no message within the slop of
    ``pivot_stamp`` but already one stamped later. Stamps in ns; ``t`` = arrival time [s] or None."""

    pivot: str
    pivot_stamp: int
    stream: str
    nearest_stamp: int
    t: float | None = None

    @property
    def offset_ms(self) -> float:
        """nearest_stamp - pivot_stamp [ms]."""
        return (self.nearest_stamp - self.pivot_stamp) * 1e-6


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
        self.mismatches: deque = deque(maxlen=100)   # recent Mismatch records, oldest first
        self.unmatchable = 0                         # pivots found unmatchable (recorded)
        self._newest = {n: None for n in names}      # newest stamp seen per stream
        self._reported: deque = deque(maxlen=4 * queue_size)   # pivot stamps already recorded

    def add(self, name: str, stamp_ns: int, msg, t: float | None = None) -> dict | None:
        """Queue one message (arrival time ``t`` [s], optional); returns the matched set
        {name: msg} or None."""
        q = self._q[name]
        q.append((int(stamp_ns), msg, t))
        if self._newest[name] is None or int(stamp_ns) > self._newest[name]:
            self._newest[name] = int(stamp_ns)
        if len(q) > self.queue_size:
            q.popleft()
            self.dropped[name] += 1
        out = self._try_match()
        if out is None:
            self._record_unmatchable(t)
        return out

    def _record_unmatchable(self, t) -> None:
        """Record (once per pivot message) the queued pivots no other stream can match any more
        if streams arrive in stamp order; they stay queued (a late out-of-order message may
        still complete them) and fall out as usual."""
        pivot, others = self.names[0], self.names[1:]
        for p_stamp, _, _ in self._q[pivot]:
            if p_stamp in self._reported:
                continue
            for n in others:
                newest = self._newest[n]
                if newest is None or newest <= p_stamp + self.slop_ns:
                    continue     # that stream may still deliver a match
                near = min(self._q[n], key=lambda sm: abs(sm[0] - p_stamp), default=None)
                if near is None or abs(near[0] - p_stamp) > self.slop_ns:
                    self._reported.append(p_stamp)
                    self.unmatchable += 1
                    self.mismatches.append(Mismatch(pivot, p_stamp, n, near[0] if near is not
                                                    None else newest, t))
                    break

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


class CameraInfoCache:
    """Recent camera_info messages by stamp (ns).

    :meth:`lookup` returns the one within ``slop_ns`` of an image stamp, else the latest.
    :meth:`worth_waiting` says whether a matching one may still come: not when the newest is
    already past the image stamp, and not after ``give_up_after`` images in a row were served
    by a non-matching camera_info (a driver whose camera_info stamps never match the images
    would otherwise cost the wait on every frame).
    """

    def __init__(self, maxlen: int = 30, give_up_after: int = 2):
        self._items: deque = deque(maxlen=maxlen)
        self.latest = None
        self.give_up_after = int(give_up_after)
        self.unmatched_streak = 0      # consecutive images served by a non-matching camera_info
        self.last_offset_ns = None     # nearest camera_info stamp - image stamp of the last miss

    def add(self, stamp_ns: int, msg) -> None:
        self._items.append((int(stamp_ns), msg))
        self.latest = msg

    def lookup(self, stamp_ns: int, slop_ns: int):
        """(msg, matched): the camera_info within the slop (matched True), else (latest, False);
        (None, False) before any arrived."""
        best = min(self._items, key=lambda sm: abs(sm[0] - stamp_ns), default=None)
        if best is not None and abs(best[0] - stamp_ns) <= slop_ns:
            return best[1], True
        return self.latest, False

    def nearest(self, stamp_ns: int):
        """The camera_info with the stamp nearest to ``stamp_ns`` (None before any)."""
        best = min(self._items, key=lambda sm: abs(sm[0] - stamp_ns), default=None)
        return None if best is None else best[1]

    def worth_waiting(self, stamp_ns: int, slop_ns: int) -> bool:
        if self.unmatched_streak >= self.give_up_after:
            return False
        newest = max((s for s, _ in self._items), default=None)
        return newest is None or newest < stamp_ns - slop_ns

    def served(self, stamp_ns: int, matched: bool) -> None:
        """Record how an image was served (updates the streak and the last offset)."""
        if matched:
            self.unmatched_streak = 0
            return
        self.unmatched_streak += 1
        near = min((s for s, _ in self._items), key=lambda s: abs(s - stamp_ns), default=None)
        self.last_offset_ns = None if near is None else near - stamp_ns


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
