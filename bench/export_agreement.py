"""How closely an exported model (TorchScript; ONNX in onnxruntime) follows the checkpoint it came from:
the share of pixels whose argmax agrees with torch's, over a folder of images.

    .venv/bin/python bench/export_agreement.py CHECKPOINT IMAGES_DIR --out DIR [--limit 200]

Prints a table and writes DIR/export_agreement.json.
"""

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoint", type=Path)
    ap.add_argument("images", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--limit", type=int, default=200)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from worker.engine import checkpoint
    from worker.export_model import export_checkpoint
    from worker.predict import ExportedModel, decode, list_images

    args.out.mkdir(parents=True, exist_ok=True)
    ckpt = checkpoint.load(args.checkpoint)
    reference = checkpoint.load_model(ckpt)
    exported = {fmt: ExportedModel(export_checkpoint(ckpt, fmt, args.out / f"model{ext}"))
                for fmt, ext in [("torchscript", ".torchscript.pt"), ("onnx", ".onnx")]}
    agree = dict.fromkeys(exported, 0)
    max_diff = dict.fromkeys(exported, 0.0)
    pixels = 0
    paths = list_images(args.images)[:args.limit]
    for path in paths:
        image = decode(path)[None]
        with torch.no_grad():
            x = torch.from_numpy(image).permute(0, 3, 1, 2).float() / 255
            probs = torch.softmax(reference(x), 1)
        want = probs.argmax(1).numpy()
        pixels += want.size
        for fmt, model in exported.items():
            got, conf = model.predict(image)
            agree[fmt] += int((got == want).sum())
            max_diff[fmt] = max(max_diff[fmt], float(np.abs(conf - probs.max(1).values.numpy()).max()))
    rows = [{"format": f, "agreement": agree[f] / pixels, "max_confidence_diff": max_diff[f]}
            for f in exported]
    print(f"{len(paths)} images, {pixels} pixels, architecture {ckpt['config']['model']}\n")
    print(f"{'format':<12} {'argmax agreement':>17} {'max |Δ confidence|':>19}")
    for r in rows:
        print(f"{r['format']:<12} {r['agreement']:17.6%} {r['max_confidence_diff']:19.2e}")
    (args.out / "export_agreement.json").write_text(json.dumps(
        {"checkpoint": str(args.checkpoint), "images": len(paths), "pixels": pixels, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
