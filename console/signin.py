"""Sign-in and sign-out. Failed sign-ins are limited per account and per address; an
unknown email and a wrong password get the same answer."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from flask import Response, current_app, g, redirect, render_template, request, session, url_for
from flask_limiter.util import get_remote_address
from flask_login import login_user, logout_user

from console import users
from console.web import bp
from crm.db import db
from crm.limits import limiter


def _failed(_response: Response) -> bool:
    return bool(g.get("signin_failed"))


def _account() -> str:
    email = request.form.get("email", "")
    try:
        return "signin-account:" + users.normalize_email(email)
    except Exception:
        return "signin-account:?"


def _address() -> str:
    return "signin-address:" + get_remote_address()


def _safe_next(target: str | None) -> str:
    """Only a path of this console: never another site."""
    if target and target.startswith("/console/") and not urlsplit(target).netloc \
            and not target.startswith("//"):
        return target
    return url_for("console.dashboard")


@bp.route("/login", methods=["GET", "POST"])
@limiter.limit(lambda: current_app.config["CONSOLE_SIGNIN_LIMIT_ACCOUNT"], key_func=_account,
               methods=["POST"], deduct_when=_failed, scope="console-signin-account")
@limiter.limit(lambda: current_app.config["CONSOLE_SIGNIN_LIMIT_ADDRESS"], key_func=_address,
               methods=["POST"], deduct_when=_failed, scope="console-signin-address")
def login() -> Any:
    error = None
    if request.method == "POST":
        user = users.authenticate(request.form.get("email", ""),
                                  request.form.get("password", ""))
        if user is not None:
            db.session.commit()
            target = _safe_next(request.args.get("next"))
            session.clear()  # a fresh session: no fixation
            session.permanent = True  # ends after CONSOLE_IDLE_MINUTES without a request
            login_user(user)
            return redirect(target)
        db.session.rollback()
        g.signin_failed = True
        error = "The email or password is not right."
    return render_template("console/login.html", error=error,
                           email=request.form.get("email", ""))


@bp.route("/logout", methods=["POST"])
def logout() -> Any:
    logout_user()
    session.clear()
    return redirect(url_for("console.login"))
