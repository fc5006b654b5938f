"""COCONut-PanCap grounded captions (seed 002, REFERENCE §8) -> `ImageRecord`s.

Caption syntax: phrases linked to panoptic segment ids inline, ``<ids: phrase>`` with ``ids``
one or more comma-separated segment ids, e.g. ``A <4:large zebu> pulls a cart past
<6,7,8:eight boys>.`` `parse_grounded_caption` returns the plain text (tags replaced by
their phrases) and each phrase's ids and character span in it. Malformed tags raise
`DataFormatError` naming the character offset: an unclosed ``<``, a nested ``<``, a stray
``>``, a missing ``:``, ids that are not integers, an empty phrase.

Expected layout: a panoptic dataset (see `readers.panoptic`) whose annotation entries
carry the grounded caption under ``caption_key`` (default ``"caption"``)::

    <pancap_json>                   # panoptic JSON; annotations[i]["caption"] = grounded caption
    <panoptic_root>/<name>.png      # COCONut panoptic PNGs (rgb2id)
    <image_root>/<file_name>

Regions = the panoptic segments; ``captions`` = the phrase grounded on the segment (the
first if several, ``""`` for segments the caption does not mention); ``data["phrases"]``
lists them all. ``extra``: ``caption`` (plain text), ``grounded_caption`` (the raw text),
``phrases`` (``[{"ids", "phrase", "start", "end"}]``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from ...errors import DataFormatError
from .base import ErrorPolicy, ImageRecord, ReadReport
from .panoptic import PanopticIndex, image_file, load_panoptic_regions

__all__ = ["GroundedPhrase", "GroundedCaption", "parse_grounded_caption", "read_pancap"]

_IDS = re.compile(r"^\s*\d+\s*(,\s*\d+\s*)*$")


@dataclass(frozen=True)
class GroundedPhrase:
    """A phrase grounded on segment ``ids``; ``text[start:end]`` of the plain caption."""

    ids: tuple[int, ...]
    phrase: str
    start: int
    end: int


@dataclass(frozen=True)
class GroundedCaption:
    text: str
    phrases: tuple[GroundedPhrase, ...]

    @property
    def segment_ids(self) -> set[int]:
        return {i for p in self.phrases for i in p.ids}


def parse_grounded_caption(caption: str) -> GroundedCaption:
    """Parse ``<ids: phrase>`` tags (module docstring); malformed tags raise `DataFormatError`."""
    if not isinstance(caption, str):
        raise DataFormatError(f"a grounded caption must be a str, got {type(caption).__name__}")
    out, phrases = [], []
    pos, length = 0, 0
    while pos < len(caption):
        lt, gt = caption.find("<", pos), caption.find(">", pos)
        if gt != -1 and (lt == -1 or gt < lt):
            raise DataFormatError(f"malformed grounding tag: '>' without '<' at character {gt}")
        if lt == -1:
            out.append(caption[pos:])
            break
        out.append(caption[pos:lt])
        length += lt - pos
        close = caption.find(">", lt + 1)
        if close == -1:
            raise DataFormatError(f"malformed grounding tag: '<' at character {lt} is never closed")
        inner = caption[lt + 1 : close]
        if "<" in inner:
            raise DataFormatError(f"malformed grounding tag: nested '<' inside the tag at character {lt}")
        ids_text, colon, phrase = inner.partition(":")
        if not colon:
            raise DataFormatError(f"malformed grounding tag at character {lt}: {inner!r} has no ':'")
        if not _IDS.match(ids_text):
            raise DataFormatError(f"malformed grounding tag at character {lt}: ids {ids_text!r} are not comma-separated integers")
        phrase = phrase.strip()
        if not phrase:
            raise DataFormatError(f"malformed grounding tag at character {lt}: empty phrase")
        ids = tuple(int(v) for v in ids_text.split(","))
        phrases.append(GroundedPhrase(ids, phrase, length, length + len(phrase)))
        out.append(phrase)
        length += len(phrase)
        pos = close + 1
    return GroundedCaption("".join(out), tuple(phrases))


def read_pancap(pancap_json: str | Path, panoptic_root: str | Path, image_root: str | Path, *,
                caption_key: str = "caption", on_error: str = "raise", report: ReadReport | None = None,
                check_images: bool = True, max_pixels: int | None = None) -> Iterator[ImageRecord]:
    """One record per captioned image (see the module docstring); a caption with a malformed tag,
    or a tag naming a segment id the image does not have, is a bad record."""
    policy = ErrorPolicy(on_error, report)
    index = PanopticIndex(pancap_json, policy, max_pixels=max_pixels)
    return _records(index, Path(panoptic_root), Path(image_root), caption_key, policy, check_images, max_pixels)


def _records(index, panoptic_root, image_root, caption_key, policy, check_images, max_pixels):
    for image_id, entry in index.entries.items():
        where = f"image_id={image_id!r}"
        if caption_key not in entry:
            policy.fail(index.path, where, f"no {caption_key!r} field")
            continue
        try:
            grounded = parse_grounded_caption(entry[caption_key])
        except DataFormatError as exc:
            policy.fail(index.path, where, str(exc))
            continue
        known = {s.get("id") for s in entry["segments_info"]}
        unknown = sorted(grounded.segment_ids - known)
        if unknown:
            policy.fail(index.path, where, f"grounding tags name segment ids {unknown} not in segments_info")
            continue
        file = image_file(index, image_id, image_root, policy, check_images)
        if file is None:
            continue
        regions = load_panoptic_regions(entry, index, panoptic_root, policy, max_pixels=max_pixels)
        if regions is None:
            continue
        by_id: dict = {}
        for p in grounded.phrases:
            for i in p.ids:
                by_id.setdefault(i, []).append(p.phrase)
        phrases = [by_id.get(i, []) for i in regions.ids]
        regions = regions.with_fields(captions=[p[0] if p else "" for p in phrases], data={"phrases": phrases})
        extra = {"caption": grounded.text, "grounded_caption": entry[caption_key],
                 "phrases": [{"ids": list(p.ids), "phrase": p.phrase, "start": p.start, "end": p.end}
                             for p in grounded.phrases]}
        yield policy.count(ImageRecord(image_id=image_id, image_path=file, image_size=regions.image_size,
                                       regions=regions, extra=extra))
