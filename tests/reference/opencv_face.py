"""OpenCV 4's `cv2.dnn` run of the Caffe face detector: the independent reference.

`cv2.dnn.readNetFromCaffe` implements every Caffe layer of the model (BatchNorm, Scale,
Normalize, PriorBox, DetectionOutput) itself; OpenCV 5 dropped the Caffe importer, so the
`dev` extra pins `opencv-python-headless<5`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tests.reference.face_files import face_detector_files

# OpenCV's face detector sample: BGR, mean (104, 177, 123), scale 1, 300x300.
MEAN_BGR = (104.0, 177.0, 123.0)
INPUT_SIZE = 300


@dataclass(frozen=True)
class OpenCVOutputs:
    """One image through cv2.dnn.

    Attributes:
        loc: (N, 4) raw box regression (`mbox_loc`).
        conf: (N, 2) softmaxed class scores (`mbox_conf_flatten`).
        anchors: (N, 4) normalised xyxy (`mbox_priorbox` row 0); variances: (N, 4) (row 1).
        detections: (K, 7) `detection_out` rows [image, label, score, xmin, ymin, xmax, ymax],
            normalised, unclipped.
    """

    loc: np.ndarray
    conf: np.ndarray
    anchors: np.ndarray
    variances: np.ndarray
    detections: np.ndarray


def opencv_face_net() -> cv2.dnn.Net:
    prototxt, caffemodel = face_detector_files()
    net = cv2.dnn.readNetFromCaffe(str(prototxt), str(caffemodel))
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    return net


def run_opencv(net: cv2.dnn.Net, image_rgb: np.ndarray) -> OpenCVOutputs:
    """Forward one (H, W, 3) uint8 RGB image; it is resized to 300x300 (bilinear) first."""
    bgr = np.ascontiguousarray(resize_rgb(image_rgb)[..., ::-1])
    blob = cv2.dnn.blobFromImage(bgr, 1.0, (INPUT_SIZE, INPUT_SIZE), MEAN_BGR, swapRB=False)
    net.setInput(blob)
    loc, conf, priors, detections = net.forward(
        ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox", "detection_out"]
    )
    rows = detections[0, 0]
    return OpenCVOutputs(
        loc=loc.reshape(-1, 4),
        conf=conf.reshape(-1, 2),
        anchors=priors[0, 0].reshape(-1, 4),
        variances=priors[0, 1].reshape(-1, 4),
        detections=rows[rows[:, 1] >= 1],
    )


def resize_rgb(image_rgb: np.ndarray) -> np.ndarray:
    """The bilinear 300x300 resize `blobFromImage` applies, for feeding our model the same."""
    return cv2.resize(image_rgb, (INPUT_SIZE, INPUT_SIZE), interpolation=cv2.INTER_LINEAR)
