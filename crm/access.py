"""Least privilege beyond scopes: what a till may see and where a shop key may sell.

A till (a ``pos`` key and no other scope) finds a member only by an exact phone, email or
card, never by a name or a list, and sees a masked view of them; the shop keeps full
profiles but posts only for online stores."""

from __future__ import annotations

from typing import Any

from crm.errors import Forbidden
from crm.keys import Caller, StoreRef
from crm.models import Store

FULL_PROFILE_SCOPES = frozenset({"shop", "marketing", "admin"})
TILL_LOOKUPS = ("email", "phone", "card_number")


def sees_personal_data(key: Caller) -> bool:
    """Whether the key may read whole profiles (else: the masked view)."""
    return not FULL_PROFILE_SCOPES.isdisjoint(key.scope_list)


def check_till_search(key: Caller, filters: dict[str, Any]) -> None:
    """A till looks one member up by an exact phone, email or card: no name search
    (``q``), no unfiltered list, no segment."""
    if sees_personal_data(key):
        return
    if filters.get("q") is not None or filters.get("segment_id") is not None or not any(
            filters.get(f) is not None for f in TILL_LOOKUPS):
        raise Forbidden("A till looks a member up by an exact phone, email or card "
                        "(?phone=, ?email=, ?card=), not by name, segment or a list.")


def check_store_channel(key: Caller, store: Store | StoreRef) -> None:
    """A key not bound to a store (the shop's) posts only for online stores; admin keys
    may post anywhere (back-office corrections)."""
    if key.store is None and "admin" not in key.scope_list \
            and getattr(store, "channel", "online") != "online":
        raise Forbidden(f"Store {store.code} is a street store: its sales come from its "
                        "own tills, not from the shop's key.")
