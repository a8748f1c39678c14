"""Training and inference throughput of Attend-Fusion, data loading included, against a compute-only
reference run of the same model in the same process.

For each size (the paper's: hidden 2,048, attention dim 1,024; and a small one), it measures:
- reference: training steps on tensors already in memory (model compute only);
- train(): `vtag.tasks.train.train` for one epoch on real records, the whole path (reading the records,
  building multi-hot targets, the optimizer), examples/s from its own epoch timing and end to end;
- inference: `vtag.tasks.evaluate.predict` records/s (reading + forward) against forward passes alone.
The ratio train()/reference says what the data path costs on top of the model.

    .venv/bin/python bench/bench_train.py [--records examples/yt8m-2018-sample.tfrecord] [--device cpu]

On a GPU one 293-video shard is a single batch: `--device cuda --batch-size 4096 --copies 200` reads
the records 200 times over (links in a temporary folder), so that an epoch is long enough to time.
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
SIZES = {"paper": {}, "small": {"hidden": 256, "attention_dim": 128, "num_heads": 4}}


def reference_rate(model, batch_size: int, steps: int, device: str) -> float:
    """Training examples/s on random in-memory tensors: the model's compute alone (with the same
    autocast as `vtag.tasks.train`: bf16 on CUDA)."""
    from vtag.tasks.train import _autocast

    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    dv, da = model.config.input_dims
    visual = torch.randn(batch_size, dv, device=device)
    audio = torch.randn(batch_size, da, device=device)
    target = (torch.rand(batch_size, model.config.num_classes, device=device) < 0.001).float()
    model.train()
    for step in range(steps + 1):
        if step == 1:  # the first step pays for allocations
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with _autocast(device):
            logits = model(visual, audio)
        loss = loss_fn(logits.float(), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - t0)


def forward_rate(model, batch_size: int, repeats: int, device: str) -> float:
    dv, da = model.config.input_dims
    visual, audio = torch.randn(batch_size, dv, device=device), torch.randn(batch_size, da, device=device)
    model.eval()
    with torch.inference_mode():
        model(visual, audio)
        t0 = time.perf_counter()
        for _ in range(repeats):
            model(visual, audio)
    return repeats * batch_size / (time.perf_counter() - t0)


def main() -> None:
    from vtag.tasks.evaluate import predict
    from vtag.models.registry import count_parameters, create_model
    from vtag.models.storage import save_model
    from vtag.io.fast_reader import read_video_level_arrays
    from vtag.tasks.train import TrainConfig, train

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", nargs="+", default=[str(REPO / "examples" / "yt8m-2018-sample.tfrecord")])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--steps", type=int, default=4, help="reference steps per size")
    parser.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    parser.add_argument("--copies", type=int, default=1, help="read the records this many times over")
    args = parser.parse_args()

    links = tempfile.TemporaryDirectory()
    if args.copies > 1:
        from vtag.io.paths import expand_paths

        originals = expand_paths(args.records)
        args.records = []
        for copy in range(args.copies):
            for number, original in enumerate(originals):
                link = Path(links.name) / f"copy{copy:05d}-{number:04d}.tfrecord"
                link.symlink_to(original.resolve())
                args.records.append(str(link))
    videos = len(read_video_level_arrays(args.records))
    print("command: " + " ".join([".venv/bin/python", *sys.argv]))
    if args.device.startswith("cuda"):
        print(f"gpu: {torch.cuda.get_device_name(args.device)}")
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {args.device}; {videos} videos in {len(args.records)} file(s)")
    for size in args.sizes:
        overrides = SIZES[size]
        torch.manual_seed(0)
        model = create_model("attend-fusion", **overrides).to(args.device)
        params = count_parameters(model)
        reference = reference_rate(model, args.batch_size, args.steps, args.device)

        with tempfile.TemporaryDirectory() as tmp:
            config = TrainConfig(train=args.records, model="attend-fusion", epochs=1, batch_size=args.batch_size,
                                 out=str(Path(tmp) / "run"), device=args.device, model_overrides=dict(overrides),
                                 size="paper")  # "small" sets its widths in overrides
            t0 = time.perf_counter()
            result = train(config, log=lambda line: None)
            end_to_end = videos / (time.perf_counter() - t0)
            in_loop = result.history[0]["examples_per_s"]

            save_model(model, Path(tmp) / "model", extra={"vocabulary": "2018"})
            t0 = time.perf_counter()
            predict(args.records, model=str(Path(tmp) / "model"), device=args.device)
            inference = videos / (time.perf_counter() - t0)
        forward = forward_rate(model, 1024, 3, args.device)

        print(f"\nattend-fusion {size} ({params / 1e6:.1f}M parameters, 3,862 classes, batch {args.batch_size}):")
        print(f"  train, compute only (reference): {reference:10.1f} examples/s")
        print(f"  train(), epoch loop with data:   {in_loop:10.1f} examples/s  ({in_loop / reference:.2f} x reference)")
        print(f"  train(), end to end incl. reading records and model build: {end_to_end:.1f} examples/s")
        print(f"  inference, forward only:         {forward:10.1f} records/s")
        print(f"  inference, predict() incl. reading: {inference:7.1f} records/s  ({inference / forward:.2f} x forward)")


if __name__ == "__main__":
    main()
