"""A step on two replicas equals the same step on one device (loss normalised by the positives
of the whole global batch, weight decay counted once). Runs in a subprocess: the two logical
CPU devices must be configured before TensorFlow initialises."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json
    import numpy as np
    import tensorflow as tf
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2
    )
    import keras
    from ssd_core.losses import SSDLoss
    from ssd_core.training import Trainer

    N, C = 6, 3

    def tiny_detector():
        # No batch norm, so per-replica and full-batch forwards agree exactly.
        images = keras.Input((4, 4, 3))
        x = keras.layers.Flatten()(images)
        logits = keras.layers.Reshape((N, C))(keras.layers.Dense(N * C, name="conf")(x))
        deltas = keras.layers.Reshape((N, 4))(keras.layers.Dense(N * 4, name="loc")(x))
        return keras.Model(images, {"cls_logits": logits, "bbox_regression": deltas})

    def trainer(strategy, weights):
        with strategy.scope():
            model = tiny_detector()
            model.set_weights(weights)
            optimizer = keras.optimizers.SGD(learning_rate=0.1)
            return Trainer(model, optimizer, SSDLoss(), 5e-4, strategy)

    rng = np.random.default_rng(0)
    images = rng.uniform(0, 1, (4, 4, 4, 3)).astype("float32")
    # Replica 0 gets images 0-1 with 3 positives, replica 1 images 2-3 with 1 positive.
    cls_targets = np.array(
        [[1, 2, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0], [2, 0, 0, 0, 0, 0]],
        dtype="int32",
    )
    targets = {"cls_targets": cls_targets,
               "box_targets": rng.normal(0, 1, (4, N, 4)).astype("float32")}
    weights = tiny_detector().get_weights()

    single = trainer(tf.distribute.get_strategy(), weights)
    single_losses = single.train_step(tf.constant(images),
                                      {k: tf.constant(v) for k, v in targets.items()})

    mirrored = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    dataset = tf.data.Dataset.from_tensors((images, targets))
    batch = next(iter(mirrored.experimental_distribute_dataset(dataset)))
    replicated = trainer(mirrored, weights)
    replicated_losses = replicated.train_step(*batch)

    print(json.dumps({
        "replicas": mirrored.num_replicas_in_sync,
        "single_losses": single_losses,
        "replicated_losses": replicated_losses,
        "max_weight_difference": max(
            float(np.abs(a - b).max())
            for a, b in zip(single.model.get_weights(), replicated.model.get_weights())
        ),
        "max_weight_change": max(
            float(np.abs(a - b).max()) for a, b in zip(single.model.get_weights(), weights)
        ),
    }))
    """
)


def test_two_replica_step_equals_single_device_step() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    for name in ("loss", "loc_loss", "conf_loss", "weight_decay"):
        single = report["single_losses"][name]
        replicated = report["replicated_losses"][name]
        assert abs(single - replicated) <= 1e-5 * max(1.0, abs(single)), (name, report)
    assert report["max_weight_change"] > 1e-3  # the step did move the weights
    assert report["max_weight_difference"] < 1e-6, report
