"""Large frames between processes (a script, not a test): does coop_node answer a W x H frame
sent by another process, for a publisher shared-memory segment and a QoS?

    .venv/bin/python bench/big_frames.py [--sizes 1920x1080,2560x1920,4096x3072]
        [--segments 0,16,64] [--qos best_effort,reliable] [--frames 3] [--wait 10]

Starts coop_node (mode rgb, the synthetic box scene of the tests upscaled to each size, its own
Fast DDS profile: 16 MiB segment, a receiving port queue of 4096 fragments) as its own process;
this process publishes ``--frames`` frames (rgb8 image, camera_info, detections) per case with
its Fast DDS segment set by ``COOP_ROS_SHM_SEGMENT_MB`` (0: Fast DDS's default 512 KiB, as a
stock camera driver has) and the node's image subscription in ``--qos``. Prints, per case, the
frames answered and what the node's /diagnostics said (received images, messages the middleware
reported lost, the ERROR text). The cause of issue 25's "4096 x 3072 image gets no answer and no
log": a best-effort image larger than the publisher's segment (or, on the receiving side, of
more than 512 x 64 KiB fragments) never completes and is dropped without a trace.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import random
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(1, 101)))
os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
REPO = Path(__file__).resolve().parents[1]


def _case(size, segment, qos, args, root) -> dict:
    """Run one case in a fresh publisher process (its segment is per process)."""
    code = f"""
import os, sys, time, dataclasses, json
sys.path.insert(0, {str(REPO / 'bench')!r})
import big_frames
print("RESULT " + json.dumps(big_frames._publish({size!r}, {qos!r}, {args.frames}, {args.wait},
                                                   {str(root)!r})))
"""
    env = dict(os.environ, COOP_ROS_SHM_SEGMENT_MB=str(segment))
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       timeout=600, cwd=str(REPO))
    for line in p.stdout.splitlines():
        if line.startswith("RESULT "):
            import json
            return json.loads(line[7:])
    return {"error": p.stderr[-2000:]}


def _publish(size: str, qos: str, n: int, wait: float, root: str) -> dict:
    """In the publisher process: start the node, send ``n`` frames of ``size``, collect."""
    import cv2
    from diagnostic_msgs.msg import DiagnosticArray

    sys.path.insert(0, str(REPO / "test"))
    from conftest import node_params_file

    from coop_ros.bop.dataset import BopDataset
    from coop_ros.ros.replay import Replayer, Spinner, frame_messages
    root = Path(root)
    W, H = (int(v) for v in size.split("x"))
    extra = {"qos": {"image": {"reliability": qos}}}
    params = node_params_file(root, mode="rgb", **extra)
    log = open(root / f"node_{size}_{qos}.log", "w")
    node = subprocess.Popen([sys.executable, "-m", "coop_ros.ros.node", "--ros-args",
                             "--params-file", str(params)], stdout=log, stderr=subprocess.STDOUT,
                            env={k: v for k, v in os.environ.items()
                                 if k != "COOP_ROS_SHM_SEGMENT_MB"}, cwd=str(REPO))
    fr = BopDataset(root / "scene").frame(0, 0)
    s = W / fr.width
    fr.rgb = cv2.resize(fr.rgb, (W, H), interpolation=cv2.INTER_LINEAR)
    fr.depth = None
    fr.K = fr.K.copy()
    fr.K[:2] *= s
    fr.gt_info = [dataclasses.replace(g, bbox_visib=g.bbox_visib * s, bbox_obj=g.bbox_obj * s)
                  for g in fr.gt_info]
    sp = Spinner()
    rep = sp.add(Replayer("big_frames_probe", context=sp.context))
    diag: dict = {"errors": []}

    def on_diag(m):
        for st in m.status:
            if st.name.startswith("coop_node"):
                diag.update({kv.key: kv.value for kv in st.values})
                lvl = st.level[0] if isinstance(st.level, bytes) else st.level
                if lvl >= 1:
                    diag["errors"].append(("ERROR" if lvl == 2 else "WARN") + ": " + st.message)
    rep.create_subscription(DiagnosticArray, "/diagnostics", on_diag, 10)
    sp.start()
    answered = 0
    try:
        if not rep.wait_for_node(180):
            return {"error": "node did not come up"}
        for _ in range(n):
            st = time.time_ns()
            rep.publish(frame_messages(fr, st), ack_timeout=wait)
            answered += rep.wait_result(st, wait) is not None
        time.sleep(1.5)
    finally:
        sp.stop()
        node.send_signal(2)
        node.wait(30)
        log.close()
    err = [e for e in diag["errors"] if "image" in e and "overloaded" not in e]
    return {"size": size, "mb": W * H * 3 / 1e6, "qos": qos, "sent": n, "answered": answered,
            "received_image": diag.get("received_image"),
            "messages_lost": diag.get("messages_lost"), "error": err[-1][:160] if err else ""}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="1920x1080,4096x3072")
    ap.add_argument("--segments", default="0,16,64", help="publisher segments [MiB]")
    ap.add_argument("--qos", default="best_effort,reliable")
    ap.add_argument("--frames", type=int, default=3)
    ap.add_argument("--wait", type=float, default=10.0, help="seconds per frame for an answer")
    ap.add_argument("--out", default="/tmp/coop_big_frames")
    args = ap.parse_args()
    sys.path.insert(0, str(REPO / "test"))
    from conftest import synth_box_scene
    root = Path(args.out)
    synth_box_scene(root)
    print("| image | MB | publisher segment | image QoS | answered | images received | "
          "lost (reported) | /diagnostics WARN / ERROR about the images |")
    print("|---|---:|---|---|---:|---:|---|---|")
    for size in args.sizes.split(","):
        for seg in (int(v) for v in args.segments.split(",")):
            for qos in args.qos.split(","):
                r = _case(size, seg, qos, args, root)
                if "size" not in r:
                    print(f"| {size} | | {seg} MiB | {qos} | error: {r.get('error', '')[:200]} |")
                    continue
                segname = "512 KiB (Fast DDS default)" if seg == 0 else f"{seg} MiB"
                print(f"| {size} | {r['mb']:.1f} | {segname} | {qos} | {r['answered']} / "
                      f"{r['sent']} | {r['received_image']} | {r['messages_lost'] or '-'} | "
                      f"{r['error'] or '-'} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
