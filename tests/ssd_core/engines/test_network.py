"""`HostDecoder` gives the `TFDecoder`'s detections on the shipped models' raw outputs for real
photos, decoding in NumPy when the candidates are few and in TF when they are many."""

from __future__ import annotations

import cv2
import keras
import numpy as np
import pytest

import ssd_core
from ssd_core import fields
from ssd_core.engines.network import HostDecoder, network_layers
from ssd_core.postprocess import SMALL_TOP_K
from tests.reference.face_files import read_photo_rgb
from tests.ssd_core.engines.parity import assert_identical_outputs

PHOTOS = ("astronaut.png", "coffee.png")
TOLERANCE = 1e-6


@pytest.fixture(scope="module")
def raw_outputs() -> dict[str, tuple[ssd_core.SSD, np.ndarray, np.ndarray]]:
    """Per shipped model: the model, and its cls_logits and bbox_regression for the photos."""
    outputs = {}
    for name, path in ssd_core.embedded_models().items():
        model = keras.saving.load_model(path)
        height, width = model.ssd_config.image_size
        photos = [cv2.resize(read_photo_rgb(photo), (width, height)) for photo in PHOTOS]
        raw = network_layers(model)(np.stack(photos).astype(np.float32), training=False)
        outputs[name] = (
            model,
            raw[fields.CLS_LOGITS].numpy(),
            raw[fields.BBOX_REGRESSION].numpy(),
        )
    return outputs


@pytest.fixture(scope="module")
def decoders(raw_outputs) -> dict[tuple[str, str], HostDecoder]:
    """One decoder per model and method, shared (each compiles its TF fallback with XLA), after
    its first call at the photos' batch size (which runs the TF decoder, see the next test)."""
    made = {}
    for name, method in (("shapes", "caffe"), ("face", "caffe"), ("shapes", "fast")):
        model, cls_logits, bbox_regression = raw_outputs[name]
        decoder_config = model.decoder_config.replace(method=method)
        made[name, method] = HostDecoder(model.ssd_config, decoder_config)
        made[name, method](cls_logits, bbox_regression, np.float32(0.3), np.int32(200))
    return made


def test_host_decoder_runs_tf_at_the_first_call_of_a_batch_size(raw_outputs, decoders):
    # So that XLA compiles in the service's warm-up, not in a later request's decoding.
    _, cls_logits, bbox_regression = raw_outputs["shapes"]
    decoder = decoders["shapes", "caffe"]
    limits = (np.float32(0.3), np.int32(200))
    paths = []
    for _ in range(2):
        decoder(cls_logits[:1], bbox_regression[:1], *limits)
        paths.append(decoder.last_path)
    assert paths == ["tf", "numpy"]


@pytest.mark.parametrize("model_name", ["shapes", "face"])
@pytest.mark.parametrize(("threshold", "count"), [(0.3, 200), (0.5, 3)])
def test_host_decoder_decodes_real_outputs_in_numpy_as_tf_does(
    model_name, threshold, count, raw_outputs, decoders
):
    _, cls_logits, bbox_regression = raw_outputs[model_name]
    decoder = decoders[model_name, "caffe"]
    limits = (np.float32(threshold), np.int32(count))
    outputs = decoder(cls_logits, bbox_regression, *limits)
    assert decoder.last_path == "numpy"
    reference = decoder.fallback(cls_logits, bbox_regression, *limits)
    assert reference["num_detections"].sum() > 0
    assert_identical_outputs(reference, outputs, TOLERANCE)


@pytest.mark.parametrize("method", ["caffe", "fast"])
def test_host_decoder_hands_many_candidates_to_tf(method, raw_outputs, decoders):
    # At the decoder's floor, 0.01, spread logits put hundreds of anchors above it.
    _, cls_logits, bbox_regression = raw_outputs["shapes"]
    decoder = decoders["shapes", method]
    spread = cls_logits * 0.1
    limits = (np.float32(0.01), np.int32(200))
    outputs = decoder(spread, bbox_regression, *limits)
    assert decoder.last_path == "tf"
    assert outputs["num_detections"].min() > SMALL_TOP_K
    assert_identical_outputs(decoder.fallback(spread, bbox_regression, *limits), outputs, TOLERANCE)


def test_host_decoder_fast_method_matches_tf_on_real_outputs(raw_outputs, decoders):
    _, cls_logits, bbox_regression = raw_outputs["shapes"]
    decoder = decoders["shapes", "fast"]
    limits = (np.float32(0.3), np.int32(200))
    outputs = decoder(cls_logits, bbox_regression, *limits)
    assert decoder.last_path == "numpy"
    reference = decoder.fallback(cls_logits, bbox_regression, *limits)
    assert_identical_outputs(reference, outputs, TOLERANCE)
