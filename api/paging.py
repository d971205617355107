"""Cursor paging of lists: one convention for every market list.

A list answers a JSON array of at most `limit` items in a fixed order. When more may follow, the answer
has a `Link: <...>; rel="next"` header (RFC 8288) naming the same request with an opaque `cursor` query
parameter; follow it until an answer has no `rel="next"`. The cursor carries the sort key of the last
item of the page (keyset paging), so items are neither repeated nor skipped while the list grows: items
that arrive during paging appear on a later page when they sort after the cursor (records in id order),
or on a fresh first page (time series, newest first). A cursor belongs to one list: it is refused (422
`invalid_cursor`) on another, and when it is malformed.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable, Sequence
from datetime import date
from typing import Annotated, Any, TypeVar
from urllib.parse import urlencode

from litestar import Request, Response
from litestar.datastructures import ResponseHeader
from litestar.params import Parameter

from api.encoding import Answer
from api.security import json_body
from exchange.core.errors import Invalid

T = TypeVar("T")  # an item of a list: a response schema, or a dict where a list has none yet
Cursor = Annotated[str | None, Parameter(max_length=512, description="Opaque: from the previous page's "
                                                                      "`Link: <...>; rel=\"next\"` header")]
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
LINK = [ResponseHeader(name="Link", required=False, documentation_only=True,
                       description="`<url>; rel=\"next\"` when more items follow (cursor paging)")]


def encode(list_name: str, key: Any) -> str:
    raw = json.dumps([list_name, key], separators=(",", ":"), ensure_ascii=True).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode(cursor: str | None, list_name: str, valid: Callable[[Any], bool]) -> Any:
    """The key the cursor carries (None without a cursor); 422 `invalid_cursor` if it is not this list's."""
    if cursor is None:
        return None
    try:  # read as strictly as a body (api/security/json_body.py): a forged cursor is a 422, never a 500
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        if b"\\u0000" in raw:  # NUL: no PostgreSQL text holds it
            raise ValueError("NUL")
        name, key = json_body.decode(raw)
    except (ValueError, TypeError, binascii.Error):  # BodyRefused is a ValueError
        raise Invalid("invalid_cursor", "the cursor is not one this server made") from None
    if name != list_name or not valid(key):
        raise Invalid("invalid_cursor", f"the cursor does not belong to this list ({list_name})")
    return key


def page(request: Request[Any, Any, Any], list_name: str, items: Sequence[T], limit: int,
         key: Callable[[T], Any]) -> Response[list[T]]:
    """Answer `items[:limit]` (callers fetch one more than `limit` to know whether more follow)."""
    shown = list(items[:limit])
    headers = {}
    if len(items) > limit and shown:
        params = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
        params.append(("cursor", encode(list_name, key(shown[-1]))))
        headers["Link"] = f'<{request.url.path}?{urlencode(params)}>; rel="next"'
    return Answer(shown, headers=headers)


def is_int(key: Any) -> bool:
    return type(key) is int and 0 <= key < 2**63


def is_day(key: Any) -> bool:
    if not isinstance(key, str) or _DAY.fullmatch(key) is None:
        return False
    try:
        date.fromisoformat(key)
    except ValueError:
        return False
    return True
