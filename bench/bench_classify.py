"""Where `vtag classify RECORDS` spends its time and memory, stage by stage, in one process.

    python bench/bench_classify.py [examples/yt8m-2018-sample.tfrecord] [--runtime torch|numpy]

Each stage is timed with perf_counter (wall) and process_time (CPU, all threads); after it, the process's peak resident memory so far (VmHWM in
/proc/self/status, Linux) is read, so the table shows what each stage adds to the peak. The stages
are those of `vtag classify` on record files with the shipped model: imports, vocabulary detection,
reading the records, loading the model (config and header checks, reading the tensors, finite check,
int4 unpacking), the memory's keys, the networks' forward, the memory's vote and blend, formatting
the printed lines. Run it on an otherwise quiet machine; note the load average beside the numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

START = time.perf_counter()
CPU_START = time.process_time()
ROWS: list[tuple[str, float, float, float]] = []
_last = [START, CPU_START]


def peak_mb() -> float:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def stage(name: str) -> None:
    now, cpu = time.perf_counter(), time.process_time()
    ROWS.append((name, now - _last[0], cpu - _last[1], peak_mb()))
    _last[0], _last[1] = now, cpu


def torch_path(path: Path, top_k: int) -> list[str]:
    import numpy as np

    from vtag.cli.tagging import record_line
    from vtag.io.records import read_records
    from vtag.tasks.vocab_match import records_vocabulary
    stage("imports (vtag, numpy)")
    import torch

    torch.set_num_threads(max(1, torch.get_num_threads()))
    stage("import torch")
    from vtag.models import storage, weight_file
    from vtag.models.model_dirs import read_config
    from vtag.models.packing import dequantise_state
    from vtag.models.registry import ModelConfig
    from vtag.models.trunk_files import read_tensor_file
    from vtag.io.vocab import load_vocabulary
    stage("import vtag.models (torch modules)")
    records_vocabulary([path])
    stage("vocabulary detection (label scan)")
    records = list(read_records([path]))
    visual = np.stack([r.rgb for r in records])
    audio = np.stack([r.audio for r in records])
    stage(f"read {len(records)} records")
    directory = storage.resolve_model_dir(None, "2018")
    meta = read_config(directory / storage.CONFIG_FILE)
    config = ModelConfig.from_dict(meta["model"])
    expected = weight_file.expected_tensors(config, "config.json")
    weight_file.check_header(directory / storage.WEIGHTS_FILE, expected, "config.json")
    stage("config + header checks (meta-device build)")
    state = read_tensor_file(directory / storage.WEIGHTS_FILE)
    stage("read model.safetensors (46 MB)")
    weight_file.check_values(directory / storage.WEIGHTS_FILE, state)
    stage("finite check of every tensor")
    state = dequantise_state(state)
    stage("int4 unpacking (dequantise_state)")
    net = storage._built_from(config, state).eval()
    del state
    stage("build the modules (meta device, assign)")
    vocabulary = load_vocabulary(str(meta.get("vocabulary", "2018")))
    stage("load the vocabulary")
    with torch.inference_mode():
        net.memory.unit_keys()
        stage("memory keys: unpack + normalise (44,915 x 640)")
        v, a = torch.from_numpy(visual), torch.from_numpy(audio)
        logits = net.network_logits(v, a)
        stage("forward: 3 networks")
        blended = net.memory.blend(v, a, logits)
        scores = torch.sigmoid(blended).numpy()
        stage("memory: neighbours, votes, blend")
    return _lines(records, scores, vocabulary, top_k, record_line)


def numpy_path(path: Path, top_k: int) -> list[str]:
    import numpy as np

    from vtag.cli.tagging import record_line
    from vtag.io.records import read_records
    from vtag.tasks.vocab_match import records_vocabulary
    stage("imports (vtag, numpy)")
    from vtag.models import numpy_runtime
    from vtag.io.vocab import load_vocabulary
    stage("import vtag.models.numpy_runtime")
    records_vocabulary([path])
    stage("vocabulary detection (label scan)")
    records = list(read_records([path]))
    visual = np.stack([r.rgb for r in records])
    audio = np.stack([r.audio for r in records])
    stage(f"read {len(records)} records")
    scorer = numpy_runtime.load_numpy_model(numpy_runtime.resolve_model_dir(None, "2018"))
    stage("load: checks, read, finite check")
    vocabulary = load_vocabulary(str(scorer.meta.get("vocabulary", "2018")))
    stage("load the vocabulary")
    logits = scorer.network_logits(visual, audio)
    stage("forward: 3 networks (int4 unpacked layer by layer)")
    scores = 1 / (1 + np.exp(-scorer.memory.blend(visual, audio, logits)))
    stage("memory: keys unpacked in chunks, neighbours, votes, blend")
    return _lines(records, scores, vocabulary, top_k, record_line)


def _lines(records, scores, vocabulary, top_k, record_line) -> list[str]:
    from vtag.tasks.classify import LabelScore, Prediction

    lines = []
    for record, row in zip(records, scores):
        top = np.argpartition(-row, top_k - 1)[:top_k]
        top = top[np.argsort(-row[top], kind="stable")]
        labels = [LabelScore(int(i), vocabulary.name(int(i)), float(row[i])) for i in top]
        lines.append(record_line(Prediction(record.id, labels, "m", "p")))
    stage(f"format {len(lines)} lines")
    return lines


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", nargs="?", default=str(REPO / "examples" / "yt8m-2018-sample.tfrecord"))
    parser.add_argument("--runtime", choices=("torch", "numpy"), default="torch")
    parser.add_argument("--top-k", type=int, default=5)
    args = parser.parse_args()
    import numpy as np

    stage("python start-up")
    (torch_path if args.runtime == "torch" else numpy_path)(Path(args.records), args.top_k)
    total = time.perf_counter() - START
    print(f"| {'stage':<60} | {'wall s':>7} | {'CPU s':>7} | {'peak RSS MB':>11} |")
    for name, seconds, cpu, peak in ROWS:
        print(f"| {name:<60} | {seconds:7.3f} | {cpu:7.3f} | {peak:11.0f} |")
    print(f"| {'total in process (the interpreter start not included)':<60} | {total:7.3f} | "
          f"{time.process_time() - CPU_START:7.3f} | {peak_mb():11.0f} |")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
