"""How long an SMS is and how many parts it is sent in.

A message written entirely in the GSM 03.38 alphabet (the ``gsm0338`` codec; the
extension characters such as ``€ [ ] { }`` take two septets, an escape and the
character) goes as GSM-7: 160 septets in one part, or 153 a part once it is split (the
rest is the part's header). Anything else goes as UCS-2: 70 UTF-16 code units in one
part, 67 a part when split. A part never ends in the middle of an escape sequence or of
a surrogate pair (an emoji), so the count is made character by character."""

from __future__ import annotations

from dataclasses import dataclass

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)

LIMITS = {"GSM-7": (160, 153), "UCS-2": (70, 67)}


@dataclass(frozen=True)
class SmsLength:
    encoding: str  # "GSM-7" or "UCS-2"
    units: int  # septets (GSM-7) or UTF-16 code units (UCS-2)
    segments: int
    per_segment: int  # units a part holds, as the message is split (or not)
    left: int  # units left in the last part


def _costs(text: str) -> tuple[str, list[int]]:
    try:
        return "GSM-7", [len(ch.encode("gsm03.38")) for ch in text]
    except UnicodeEncodeError:
        return "UCS-2", [len(ch.encode("utf-16-le")) // 2 for ch in text]


def measure(text: str) -> SmsLength:
    """The encoding, length and number of parts of ``text`` as an SMS."""
    encoding, costs = _costs(text)
    single, part = LIMITS[encoding]
    units = sum(costs)
    if units <= single:
        return SmsLength(encoding, units, 1 if units else 0, single, single - units)
    segments, used = 1, 0
    for cost in costs:
        if used + cost > part:
            segments, used = segments + 1, 0
        used += cost
    return SmsLength(encoding, units, segments, part, part - used)
