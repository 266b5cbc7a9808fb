"""TensorBoard scalars written with core `tf.summary.write`, so that logging needs no
`tensorboard` package (tensorflow-cpu does not pull it in; it is only needed to view them)."""

from __future__ import annotations

import tensorflow as tf
from tensorflow.core.framework import summary_pb2

# TensorBoard's scalar plugin tag.
_SCALAR_METADATA = summary_pb2.SummaryMetadata(
    plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
).SerializeToString()


def write_scalars(
    writer: tf.summary.SummaryWriter, values: dict[str, float], step: int, prefix: str
) -> None:
    """Write `values` as TensorBoard scalars `prefix/name` at `step`."""
    with writer.as_default(step=step):
        for name, value in values.items():
            tf.summary.write(
                f"{prefix}/{name}", tf.constant(value, tf.float32), step, _SCALAR_METADATA
            )
    writer.flush()
