#!/usr/bin/env python3
"""Benchmark of the Co-op networks (random weights): latency and peak memory, markdown table.

Cases (224 x 224 crops, ``large`` backbone = ViT-L encoder + ViT-B decoder):

* coarse, 42 templates, all encoded: encode 1 query + 42 templates (one batch of 43), decode 42
  (query, template) pairs, coarse head, template scores;
* coarse, 42 templates cached: the templates' encodings are computed once per object and reused,
  so per query: encode 1 + decode 42 + head;
* refiner: one (render, query) pair: encode 2, decode, DPT head (full-resolution maps).

CPU runs fp32; ``--device cuda`` runs bf16 weights and inputs (if CUDA is available).
Memory: CPU = peak resident set size over the warm-up and timed calls above the RSS before the
first call (weights and inputs resident, freed heap trimmed): the forward's working memory
(Linux VmHWM reset through /proc/self/clear_refs; ``resource.getrusage`` peak as a fallback);
GPU = ``torch.cuda.max_memory_allocated`` (weights included). On a CPU shared with other busy
processes, run with ``OMP_NUM_THREADS=1``: with more OpenMP threads than free cores every small
parallel op waits for a descheduled thread (measured here: 50x slower element-wise ops). Usage::

    .venv/bin/python bench/bench_nets.py --repeat 3 [--device cuda] [--cases coarse,refiner]
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import resource
import statistics
import time
from pathlib import Path

import torch

from coop_ros.nets import CoarseNet, RefinerNet, template_scores

MB = 2 ** 20


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _reset_hwm() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def _hwm_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _trim() -> None:
    """Return freed heap memory to the OS (glibc), so RSS baselines do not hold earlier activations."""
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _measure(fn, device: torch.device, repeat: int, warmup: int):
    """(latencies in s, peak memory in bytes, memory note) of ``fn()``.

    CPU peak = highest RSS over warm-up and timed runs minus the RSS before the first call
    (weights and inputs resident, freed heap trimmed): the forward's working memory.
    """
    _trim()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    base = _rss_bytes()
    exact = _reset_hwm() if device.type == "cpu" else True
    hwm0 = _hwm_bytes()
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        return times, torch.cuda.max_memory_allocated(), "max_memory_allocated, weights incl."
    hwm = _hwm_bytes()
    if exact:
        return times, hwm - base, "peak RSS - RSS before"
    note = "ru_maxrss delta" if hwm > hwm0 else "<= ru_maxrss delta (peak not exceeded)"
    return times, max(hwm - base, 0), note


def _weights_mb(model: torch.nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / MB


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--templates", type=int, default=42)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--config", default="large")
    ap.add_argument("--cases", default="coarse,refiner")
    args = ap.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: CUDA is not available in this torch build / machine")
    device = torch.device(args.device)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    S, T = args.size, args.templates
    gen = torch.Generator().manual_seed(0)

    def img(b):
        return torch.randn(b, 3, S, S, generator=gen).to(device=device, dtype=dtype)

    rows = []
    cases = set(args.cases.split(","))
    if "coarse" in cases:
        model = CoarseNet(args.config).to(device=device, dtype=dtype).eval()
        query, templates = img(1), img(T)

        def coarse_all():
            with torch.inference_mode():
                enc = model.encode(torch.cat((query, templates)))
                q = type(enc)(enc.tokens[:1], enc.pos[:1], enc.grid)
                t = type(enc)(enc.tokens[1:], enc.pos[1:], enc.grid)
                out = model.forward_features(q, t)
                return template_scores(out.logits)

        with torch.inference_mode():
            t_enc = model.encode(templates)

        def coarse_cached():
            with torch.inference_mode():
                out = model.forward_features(model.encode(query), t_enc)
                return template_scores(out.logits)

        for name, fn, what in ((f"coarse ({args.config}), {T} templates, all encoded", coarse_all,
                                f"enc {T + 1} + dec {T}"),
                               (f"coarse ({args.config}), {T} templates cached", coarse_cached,
                                f"enc 1 + dec {T}")):
            times, mem, note = _measure(fn, device, args.repeat, args.warmup)
            rows.append((name, what, times, mem, note, _weights_mb(model)))
        del model, t_enc
        gc.collect()
    if "refiner" in cases:
        model = RefinerNet(args.config).to(device=device, dtype=dtype).eval()
        render, query = img(1), img(1)

        def refine():
            with torch.inference_mode():
                return model(render, query)

        times, mem, note = _measure(refine, device, args.repeat, args.warmup)
        rows.append((f"refiner ({args.config} + DPT)", "enc 2 + dec 1 + DPT", times, mem, note,
                     _weights_mb(model)))

    dev = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"\n{dev}, {str(dtype).replace('torch.', '')}, {S}x{S}, torch {torch.__version__}, "
          f"repeat {args.repeat}, warm-up {args.warmup}\n")
    print("| case | work | latency mean (s) | min (s) | peak memory (MiB) | weights (MiB) |")
    print("|---|---|---|---|---|---|")
    for name, what, times, mem, note, wmb in rows:
        print(f"| {name} | {what} | {statistics.mean(times):.3f} | {min(times):.3f} | "
              f"{mem / MB:.0f} ({note}) | {wmb:.0f} |")


if __name__ == "__main__":
    main()
