"""Soak test of coop_node (a script, not a test): N frames at a fixed rate through real DDS.

    .venv/bin/python bench/soak_node.py [--frames 1000] [--rate 1] [--lockstep]
                                        [--max-rss-growth-mb 50]
    .venv/bin/python bench/soak_node.py --duration 600 --rate 30 --detections 12 \
                                        --report-every 60 --max-rss-growth-pct 5

``--duration`` [s] replaces ``--frames`` (rate x duration frames); ``--detections N`` sends N
boxes per frame (the frame's object box, repeated, each 1 px further right); ``--report-every``
[s] prints one table row per interval: frames sent / answered in it, the node's stale drops,
latency publish -> answer (p50 / p95 of the frames answered in it), the node's RSS and its growth
since the warm-up, and what /diagnostics says (level, share of frames dropped, answer latency,
share of detections skipped by the time budget). ``--max-rss-growth-pct``: the RSS growth
allowed after the warm-up (the warm-up frames and, with ``--report-every``, the first interval at
the full rate), in percent (with ``--max-rss-growth-mb``, both must hold).

Starts coop_node as its own process with a cheap configuration (1 hypothesis, 1 refine iteration,
112-px crops, 12 templates), replays a cached synthetic RGB-D scene (one textured box per frame,
generated on first use under cache/soak/) at ``--rate`` Hz (``--lockstep``: like the demo, the
next frame is sent once the node answered the last one, at most ``--rate`` Hz) and prints,
every 100 frames, the node's resident memory (VmRSS of its process) and the answers so far.
At the end: frames sent / answered / without an answer, frames the node dropped as stale (from
/diagnostics), RSS at start (after a warm-up) and end and its growth, latency percentiles, the
node's worst input wait (first -> last input of one frame arriving, /diagnostics
sync_wait_max). Exit 0 when every frame was answered and RSS growth <= --max-rss-growth-mb.

Both processes enlarge Fast DDS's shared-memory segment (coop_ros/ros/dds.py): with the 512 KiB
default, a 640x480 depth image published right before its image is delivered up to a frame (or
3 s) late, frames complete in bursts and the node drops some as stale.
``COOP_ROS_SHM_SEGMENT_MB=0 .venv/bin/python bench/soak_node.py ...`` measures that default.
"""
from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024.0
    return float("nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--rate", type=float, default=1.0,
                    help="publish rate [Hz] (with --lockstep: the highest rate)")
    ap.add_argument("--lockstep", action="store_true",
                    help="as the demo: send the next frame when the node has answered the last")
    ap.add_argument("--warmup", type=int, default=10, help="lock-step frames before the baseline")
    ap.add_argument("--max-rss-growth-mb", type=float, default=50.0)
    ap.add_argument("--max-rss-growth-pct", type=float, default=None,
                    help="RSS growth allowed after the warm-up [%%]")
    ap.add_argument("--duration", type=float, default=None,
                    help="seconds to publish (rate x duration frames; replaces --frames)")
    ap.add_argument("--detections", type=int, default=1, help="boxes per frame")
    ap.add_argument("--report-every", type=float, default=None,
                    help="seconds between table rows (default: a row every 100 frames)")
    ap.add_argument("--cache", default=str(REPO / "cache" / "soak"))
    args = ap.parse_args()

    import numpy as np

    from coop_ros.bop.dataset import BopDataset
    from coop_ros.synth.scenes import generate_dataset
    from coop_ros.ros.replay import Replayer, Spinner, frame_messages, make_detections

    cache = Path(args.cache)
    if not (cache / "scene" / "dataset.json").is_file():
        generate_dataset(cache / "scene", objects=["textured_box"], n_scenes=1,
                         images_per_scene=4, seed=5, objects_per_image=(1, 1),
                         distractors=(0, 1), progress=False)
    (cache / "objects.yaml").write_text(
        "objects:\n  - {name: textured_box, class_id: '1', mesh: scene/models/obj_000001.ply}\n")
    ds = BopDataset(cache / "scene")
    frames = [ds.frame(s, i) for s, i in ds.images()]
    n_frames = int(round(args.duration * args.rate)) if args.duration else args.frames

    def messages(k: int, stamp: int) -> dict:
        fr = frames[k % len(frames)]
        msgs = frame_messages(fr, stamp)
        if args.detections != 1:
            x, y, w, h = (float(v) for v in fr.gt_info[0].bbox_visib)
            msgs["detections"] = make_detections(
                [("1", (x + j, y, w, h), 1.0 - 0.01 * j) for j in range(args.detections)],
                msgs["detections"].header)
        return msgs

    log = open(cache / "soak_node.log", "w")
    node = subprocess.Popen(
        [sys.executable, "-m", "coop_ros.ros.node", "--ros-args",
         "--params-file", str(REPO / "config" / "coop.yaml"),
         "-p", f"objects_file:={cache / 'objects.yaml'}",
         "-p", f"template_cache_dir:={REPO / 'cache' / 'templates'}",
         "-p", "num_hypotheses:=1", "-p", "refine_iterations:=1",
         "-p", "rgbd_refine_iterations:=1", "-p", "crop_size:=112", "-p", "n_templates:=12"],
        stdout=log, stderr=subprocess.STDOUT)
    sp = Spinner()
    rep = sp.add(Replayer("soak_replay", context=sp.context))
    diag = {}

    def on_diag(msg):
        for st in msg.status:
            if st.name.startswith("coop_node"):
                diag.update({kv.key: kv.value for kv in st.values})
                diag["_level"], diag["_message"] = st.level, st.message
    from diagnostic_msgs.msg import DiagnosticArray
    rep.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    sp.start()
    t_start = time.monotonic()
    try:
        if not rep.wait_for_node(180):
            print("ERROR: coop_node did not come up; see", cache / "soak_node.log")
            return 3
        for k in range(args.warmup):
            s = time.time_ns()
            rep.publish(messages(k, s))
            if rep.wait_result(s, 60) is None:
                print(f"ERROR: warm-up frame {k} got no answer")
                return 3
        time.sleep(0.5)
        with rep.lock:
            for d in (rep.poses, rep.estimates, rep.tf, rep.sent_at, rep.received_at):
                d.clear()
        rss0 = rss_mb(node.pid)
        print(f"coop_node pid {node.pid}: RSS after {args.warmup} warm-up frames {rss0:.1f} MB; "
              f"soak: {n_frames} frames at {args.rate:g} Hz, {args.detections} detection(s) "
              f"each{' at most, lock-step' if args.lockstep else ''}", flush=True)
        sent, answered, lat, rss = [], 0, [], [rss0]
        period = 1.0 / args.rate
        t_next = time.monotonic()
        t0 = time.monotonic()
        row = {"t": t0, "sent": 0, "answered": 0, "lat": 0, "stale": 0}
        if args.report_every:
            print("\n| minute | sent | answered | stale-dropped | latency p50 / p95 [ms] | "
                  "RSS [MB] | growth | /diagnostics (level: dropped, answer latency, budget "
                  "skips) |\n|---:|---:|---:|---:|---:|---:|---:|---|", flush=True)

        def collect():
            nonlocal answered
            with rep.lock:
                for s in list(rep.poses):
                    if s in rep.sent_at:
                        answered += 1
                        lat.append(rep.received_at[s] - rep.sent_at.pop(s))
                    del rep.poses[s]
                    rep.received_at.pop(s, None)
                rep.estimates.clear()
                rep.tf.clear()

        def report_row(now):
            collect()
            rss.append(rss_mb(node.pid))
            lat_ms = np.array(lat[row["lat"]:]) * 1e3
            stale = int(diag.get("frames_dropped_stale") or 0)
            lq = (f"{np.percentile(lat_ms, 50):.0f} / {np.percentile(lat_ms, 95):.0f}"
                  if len(lat_ms) else "-")
            level = {b"\x00": "OK", b"\x01": "WARN", b"\x02": "ERROR"}.get(
                diag.get("_level"), str(diag.get("_level")))
            print(f"| {(now - t0) / 60:.0f} | {len(sent) - row['sent']} | "
                  f"{answered - row['answered']} | {stale - row['stale']} | {lq} | "
                  f"{rss[-1]:.1f} | {100 * (rss[-1] - rss0) / rss0:+.1f} % | {level}: "
                  f"{diag.get('frames_dropped_ratio') or '-'}, "
                  f"{diag.get('answer_latency_p50 [ms]') or '-'} ms, "
                  f"{diag.get('detections_budget_skipped_ratio') or '-'} |", flush=True)
            row.update(t=now, sent=len(sent), answered=answered, lat=len(lat), stale=stale)
        for k in range(n_frames):
            s = time.time_ns()
            rep.publish(messages(k, s), ack_timeout=0.0 if args.rate > 5 else 5.0)
            sent.append(s)
            if args.report_every:
                if time.monotonic() - row["t"] >= args.report_every:
                    report_row(time.monotonic())
            elif (k + 1) % 100 == 0:
                collect()
                rss.append(rss_mb(node.pid))
                print(f"  frame {k + 1:5d}: answered {answered:5d}, node RSS {rss[-1]:7.1f} MB "
                      f"(+{rss[-1] - rss0:5.1f}), stale-dropped {diag.get('frames_dropped_stale')}"
                      f", {time.monotonic() - t0:6.0f} s", flush=True)
            if args.lockstep:
                rep.wait_result(s, 60, need_estimates=False)
            t_next += period
            time.sleep(max(0.0, t_next - time.monotonic()))
            t_next = max(t_next, time.monotonic())
        rep.wait_result(sent[-1], 60, need_estimates=False)
        time.sleep(1.5)
        if args.report_every:
            report_row(time.monotonic())
        collect()
        rss_end = rss_mb(node.pid)
        lat_ms = np.array(lat) * 1e3
        missing = len(sent) - answered
        growth = rss_end - rss0
        print()
        print(f"frames sent {len(sent)}, answered {answered}, without an answer {missing} "
              f"(node: processed {diag.get('frames_processed')}, stale-dropped "
              f"{diag.get('frames_dropped_stale')}, sync-dropped {diag.get('sync_dropped')}, "
              f"worst input wait {diag.get('sync_wait_max [ms]')} ms)")
        print(f"node RSS: after warm-up {rss0:.1f} MB, end {rss_end:.1f} MB, growth "
              f"{growth:+.1f} MB (max {max(rss + [rss_end]):.1f} MB; limit "
              f"{args.max_rss_growth_mb:g} MB)")
        if len(lat_ms):
            print(f"latency publish -> answer: p50 {np.percentile(lat_ms, 50):.0f} ms, p95 "
                  f"{np.percentile(lat_ms, 95):.0f} ms, max {lat_ms.max():.0f} ms; node "
                  f"processing mean {diag.get('processing_mean [ms]')} ms")
        print(f"Fast DDS: {sp.dds_note}")
        print(f"wall time {time.monotonic() - t_start:.0f} s")
        ok = missing == 0 and growth <= args.max_rss_growth_mb
        if args.max_rss_growth_pct is not None:
            # warm-up: the lock-step frames and, with --report-every, the first interval at the
            # full rate (the allocator's pools grow with the message flow; rss[1] = its end)
            base = rss[1] if args.report_every and len(rss) > 2 else rss0
            pct = 100.0 * (rss_end - base) / base
            print(f"RSS growth after the warm-up ({base:.1f} MB at the end of the "
                  f"{'first interval' if base is not rss0 else 'warm-up frames'}): "
                  f"{rss_end - base:+.1f} MB, {pct:+.2f} % (limit {args.max_rss_growth_pct:g} %; "
                  f"max {max(rss[1:] + [rss_end]):.1f} MB)")
            # an overloaded node drops frames on purpose (freshest frame first): judged by RSS
            ok = pct <= args.max_rss_growth_pct and growth <= args.max_rss_growth_mb
        print("SOAK PASSED" if ok else "SOAK FAILED")
        return 0 if ok else 1
    finally:
        sp.stop()
        node.send_signal(signal.SIGINT)
        try:
            node.wait(30)
        except subprocess.TimeoutExpired:
            node.kill()
        log.close()


if __name__ == "__main__":
    sys.exit(main())
