"""The node's /diagnostics: input rates, frame counters, latency, and what is wrong with the
inputs (no depth in mode rgbd, no camera_info, no detections, unmatched stamps, incompatible QoS,
recent notes and errors) or with the load (:func:`overload_problems`: frames dropped unprocessed,
latency against the frame period, detections skipped by the time budget, over the last
:data:`LOAD_WINDOW_S` seconds), each problem naming the topic / numbers and the likely fix. Times are
``time.monotonic()`` seconds.

:class:`NodeDiagnostics` is a part of :class:`coop_ros.ros.node.CoopNode`: it reads the node's
counters (``rates``, ``latencies``, ``proc_times``, ``frames_*``, ``_sync``, ``_slot``, ...) and
publishes on ``pub_diag``.
"""
from __future__ import annotations

import time
from collections import deque

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue

__all__ = ["Rate", "NodeDiagnostics", "overload_problems", "LOAD_WINDOW_S", "LOST_HINT"]

#: the overload figures of /diagnostics are taken over this many seconds
LOAD_WINDOW_S = 30.0
#: share of the matched frames dropped unprocessed (a newer frame replaced them): WARN at or above
DROP_WARN = 0.5
#: median latency (frame matched -> answer published) over this many frame periods: WARN; over
#: LATENCY_ERROR_PERIODS periods and LATENCY_ERROR_S seconds: ERROR (the poses describe a scene
#: that many frames old)
LATENCY_WARN_PERIODS = 3.0
LATENCY_ERROR_PERIODS = 10.0
LATENCY_ERROR_S = 1.0
#: share of the detections skipped by the time budget (``budget_exhausted``): WARN / ERROR
BUDGET_SKIP_WARN = 0.1
BUDGET_SKIP_ERROR = 0.5
#: fewer matched frames / detections in the window than this: no ratio is judged
MIN_COUNT = 5
#: what a lost / missing camera image most likely means, and what to do (README "Large images and
#: Fast DDS")
LOST_HINT = ("a best-effort image or depth larger than the publisher's Fast DDS shared-memory "
             "segment never arrives, a reliable one up to 3 s late (16 MiB with coop_ros's "
             "profile, 512 KiB by default; a 4096x3072 rgb8 image is 37.7 MB): give the camera "
             "driver a segment that holds an image and its depth (python -m coop_ros.ros.dds 64 "
             "> fastdds.xml; FASTDDS_DEFAULT_PROFILES_FILE=fastdds.xml) or subscribe them "
             "reliable (qos.image.reliability / qos.depth.reliability); README 'Large images "
             "and Fast DDS'")


def overload_problems(window_s: float, matched: int, dropped: int, detections: int,
                      budget_skipped: int, latencies_s, frame_period_s: float | None
                      ) -> list[tuple[int, str]]:
    """What the load of the last ``window_s`` seconds says, as [(level, text)] (level 1 WARN,
    2 ERROR, as DiagnosticStatus), each with its numbers and what to change.

    Args:
        matched: frames matched (image + detections [+ depth]) in the window; dropped: of them,
            dropped unprocessed (replaced by a newer frame while the worker was busy).
        detections: detections answered in the window; budget_skipped: of them, skipped by the
            time budget.
        latencies_s: latencies [s] (frame matched -> answer published, queueing included: the
            node's own clock, no clock synchronisation needed) of the frames answered in the
            window.
        frame_period_s: period [s] of the matched frames (None: unknown).
    """
    out = []
    how = ("fewer hypotheses, a lower max_detections or a slower camera / detector rate: "
           "README 'Sizing the node'")
    answered = matched - dropped
    if matched >= MIN_COUNT and dropped / matched >= DROP_WARN:
        rate = f"{matched / window_s:.1f} Hz" if window_s > 0 else "?"
        out.append((1, f"overloaded: {dropped / matched:.0%} of the matched frames dropped "
                       f"unprocessed in the last {window_s:.0f} s ({dropped} of {matched}; frames "
                       f"arrive at {rate}, {max(answered, 0) / max(window_s, 1e-9):.2f} Hz "
                       f"answered): {how}"))
    lat = [v for v in latencies_s if np.isfinite(v)]
    if lat and frame_period_s and frame_period_s > 0:
        p50 = float(np.median(lat))
        periods = p50 / frame_period_s
        text = (f"answer latency {p50 * 1e3:.0f} ms (frame matched -> published, median of "
                f"{len(lat)} answers in the last "
                f"{window_s:.0f} s) is {periods:.1f} frame periods of {frame_period_s * 1e3:.0f} "
                "ms")
        if periods > LATENCY_ERROR_PERIODS and p50 > LATENCY_ERROR_S:
            out.append((2, f"{text}: the poses describe a scene {periods:.0f} frames old "
                           f"({how})"))
        elif periods > LATENCY_WARN_PERIODS:
            out.append((1, f"{text} (more than {LATENCY_WARN_PERIODS:g}): {how}"))
    if detections >= MIN_COUNT and budget_skipped:
        share = budget_skipped / detections
        text = (f"{share:.0%} of the detections skipped by the time budget in the last "
                f"{window_s:.0f} s ({budget_skipped} of {detections}, budget_exhausted)")
        if share >= BUDGET_SKIP_ERROR:
            out.append((2, f"{text}: most detections get no pose; raise time_budget, lower "
                           "num_hypotheses or max_detections"))
        elif share >= BUDGET_SKIP_WARN:
            out.append((1, f"{text}: raise time_budget, lower num_hypotheses or "
                           "max_detections"))
    return out


class Rate:
    """Message counter -> rate over the last window."""

    def __init__(self):
        self.times = deque(maxlen=200)
        self.total = 0
        self.first = None

    def tick(self, t: float) -> None:
        if self.first is None:
            self.first = t
        self.times.append(t)
        self.total += 1

    def hz(self, now: float, window: float = 5.0) -> float:
        ts = [t for t in self.times if now - t <= window]
        if len(ts) < 2:
            return 0.0
        return (len(ts) - 1) / max(ts[-1] - ts[0], 1e-6)

    def last(self) -> float | None:
        return self.times[-1] if self.times else None


class NodeDiagnostics:
    """/diagnostics of the node (module docstring)."""

    _last_match: float | None = None

    def _sync_stalled(self, now: float, quiet_s: float = 3.0) -> bool:
        return self._last_match is None or now - self._last_match > quiet_s

    def _mismatch_text(self, m) -> str:
        def st(ns):
            return f"{ns // 1_000_000_000}.{ns % 1_000_000_000:09d}"
        return (f"inputs not matched within sync_slop {self.cfg.sync_slop * 1000:.0f} ms: "
                f"{m.pivot} '{self.resolve_topic_name(m.pivot)}' stamp {st(m.pivot_stamp)}, "
                f"nearest {m.stream} '{self.resolve_topic_name(m.stream)}' stamp "
                f"{st(m.nearest_stamp)} ({m.offset_ms:+.1f} ms); "
                f"{self._sync.unmatchable} images unmatched so far")

    def diagnostics_status(self) -> DiagnosticStatus:
        now = time.monotonic()
        cfg = self.cfg
        st = DiagnosticStatus(name=f"{self.get_name()}: pose estimation", hardware_id="coop_ros")
        level, msgs = DiagnosticStatus.OK, []

        def add(lvl, text):
            nonlocal level
            level = max(level, lvl)
            msgs.append(text)
        img_last, depth_last = self.rates["image"].last(), self.rates["depth"].last()
        images_flowing = img_last is not None and now - img_last < max(cfg.depth_timeout, 1.0)
        img_first = self.rates["image"].first
        # two images in a row without a depth (one alone may just be ahead of its depth)
        if cfg.mode == "rgbd" and images_flowing and self._images_since_depth >= 2 \
                and now - img_first > cfg.depth_timeout and (
                depth_last is None or now - depth_last > cfg.depth_timeout):
            since = "ever" if depth_last is None else f"{now - depth_last:.1f} s"
            add(DiagnosticStatus.ERROR,
                f"mode 'rgbd' but no depth image on '{self.resolve_topic_name('depth')}' for "
                f"{since} while images arrive: no frame can be processed (publish depth or set "
                "mode:=rgb)")
            self.get_logger().warning(msgs[-1], throttle_duration_sec=5.0)
        if images_flowing and self._camera_infos.latest is None and now - img_first > 1.0:
            add(DiagnosticStatus.ERROR,
                f"no camera_info on '{self.resolve_topic_name('camera_info')}' while images "
                "arrive")
            self.get_logger().warning(msgs[-1], throttle_duration_sec=5.0)
        det_last = self.rates["detections"].last()
        det_first = self.rates["detections"].first
        # detections keep coming, their images do not: lost in transport (too large for the
        # publisher's shared-memory segment, best effort) -- nothing can be processed
        if det_last is not None and now - det_last < 2.0 and now - det_first > 2.0 and (
                img_last is None or now - img_last > 2.0):
            since = "ever" if img_last is None else f"{now - img_last:.1f} s"
            add(DiagnosticStatus.ERROR,
                f"detections arrive on '{self.resolve_topic_name('detections')}' but no image on "
                f"'{self.resolve_topic_name('image')}' for {since} "
                f"({self.rates['detections'].total} detection messages, "
                f"{self.rates['image'].total} images so far): nothing can be processed, the "
                f"images are lost or late in transport; {LOST_HINT}")
            self.get_logger().error(msgs[-1], throttle_duration_sec=5.0)
        proc = self._processor
        if images_flowing and now - img_first > 2.0 and (det_last is None or
                                                          now - det_last > 5.0) \
                and not (proc is not None and proc.tracking_active()):   # tracked: fine
            add(DiagnosticStatus.WARN,
                f"no detections on '{self.resolve_topic_name('detections')}' for "
                f"{'ever' if det_last is None else f'{now - det_last:.1f} s'} while images "
                "arrive: nothing to estimate")
            self.get_logger().warning(msgs[-1], throttle_duration_sec=5.0)
        lost = sum(n for t, n in list(self.detections_unmatched) if now - t <= LOAD_WINDOW_S)
        if lost:
            names = "image" + (" or depth" if cfg.mode == "rgbd" else "")
            add(DiagnosticStatus.WARN,
                f"{lost} detection messages in the last {LOAD_WINDOW_S:.0f} s dropped without "
                f"their {names} (on '{self.resolve_topic_name('image')}'"
                + (f" / '{self.resolve_topic_name('depth')}'" if cfg.mode == "rgbd" else "")
                + f"; {self.rates['detections'].total} detection messages, "
                f"{self.rates['image'].total} images so far): those frames are lost or late in "
                f"transport; {LOST_HINT}")
            self.get_logger().warning(msgs[-1], throttle_duration_sec=10.0)
        recent = [m for m in list(self._sync.mismatches) if m.t is not None and now - m.t < 10.0]
        if recent and self._sync_stalled(now):
            add(DiagnosticStatus.WARN, self._mismatch_text(recent[-1]))
        for key, (text, t) in list(self._qos_issues.items()):
            if now - t < 30.0:
                add(DiagnosticStatus.ERROR if not key.startswith("output") else
                    DiagnosticStatus.WARN, text)
        for key, (lvl, text, t) in list(self._notes.items()):
            if now - t < (30.0 if key.startswith("lost:") else 10.0):
                add(DiagnosticStatus.ERROR if lvl == "error" else DiagnosticStatus.WARN, text)
        load = self._load_window(now)
        for lvl, text in overload_problems(*load):
            add(DiagnosticStatus.ERROR if lvl >= 2 else DiagnosticStatus.WARN, text)
            self.get_logger().warning(text, throttle_duration_sec=10.0)
        if self.last_error and now - self.last_error_time < 10.0:
            add(DiagnosticStatus.WARN, f"last error: {self.last_error[:500]}")
        st.level = level
        st.message = "; ".join(msgs) if msgs else "ok"
        lat = list(self.latencies)
        proc = list(self.proc_times)
        wait = self._sync.max_wait()
        vals = {
            "backend": self.backend_name, "mode": cfg.mode,
            **{f"rate_{k} [Hz]": f"{r.hz(now):.2f}" for k, r in self.rates.items()},
            **{f"received_{k}": str(r.total) for k, r in self.rates.items()},
            "frames_matched": str(self._sync.matched),
            "frames_processed": str(self.frames_processed),
            "frames_with_failures": str(self.frames_failed),
            "frames_dropped_stale": str(self._slot.dropped),
            "frames_too_old": str(self.frames_stale),
            "detections_skipped": str(self.detections_skipped),
            "sync_dropped": str(sum(self._sync.dropped.values())),
            "sync_unmatched": str(self._sync.unmatchable),
            "detections_without_image": str(sum(n for _, n in list(self.detections_unmatched))),
            "messages_lost": ", ".join(f"{k} {v}" for k, v in self.messages_lost.items()),
            # first -> last input of a frame arriving, worst of the last 100 frames
            "sync_wait_max [ms]": f"{wait[0] * 1e3:.0f} ({wait[1]} last)" if wait else "",
            # the overload figures of the last LOAD_WINDOW_S seconds
            "window [s]": f"{load[0]:.1f}",
            "frames_dropped_ratio": f"{load[2] / load[1]:.3f}" if load[1] else "",
            "frame_period [ms]": f"{load[6] * 1e3:.1f}" if load[6] else "",
            "answer_latency_p50 [ms]": f"{np.median(load[5]) * 1e3:.1f}" if load[5] else "",
            "detections_budget_skipped_ratio": f"{load[4] / load[3]:.3f}" if load[3] else "",
            "latency_last [ms]": f"{lat[-1] * 1e3:.1f}" if lat else "",
            "latency_mean [ms]": f"{np.mean(lat) * 1e3:.1f}" if lat else "",
            "latency_max [ms]": f"{np.max(lat) * 1e3:.1f}" if lat else "",
            "processing_mean [ms]": f"{np.mean(proc) * 1e3:.1f}" if proc else "",
            "processing_max [ms]": f"{np.max(proc) * 1e3:.1f}" if proc else "",
            "last_error": self.last_error[:500],
            **self._tracking_values(now),
        }
        st.values = [KeyValue(key=k, value=v) for k, v in vals.items()]
        return st

    def _tracking_values(self, now: float, window_s: float = 10.0) -> dict:
        """Parameter ``tracking``: the objects tracked now and the rate of frames answered with
        tracked poses over the last ``window_s`` seconds (empty while tracking is off)."""
        proc = self._processor
        tr = None if proc is None else proc.tracker
        if not self.cfg.tracking or tr is None:
            return {"tracking": "off"} if not self.cfg.tracking else {}
        log = [(t, n) for t, n in list(proc.track_log) if now - t <= window_s]
        return {"tracking": "on", "tracked_objects": ", ".join(sorted(map(str, tr.tracks))),
                "tracking_rate [Hz]": f"{sum(1 for _, n in log if n) / window_s:.1f}",
                "tracked_poses_last_10s": str(sum(n for _, n in log))}

    def _load_window(self, now: float):
        """(window [s], matched, dropped, detections, budget-skipped, latencies [s] of the
        window, frame period [s] or None) over the last LOAD_WINDOW_S seconds, from snapshots of
        the node's counters taken at every call."""
        hist = self.__dict__.setdefault("_load_hist", deque(maxlen=10000))
        snap = (now, self.frames_matched_total, self._slot.dropped, self.detections_total,
                self.detections_budget_skipped)
        hist.append(snap)
        while len(hist) > 2 and now - hist[1][0] >= LOAD_WINDOW_S:
            hist.popleft()
        old = hist[0]
        window = now - old[0]
        matched, dropped = snap[1] - old[1], snap[2] - old[2]
        dets, skipped = snap[3] - old[3], snap[4] - old[4]
        lats = [v for t, v in list(self.latency_log) if now - t <= max(window, 1e-9)]
        # the frame period: median gap between matched frames arriving (idle time left out)
        ts = [t for t in list(self.match_times) if now - t <= LOAD_WINDOW_S]
        period = float(np.median(np.diff(ts))) if len(ts) >= 3 else None
        return window, matched, dropped, dets, skipped, lats, period

    def _publish_diagnostics(self) -> None:
        arr = DiagnosticArray()
        arr.header.stamp = self.get_clock().now().to_msg()
        arr.status.append(self.diagnostics_status())
        with self._pub_lock:
            if not self._stop.is_set():
                self.pub_diag.publish(arr)
