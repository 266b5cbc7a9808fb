"""Strict parsing of request parameters shared by every protocol (HTTP query, gRPC fields).

Score threshold and detection count are checked against the served model's decoder
(`ssd_core.decoder_config.DecoderConfig`): the decoder only returns scores above its own
threshold and at most its `max_detections`, so a request for a lower threshold or more
detections cannot be honoured and is refused (422 / INVALID_ARGUMENT) with the limit, never
silently capped. Unset values take the service defaults (`SSD_SCORE_THRESHOLD`,
`SSD_MAX_DETECTIONS`), raised to the decoder's threshold and lowered to its count where the
model is stricter than the defaults.

Class filters name classes or give label ids. A label id is ASCII digits only: `str.isdigit`
also accepts superscripts ("²") and other scripts' digits ("٤"), and `int()` of thousands of
digits raises, so ids are checked character by character and by length before conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from service.errors import InvalidParameterError
from ssd_core.decoder_config import DecoderConfig

_ASCII_DIGITS = frozenset("0123456789")
# Longer than any real label id; bounds the work and the size of the error message.
MAX_LABEL_ID_DIGITS = 9
MAX_CLASS_ITEMS = 1000
MAX_SHOWN_CHARS = 200  # of an unknown item, in the error message


def score_threshold_for(requested: float | None, default: float, decoder: DecoderConfig) -> float:
    """The score threshold of a request: `requested`, else `default` (not below the decoder's).

    Raises:
        InvalidParameterError: `requested` is outside [0, 1) or below the decoder's threshold.
    """
    if requested is None:
        return max(default, decoder.score_threshold)
    _check(decoder, score_threshold=requested)
    return float(requested)


def max_detections_for(requested: int | None, default: int, decoder: DecoderConfig) -> int:
    """The detection count of a request: `requested`, else `default` (not above the decoder's).

    Raises:
        InvalidParameterError: `requested` is below 1 or above the decoder's `max_detections`.
    """
    if requested is None:
        return min(default, decoder.max_detections)
    _check(decoder, max_detections=requested)
    return requested


def _check(decoder: DecoderConfig, **request: Any) -> None:
    try:
        decoder.check_honours(**request)
    except ValueError as error:
        raise InvalidParameterError(str(error)) from None


def parse_label_id(text: str) -> int | None:
    """The label id that `text` spells in ASCII digits (at most 9), or None if it is not one."""
    if not text or len(text) > MAX_LABEL_ID_DIGITS or not set(text) <= _ASCII_DIGITS:
        return None
    return int(text)


def split_class_list(text: str | None) -> tuple[str, ...]:
    """A comma-separated class list (HTTP `classes=a,b,3`) -> its non-empty, stripped items."""
    return tuple(item.strip() for item in (text or "").split(",") if item.strip())


def resolve_classes(requested: Sequence[str], label_names: Sequence[str]) -> frozenset[int] | None:
    """Class names or label ids (as strings) -> labels; empty -> None (keep all).

    Args:
        requested: items such as "circle" or "3"; surrounding spaces are ignored.
        label_names: names by label, background first (`SSDConfig.label_names`).
    Raises:
        InvalidParameterError: an item is neither a foreground class name nor a label id
            1..len(label_names)-1 in ASCII digits, or the list is too long.
    """
    if not requested:
        return None
    if len(requested) > MAX_CLASS_ITEMS:
        raise InvalidParameterError(
            f"classes has {len(requested)} items, at most {MAX_CLASS_ITEMS} are allowed"
        )
    by_name = {name: label for label, name in enumerate(label_names) if label > 0}
    labels = set()
    for raw in requested:
        item = raw.strip()
        label = by_name.get(item, parse_label_id(item))
        if label is None or not 1 <= label < len(label_names):
            shown = item if len(item) <= MAX_SHOWN_CHARS else item[:MAX_SHOWN_CHARS] + "..."
            raise InvalidParameterError(
                f"unknown class {shown!r}; expected a name in {sorted(by_name)} "
                f"or a label id 1..{len(label_names) - 1} in ASCII digits"
            )
        labels.add(label)
    return frozenset(labels)
