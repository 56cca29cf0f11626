"""SMS length: GSM-7 and UCS-2, single and split messages (GSM 03.38, 3GPP TS 23.038)."""

from __future__ import annotations

import pytest

from campaigns.sms_length import measure


@pytest.mark.parametrize("text, encoding, units, segments", [
    ("", "GSM-7", 0, 0),
    ("Hi Ada, 120 points are waiting.", "GSM-7", 31, 1),
    ("a" * 160, "GSM-7", 160, 1),
    ("a" * 161, "GSM-7", 161, 2),
    ("a" * 306, "GSM-7", 306, 2),
    ("a" * 307, "GSM-7", 307, 3),
    ("Ça coûte 5€ [promo]", "UCS-2", 19, 1),  # û is not in the GSM alphabet
    ("Caf\u00e9 5\u20ac {x}", "GSM-7", 14, 1),  # é is; € { } are escapes (2 septets)
    ("€" * 80, "GSM-7", 160, 1),
    ("€" * 81, "GSM-7", 162, 2),
    ("✓" * 70, "UCS-2", 70, 1),
    ("✓" * 71, "UCS-2", 71, 2),
    ("✓" * 134, "UCS-2", 134, 2),
    ("✓" * 135, "UCS-2", 135, 3),
    ("😀" * 35, "UCS-2", 70, 1),  # an emoji is two UTF-16 code units
])
def test_encoding_length_and_parts(text, encoding, units, segments):
    got = measure(text)
    assert (got.encoding, got.units, got.segments) == (encoding, units, segments)


def test_a_part_never_splits_an_escape_or_an_emoji():
    # 152 septets then "€" (2): it cannot straddle parts of 153, so it opens part 2
    got = measure("a" * 152 + "€" + "a" * 10)
    assert (got.units, got.segments, got.left) == (164, 2, 153 - 12)
    # 66 units then an emoji (2 units) in parts of 67: the emoji opens part 2
    got = measure("✓" * 66 + "😀" + "✓" * 5)
    assert (got.units, got.segments, got.left) == (73, 2, 67 - 7)
