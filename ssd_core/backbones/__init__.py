"""Backbones: the feature extractors that produce SSD's predictor source layers.

A backbone is one module (`vgg16.py`, `res10.py`, `ssd7.py`) that owns its Caffe-named layers,
its predictor sources and its geometry, and exposes a `BACKBONE = Backbone(...)`; `REGISTRY`
maps its name to that module. Adding a backbone is one module plus one registry entry.

What is derived rather than written down twice:
- feature-map sizes come from the layers' own output shapes (the backbone is built on a
  symbolic input of the config's size), so they cannot drift from the network;
- the layers a weight loader fills (`layer_names`, `base_layer_names`) are the weighted layers
  of that same graph.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ssd_core.config import SSDConfig

# Backbone name -> module defining `BACKBONE`. Imported lazily: configs validate names without
# importing Keras.
REGISTRY: dict[str, str] = {
    "vgg16": "ssd_core.backbones.vgg16",
    "res10": "ssd_core.backbones.res10",
    "ssd7": "ssd_core.backbones.ssd7",
}
BACKBONE_NAMES = tuple(REGISTRY)


@dataclass(frozen=True)
class BackboneGraph:
    """A backbone applied to symbolic images.

    Attributes:
        features: predictor source name -> (B, H_k, W_k, C_k) feature map, every source of the
            layout, in the layout's order.
        base: the last tensor of the pretrained base network (what `--base-only` loads), e.g.
            VGG-16's fc7; the layers after it are SSD's extra layers.
    """

    features: dict[str, Any]
    base: Any


@dataclass(frozen=True)
class Backbone:
    """One feature extractor.

    Attributes:
        name: the registry name (`SSDConfig.backbone`).
        layouts: extra-layer layout name (`SSDConfig.extra_layers`) -> the predictor sources it
            offers, in anchor order; the first layout is the default.
        build_graph: `(images, layout) -> BackboneGraph`, images (B, H, W, 3) float32
            normalised (the output of `ImageNormalization`).
    """

    name: str
    layouts: Mapping[str, tuple[str, ...]]
    build_graph: Callable[[Any, str], BackboneGraph]

    @property
    def default_layout(self) -> str:
        return next(iter(self.layouts))

    def layout(self, config: SSDConfig) -> str:
        """The config's extra-layer layout (its default when unset), checked."""
        layout = config.extra_layers or self.default_layout
        if layout not in self.layouts:
            raise ValueError(
                f"backbone {self.name!r} has extra_layers {sorted(self.layouts)}, "
                f"got {config.extra_layers!r}"
            )
        return layout

    def check_sources(self, config: SSDConfig) -> None:
        """Raise ValueError unless `config.source_layers` is a prefix of the layout's sources."""
        layout = self.layout(config)
        offered = self.layouts[layout]
        if not config.source_layers or offered[: config.num_layers] != config.source_layers:
            raise ValueError(
                f"backbone {self.name!r} (extra_layers {layout!r}) needs source_layers "
                f"{offered} or a prefix of them, got {config.source_layers}"
            )

    def build(self, config: SSDConfig, images: Any) -> dict[str, Any]:
        """`{source: (B, H_k, W_k, C_k)}` for `config.source_layers`, on symbolic `images`."""
        self.check_sources(config)
        graph = self.build_graph(images, self.layout(config))
        return {name: graph.features[name] for name in config.source_layers}


def get_backbone(name: str) -> Backbone:
    """The registered backbone `name`."""
    if name not in REGISTRY:
        raise ValueError(f"backbone must be one of {BACKBONE_NAMES}, got {name!r}")
    return importlib.import_module(REGISTRY[name]).BACKBONE


def build_backbone(config: SSDConfig, images: Any) -> dict[str, Any]:
    """The predictor source feature maps of `config.backbone` on symbolic `images`.

    Args:
        config: the model config.
        images: (B, H, W, 3) float32 normalised images (a Keras tensor).

    Returns:
        `{source_layer_name: (B, H_k, W_k, C_k) feature map}` in `config.source_layers` order.
    """
    return get_backbone(config.backbone).build(config, images)


def feature_map_sizes(config: SSDConfig) -> tuple[tuple[int, int], ...]:
    """(height, width) of every predictor source layer, in `config.source_layers` order.

    Read from the output shapes of the backbone's own layers on a symbolic input of
    `config.image_size` (computed once per backbone, layout and size).
    """
    backbone = get_backbone(config.backbone)
    backbone.check_sources(config)
    sizes = geometry(backbone.name, backbone.layout(config), config.image_size).sizes
    return tuple(sizes[name] for name in config.source_layers)


def layer_names(config: SSDConfig) -> tuple[str, ...]:
    """Names of the backbone's weighted layers (base and extra layers), in graph order."""
    backbone = get_backbone(config.backbone)
    return geometry(backbone.name, backbone.layout(config), config.image_size).weighted


def base_layer_names(config: SSDConfig) -> tuple[str, ...]:
    """Names of the weighted layers of the pretrained base network (VGG-16: conv1_1 .. fc7)."""
    backbone = get_backbone(config.backbone)
    return geometry(backbone.name, backbone.layout(config), config.image_size).base


@dataclass(frozen=True)
class ConvSpec:
    """What a Caffe `convolution_param` says of one convolution layer of the backbone."""

    num_output: int
    kernel_size: int
    stride: int
    dilation: int
    bias_term: bool


@dataclass(frozen=True)
class Geometry:
    """What one backbone layout builds at one input size, read from the built layers.

    Attributes:
        sizes: source name -> (height, width) of its feature map.
        weighted: names of the layers with weights, in graph order.
        base: the weighted layers of the base network (up to `BackboneGraph.base`).
        layers: the names of all layers.
        convolutions: convolution layer name -> its `ConvSpec`.
    """

    sizes: dict[str, tuple[int, int]]
    weighted: tuple[str, ...]
    base: tuple[str, ...]
    layers: tuple[str, ...]
    convolutions: dict[str, ConvSpec]


@functools.lru_cache(maxsize=64)
def geometry(name: str, layout: str, image_size: tuple[int, int]) -> Geometry:
    """Build backbone `name` once on a symbolic (1, H, W, 3) input and read what it made."""
    import keras  # here so that configs and the registry do not import Keras

    images = keras.Input(shape=(*image_size, 3), batch_size=1)
    graph = get_backbone(name).build_graph(images, layout)
    sizes = {
        source: (int(tensor.shape[1]), int(tensor.shape[2]))
        for source, tensor in graph.features.items()
    }
    everything = keras.Model(images, list(graph.features.values()))
    base = keras.Model(images, graph.base)
    return Geometry(
        sizes=sizes,
        weighted=tuple(layer.name for layer in everything.layers if layer.weights),
        base=tuple(layer.name for layer in base.layers if layer.weights),
        layers=tuple(layer.name for layer in everything.layers),
        convolutions={
            layer.name: ConvSpec(
                num_output=layer.filters,
                kernel_size=layer.kernel_size[0],
                stride=layer.strides[0],
                dilation=layer.dilation_rate[0],
                bias_term=layer.use_bias,
            )
            for layer in everything.layers
            if isinstance(layer, keras.layers.Conv2D)
        },
    )
