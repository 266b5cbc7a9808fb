"""Named model recipes for `SSDConfig.preset`, with the numbers of the original SSD.

Sources: Liu et al. 2016 (SSD, table 1 and section 2.2) and the Caffe scripts
`ssd_pascal.py`, `ssd_coco.py`, `ssd_pascal_512.py`, `ssd_coco_512.py` of the original release.
`ssd300_res10_face` is OpenCV's face detector (`res10_300x300_ssd_iter_140000.caffemodel` and
its `deploy.prototxt`). SSD7 is the small from-scratch model of the Keras port, trained here on
the synthetic shapes dataset (`scripts/make_shapes_dataset.py`), so its classes are the shapes.
"""

from __future__ import annotations

from typing import Any

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
    "train", "tvmonitor",
)  # fmt: skip

COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip

SHAPES_CLASSES = ("circle", "square", "triangle", "star", "ring")

FACE_CLASSES = ("face",)

_AR_3 = (1.0, 2.0, 0.5)  # Caffe: aspect_ratio 2, flip true
_AR_5 = (1.0, 2.0, 0.5, 3.0, 1.0 / 3.0)  # Caffe: aspect_ratio 2 and 3, flip true

# Caffe VGG-16 input: BGR, ImageNet mean (104, 117, 123) in BGR, no scaling.
_CAFFE_VGG_INPUT = {
    "pixel_mean": (123.0, 117.0, 104.0),
    "pixel_std": (1.0, 1.0, 1.0),
    "channel_order": "bgr",
}

_SSD300 = {
    "backbone": "vgg16",
    "extra_layers": "ssd300",
    "image_size": (300, 300),
    "source_layers": ("conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2"),
    "aspect_ratios": (_AR_3, _AR_5, _AR_5, _AR_5, _AR_3, _AR_3),
    "two_boxes_for_ar1": True,
    "steps": (8, 16, 32, 64, 100, 300),
    "offsets": 0.5,
    "clip": False,
    "variances": (0.1, 0.1, 0.2, 0.2),
    "integer_anchor_sizes": True,
    **_CAFFE_VGG_INPUT,
}

_SSD512 = {
    "backbone": "vgg16",
    "extra_layers": "ssd512",
    "image_size": (512, 512),
    "source_layers": (
        "conv4_3_norm",
        "fc7",
        "conv6_2",
        "conv7_2",
        "conv8_2",
        "conv9_2",
        "conv10_2",
    ),  # fmt: skip
    "aspect_ratios": (_AR_3, _AR_5, _AR_5, _AR_5, _AR_5, _AR_3, _AR_3),
    "two_boxes_for_ar1": True,
    "steps": (8, 16, 32, 64, 128, 256, 512),
    "offsets": 0.5,
    "clip": False,
    "variances": (0.1, 0.1, 0.2, 0.2),
    "integer_anchor_sizes": True,
    **_CAFFE_VGG_INPUT,
}

PRESETS: dict[str, dict[str, Any]] = {
    "ssd300_voc": {
        **_SSD300,
        "name": "ssd300_voc",
        "num_classes": 21,
        "class_names": VOC_CLASSES,
        "scales": (0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05),
    },
    "ssd300_coco": {
        **_SSD300,
        "name": "ssd300_coco",
        "num_classes": 81,
        "class_names": COCO_CLASSES,
        "scales": (0.07, 0.15, 0.33, 0.51, 0.69, 0.87, 1.05),
    },
    "ssd512_voc": {
        **_SSD512,
        "name": "ssd512_voc",
        "num_classes": 21,
        "class_names": VOC_CLASSES,
        "scales": (0.07, 0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.05),
    },
    "ssd512_coco": {
        **_SSD512,
        "name": "ssd512_coco",
        "num_classes": 81,
        "class_names": COCO_CLASSES,
        "scales": (0.04, 0.1, 0.26, 0.42, 0.58, 0.74, 0.9, 1.06),
    },
    # OpenCV's Caffe face detector (res10_300x300_ssd_iter_140000, its deploy.prototxt): the
    # SSD300 anchors with a ResNet-10 trunk; input BGR minus (104, 177, 123) as in OpenCV's
    # sample (the network's data_bn / data_scale normalise further).
    "ssd300_res10_face": {
        **_SSD300,
        "name": "ssd300_res10_face",
        "backbone": "res10",
        "num_classes": len(FACE_CLASSES) + 1,
        "class_names": FACE_CLASSES,
        "scales": (0.1, 0.2, 0.37, 0.54, 0.71, 0.88, 1.05),
        "pixel_mean": (123.0, 177.0, 104.0),
    },
    "ssd7": {
        "name": "ssd7",
        "backbone": "ssd7",
        "image_size": (300, 480),
        "num_classes": len(SHAPES_CLASSES) + 1,
        "class_names": SHAPES_CLASSES,
        "source_layers": ("conv4", "conv5", "conv6", "conv7"),
        "scales": (0.08, 0.3, 0.52, 0.74, 0.96),  # linspace(0.08, 0.96, 5), as the Keras port
        "aspect_ratios": (_AR_3, _AR_3, _AR_3, _AR_3),
        "two_boxes_for_ar1": True,
        "steps": None,
        "offsets": 0.5,
        "clip": False,
        "variances": (0.1, 0.1, 0.2, 0.2),
        "integer_anchor_sizes": False,
        "pixel_mean": (127.5, 127.5, 127.5),
        "pixel_std": (127.5, 127.5, 127.5),
        "channel_order": "rgb",
    },
}
