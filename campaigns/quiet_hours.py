"""Quiet hours: local times between which only transactional SMS may go out. A window
may wrap midnight ("21:00"-"08:00"). A message that falls in one waits for its end."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

_HHMM = re.compile(r"([01]\d|2[0-3]):([0-5]\d)\Z")
OFF = {"", "none", "off"}


def parse_time(text: str) -> time:
    """ "HH:MM" (24-hour) as a time; ValueError otherwise."""
    found = _HHMM.match(text.strip())
    if not found:
        raise ValueError(f"{text!r} is not a time written HH:MM (00:00 to 23:59).")
    return time(int(found.group(1)), int(found.group(2)))


def parse_window(text: str | None) -> tuple[str, str] | None:
    """ "21:00-08:00" as ("21:00", "08:00"); None for no quiet hours."""
    if text is None or text.strip().lower() in OFF:
        return None
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"{text!r} is not a window written HH:MM-HH:MM.")
    parse_time(start), parse_time(end)
    return start.strip(), end.strip()


def quiet_until(now: datetime, zone: str, start: str | None, end: str | None
                ) -> datetime | None:
    """When the quiet window that ``now`` falls in ends (aware), or None when ``now``
    is not in a quiet window (or there is none)."""
    if not start or not end or start == end:
        return None
    tz = ZoneInfo(zone)
    local = now.astimezone(tz)
    begins, ends = parse_time(start), parse_time(end)
    clock = local.time()
    today = local.date()
    if begins < ends:
        quiet = begins <= clock < ends
        end_day = today
    elif clock >= begins:
        quiet, end_day = True, today + timedelta(days=1)
    else:
        quiet, end_day = clock < ends, today
    if not quiet:
        return None
    return datetime.combine(end_day, ends, tzinfo=tz)
