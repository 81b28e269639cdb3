"""Export ultralytics' yolov8n (architecture from its model YAML, no weights) to ONNX.

Runs only inside the side virtual environment that ``benchmarks/latency.py`` makes
(torch 2.14.1 + torchvision 0.29.1 + ultralytics): ultralytics needs torchvision, which does
not work beside the project's pinned torch. Random weights change nothing about latency; the
graph is ultralytics' own export (box decode inside, no NMS), as the paper times yolov8n.

    <venv>/bin/python benchmarks/yolov8n_export.py --out yolov8n_640.onnx --img-size 640
"""

import argparse
import json
import os
import shutil
import tempfile
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--img-size", type=int, default=640)
    parser.add_argument("--opset", type=int, default=17)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="yolov8n-export-") as tmp:
        # Offline (nothing to download for a YAML-built model) and a throwaway settings dir,
        # so the export neither reaches the network nor writes into the user's home.
        os.environ.update(YOLO_OFFLINE="1", YOLO_CONFIG_DIR=tmp)
        os.chdir(tmp)
        import torch
        import ultralytics
        from ultralytics import YOLO

        exported = YOLO("yolov8n.yaml").export(format="onnx", imgsz=args.img_size,
                                               opset=args.opset, simplify=True, dynamic=False)
        shutil.move(str(Path(tmp) / exported), args.out)
    print(json.dumps({"ultralytics": ultralytics.__version__, "torch": torch.__version__,
                      "opset": args.opset, "image_size": args.img_size}))


if __name__ == "__main__":
    main()
