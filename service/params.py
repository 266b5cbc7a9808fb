"""Strict parsing of request parameters shared by every protocol (HTTP query, gRPC fields).

Class filters name classes or give label ids. A label id is ASCII digits only: `str.isdigit`
also accepts superscripts ("²") and other scripts' digits ("٤"), and `int()` of thousands of
digits raises, so ids are checked character by character and by length before conversion.
"""

from __future__ import annotations

from collections.abc import Sequence

from service.errors import InvalidParameterError

_ASCII_DIGITS = frozenset("0123456789")
# Longer than any real label id; bounds the work and the size of the error message.
MAX_LABEL_ID_DIGITS = 9
MAX_CLASS_ITEMS = 1000
MAX_SHOWN_CHARS = 200  # of an unknown item, in the error message


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
