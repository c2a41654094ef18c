"""Schemathesis hooks for the edge's API contract run (cli/tests/schemathesis.rs).

The OpenAPI document states every rule a schema can state. These rules of the
edge depend on its state, its clock or its configuration, which no schema can state:

- a point must lie in one of the edge's cells (otherwise 421, which names the
  cell's owner);
- `expires_at` must be in the future and at most 14 days away;
- ids in a body must name what exists (`unknown_provider`,
  `unknown_recipient`), a delivery cannot exceed what was posted, and an
  Idempotency-Key cannot be reused for another body;
- an SMS or WhatsApp channel needs the edge's gateway to be configured
  (`gateway_not_configured`);
- a push subscription's `p256dh` must be a point on P-256 and its `auth` 16
  bytes, and its `expirationTime` (if any) in the future.

Erasure is this API's removal: `POST /subjects/{id}/erase` removes a provider
or recipient, after which reading it is a 404. Schemathesis knows a removal
only as a DELETE, so its "created resource not found" check would call that
404 a finding; the erasures that succeeded are remembered and the check's
finding is dropped for exactly those ids.

The map hooks move generated values that the schema already accepts to ones
the edge's state also accepts (a point into the edge's area, an expiry into
the window), so schema-valid requests get past those rules and reach the
lifecycle; a value the schema refuses is never touched, so negative cases stay
negative. The failure filter drops exactly one kind of finding: a
schema-valid request refused with 422 and one of the state-dependent codes
above. Every other finding fails the run.
"""

import datetime
import os
import zlib

import jsonschema_rs
import schemathesis

# The edge's area: a box inside the cells it owns (south, west, north, east).
BOX = [float(x) for x in os.environ["PAHLAWAN_ST_BOX"].split(",")]

# 422 codes that depend on state or the clock, not on the request's shape.
STATE_DEPENDENT_422 = {
    "unknown_provider",
    "unknown_recipient",
    "delivered_exceeds_quantity",
    "idempotency_key_reused",
    # A phone channel needs the edge's SMS gateway ([notify.sms]).
    "gateway_not_configured",
    # A push subscription's key must be a point on P-256 and its expiry in
    # the future: not a shape (the map hook sends real keys where it can;
    # the coverage phase's cases pass no hook).
    "invalid_subscription",
}

_DATE_TIME = jsonschema_rs.validator_for(
    {"type": "string", "format": "date-time"}, validate_formats=True
)


def _number_in(value, low, high):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and low <= value <= high


def _rescale(value, low, high, to_low, to_high):
    return to_low + (value - low) / (high - low) * (to_high - to_low)


def _place(point):
    """A schema-valid lat/lon moved into the edge's box (bounds kept as sent,
    so a schema-valid point outside the cells still meets the 421)."""
    lat, lon = point.get("lat"), point.get("lon")
    if not (_number_in(lat, -90, 90) and _number_in(lon, -180, 180)):
        return
    if lat in (-90, 90) or lon in (-180, 180):
        return
    point["lat"] = _rescale(lat, -90, 90, BOX[0], BOX[2])
    point["lon"] = _rescale(lon, -180, 180, BOX[1], BOX[3])


def _within_window(expires_at):
    """A valid RFC 3339 date-time moved to between ten minutes and 13 days
    from now, in an offset chosen by the value (so both `Z` and offsets are sent)."""
    if not isinstance(expires_at, str) or not _DATE_TIME.is_valid(expires_at):
        return expires_at
    spread = zlib.crc32(expires_at.encode("utf-8"))
    ahead = datetime.timedelta(minutes=10 + spread % (13 * 24 * 60))
    offset = datetime.timezone(datetime.timedelta(minutes=(spread % 97 - 48) * 15))
    at = (datetime.datetime.now(datetime.timezone.utc) + ahead).astimezone(offset)
    return at.isoformat(timespec="milliseconds" if spread % 2 else "seconds")


# A real subscription's keys (RFC 8291, Appendix A): what a browser sends.
_PUSH_KEYS = {
    "p256dh": "BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4",
    "auth": "BTBZMqHH6r4Tts7J_aSIgg",
}


def _real_subscription(body):
    """A schema-valid push subscription given a real browser's keys (random
    base64url is not a curve point) and, if it has an expiry, one a day
    ahead: what is left to the edge is the request's shape."""
    keys = body.get("keys")
    if isinstance(keys, dict) and set(keys) == {"p256dh", "auth"} and all(
        isinstance(v, str) for v in keys.values()
    ):
        body["keys"] = dict(_PUSH_KEYS)
    at = body.get("expirationTime")
    if isinstance(at, (int, float)) and not isinstance(at, bool):
        now_ms = datetime.datetime.now(datetime.timezone.utc).timestamp() * 1000
        body["expirationTime"] = now_ms + 86_400_000


def _path(ctx):
    return ctx.operation.path if ctx.operation is not None else ""


@schemathesis.hook
def map_body(ctx, body):
    if not isinstance(body, dict):
        return body
    if _path(ctx) in ("/api/v1/providers", "/api/v1/recipients", "/api/v1/surplus"):
        _place(body)
    if _path(ctx) == "/api/v1/surplus" and "expires_at" in body:
        body["expires_at"] = _within_window(body["expires_at"])
    if _path(ctx) == "/api/v1/recipients/{id}/channels" and body.get("kind") == "web_push":
        _real_subscription(body)
    return body


@schemathesis.hook
def map_query(ctx, query):
    if isinstance(query, dict) and _path(ctx) == "/api/v1/surplus":
        _place(query)
    return query


_DROPPED = set()
# Ids of subjects erased during the run.
_ERASED = set()


@schemathesis.hook
def after_call(ctx, case, response):
    if case.operation.path == "/api/v1/subjects/{id}/erase" and response.status_code == 200:
        _ERASED.add(str((case.path_parameters or {}).get("id")))


def _drop(label, why):
    if (label, why) not in _DROPPED:
        _DROPPED.add((label, why))
        print(f"hooks.py: {label}: {why}: not a finding", flush=True)
    return False


@schemathesis.hook
def filter_failure(ctx, failure, case, response):
    """Keep every finding but a state-dependent 422 on a schema-valid request,
    and a 404 for a subject erased before (each kind dropped is printed once,
    so the run says what it let pass)."""
    label = case.operation.label
    if failure.code == "ST302" and response.status_code == 404:
        if str((case.path_parameters or {}).get("id")) in _ERASED:
            return _drop(label, "404 after the subject was erased")
        return True
    if failure.code != "ST202" or response.status_code != 422:
        return True
    try:
        code = response.json()["error"]["code"]
    except Exception:
        return True
    if code not in STATE_DEPENDENT_422:
        return True
    return _drop(label, f"a schema-valid request met the state-dependent 422 {code}")
