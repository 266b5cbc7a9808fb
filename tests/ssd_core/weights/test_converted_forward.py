"""Acceptance for every weight converter: SSD300 VOC loaded from a random weight file (Caffe
`.caffemodel` and ssd_keras HDF5, see the conftest's `converted_activations`) computes what a
plain NumPy Caffe forward computes from the same weights."""

from __future__ import annotations


def test_converted_conv1_1_matches_numpy_on_bgr_mean_subtracted_input(
    converted_activations, random_caffe_blobs, numpy_caffe, close_relative
):
    image, activations = converted_activations
    weight, bias = random_caffe_blobs["conv1_1"]
    expected = numpy_caffe.relu(
        numpy_caffe.conv2d(numpy_caffe.caffe_input(image), weight, bias, pad=1)
    )
    close_relative(activations["conv1_1"], expected)


def test_converted_conv4_3_norm_matches_numpy_l2_norm_and_scale(
    converted_activations, random_caffe_blobs, numpy_caffe, close_relative
):
    _, activations = converted_activations
    (scale,) = random_caffe_blobs["conv4_3_norm"]
    expected = numpy_caffe.l2_normalise(activations["conv4_3"], scale)
    close_relative(activations["conv4_3_norm"], expected)


def test_converted_conv4_3_norm_mbox_conf_matches_numpy_head(
    converted_activations, random_caffe_blobs, numpy_caffe, close_relative
):
    _, activations = converted_activations
    weight, bias = random_caffe_blobs["conv4_3_norm_mbox_conf"]
    expected = numpy_caffe.conv2d(activations["conv4_3_norm"], weight, bias, pad=1)
    close_relative(activations["conv4_3_norm_mbox_conf"], expected)
