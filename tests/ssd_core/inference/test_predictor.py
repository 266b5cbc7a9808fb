"""The inference path on a real (tiny, random) SSD: loading either mode, decoder overrides,
images of any size to pixel detections, files decoded ahead in order."""

from __future__ import annotations

import threading

import keras
import numpy as np
import pytest
from PIL import Image

from ssd_core import DecoderConfig, SSDConfig, build_model, fields
from ssd_core.data.records import ImageRecord
from ssd_core.evaluation.predict import predict_dataset
from ssd_core.inference import Predictor, as_inference, load_inference_model
from ssd_core.inference.batches import batched, load_ahead
from ssd_core.input_files import InputFileError

CONFIG = SSDConfig.preset("ssd7", image_size=(64, 96))


@pytest.fixture(scope="module")
def model():
    keras.utils.set_random_seed(3)
    return build_model(CONFIG)  # training mode; random scores ~1/6 pass the 0.01 threshold


@pytest.fixture(scope="module")
def predictor(model):
    return Predictor.from_model(model)


def images(count: int) -> list[np.ndarray]:
    rng = np.random.default_rng(4)
    sizes = [(48, 80), (128, 192), (30, 200), (64, 96)]
    return [rng.integers(0, 256, (*sizes[i % 4], 3), dtype=np.uint8) for i in range(count)]


def test_predict_equals_the_three_steps_by_hand(model, predictor):
    image = images(2)[1]
    [found] = predictor.predict([image])
    pixels, placement = predictor.preprocess(image)
    outputs = as_inference(model)(pixels[None])
    count = int(outputs[fields.NUM_DETECTIONS][0])
    assert count > 0 and len(found) > 0
    boxes = placement.to_original(np.asarray(outputs[fields.BOXES][0, :count]))
    np.testing.assert_allclose(found.boxes, boxes[: len(found)], atol=1e-3)
    assert found.names[0] == CONFIG.label_names[found.labels[0]]
    assert found.boxes[:, 2].max() <= 192  # pixels of the 192-wide image


def test_a_batch_gives_each_image_its_own_detections(predictor):
    batch = images(4)
    together = predictor.predict(batch)
    alone = [predictor.predict([image])[0] for image in batch]
    for a, b in zip(together, alone, strict=True):
        np.testing.assert_allclose(a.boxes, b.boxes, atol=1e-4)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_load_converts_a_training_file_and_applies_decoder_overrides(model, tmp_path):
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = load_inference_model(path, {"max_detections": 7, "method": "fast"})
    assert loaded.mode == "inference"
    assert loaded.decoder_config == DecoderConfig(method="fast", max_detections=7)
    assert as_inference(loaded) is loaded
    predictor = Predictor.from_model(loaded)
    assert predictor.decoder_config.max_detections == 7
    assert max(len(d) for d in predictor.predict(images(3))) <= 7


def test_load_refuses_a_keras_model_that_is_not_an_ssd(tmp_path):
    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(1)(inputs)).save(tmp_path / "dense.keras")
    with pytest.raises(InputFileError, match="not an SSD model saved by ssd_core"):
        load_inference_model(tmp_path / "dense.keras")


def test_dataset_prediction_is_the_predictor_on_each_decoded_file(predictor, tmp_path):
    records = []
    for index, image in enumerate(images(5)):
        path = tmp_path / f"{index}.png"
        Image.fromarray(image).save(path)
        records.append(ImageRecord(str(path), np.zeros((0, 4)), [], [], image_id=f"i{index}"))
    detections = predict_dataset(predictor, records, batch_size=2)
    for record, image in zip(records, images(5), strict=True):
        [found] = predictor.predict([image])
        mine = [d for d in detections if d["image_id"] == record.image_id]
        assert [d["label"] for d in mine] == found.labels.tolist()
        np.testing.assert_allclose([d["box"] for d in mine], found.boxes, atol=1e-4)


def test_load_ahead_keeps_order_bounds_the_lead_and_reports_errors():
    started: list[int] = []
    lock = threading.Lock()

    def load(item: int) -> int:
        with lock:
            started.append(item)
        if item == 3:
            raise ValueError("bad item 3")
        return item * 10

    futures = load_ahead(load, range(40), workers=2, ahead=4)
    assert next(futures).result() == 0
    assert len(started) <= 6  # the first item, the 4 ahead, the one being submitted
    results = []
    for future in futures:
        try:
            results.append(future.result())
        except ValueError as error:
            results.append(str(error))
    assert results[:3] == [10, 20, "bad item 3"] and results[-1] == 390


def test_batched_splits_in_order():
    assert list(batched(range(5), 2)) == [[0, 1], [2, 3], [4]]
    with pytest.raises(ValueError, match=">= 1"):
        list(batched([], 0))
