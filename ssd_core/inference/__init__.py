"""One inference path from image bytes to pixel detections, shared by the service, evaluation,
training-time validation, export and offline prediction (so what is evaluated is what is
served):

    from ssd_core.inference import Predictor, load_inference_model, read_image
    predictor = Predictor.from_model(load_inference_model("model.keras"))
    [detections] = predictor.predict([read_image("photo.jpg")])
    detections.boxes  # (n, 4) float32 pixel [xmin, ymin, xmax, ymax]; .scores, .labels, .names

- `images`: encoded bytes -> (H, W, 3) uint8 RGB, upright, with size limits (a large JPEG at a
  reduced DCT scale: `decode_scaled`);
- `preprocess`: the resize policy of the config (`stretch` | `letterbox`) and its exact inverse;
  `prepare`: encoded bytes to model input and `Placement`, the service's and evaluation's path;
- `detections`: padded model outputs -> typed per-image `Detections` in original pixels;
- `loading`: a saved model of either mode as an inference model, decoder overrides;
- `predictor`: the three steps around an engine; `batches`: decoding files ahead of the model.
"""

from ssd_core.inference.detections import Detections, ImageOutputs, split_outputs, to_detections
from ssd_core.inference.images import (
    DecodedImage,
    ImageDecodeError,
    ImageTooLargeError,
    decode_image,
    decode_scaled,
    read_image,
)
from ssd_core.inference.loading import as_inference, load_inference_model
from ssd_core.inference.predictor import Predictor
from ssd_core.inference.preprocess import Placement, place, prepare, prepare_file, resize_image

__all__ = [
    "DecodedImage",
    "Detections",
    "ImageDecodeError",
    "ImageOutputs",
    "ImageTooLargeError",
    "Placement",
    "Predictor",
    "as_inference",
    "decode_image",
    "decode_scaled",
    "load_inference_model",
    "place",
    "prepare",
    "prepare_file",
    "read_image",
    "resize_image",
    "split_outputs",
    "to_detections",
]
