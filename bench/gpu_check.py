"""One GPU check of the engine: deeplab, crop 512, batch 8 + 8, bf16, N steps; then scoring 2048x1024.

Run through bench/gpu_check.sh (which samples `nvidia-smi` meanwhile). Prints and writes JSON: ms per
training step (after the first 20), peak GPU memory, data-wait share, scoring images/s on 2048x1024.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine_speed import file_pool, file_samples  # noqa: E402

from worker.engine.stream import score_and_select  # noqa: E402
from worker.engine.trainer import TrainConfig, train  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--compile", action="store_true")
    ap.add_argument("--out", default="gpu_check.json")
    args = ap.parse_args()
    assert torch.cuda.is_available(), "no CUDA device"
    with tempfile.TemporaryDirectory(prefix="s4al-gpu-") as tmp:
        # Crops read decoded copies, as the worker's do; they are written as training first reads each file.
        data = file_pool(file_samples(Path(tmp), args.images, 1024, 2048, 19), 19, copies=f"{tmp}/copies")
        stamps: list[float] = []
        cfg = TrainConfig(model="deeplabv3plus_mobilenetv2", crop_size=512, base_size=1024,
                          batch_size=args.batch_size, unlabeled_batch_size=args.batch_size,
                          iterations=args.steps, warmup_fraction=0.0, device="cuda", compile=args.compile)
        torch.cuda.reset_peak_memory_stats()
        result = train(cfg, data, progress=lambda *_: stamps.append(time.perf_counter()))
        torch.cuda.synchronize()
        skip = min(20, args.steps // 4)
        ms = 1000 * (stamps[-1] - stamps[skip]) / (len(stamps) - 1 - skip)
        train_mem = torch.cuda.max_memory_allocated() / 2**30
        torch.cuda.reset_peak_memory_stats()
        start = time.perf_counter()
        regions = score_and_select(result.teacher, data.train, metric="entropy", region_kind="grid",
                                   region_size=32, budget_regions=None, budget_fraction=None, per_image=4,
                                   total_pixels=args.images * 2048 * 1024, device=torch.device("cuda"),
                                   amp=True, base_size=1024, batch_size=32, max_pixels=1 << 24, workers=4)
        torch.cuda.synchronize()
        score_s = time.perf_counter() - start
    out = {"gpu": torch.cuda.get_device_name(), "bf16": torch.cuda.is_bf16_supported(),
           "ms_per_step": ms, "train_peak_gpu_gb": train_mem, "data_wait_share": result.data_wait_seconds /
           result.seconds, "score_images_per_s": args.images / score_s,
           "score_peak_gpu_gb": torch.cuda.max_memory_allocated() / 2**30, "regions": len(regions),
           "losses": result.losses, "config": vars(args)}
    print(json.dumps(out, indent=2))
    Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
