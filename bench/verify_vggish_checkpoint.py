"""VGGish parity: a TensorFlow graph with AudioSet's VGGish layout and variable names, random weights,
saved as a V1 checkpoint, imported through `vtag weights import --unverified` and run by vtag.

    python bench/verify_vggish_checkpoint.py --tf-python /path/to/side-venv/bin/python [--examples 8]

The side environment needs `tensorflow-cpu` and `tf-slim` (`python -m venv side && side/bin/pip install
tensorflow-cpu tf-slim`); `$VTAG_TF_PYTHON` stands in for `--tf-python`. This script runs the TF part
of itself there (`--tf-worker`, which imports nothing from vtag), then, in this interpreter, imports
the checkpoint into a temporary vtag cache with the CLI, loads VGGish the way `vtag extract` does and
compares the 128-d embeddings (fc2 before any activation) on the same log-mel examples. It prints one
JSON line with the max abs difference and exits 1 if it exceeds `--tolerance` times the largest
reference magnitude (at least 1), 2 if the side environment cannot run.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent


def tf_worker(folder: Path, seed: int) -> None:
    """Builds the AudioSet layout with tf-slim (from the model's published structure: 3x3 SAME ReLU
    convs, 2x2/2 max pools, NHWC flatten, fc 4096-4096-128 with no activation on the last), saves it
    with the V1 saver and writes the embeddings of `examples.npy`."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf
    import tf_slim as slim

    tf.compat.v1.disable_eager_execution()
    examples = np.load(folder / "examples.npy")
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
        # He-scaled weights and non-zero biases, so every layer (biases included) shapes the output.
        weights = tf.compat.v1.variance_scaling_initializer(scale=2.0)
        biases = tf.compat.v1.random_normal_initializer(stddev=0.05)
        with slim.arg_scope([slim.conv2d, slim.fully_connected], weights_initializer=weights,
                            biases_initializer=biases, activation_fn=tf.nn.relu, trainable=True), \
                slim.arg_scope([slim.conv2d], kernel_size=[3, 3], stride=1, padding="SAME"), \
                slim.arg_scope([slim.max_pool2d], kernel_size=[2, 2], stride=2, padding="SAME"), \
                tf.compat.v1.variable_scope("vggish"):
            features = tf.compat.v1.placeholder(tf.float32, (None, 96, 64), name="input_features")
            net = tf.reshape(features, [-1, 96, 64, 1])
            net = slim.conv2d(net, 64, scope="conv1")
            net = slim.max_pool2d(net, scope="pool1")
            net = slim.conv2d(net, 128, scope="conv2")
            net = slim.max_pool2d(net, scope="pool2")
            net = slim.repeat(net, 2, slim.conv2d, 256, scope="conv3")
            net = slim.max_pool2d(net, scope="pool3")
            net = slim.repeat(net, 2, slim.conv2d, 512, scope="conv4")
            net = slim.max_pool2d(net, scope="pool4")
            net = slim.flatten(net)
            net = slim.repeat(net, 2, slim.fully_connected, 4096, scope="fc1")
            net = slim.fully_connected(net, 128, activation_fn=None, scope="fc2")
            embedding = tf.identity(net, name="embedding")
        names = sorted(v.op.name for v in tf.compat.v1.global_variables())
        saver = tf.compat.v1.train.Saver(write_version=tf.compat.v1.train.SaverDef.V1)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            out = sess.run(embedding, {features: examples})
            saver.save(sess, str(folder / "vggish_random.ckpt"), write_meta_graph=False, write_state=False)
    np.save(folder / "tf_embeddings.npy", out)
    (folder / "tf_variables.json").write_text(json.dumps(names))


def _examples(count: int, seed: int) -> np.ndarray:
    """Log-mel examples from vtag's frontend on a chirp plus noise (the input is shared by both sides,
    so only the network is compared)."""
    from vtag.features.vggish import SAMPLE_RATE, log_mel_examples

    rng = np.random.default_rng(seed)
    t = np.arange(int((count + 0.5) * SAMPLE_RATE)) / SAMPLE_RATE
    wave = 0.4 * np.sin(2 * np.pi * (200 + 900 * t) * t) + 0.05 * rng.standard_normal(t.size)
    return log_mel_examples(wave.astype(np.float64))[:count]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tf-python", default=os.environ.get("VTAG_TF_PYTHON"),
                        help="python of a venv with tensorflow-cpu and tf-slim (default $VTAG_TF_PYTHON)")
    parser.add_argument("--examples", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="allowed max abs difference, relative to max(1, max |reference|)")
    parser.add_argument("--tf-worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tf_worker is not None:
        tf_worker(args.tf_worker, args.seed)
        return 0
    if not args.tf_python:
        print("verify_vggish_checkpoint: give --tf-python (a venv with tensorflow-cpu and tf-slim) "
              "or set VTAG_TF_PYTHON", file=sys.stderr)
        return 2

    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="vtag-vggish-parity-") as tmp:
        folder = Path(tmp)
        np.save(folder / "examples.npy", _examples(args.examples, args.seed))
        worker = subprocess.run([args.tf_python, __file__, "--tf-worker", str(folder), "--seed", str(args.seed)],
                                capture_output=True, text=True)
        if worker.returncode != 0:
            print(f"verify_vggish_checkpoint: the TensorFlow side failed:\n{worker.stderr[-3000:]}", file=sys.stderr)
            return 2
        checkpoint = folder / "vggish_random.ckpt"
        env = dict(os.environ, VTAG_CACHE=str(folder / "cache"),
                   PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        imported = subprocess.run([sys.executable, "-m", "vtag", "weights", "import", "--unverified", str(checkpoint)],
                                  capture_output=True, text=True, env=env)
        if imported.returncode != 0:
            print(f"verify_vggish_checkpoint: `vtag weights import --unverified` failed:\n"
                  f"{imported.stdout}{imported.stderr}", file=sys.stderr)
            return 1
        os.environ["VTAG_CACHE"] = env["VTAG_CACHE"]
        import torch

        from vtag.features.vggish import load_vggish

        model = load_vggish()  # the imported checkpoint, as `vtag extract` would load it
        with torch.no_grad():
            ours = model(torch.from_numpy(np.load(folder / "examples.npy"))).numpy()
        reference = np.load(folder / "tf_embeddings.npy")
        variables = json.loads((folder / "tf_variables.json").read_text())
    diff = float(np.max(np.abs(ours.astype(np.float64) - reference))) if ours.shape == reference.shape else float("inf")
    scale = max(1.0, float(np.max(np.abs(reference))))
    ok = diff <= args.tolerance * scale
    print(json.dumps({"stage": "vggish_checkpoint", "examples": int(reference.shape[0]), "variables": len(variables),
                      "max_abs_reference": round(float(np.max(np.abs(reference))), 6), "max_abs_diff": diff,
                      "tolerance": args.tolerance * scale, "ok": ok}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
