"""Tests for ssd_core.postprocess against plain NumPy references of both decoding methods."""

import itertools

import keras
import numpy as np
import pytest
import tensorflow as tf

from ssd_core import DecoderConfig, SSDConfig, generate_anchors
from ssd_core.postprocess import DetectionDecoder, decode_detections, greedy_nms

VARIANCES = (0.1, 0.1, 0.2, 0.2)
BATCH, NUM_ANCHORS, NUM_CLASSES = 3, 300, 6


def decode(logits, deltas, anchors, variances=VARIANCES, **decoder):
    """`decode_detections` with the `DecoderConfig` fields as keywords."""
    return decode_detections(logits, deltas, anchors, variances, DecoderConfig(**decoder))


# --- NumPy reference -------------------------------------------------------------------------


def _np_decode(deltas: np.ndarray, anchors: np.ndarray, clip: bool) -> np.ndarray:
    acx, acy = (anchors[:, 0] + anchors[:, 2]) / 2, (anchors[:, 1] + anchors[:, 3]) / 2
    aw, ah = anchors[:, 2] - anchors[:, 0], anchors[:, 3] - anchors[:, 1]
    cx = acx + deltas[:, 0] * VARIANCES[0] * aw
    cy = acy + deltas[:, 1] * VARIANCES[1] * ah
    w = aw * np.exp(deltas[:, 2] * VARIANCES[2])
    h = ah * np.exp(deltas[:, 3] * VARIANCES[3])
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return np.clip(boxes, 0.0, 1.0) if clip else boxes


def _np_iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    iw = np.maximum(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0.0)
    ih = np.maximum(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0.0)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    union = area + areas - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _np_greedy_nms(boxes: np.ndarray, order: list[int], iou_threshold: float) -> list[int]:
    kept: list[int] = []
    for index in order:
        if not kept or np.all(_np_iou(boxes[index], boxes[kept]) <= iou_threshold):
            kept.append(index)
    return kept


def _np_softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def _ranked(scores: np.ndarray, threshold: float, top_k: int) -> list[int]:
    """Indices with score > threshold, best first, lower index first on ties, at most top_k."""
    above = [i for i in range(len(scores)) if scores[i] > threshold]
    return sorted(above, key=lambda i: (-scores[i], i))[:top_k]


def _np_reference(logits, deltas, anchors, method, score_thr, iou_thr, top_k, keep, clip=True):
    """Per image list of (score, anchor, class, box), best first (ties: anchor, then class)."""
    results = []
    for image in range(len(logits)):
        boxes = _np_decode(deltas[image].astype(np.float64), anchors.astype(np.float64), clip)
        probs = _np_softmax(logits[image].astype(np.float64))
        detections = []
        if method == "caffe":
            for label in range(1, probs.shape[1]):
                order = _ranked(probs[:, label], score_thr, top_k)
                for i in _np_greedy_nms(boxes, order, iou_thr):
                    detections.append((probs[i, label], i, label, boxes[i]))
        else:
            best = probs[:, 1:].max(axis=1)
            labels = probs[:, 1:].argmax(axis=1) + 1  # NumPy's argmax takes the first maximum
            order = _ranked(best, score_thr, top_k)
            for i in _np_greedy_nms(boxes, order, iou_thr):
                detections.append((best[i], i, labels[i], boxes[i]))
        detections.sort(key=lambda d: (-d[0], d[1], d[2]))
        results.append(detections[:keep])
    return results


def _assert_matches_reference(out, reference, max_detections):
    num = out["num_detections"].numpy()
    assert list(num) == [len(dets) for dets in reference]
    for image, dets in enumerate(reference):
        n = len(dets)
        np.testing.assert_allclose(out["scores"][image, :n], [d[0] for d in dets], atol=1e-5)
        np.testing.assert_array_equal(out["labels"][image, :n], [d[2] for d in dets])
        expected_boxes = np.reshape([d[3] for d in dets], (n, 4))
        np.testing.assert_allclose(out["boxes"][image, :n], expected_boxes, atol=1e-5)
    assert out["boxes"].shape == (len(reference), max_detections, 4)


# --- inputs ----------------------------------------------------------------------------------


def _random_anchors(rng: np.random.Generator, n: int = NUM_ANCHORS) -> np.ndarray:
    centre = rng.uniform(0.25, 0.75, size=(n, 2))  # crowded, so NMS has work to do
    size = rng.uniform(0.1, 0.5, size=(n, 2))
    return np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)


def _random_inputs(seed: int, batch: int = BATCH, num_classes: int = NUM_CLASSES):
    rng = np.random.default_rng(seed)
    anchors = _random_anchors(rng)
    logits = rng.normal(0.0, 3.0, size=(batch, NUM_ANCHORS, num_classes)).astype(np.float32)
    deltas = rng.normal(0.0, 0.5, size=(batch, NUM_ANCHORS, 4)).astype(np.float32)
    return logits, deltas, anchors


GRID = list(itertools.product((0, 1, 2), (0.01, 0.3, 0.6), (0.3, 0.45, 0.7)))


# --- decode_detections -----------------------------------------------------------------------


# top_k counts candidates per class for "caffe" and per image for "fast".
@pytest.mark.parametrize(("method", "top_k"), [("caffe", 40), ("fast", 150)])
@pytest.mark.parametrize(("seed", "score_thr", "iou_thr"), GRID)
def test_method_matches_numpy_reference(method, top_k, seed, score_thr, iou_thr):
    logits, deltas, anchors = _random_inputs(seed)
    out = decode(
        logits,
        deltas,
        anchors,
        VARIANCES,
        method=method,
        score_threshold=score_thr,
        iou_threshold=iou_thr,
        top_k=top_k,
        max_detections=100,
    )
    reference = _np_reference(logits, deltas, anchors, method, score_thr, iou_thr, top_k, 100)
    _assert_matches_reference(out, reference, 100)


def test_caffe_method_without_clipping_matches_numpy_reference():
    logits, deltas, anchors = _random_inputs(3)
    deltas = deltas * 4.0  # push many boxes over the image border
    out = decode(logits, deltas, anchors, VARIANCES, top_k=40, max_detections=100, clip=False)
    reference = _np_reference(logits, deltas, anchors, "caffe", 0.01, 0.45, 40, 100, clip=False)
    _assert_matches_reference(out, reference, 100)
    assert out["boxes"].numpy().min() < 0.0


def test_top_k_larger_than_anchor_count_uses_all_anchors():
    logits, deltas, anchors = _random_inputs(4)
    out = decode(logits, deltas, anchors, VARIANCES, top_k=1000, max_detections=500)
    reference = _np_reference(logits, deltas, anchors, "caffe", 0.01, 0.45, 1000, 500)
    _assert_matches_reference(out, reference, 500)


@pytest.mark.parametrize("method", ["caffe", "fast"])
def test_all_scores_below_threshold_give_empty_zero_padded_result(method):
    logits, deltas, anchors = _random_inputs(5)
    logits[..., 0] = 20.0  # background dominates: every foreground softmax score < 1e-8
    out = decode(logits, deltas, anchors, VARIANCES, method=method, max_detections=7)
    np.testing.assert_array_equal(out["num_detections"], [0, 0, 0])
    np.testing.assert_array_equal(out["boxes"], np.zeros((3, 7, 4)))
    np.testing.assert_array_equal(out["scores"], np.zeros((3, 7)))
    np.testing.assert_array_equal(out["labels"], np.zeros((3, 7)))


def test_output_dtypes_and_shapes():
    logits, deltas, anchors = _random_inputs(6)
    out = decode(logits, deltas, anchors, VARIANCES, max_detections=9)
    assert out["boxes"].dtype == tf.float32 and out["boxes"].shape == (3, 9, 4)
    assert out["scores"].dtype == tf.float32 and out["scores"].shape == (3, 9)
    assert out["labels"].dtype == tf.int32 and out["labels"].shape == (3, 9)
    assert out["num_detections"].dtype == tf.int32 and out["num_detections"].shape == (3,)


# Four disjoint unit-area-ish anchors; with zero deltas the boxes are the anchors.
DISJOINT = np.array(
    [[0.0, 0.0, 0.2, 0.2], [0.5, 0.0, 0.7, 0.2], [0.0, 0.5, 0.2, 0.7], [0.5, 0.5, 0.7, 0.7]],
    np.float32,
)


def test_batch_images_with_different_detection_counts_are_padded_with_zeros():
    # Image 0: nothing; image 1: anchors 1 and 3 are class 2; image 2: all four are class 1.
    logits = np.full((3, 4, 3), [10.0, 0.0, 0.0], np.float32)
    logits[1, [1, 3]] = [0.0, 0.0, np.log(3.0)]  # softmax -> (0.2, 0.2, 0.6)
    logits[2] = [0.0, np.log(4.0), 0.0]  # softmax -> (1/6, 2/3, 1/6)
    out = decode(
        logits,
        np.zeros((3, 4, 4), np.float32),
        DISJOINT,
        VARIANCES,
        score_threshold=0.3,
        max_detections=5,
    )
    np.testing.assert_array_equal(out["num_detections"], [0, 2, 4])
    np.testing.assert_array_equal(out["labels"], [[0] * 5, [2, 2, 0, 0, 0], [1, 1, 1, 1, 0]])
    np.testing.assert_allclose(out["scores"][1], [0.6, 0.6, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out["scores"][2], [2 / 3] * 4 + [0], atol=1e-6)
    np.testing.assert_allclose(
        out["boxes"][1], np.concatenate([DISJOINT[[1, 3]], np.zeros((3, 4))])
    )
    np.testing.assert_allclose(out["boxes"][2], np.concatenate([DISJOINT, np.zeros((1, 4))]))
    np.testing.assert_array_equal(out["boxes"][0], np.zeros((5, 4)))


def test_caffe_exact_ties_rank_lower_anchor_then_lower_class_first():
    # Every anchor scores the same for classes 1 and 2: 8 equal detections, keep 5.
    logits = np.tile(np.array([0.0, 2.0, 2.0], np.float32), (1, 4, 1))
    out = decode(logits, np.zeros((1, 4, 4), np.float32), DISJOINT, VARIANCES, max_detections=5)
    np.testing.assert_array_equal(out["labels"][0], [1, 2, 1, 2, 1])
    np.testing.assert_allclose(out["boxes"][0], DISJOINT[[0, 0, 1, 1, 2]])
    reference = _np_reference(logits, np.zeros((1, 4, 4)), DISJOINT, "caffe", 0.01, 0.45, 400, 5)
    assert [(d[1], d[2]) for d in reference[0]] == [(0, 1), (0, 2), (1, 1), (1, 2), (2, 1)]


def test_fast_exact_class_tie_takes_lower_class():
    logits = np.tile(np.array([0.0, 2.0, 2.0], np.float32), (1, 4, 1))
    out = decode(logits, np.zeros((1, 4, 4), np.float32), DISJOINT, VARIANCES, method="fast")
    assert out["num_detections"][0] == 4
    np.testing.assert_array_equal(out["labels"][0, :4], [1, 1, 1, 1])
    np.testing.assert_allclose(out["boxes"][0, :4], DISJOINT)


@pytest.mark.parametrize("method", ["caffe", "fast"])
def test_tied_overlapping_boxes_keep_the_lower_anchor(method):
    anchors = np.array(
        [[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.5], [0.6, 0.6, 0.9, 0.9]], np.float32
    )
    deltas = np.zeros((1, 3, 4), np.float32)
    deltas[0, 0, 0] = 0.5  # anchor 0 moves right by 0.5 * 0.1 * 0.4 = 0.02; IoU with 1 is ~0.9
    logits = np.tile(np.array([0.0, 3.0], np.float32), (1, 3, 1))
    out = decode(logits, deltas, anchors, VARIANCES, method=method)
    assert out["num_detections"][0] == 2
    np.testing.assert_allclose(out["boxes"][0, 0], [0.12, 0.1, 0.52, 0.5], atol=1e-6)
    np.testing.assert_allclose(out["boxes"][0, 1], anchors[2], atol=1e-6)


def test_background_class_never_detected():
    logits, deltas, anchors = _random_inputs(7)
    out = decode(logits, deltas, anchors, VARIANCES, score_threshold=0.0)
    num = out["num_detections"].numpy()
    for image in range(BATCH):
        classes = out["labels"][image, : num[image]].numpy()
        assert classes.min() >= 1 and classes.max() <= NUM_CLASSES - 1


def test_tf_function_result_equals_eager():
    logits, deltas, anchors = _random_inputs(8)
    kwargs = {"top_k": 40, "max_detections": 50}
    eager = decode(logits, deltas, anchors, VARIANCES, **kwargs)
    graph = tf.function(lambda c, b: decode(c, b, anchors, VARIANCES, **kwargs))
    traced = graph(tf.constant(logits), tf.constant(deltas))
    for key in eager:
        np.testing.assert_array_equal(traced[key].numpy(), eager[key].numpy())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "soft"}, "method must be one of"),
        ({"score_threshold": 1.0}, r"score_threshold must be in \[0, 1\)"),
        ({"iou_threshold": -0.1}, r"iou_threshold must be in \[0, 1\]"),
        ({"top_k": 0}, "top_k must be an integer >= 1"),
        ({"max_detections": 2.5}, "max_detections must be an integer >= 1"),
    ],
)
def test_decode_detections_rejects_bad_arguments(kwargs, message):
    logits, deltas, anchors = _random_inputs(9, batch=1)
    with pytest.raises(ValueError, match=message):
        decode(logits, deltas, anchors, VARIANCES, **kwargs)


def test_decode_detections_rejects_wrong_regression_shape():
    logits, deltas, anchors = _random_inputs(9, batch=1)
    with pytest.raises(ValueError, match=r"bbox_regression must have shape \(B, 300, 4\)"):
        decode(logits, deltas[..., :3], anchors, VARIANCES)


def test_decode_detections_rejects_anchor_count_mismatch():
    logits, deltas, anchors = _random_inputs(9, batch=1)
    with pytest.raises(ValueError, match=r"anchors must have shape \(300, 4\), got \(299, 4\)"):
        decode(logits, deltas, anchors[:299], VARIANCES)


# --- greedy_nms ------------------------------------------------------------------------------


def test_greedy_nms_suppressed_box_does_not_suppress():
    # A overlaps B (IoU 0.6), B overlaps C (IoU 0.6), A and C barely (0.2): greedy keeps A, C.
    boxes = np.array([[[0.0, 0, 1, 1], [0.25, 0, 1.25, 1], [0.5, 0, 1.5, 1]]], np.float32)
    keep = greedy_nms(tf.constant(boxes), tf.ones((1, 3), bool), 0.5)
    np.testing.assert_array_equal(keep, [[True, False, True]])


def test_greedy_nms_keeps_iou_equal_to_threshold():
    boxes = np.array([[[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.5]]], np.float32)  # IoU 0.5
    valid = tf.ones((1, 2), bool)
    np.testing.assert_array_equal(greedy_nms(tf.constant(boxes), valid, 0.5), [[True, True]])
    np.testing.assert_array_equal(greedy_nms(tf.constant(boxes), valid, 0.49), [[True, False]])


def test_greedy_nms_keeps_valid_candidates_in_late_tiles():
    boxes = np.zeros((1, 50, 4), np.float32)
    boxes[0, 3], boxes[0, 40] = [0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.9, 0.9]
    valid = np.zeros((1, 50), bool)
    valid[0, [3, 40]] = True
    keep = greedy_nms(tf.constant(boxes), tf.constant(valid), 0.45, tile_size=8).numpy()
    assert list(np.flatnonzero(keep[0])) == [3, 40]


def test_greedy_nms_across_tiles_matches_numpy_reference():
    rng = np.random.default_rng(10)
    boxes = np.stack([_random_anchors(rng, 50) for _ in range(6)])  # (6, 50, 4)
    valid = np.arange(50)[None, :] < np.array([[50], [49], [17], [4], [1], [0], [0]])
    valid[6, [3, 20, 21, 40]] = True  # scattered candidates, not a prefix
    boxes = np.concatenate([boxes, boxes[:1]])
    keep = greedy_nms(tf.constant(boxes), tf.constant(valid), 0.4, tile_size=8).numpy()
    for group in range(7):
        order = list(np.flatnonzero(valid[group]))
        expected = _np_greedy_nms(boxes[group].astype(np.float64), order, 0.4)
        assert list(np.flatnonzero(keep[group])) == expected


# --- DetectionDecoder layer ------------------------------------------------------------------


def _ssd7_decoder(name: str | None = None, dtype: str | None = None, **decoder) -> DetectionDecoder:
    """The ssd7 preset's decoder layer with the `DecoderConfig` fields as keywords."""
    config = SSDConfig.preset("ssd7")
    return DetectionDecoder(config.to_dict(), DecoderConfig(**decoder), name=name, dtype=dtype)


NON_DEFAULT = {
    "method": "fast",
    "score_threshold": 0.2,
    "iou_threshold": 0.6,
    "top_k": 50,
    "max_detections": 17,
    "clip": False,
}


def test_decoder_config_round_trip_with_non_default_values():
    layer = _ssd7_decoder(name="decoder", **NON_DEFAULT)
    config = layer.get_config()
    clone = DetectionDecoder.from_config(config)
    assert clone.get_config() == config
    assert config["decoder_config"] == NON_DEFAULT
    assert clone.decoder_config == DecoderConfig(**NON_DEFAULT)
    assert clone.ssd_config == SSDConfig.preset("ssd7")


def test_decoder_deserialises_by_registered_name():
    layer = _ssd7_decoder(**NON_DEFAULT)
    clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert isinstance(clone, DetectionDecoder) and clone.get_config() == layer.get_config()


def test_decoder_equals_decode_detections_with_config_anchors():
    config = SSDConfig.preset("ssd7")
    anchors = generate_anchors(config)
    rng = np.random.default_rng(11)
    logits = rng.normal(0, 3, size=(2, len(anchors), config.num_classes)).astype(np.float32)
    deltas = rng.normal(0, 0.5, size=(2, len(anchors), 4)).astype(np.float32)
    out = _ssd7_decoder(**NON_DEFAULT)({"cls_logits": logits, "bbox_regression": deltas})
    expected = decode(logits, deltas, anchors, config.variances, **NON_DEFAULT)
    for key in expected:
        np.testing.assert_array_equal(out[key].numpy(), expected[key].numpy())


def test_decoder_symbolic_outputs_have_declared_shapes_and_dtypes():
    config = SSDConfig.preset("ssd7")
    n = len(generate_anchors(config))
    inputs = {
        "cls_logits": keras.Input((n, config.num_classes)),
        "bbox_regression": keras.Input((n, 4)),
    }
    out = _ssd7_decoder(max_detections=11)(inputs)
    assert out["boxes"].shape == (None, 11, 4) and out["boxes"].dtype == "float32"
    assert out["scores"].shape == (None, 11) and out["scores"].dtype == "float32"
    assert out["labels"].shape == (None, 11) and out["labels"].dtype == "int32"
    assert out["num_detections"].shape == (None,) and out["num_detections"].dtype == "int32"


def test_decoder_rejects_inputs_with_wrong_anchor_count():
    layer = _ssd7_decoder()
    with pytest.raises(ValueError, match="anchors but the config generates"):
        layer(
            {
                "cls_logits": np.zeros((1, 10, 5), np.float32),
                "bbox_regression": np.zeros((1, 10, 4), np.float32),
            }
        )


def test_decoder_rejects_inputs_with_wrong_class_count():
    n = len(generate_anchors(SSDConfig.preset("ssd7")))
    inputs = {
        "cls_logits": np.zeros((1, n, 9), np.float32),
        "bbox_regression": np.zeros((1, n, 4), np.float32),
    }
    with pytest.raises(ValueError, match="cls_logits has 9 classes but the config has"):
        _ssd7_decoder()(inputs)


def test_decoder_rejects_bad_method():
    with pytest.raises(ValueError, match="method must be one of"):
        _ssd7_decoder(method="soft")


def test_xla_compiled_result_equals_eager():
    logits, deltas, anchors = _random_inputs(12)
    kwargs = {"top_k": 40, "max_detections": 100}
    eager = decode(logits, deltas, anchors, VARIANCES, **kwargs)
    compiled = tf.function(
        lambda c, b: decode(c, b, anchors, VARIANCES, **kwargs), jit_compile=True
    )(tf.constant(logits), tf.constant(deltas))
    # XLA fuses the softmax differently: equal up to float32 rounding.
    for key in ("num_detections", "labels"):
        np.testing.assert_array_equal(compiled[key].numpy(), eager[key].numpy())
    for key in ("boxes", "scores"):
        np.testing.assert_allclose(compiled[key].numpy(), eager[key].numpy(), atol=1e-6)


def test_decoder_under_mixed_precision_returns_float32_detections():
    config = SSDConfig.preset("ssd7")
    n = len(generate_anchors(config))
    rng = np.random.default_rng(13)
    logits = rng.normal(0, 3, size=(1, n, config.num_classes)).astype(np.float16)
    deltas = rng.normal(0, 0.5, size=(1, n, 4)).astype(np.float16)
    layer = _ssd7_decoder(dtype="mixed_float16")
    out = layer({"cls_logits": tf.constant(logits), "bbox_regression": tf.constant(deltas)})
    assert out["boxes"].dtype == tf.float32 and out["scores"].dtype == tf.float32
    expected = decode(
        logits.astype(np.float32), deltas.astype(np.float32), generate_anchors(config)
    )
    np.testing.assert_array_equal(out["num_detections"], expected["num_detections"])


@pytest.mark.parametrize("method", ["caffe", "fast"])
def test_unknown_batch_size_graph_equals_eager(method):
    # A saved model's serving signature has batch size None; the static candidate count must
    # survive it.
    logits, deltas, anchors = _random_inputs(seed=4)
    kwargs = {"method": method, "score_threshold": 0.05, "max_detections": 20}
    eager = decode(logits, deltas, anchors, (0.1, 0.1, 0.2, 0.2), **kwargs)
    spec = [
        tf.TensorSpec((None, *logits.shape[1:]), tf.float32),
        tf.TensorSpec((None, *deltas.shape[1:]), tf.float32),
    ]
    graph = tf.function(
        lambda c, b: decode(c, b, anchors, (0.1, 0.1, 0.2, 0.2), **kwargs),
        input_signature=spec,
    )(logits, deltas)
    for key in ("boxes", "scores", "labels", "num_detections"):
        np.testing.assert_allclose(graph[key].numpy(), eager[key].numpy(), atol=1e-6)


# --- per-call limits (a server's per-batch threshold and count) ---------------------------------


def _limited_decoder(anchors, **decoder):
    """One traced graph taking the threshold and the count as tensors, as an engine runs it."""
    config = DecoderConfig(**decoder)

    @tf.function(
        input_signature=[
            tf.TensorSpec((None, NUM_ANCHORS, NUM_CLASSES), tf.float32),
            tf.TensorSpec((None, NUM_ANCHORS, 4), tf.float32),
            tf.TensorSpec((), tf.float32),
            tf.TensorSpec((), tf.int32),
        ]
    )
    def run(logits, deltas, threshold, count):
        return decode_detections(
            logits,
            deltas,
            anchors,
            VARIANCES,
            config,
            score_threshold=threshold,
            max_detections=count,
        )

    return run


@pytest.mark.parametrize(("method", "top_k"), [("caffe", 200), ("fast", 250)])
@pytest.mark.parametrize("score_thr", [0.01, 0.3, 0.6, 0.9, 0.99])
def test_per_call_threshold_equals_a_decoder_built_with_it(method, top_k, score_thr):
    # Thresholds from "every class has hundreds of candidates" (the full top_k) to "a handful"
    # (the SMALL_TOP_K shortcut) through one graph: both paths equal the NumPy reference.
    logits, deltas, anchors = _random_inputs(21)
    run = _limited_decoder(anchors, method=method, top_k=top_k, max_detections=100)
    out = run(logits, deltas, tf.constant(score_thr, tf.float32), tf.constant(100))
    reference = _np_reference(logits, deltas, anchors, method, score_thr, 0.45, top_k, 100)
    _assert_matches_reference(out, reference, 100)


@pytest.mark.parametrize("method", ["caffe", "fast"])
def test_per_call_max_detections_keeps_the_best_and_zero_pads_the_rest(method):
    logits, deltas, anchors = _random_inputs(22)
    run = _limited_decoder(anchors, method=method, top_k=100, max_detections=50)
    full = run(logits, deltas, tf.constant(0.05), tf.constant(50))
    few = run(logits, deltas, tf.constant(0.05), tf.constant(3))
    assert few["boxes"].shape == (BATCH, 50, 4)
    np.testing.assert_array_equal(few["num_detections"], np.minimum(full["num_detections"], 3))
    np.testing.assert_array_equal(few["scores"][:, :3], full["scores"][:, :3])
    np.testing.assert_array_equal(few["labels"][:, :3], full["labels"][:, :3])
    np.testing.assert_array_equal(few["boxes"][:, :3], full["boxes"][:, :3])
    assert not np.any(few["scores"][:, 3:]) and not np.any(few["boxes"][:, 3:])


def test_small_top_k_shortcut_is_taken_only_when_every_candidate_fits():
    from ssd_core.postprocess import SMALL_TOP_K, _most_candidates

    scores = np.zeros((2, NUM_ANCHORS, 3), np.float32)
    scores[1, : SMALL_TOP_K + 1, 2] = 0.5  # one class of one image: one candidate too many
    assert int(_most_candidates(tf.constant(scores), tf.constant(0.4), "caffe")) == SMALL_TOP_K + 1
    assert int(_most_candidates(tf.constant(scores), tf.constant(0.5), "caffe")) == 0
    scores[1, 0, 0] = 0.45  # best-class scores per anchor: still SMALL_TOP_K + 1 above 0.4
    assert int(_most_candidates(tf.constant(scores), tf.constant(0.4), "fast")) == SMALL_TOP_K + 1


def test_per_call_limits_compile_under_xla():
    logits, deltas, anchors = _random_inputs(23)
    config = DecoderConfig(top_k=100, max_detections=40)

    def run(c, b, t, k):
        return decode_detections(
            c, b, anchors, VARIANCES, config, score_threshold=t, max_detections=k
        )

    eager = run(logits, deltas, 0.3, 10)
    compiled = tf.function(run, jit_compile=True)(
        tf.constant(logits), tf.constant(deltas), tf.constant(0.3), tf.constant(10)
    )
    for key in ("num_detections", "labels"):
        np.testing.assert_array_equal(compiled[key].numpy(), eager[key].numpy())
    for key in ("boxes", "scores"):
        np.testing.assert_allclose(compiled[key].numpy(), eager[key].numpy(), atol=1e-6)
