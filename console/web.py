"""The console's plumbing, shared by every screen: the blueprint, sign-in sessions
(Flask-Login), CSRF on every form and htmx request (flask-wtf), roles, the
Content-Security-Policy, error pages, and the filters templates format with."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import wraps
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from babel.numbers import format_currency
from flask import (
    Blueprint,
    Flask,
    Response,
    abort,
    current_app,
    redirect,
    render_template,
    request,
    url_for,
)
from flask_login import LoginManager, current_user
from flask_wtf.csrf import CSRFError, CSRFProtect

from crm.db import db
from crm.money import to_amount

F = TypeVar("F", bound=Callable[..., Any])

bp = Blueprint("console", __name__, url_prefix="/console", static_folder="static",
               template_folder="templates")
login_manager = LoginManager()
csrf = CSRFProtect()

CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
       "form-action 'self'; frame-ancestors 'none'")
PUBLIC_ENDPOINTS = {"console.login", "console.static"}


@login_manager.user_loader
def _load_user(user_id: str) -> Any:
    from console.models import User

    user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
    return user if user is not None and user.active else None


@bp.before_request
def _signed_in_and_csrf() -> Any:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()  # every form and htmx request carries the token
    if request.endpoint not in PUBLIC_ENDPOINTS and not current_user.is_authenticated:
        if request.headers.get("HX-Request"):
            return Response(status=401, headers={"HX-Redirect": url_for("console.login")})
        return redirect(url_for("console.login", next=request.full_path.rstrip("?")))
    return None


@bp.after_request
def _headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


def role(needed: str) -> Callable[[F], F]:
    """Only users holding ``needed`` (or a higher role) may use the view: 403 otherwise."""

    def decorator(view: F) -> F:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if not current_user.may(needed):
                abort(403)
            return view(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    return decorator


def can(needed: str) -> bool:
    return bool(current_user.is_authenticated and current_user.may(needed))


def actor() -> str:
    return current_user.actor


def user_zone() -> ZoneInfo:
    name = (current_user.is_authenticated and current_user.timezone) or \
        current_app.config["DEFAULT_TIMEZONE"]
    return ZoneInfo(name)


def when(value: datetime | str | None, zone: str | None = None) -> str:
    """A time in the given store zone (or the user's), with the zone named."""
    if value is None:
        return "—"
    if isinstance(value, str):  # a UNION's column read back as text on SQLite
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    local = value.astimezone(ZoneInfo(zone) if zone else user_zone())
    return local.strftime("%Y-%m-%d %H:%M %Z")


def money(minor: int | str | None, currency: str) -> str:
    """Minor units (or an amount already written as a decimal string) with the currency."""
    if minor is None:
        return "—"
    amount = Decimal(minor) if isinstance(minor, str) else Decimal(to_amount(minor, currency))
    return format_currency(amount, currency, locale="en_US")


def number(value: Any) -> str:
    return "—" if value is None else f"{value:,}"


def offer_terms(offer: Any) -> str:
    """What an offer gives, as a marketer reads it: "10% off", "$5.00 off"."""
    value = Decimal(offer.value)
    plain = f"{value.normalize():f}"
    if offer.kind == "percent":
        return f"{plain}% off"
    if offer.kind == "amount":
        return f"{format_currency(value, offer.currency, locale='en_US')} off"
    if offer.kind == "points_multiplier":
        return f"points times {plain}"
    if offer.kind == "bonus_points":
        return f"{plain} bonus points"
    return "a free item"


def _page(status: int, title: str, detail: str) -> tuple[str, int]:
    return render_template("console/error.html", status=status, title=title,
                           detail=detail), status


@bp.errorhandler(403)
def _forbidden(_e: Any) -> Any:
    return _page(403, "Not allowed", "Your role does not allow this. Ask an administrator "
                 "if you need it.")


@bp.errorhandler(404)
def _not_found(_e: Any) -> Any:
    return _page(404, "Not found", "Nothing is at this address. Use the menu or search "
                 "for a customer.")


@bp.errorhandler(CSRFError)
def _csrf(_e: Any) -> Any:
    return _page(400, "Form expired", "The form was sent without a valid security token. "
                 "Reload the page and try again.")


@bp.errorhandler(429)
def _too_many(_e: Any) -> Any:
    return _page(429, "Too many attempts", "Too many failed sign-ins. Wait a few minutes "
                 "and try again.")


@bp.route("/<path:_anything>", methods=["GET", "POST"])
def _unknown(_anything: str) -> Any:
    abort(404)  # a console page of its own style, not the API's problem document


def init_web(app: Flask) -> None:
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)  # the console asks; the API has keys
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # valid as long as the session
    # Flask's own defaults are lax; the console's session cookie is not.
    app.config.update(
        SESSION_COOKIE_SECURE=True, SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax", SESSION_REFRESH_EACH_REQUEST=True,
        PERMANENT_SESSION_LIFETIME=timedelta(minutes=app.config["CONSOLE_IDLE_MINUTES"]))
    login_manager.login_view = "console.login"
    login_manager.session_protection = "strong"
    login_manager.init_app(app)
    csrf.init_app(app)
    app.jinja_env.filters.update(when=when, money=money, number=number,
                                  offer_terms=offer_terms)
    app.jinja_env.globals.update(can=can, now=lambda: datetime.now(UTC))
    app.add_url_rule("/", "root", lambda: redirect(url_for("console.dashboard")))
