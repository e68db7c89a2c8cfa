"""Soak test of coop_node (a script, not a test): N frames at a fixed rate through real DDS.

    .venv/bin/python bench/soak_node.py [--frames 1000] [--rate 1] [--lockstep]
                                        [--max-rss-growth-mb 50]

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
    ap.add_argument("--cache", default=str(REPO / "cache" / "soak"))
    args = ap.parse_args()

    import numpy as np

    from coop_ros.bop.dataset import BopDataset
    from coop_ros.synth.scenes import generate_dataset
    from coop_ros.ros.replay import Replayer, Spinner, frame_messages

    cache = Path(args.cache)
    if not (cache / "scene" / "dataset.json").is_file():
        generate_dataset(cache / "scene", objects=["textured_box"], n_scenes=1,
                         images_per_scene=4, seed=5, objects_per_image=(1, 1),
                         distractors=(0, 1), progress=False)
    (cache / "objects.yaml").write_text(
        "objects:\n  - {name: textured_box, class_id: '1', mesh: scene/models/obj_000001.ply}\n")
    ds = BopDataset(cache / "scene")
    frames = [ds.frame(s, i) for s, i in ds.images()]

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
            rep.publish(frame_messages(frames[k % len(frames)], s))
            if rep.wait_result(s, 60) is None:
                print(f"ERROR: warm-up frame {k} got no answer")
                return 3
        time.sleep(0.5)
        with rep.lock:
            for d in (rep.poses, rep.estimates, rep.tf, rep.sent_at, rep.received_at):
                d.clear()
        rss0 = rss_mb(node.pid)
        print(f"coop_node pid {node.pid}: RSS after {args.warmup} warm-up frames {rss0:.1f} MB; "
              f"soak: {args.frames} frames at {args.rate:g} Hz"
              f"{' at most, lock-step' if args.lockstep else ''}", flush=True)
        sent, answered, lat, rss = [], 0, [], [rss0]
        period = 1.0 / args.rate
        t_next = time.monotonic()
        t0 = time.monotonic()

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
        for k in range(args.frames):
            s = time.time_ns()
            rep.publish(frame_messages(frames[k % len(frames)], s))
            sent.append(s)
            if (k + 1) % 100 == 0:
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
