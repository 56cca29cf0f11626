"""Demo console users, one per role, with fresh passwords each run (printed like the
demo API keys)."""

from __future__ import annotations

from typing import Any

from console import users
from console.models import ROLES
from crm.demo import demo_notes

DEMO_DOMAIN = "demo.example.com"


def load(_keys: Any) -> None:
    from console import demo_history

    added = demo_history.load()
    if added:
        demo_notes.append(f"A year of history added: {added:,} purchases.")
    demo_notes.append("Console users (passwords shown once; `flask demo` again makes new ones):")
    for role in ROLES:
        email, password = f"{role}@{DEMO_DOMAIN}", users.new_password()
        user = users.by_email(email)
        if user is None:
            users.create_user(email, role, password, name=f"Demo {role}")
        else:
            users.set_password(users.set_active(user, True), password)
        demo_notes.append(f"  {email:<28} {password}")
