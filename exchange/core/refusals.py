"""The closed set of refusals, and the invariant policy: what is a refusal and what is a bug.

Every problem document envx answers carries a `code` from `Refusal` below, and that code decides its
HTTP status (`Refusal.status`); `REFUSALS.md` is the table rendered from it (`python -m
exchange.core.refusals > REFUSALS.md`; tests/test_refusals.py checks they agree). The pure packages
below the exchange keep their own codes -- the ledger's `ledger.state.REFUSAL_CODES`, the engines'
`matching.reasons.CODES`, the pledge rules' `pledges.errors.CODES` -- and each of them is a member here.
To add a code, add one line here (name = code in capitals, status, one-line meaning) and regenerate the
table; a code that is not here is a bug wherever it is raised (below).

## Refusal, outage, bug

- A **refusal** is the answer to one caller's request: the request is malformed (422), names nothing
  the caller may see (404), is not the caller's to make (401, 403), or the state says no (409). Nothing
  of it is applied; the component that refused goes on serving everyone else.
- An **outage** is a dependency away for now (the database, the ledger writer reconnecting after a
  failover): 503 with a `*_unavailable` code; the caller retries with the same Idempotency-Key, and the
  component waits and rebuilds on its own.
- A **broken invariant is a bug**, never a refusal (after TigerBeetle: preconditions are asserted, and
  past the point where an operation must succeed a failure stops the process rather than answering a
  client). The ledger's state machine finding itself inconsistent (`ledger.state.InvariantViolation`),
  a PostgreSQL backstop firing under the writer (a CHECK, an append-only trigger, a second resolution
  of one hold), the chain head moved by someone else, a settlement the ledger refuses for a trade a
  market has journaled, a replay that raises: the component it happens in **stops taking writes**.
  It logs one CRITICAL line with the reason, says why in `GET /health` (status `degraded`,
  `ledger_stopped` / `markets_stopped` with the reason), answers every write 503 (`ledger_stopped`,
  `market_stopped`) and does not retry; reads go on, nothing is half-applied (a ledger batch commits
  whole or not at all, a trade is one linked group), holds stay where they are. A restart replays and
  stops at the same point until the cause is fixed. The ledger writer (ledger/writer.py) and each
  market sequencer (exchange/trading/sequencer.py) follow this one policy; a market whose settlement
  meets a stopped ledger stops too.
- A **code outside this set** is a bug in the raise site: `DomainError` raises `UnknownRefusal` (an
  AssertionError) instead of answering, so the request ends in a 500 `internal_error` and any test that
  reaches it fails; the same for a status given at a raise site that is not the code's.
"""

# ruff: noqa: E501  (the table below keeps one code per line)
from __future__ import annotations

import sys
from enum import StrEnum

from matching import reasons as R


class UnknownRefusal(AssertionError):
    """A refusal code outside `Refusal`, or with another status than `Refusal` gives it: a bug of the
    raise site, never answered as a refusal."""


class Refusal(StrEnum):
    """Every refusal code envx answers, with its HTTP status and meaning (a str: compares as the code)."""

    status: int
    meaning: str

    def __new__(cls, code: str, status: int, meaning: str) -> Refusal:
        member = str.__new__(cls, code)
        member._value_ = code
        member.status = status
        member.meaning = meaning
        return member

    # --- the HTTP edge: authentication, bounds of the request, body decoding (api/) ------------------------
    UNAUTHENTICATED = "unauthenticated", 401, "no valid API key: missing, unknown, revoked, expired, or its participant suspended"
    FORBIDDEN = "forbidden", 403, "the caller's role or relation to the object does not allow this"
    ROLE_FORBIDDEN = "role_forbidden", 403, "the authorization matrix refuses this operation to the caller's participant kind"
    NOT_FOUND = "not_found", 404, "no such object, or not visible to the caller (checked before any state)"
    METHOD_NOT_ALLOWED = "method_not_allowed", 405, "the path exists but not with this HTTP method"
    PAYLOAD_TOO_LARGE = "payload_too_large", 413, "the request body is larger than the API accepts"
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type", 415, "a request body is JSON: its Content-Type is application/json (or none)"
    RATE_LIMITED = "rate_limited", 429, "too many requests for this key (or address); retry after Retry-After"
    BAD_REQUEST = "bad_request", 400, "an HTTP-level refusal with no more precise code"
    VALIDATION_ERROR = "validation_error", 422, "the request does not match its schema (fields, types, bounds)"
    MALFORMED_JSON = "malformed_json", 422, "the body is not JSON (or uses NaN / Infinity)"
    JSON_TOO_DEEP = "json_too_deep", 422, "arrays and objects in the body nest too deep"
    DUPLICATE_KEY = "duplicate_key", 422, "an object in the body names one key twice"
    INVALID_CHARACTERS = "invalid_characters", 422, "the body or a parameter is not UTF-8, has a lone surrogate or a NUL"
    BODY_NOT_ALLOWED = "body_not_allowed", 422, "the operation takes no request body: send none, or {}"
    NUMBER_OUT_OF_RANGE = "number_out_of_range", 422, "an integer in the body is outside ±(2^53 - 1), or a number is too large"
    INVALID_INTEGER = "invalid_integer", 422, "an integer path or query parameter is not plain ASCII digits"
    PATH_PARAMETER_OUT_OF_RANGE = "path_parameter_out_of_range", 422, "an integer path parameter is beyond 2^53 - 1"
    QUERY_PARAMETER_OUT_OF_RANGE = "query_parameter_out_of_range", 422, "an integer query parameter is beyond 2^53 - 1"
    PATH_PARAMETER_TOO_LONG = "path_parameter_too_long", 422, "a path parameter is too long"
    QUERY_PARAMETER_TOO_LONG = "query_parameter_too_long", 422, "a query parameter value is too long"
    UNKNOWN_QUERY_PARAMETER = "unknown_query_parameter", 422, "the operation does not take this query parameter"
    REPEATED_QUERY_PARAMETER = "repeated_query_parameter", 422, "a query parameter is given more than once"
    INVALID_CURSOR = "invalid_cursor", 422, "the paging cursor is malformed or belongs to another list"
    SIGNATURE_REQUIRED = "signature_required", 401, "the participant's operator requires every mutation to be signed"
    SIGNATURE_MALFORMED = "signature_malformed", 401, "the X-Envx-Signature header is not keyid, ts, nonce and sig as specified"
    SIGNATURE_STALE = "signature_stale", 401, "the signature's timestamp is too far from the registry's clock"
    SIGNATURE_UNKNOWN_KEY = "signature_unknown_key", 401, "the signing key is not one of the caller's participant"
    SIGNATURE_KEY_REVOKED = "signature_key_revoked", 401, "the signing key was revoked"
    SIGNATURE_INVALID = "signature_invalid", 401, "the signature does not match this request"
    SIGNATURE_REPLAYED = "signature_replayed", 401, "this nonce was already used with this key"

    # --- the service itself: outages and stopped components (503) --------------------------------------------
    DATABASE_UNAVAILABLE = "database_unavailable", 503, "the database cannot be reached now; retry with the same key"
    LEDGER_UNAVAILABLE = "ledger_unavailable", 503, "the ledger writer is not running now (stopping, reconnecting); retry"
    LEDGER_STOPPED = "ledger_stopped", 503, "the ledger writer stopped taking writes on a broken invariant (a bug, see /health)"
    MARKET_UNAVAILABLE = "market_unavailable", 503, "the market's sequencer is not running now (recovering); retry"
    MARKET_STOPPED = "market_stopped", 503, "the market stopped taking writes on a broken invariant (a bug, see /health)"
    RENDER_BUSY = "render_busy", 503, "the certificate PDF renderer is busy with other requests; retry in a few seconds (the signed JSON is available at once)"
    AUDIT_UNAVAILABLE = "audit_unavailable", 503, "the audit trail could not record the request, so it is not answered"
    READ_ONLY = "read_only", 503, "this process serves reads only (a read replica); send changes to the primary"
    UNAVAILABLE = "unavailable", 503, "the service cannot answer now"
    CHECKPOINT_PENDING = "checkpoint_pending", 503, "no signed checkpoint covers this yet; retry after Retry-After"
    REGISTRY_KEY_MISSING = "registry_key_missing", 503, "this process holds no registry signing key to sign with"
    INTERNAL_ERROR = "internal_error", 500, "a bug; nothing was applied twice, retry with the same key"

    # --- idempotency ---------------------------------------------------------------------------------------
    IDEMPOTENCY_KEY_REQUIRED = "idempotency_key_required", 422, "a mutation needs an Idempotency-Key header or a client_id"
    IDEMPOTENCY_KEY_MISMATCH = "idempotency_key_mismatch", 422, "the Idempotency-Key header and the body's client_id differ"
    INVALID_IDEMPOTENCY_KEY = "invalid_idempotency_key", 422, "the idempotency key is not 1-128 printable ASCII characters (space to ~)"
    IDEMPOTENCY_CONFLICT = "idempotency_conflict", 409, "this client id was already used for a different request"

    # --- participants, keys, enrollment, operator actions --------------------------------------------------
    INVALID_PARTICIPANT_KIND = "invalid_participant_kind", 422, "the participant kind is not one of the known kinds"
    INVALID_SUBJECT = "invalid_subject", 422, "the subject is not an organisation or a person as specified"
    INVALID_USCC = "invalid_uscc", 422, "not a unified social credit code (18 characters of the GB 32100 alphabet)"
    USCC_CHECK_FAILED = "uscc_check_failed", 422, "the unified social credit code's check character does not match"
    USCC_TAKEN = "uscc_taken", 409, "a participant with this unified social credit code is already registered"
    INVALID_ID_DOCUMENT = "invalid_id_document", 422, "the identity document's type, country or number is not valid"
    ID_DOCUMENT_CHECK_FAILED = "id_document_check_failed", 422, "the resident ID card number's check character does not match"
    ID_DOCUMENT_TAKEN = "id_document_taken", 409, "a participant with this identity document is already registered"
    PARTICIPANT_SUSPENDED = "participant_suspended", 409, "the participant is suspended"
    INVALID_COUNTERPARTY = "invalid_counterparty", 422, "the participant named is of a kind this operation does not take (told to oversight; others get 404)"
    IDENTIFIER_MISMATCH = "identifier_mismatch", 422, "the participant named is not registered under that USCC or identity document number (told to oversight; others get 404)"
    PARTICIPANT_ACTIVE = "participant_active", 409, "the participant is not suspended"
    CANNOT_SUSPEND_SELF = "cannot_suspend_self", 409, "an operator cannot suspend its own participant"
    NOT_AN_OPERATOR = "not_an_operator", 409, "the participant is not an operator; it enrolls with an enrollment code"
    INVALID_ENROLLMENT_CODE = "invalid_enrollment_code", 422, "not a valid enrollment code (either half)"
    ENROLLMENT_CODE_USED = "enrollment_code_used", 409, "the enrollment code was used already"
    ENROLLMENT_CODE_EXPIRED = "enrollment_code_expired", 409, "the enrollment code expired"
    ENROLLMENT_CODE_CANCELLED = "enrollment_code_cancelled", 409, "the enrollment code was cancelled"
    SECRET_NOT_REPRODUCIBLE = "secret_not_reproducible", 409, "the secret was shown once and cannot be shown again"
    INVALID_PUBLIC_KEY = "invalid_public_key", 422, "not an Ed25519 public key"
    SIGNING_KEY_EXISTS = "signing_key_exists", 409, "this signing key is already registered"
    NO_SIGNING_KEY = "no_signing_key", 409, "the participant has no live signing key to sign with"
    ACTION_DECIDED = "action_decided", 409, "the operator action was already approved"
    ACTION_REJECTED = "action_rejected", 409, "the operator action was rejected"
    ACTION_EXPIRED = "action_expired", 409, "the operator action expired; propose it again"
    ACTION_FAILED = "action_failed", 409, "the operator action failed when it was approved"
    PROPOSER_SUSPENDED = "proposer_suspended", 409, "the operator action's proposer is suspended now"
    INVALID_HEAD = "invalid_head", 422, "an audit-trail head is given as both seq and a 64-digit hex hash, or not at all"

    # --- instruments, issuance, transfers, retirements, expiry ----------------------------------------------
    INVALID_INSTRUMENT_CODE = "invalid_instrument_code", 422, "instrument codes are 1-32 ASCII letters, digits and dashes"
    INVALID_INSTRUMENT_KIND = "invalid_instrument_kind", 422, "the instrument kind is not one of the known kinds"
    INVALID_DECIMALS = "invalid_decimals", 422, "an instrument's decimals are between 0 and 6"
    INVALID_ATTRIBUTES = "invalid_attributes", 422, "the instrument's or batch's attributes do not match its kind"
    INSTRUMENT_EXISTS = "instrument_exists", 409, "an instrument with this code already exists"
    NOT_ISSUABLE = "not_issuable", 422, "cash is deposited, not issued"
    NOT_RETIRABLE = "not_retirable", 422, "cash cannot be retired"
    INVALID_HOLDER = "invalid_holder", 422, "the named holder cannot hold units this way"
    INVALID_ORIGIN = "invalid_origin", 422, "an import's origin registry, serials and reference are not given as required"
    ORIGIN_QUANTITY_MISMATCH = "origin_quantity_mismatch", 422, "an import's quantity is not its origin serials, one unit per serial"
    DUPLICATE_IMPORT = "duplicate_import", 409, "these origin serials were already imported"
    OVERLAPPING_IMPORT = "overlapping_import", 409, "these origin serials overlap an import already made"
    TICKET_NUMBER_TAKEN = "ticket_number_taken", 409, "this forest ticket number is already issued or requested"
    FLAGGED_DOUBLE_ISSUANCE = "flagged_double_issuance", 409, "the issuance request is flagged as a possible double issuance"
    OVERRIDE_REASON_REQUIRED = "override_reason_required", 422, "overriding flags needs a reason"
    REASON_WITHOUT_OVERRIDE = "reason_without_override", 422, "a reason is given only with override_flags: true"
    INVALID_REASON = "invalid_reason", 422, "the reason is too long"
    REQUEST_APPROVED = "request_approved", 409, "the issuance request is already approved"
    REQUEST_REJECTED = "request_rejected", 409, "the issuance request was rejected"
    TERM_ENDED = "term_ended", 422, "the term named has already ended"
    TERM_ENDED_BEFORE_APPROVAL = "term_ended_before_approval", 409, "the batch's term ended after it was requested: reject the request"
    UNITS_EXPIRED = "units_expired", 409, "the units' term has ended: they no longer move and are retired at the sweep"
    NO_ACCOUNT = "no_account", 409, "the participant has no account for this"
    INVALID_NUMBER = "invalid_number", 422, "not a decimal string such as \"12.50\""
    OFF_GRID = "off_grid", 422, "the decimal string has more decimal places than the instrument (or CNY) has"
    NUMBER_TOO_LARGE = "number_too_large", 422, "the decimal string is too large"

    # --- the ledger's refusals (ledger.state.REFUSAL_CODES) -------------------------------------------------
    UNKNOWN_ACCOUNT = "unknown_account", 404, "the ledger account does not exist"
    UNKNOWN_INSTRUMENT = "unknown_instrument", 404, "the instrument does not exist"
    UNKNOWN_HOLD = "unknown_hold", 404, "the hold does not exist"
    INVALID_AMOUNT = "invalid_amount", 422, "an amount is a positive integer in base units (non-negative where it may be 0)"
    INVALID_SERIALS = "invalid_serials", 422, "serial ranges are positive, ordered and do not overlap"
    SERIALS_AMOUNT_MISMATCH = "serials_amount_mismatch", 422, "the named serial ranges do not add up to the quantity"
    SERIALS_NOT_APPLICABLE = "serials_not_applicable", 422, "the instrument (cash) has no serial numbers"
    INVALID_PURPOSE = "invalid_purpose", 422, "the retirement purpose is not one of the known purposes"
    INVALID_HOLD_KIND = "invalid_hold_kind", 422, "the hold kind is not one of the known kinds"
    INVALID_EXPIRY = "invalid_expiry", 422, "a hold must expire in the future"
    SAME_ACCOUNT = "same_account", 422, "debit and credit accounts must differ"
    INVALID_ACCOUNT_KIND = "invalid_account_kind", 409, "the account's kind does not allow this movement"
    INVALID_SOURCE = "invalid_source", 409, "batches are issued from the issuance account"
    INVALID_SINK = "invalid_sink", 409, "retirement goes to the retired sink account"
    ACCOUNT_INSTRUMENT_MISMATCH = "account_instrument_mismatch", 409, "the account cannot hold this instrument (cash vs units)"
    USE_RETIRE = "use_retire", 409, "units reach the retired sink only by retirement"
    RETIRED_FINAL = "retired_final", 409, "retired units never move"
    SERIAL_SPACE_EXHAUSTED = "serial_space_exhausted", 409, "the instrument's serial space is exhausted"
    INSUFFICIENT_AVAILABLE = "insufficient_available", 409, "the account's available balance (posted - held) is short"
    SERIALS_NOT_AVAILABLE = "serials_not_available", 409, "the named serials are not free in the account"
    AMOUNT_EXCEEDS_HOLD = "amount_exceeds_hold", 409, "the amount exceeds what is pending on the hold"
    HOLD_ALREADY_RESOLVED = "hold_already_resolved", 409, "the hold was posted, voided or expired before"
    HOLD_EXPIRED = "hold_expired", 409, "the hold expired"
    HOLD_NOT_EXPIRED = "hold_not_expired", 409, "the hold has not reached its expiry"
    FROZEN = "frozen", 409, "the units are frozen by a court"
    PLEDGED = "pledged", 409, "the units are pledged: the pledge ranks first"
    ROTATION_UNAVAILABLE = "rotation_unavailable", 409, "this process cannot rotate the checkpoint signing key online (no signer, or the key comes from ENVX_SIGNING_KEY)"
    INVALID_SIGNING_KEY = "invalid_signing_key", 409, "not a C2SP Ed25519 verifier key in its canonical spelling"
    UNKNOWN_COMMAND = "unknown_command", 409, "the ledger or the engine does not handle this command"
    INVALID_EVENT = "invalid_event", 422, "a ledger event has no legs, too many, or a leg that is not a movement"
    BLINDING_UNAVAILABLE = "blinding_unavailable", 409, "a blinded ledger event was asked of a state machine given no salts"

    # --- markets, sessions, amendments, orders -------------------------------------------------------------
    INVALID_MODE = "invalid_mode", 422, "the trading mode is not one of the known modes"
    INVALID_RULES = "invalid_rules", 422, "the trading rules are not consistent"
    INVALID_SESSIONS = "invalid_sessions", 422, "sessions are [start, end] pairs of HH:MM"
    INVALID_HOLIDAYS = "invalid_holidays", 422, "holidays are ISO dates"
    INVALID_CALENDAR = "invalid_calendar", 422, "a calendar change names each day once; a make-up working day is a weekend day"
    INVALID_PERIOD = "invalid_period", 422, "a period's start is on or before its end, and it spans at most 400 days"
    NOT_TRADABLE = "not_tradable", 422, "cash is not traded"
    MARKET_EXISTS = "market_exists", 409, "the market already exists"
    WRONG_MODE = "wrong_mode", 422, "the market trades by another mode than this operation needs"
    OUTSIDE_HOURS = "outside_hours", 409, "the market's calendar has it closed now"
    OUTSIDE_SESSION = "outside_session", 409, "the market is not in a trading session"
    REASON_REQUIRED = "reason_required", 422, "this action needs a reason: an override of the market's hours, an operator's cancellation of an auction whose bidding has opened"
    NOT_AMENDABLE = "not_amendable", 422, "these settings cannot be amended"
    NO_CHANGES = "no_changes", 422, "an amendment changes at least one setting"
    INVALID_DATE = "invalid_date", 422, "not an ISO date (YYYY-MM-DD)"
    NOT_A_TRADING_DAY = "not_a_trading_day", 422, "the day is not a trading day of the market"
    EFFECTIVE_DATE_NOT_FUTURE = "effective_date_not_future", 409, "an amendment takes effect from a later trading day"
    EFFECTIVE_DATE_TOO_FAR = "effective_date_too_far", 422, "an amendment takes effect within the notice limit"
    AMENDMENT_EXISTS = "amendment_exists", 409, "an amendment of the market is already scheduled for that day"
    PRICE_REQUIRED = "price_required", 422, "a price is needed (a limit order; a pledge with no mark yet)"
    NO_REFERENCE_PRICE = "no_reference_price", 409, "a market buy needs a price band or resting offers to fund"
    COUNTERPARTY_UNFUNDED = "counterparty_unfunded", 409, "the other side of the deal cannot fund or deliver it now (its accounts are not named)"
    ORDER_NOT_OPEN = "order_not_open", 409, "the order is filled, cancelled, expired or rejected"
    UNKNOWN_LISTING = "unknown_listing", 404, "no open listing has this id"
    INVALID_ACTION = "invalid_action", 422, "the action is not one this resource takes"
    DURATION_REQUIRED = "duration_required", 422, "opening the bidding window needs duration_seconds"

    # --- the matching engines' reasons (matching.reasons.CODES) ---------------------------------------------
    STALE_SEQUENCE = R.STALE_SEQUENCE, 409, R.DESCRIPTIONS[R.STALE_SEQUENCE]
    DUPLICATE_ORDER_ID = R.DUPLICATE_ORDER_ID, 409, R.DESCRIPTIONS[R.DUPLICATE_ORDER_ID]
    ORDER_ID_NOT_INCREASING = R.ORDER_ID_NOT_INCREASING, 409, R.DESCRIPTIONS[R.ORDER_ID_NOT_INCREASING]
    UNKNOWN_ORDER = R.UNKNOWN_ORDER, 404, R.DESCRIPTIONS[R.UNKNOWN_ORDER]
    NOT_ORDER_OWNER = R.NOT_ORDER_OWNER, 409, R.DESCRIPTIONS[R.NOT_ORDER_OWNER]
    INVALID_SIDE = R.INVALID_SIDE, 422, R.DESCRIPTIONS[R.INVALID_SIDE]
    INVALID_ORDER_TYPE = R.INVALID_ORDER_TYPE, 422, R.DESCRIPTIONS[R.INVALID_ORDER_TYPE]
    INVALID_TIME_IN_FORCE = R.INVALID_TIME_IN_FORCE, 422, R.DESCRIPTIONS[R.INVALID_TIME_IN_FORCE]
    INVALID_STP = R.INVALID_STP, 422, R.DESCRIPTIONS[R.INVALID_STP]
    INVALID_PRICE = R.INVALID_PRICE, 422, "the price must be positive (a whole number of ticks on a market)"
    INVALID_QUANTITY = R.INVALID_QUANTITY, 422, R.DESCRIPTIONS[R.INVALID_QUANTITY]
    OFF_TICK = R.OFF_TICK, 422, R.DESCRIPTIONS[R.OFF_TICK]
    OFF_LOT = R.OFF_LOT, 422, R.DESCRIPTIONS[R.OFF_LOT]
    PRICE_OUT_OF_BAND = R.PRICE_OUT_OF_BAND, 409, R.DESCRIPTIONS[R.PRICE_OUT_OF_BAND]
    QUANTITY_BELOW_MINIMUM = R.QUANTITY_BELOW_MINIMUM, 409, R.DESCRIPTIONS[R.QUANTITY_BELOW_MINIMUM]
    QUANTITY_ABOVE_MAXIMUM = R.QUANTITY_ABOVE_MAXIMUM, 409, R.DESCRIPTIONS[R.QUANTITY_ABOVE_MAXIMUM]
    MARKET_HALTED = R.MARKET_HALTED, 409, R.DESCRIPTIONS[R.MARKET_HALTED]
    NOT_HALTED = R.NOT_HALTED, 409, R.DESCRIPTIONS[R.NOT_HALTED]
    FOK_UNFILLABLE = R.FOK_UNFILLABLE, 409, R.DESCRIPTIONS[R.FOK_UNFILLABLE]
    NO_LIQUIDITY = R.NO_LIQUIDITY, 409, R.DESCRIPTIONS[R.NO_LIQUIDITY]
    REDUCE_NOT_LOWER = R.REDUCE_NOT_LOWER, 409, R.DESCRIPTIONS[R.REDUCE_NOT_LOWER]
    NOT_WITHIN_BEST_LEVELS = R.NOT_WITHIN_BEST_LEVELS, 409, R.DESCRIPTIONS[R.NOT_WITHIN_BEST_LEVELS]
    SELF_TRADE = R.SELF_TRADE, 409, R.DESCRIPTIONS[R.SELF_TRADE]
    QUANTITY_EXCEEDS_REMAINING = R.QUANTITY_EXCEEDS_REMAINING, 409, R.DESCRIPTIONS[R.QUANTITY_EXCEEDS_REMAINING]
    UNKNOWN_QUOTE = R.UNKNOWN_QUOTE, 404, R.DESCRIPTIONS[R.UNKNOWN_QUOTE]
    UNKNOWN_DEAL = R.UNKNOWN_DEAL, 404, R.DESCRIPTIONS[R.UNKNOWN_DEAL]
    NOT_IN_AUDIENCE = R.NOT_IN_AUDIENCE, 409, R.DESCRIPTIONS[R.NOT_IN_AUDIENCE]
    NOT_A_PARTY = R.NOT_A_PARTY, 409, R.DESCRIPTIONS[R.NOT_A_PARTY]
    INVALID_AUDIENCE = R.INVALID_AUDIENCE, 409, R.DESCRIPTIONS[R.INVALID_AUDIENCE]
    ALREADY_CONFIRMED = R.ALREADY_CONFIRMED, 409, R.DESCRIPTIONS[R.ALREADY_CONFIRMED]
    ISSUER_NOT_AUTHORISED = "issuer_not_authorised", 403, "the issuer is not an issuing authority of this instrument (an operator grants it, four eyes)"
    KEY_LIMIT = "key_limit", 409, "the participant has as many working API keys as allowed (ENVX_MAX_API_KEYS_PER_PARTICIPANT); revoke one first"
    DEAL_NOT_OPEN = "deal_not_open", 409, "the negotiation is no longer open: it traded (the problem says which trade)"
    UNKNOWN_AUCTION = R.UNKNOWN_AUCTION, 404, R.DESCRIPTIONS[R.UNKNOWN_AUCTION]
    DUPLICATE_AUCTION_ID = R.DUPLICATE_AUCTION_ID, 409, R.DESCRIPTIONS[R.DUPLICATE_AUCTION_ID]
    INVALID_AUCTION = R.INVALID_AUCTION, 409, R.DESCRIPTIONS[R.INVALID_AUCTION]
    AUCTION_WRONG_PHASE = R.AUCTION_WRONG_PHASE, 409, R.DESCRIPTIONS[R.AUCTION_WRONG_PHASE]
    AUCTION_NOT_OPEN = R.AUCTION_NOT_OPEN, 409, R.DESCRIPTIONS[R.AUCTION_NOT_OPEN]
    AUCTION_STILL_OPEN = R.AUCTION_STILL_OPEN, 409, R.DESCRIPTIONS[R.AUCTION_STILL_OPEN]
    AUCTION_BINDING = "auction_binding", 409, "bidding has opened: the auction's terms bind the seller too; only the venue (an operator, with a reason) cancels it"
    BIDDING_TOO_SHORT = "bidding_too_short", 422, "a bidding window shorter than the venue's minimum (ENVX_AUCTION_MIN_BIDDING_SECONDS)"
    REGISTRATION_CLOSED = R.REGISTRATION_CLOSED, 409, R.DESCRIPTIONS[R.REGISTRATION_CLOSED]
    ALREADY_REGISTERED = R.ALREADY_REGISTERED, 409, R.DESCRIPTIONS[R.ALREADY_REGISTERED]
    DEPOSIT_INSUFFICIENT = R.DEPOSIT_INSUFFICIENT, 409, R.DESCRIPTIONS[R.DEPOSIT_INSUFFICIENT]
    BIDDER_NOT_REGISTERED = R.BIDDER_NOT_REGISTERED, 409, R.DESCRIPTIONS[R.BIDDER_NOT_REGISTERED]
    BID_BELOW_MINIMUM = R.BID_BELOW_MINIMUM, 409, R.DESCRIPTIONS[R.BID_BELOW_MINIMUM]
    BID_INCREMENT = R.BID_INCREMENT, 409, R.DESCRIPTIONS[R.BID_INCREMENT]
    BID_CAP_EXCEEDED = R.BID_CAP_EXCEEDED, 409, R.DESCRIPTIONS[R.BID_CAP_EXCEEDED]
    TOO_MANY_BIDS = R.TOO_MANY_BIDS, 409, R.DESCRIPTIONS[R.TOO_MANY_BIDS]
    BID_IRREVOCABLE = R.BID_IRREVOCABLE, 409, R.DESCRIPTIONS[R.BID_IRREVOCABLE]
    UNKNOWN_BID = R.UNKNOWN_BID, 404, R.DESCRIPTIONS[R.UNKNOWN_BID]
    SELLER_CANNOT_BID = R.SELLER_CANNOT_BID, 409, R.DESCRIPTIONS[R.SELLER_CANNOT_BID]
    BID_NOT_ABOVE_STANDING = R.BID_NOT_ABOVE_STANDING, 409, R.DESCRIPTIONS[R.BID_NOT_ABOVE_STANDING]
    RAISE_LOWERS_QUANTITY = R.RAISE_LOWERS_QUANTITY, 409, R.DESCRIPTIONS[R.RAISE_LOWERS_QUANTITY]
    STANDING_BID_CHANGED = R.STANDING_BID_CHANGED, 409, R.DESCRIPTIONS[R.STANDING_BID_CHANGED]

    # --- pledges (pledges.errors.CODES and exchange/pledging) ----------------------------------------------
    INVALID_PLEDGOR = "invalid_pledgor", 422, "the participant cannot pledge units to this pledgee"
    NOT_PLEDGEABLE = "not_pledgeable", 422, "cash is not pledged in this registry"
    SERIALS_RETIRED = "serials_retired", 409, "retired serials can never be pledged"
    DUPLICATE_REFERENCE = "duplicate_reference", 409, "the external registration reference is already registered"
    REFERENCE_NAMED_TWICE = "reference_named_twice", 422, "the request names the same external reference twice"
    INVALID_SCOPE = "invalid_scope", 422, "the secured scope is not an ordinary or maximum-amount scope as specified"
    INVALID_CLAIM = "invalid_claim", 422, "a claim names known components and positive amounts"
    AMBIGUOUS_CLAIM = "ambiguous_claim", 422, "the principal is named both in the claim and as outstanding"
    CLAIM_REQUIRED = "claim_required", 422, "a maximum-amount pledge needs the claim named by component"
    INVALID_THRESHOLDS = "invalid_thresholds", 422, "thresholds must satisfy warning >= margin call >= liquidation > 0"
    INVALID_HAIRCUT = "invalid_haircut", 422, "a haircut is 0 to 9999 basis points"
    INVALID_WEBHOOK_URL = "invalid_webhook_url", 422, "the webhook URL is not an absolute URL as allowed"
    WEBHOOK_DESTINATION_REFUSED = "webhook_destination_refused", 422, "webhooks go to public Internet addresses only"
    PLEDGE_EXPIRED = "pledge_expired", 409, "the pledge registration has expired"
    PLEDGE_CLOSED = "pledge_closed", 409, "the pledge registration is released, declined, withdrawn or enforced"
    PLEDGE_NOT_CONFIRMED = "pledge_not_confirmed", 409, "the pledgor has not confirmed the registration yet"
    PLEDGE_NOT_FILED = "pledge_not_filed", 409, "the registration is no longer waiting for the pledgor"
    PLEDGE_IN_ENFORCEMENT = "pledge_in_enforcement", 409, "the registration is being enforced"
    INVALID_STATE = "invalid_state", 409, "the registration's status does not allow this"
    INVALID_TRANSITION = "invalid_transition", 409, "this pledge event cannot follow the registration's status"
    REQUIRES_PLEDGOR_CONSENT = "requires_pledgor_consent", 409, "a change of a confirmed pledge not in the pledgor's favour (more secured, a higher haircut or threshold, another loan contract) needs a new registration the pledgor confirms"
    TERMS_CHANGED = "terms_changed", 409, "the filing changed since the version its pledgor confirmed: read it again and confirm what it says now"
    TERM_TOO_LONG = "term_too_long", 422, "a registration's term, or one extension of it, is longer than 30 years (中登网's longest period)"
    NOTHING_TO_AMEND = "nothing_to_amend", 422, "the amendment changes nothing"
    QUANTITY_REQUIRED = "quantity_required", 422, "name the quantity or the serial ranges"
    USE_RELEASE = "use_release", 422, "releasing every unit is a full release"
    SERIALS_NOT_PLEDGED = "serials_not_pledged", 422, "the named serials are not part of the pledge's lock"
    QUANTITY_EXCEEDS_PLEDGE = "quantity_exceeds_pledge", 409, "the pledge's lock holds fewer units"
    CURE_PERIOD_RUNNING = "cure_period_running", 409, "the margin call's cure deadline has not passed"
    NO_DEFAULT = "no_default", 409, "no default is on record: enforcement needs one"
    INVALID_NOTICE_DATE = "invalid_notice_date", 422, "a default notice cannot be dated in the future"
    INVALID_METHOD = "invalid_method", 422, "the enforcement method is transfer, sale or exchange"
    TRANSFER_NOT_AGREED = "transfer_not_agreed", 409, "the pledge contract does not let the pledgee take the units"
    SALE_TERMS_REQUIRED = "sale_terms_required", 422, "a negotiated sale names the buyer and the price"
    INVALID_BUYER = "invalid_buyer", 422, "the buyer must be a third party that can hold units"
    NO_SALE_PROPOSED = "no_sale_proposed", 409, "the registration is not offered for a negotiated sale"
    PRICE_MISMATCH = "price_mismatch", 409, "the sale is offered at another price"
    PRICE_BELOW_MARK = "price_below_mark", 409, "the price is below the last mark"
    IDENTIFIER_ATTEMPTS_EXCEEDED = "identifier_attempts_exceeded", 409, "too many participants named with a wrong identifier today: such requests are refused until the day ends"
    MARK_REASON_REQUIRED = "mark_reason_required", 422, "a manual mark outside the price band around its reference (the last close, else trade, else mark), or with no reference at all, needs a reason"
    MARK_REASON_MEANINGLESS = "mark_reason_meaningless", 422, "a manual mark's reason says nothing: fewer than 4 letters or digits (a Chinese character counts as 2), or only spaces and punctuation"
    PRICE_BELOW_FLOOR = "price_below_floor", 409, "a negotiated realisation below 70 % of the reference price (the latest mark)"
    RESERVE_BELOW_FLOOR = "reserve_below_floor", 409, "an enforcement auction's reserve below 70 % of the reference price (the latest mark)"
    DEPOSIT_ABOVE_CAP = "deposit_above_cap", 409, "an enforcement auction's registration deposit above 20 % of the lot's value at the reserve"
    REGISTRATION_PERIOD_RUNNING = "registration_period_running", 409, "an enforcement auction's registration has not been open its minimum period (ENVX_ENFORCEMENT_REGISTRATION_SECONDS)"
    AUCTION_REQUIRED = "auction_required", 409, "the instrument has no mark to refer to: only a public auction may realise the lot"
    NOTICE_PERIOD_RUNNING = "notice_period_running", 409, "the declared default's notice period has not run and the pledgor did not consent"
    PRICE_NOT_WHOLE_FEN = "price_not_whole_fen", 422, "price x quantity x term years is not a whole number of fen"
    NOT_EXCHANGE_SALE = "not_exchange_sale", 409, "the lot is not in escrow for an exchange sale"
    WRONG_INSTRUMENT = "wrong_instrument", 422, "the market trades another instrument"
    LOT_ON_SALE = "lot_on_sale", 409, "every unsold unit of the lot is already on sale"
    QUANTITY_EXCEEDS_LOT = "quantity_exceeds_lot", 409, "fewer unsold units of the lot are not on sale yet"
    SALE_LIVE = "sale_live", 409, "listings or auctions of the lot are still running"
    SALE_PARTLY_DONE = "sale_partly_done", 409, "part of the lot was sold and paid out"
    TRADE_NOT_SETTLED = "trade_not_settled", 409, "the trade is not settled yet"
    CLAIMS_PAID = "claims_paid", 409, "every secured claim on the lot is paid"
    CLAIM_CLOSED = "claim_closed", 409, "the junior claim is no longer open"
    CLAIM_NOT_FILED = "claim_not_filed", 409, "the junior claim is not waiting for confirmation"
    CLAIM_MOVED = "claim_moved", 409, "the claim moved to another pledge; retry"
    FREEZE_CHANGED = "freeze_changed", 409, "a court changed a freeze on the lot just now; retry"
    MARK_CONFLICT = "mark_conflict", 409, "the instrument is already marked at another price for that day"
    VALUATION_DATE_IN_FUTURE = "valuation_date_in_future", 409, "a revaluation's as_of is after the registry's today (Asia/Shanghai)"
    VALUATION_DATE_STALE = "valuation_date_stale", 409, "a revaluation's as_of is before the instrument's latest mark"
    VALUATION_OUT_OF_RANGE = "valuation_out_of_range", 422, "at this price a pledge's value would exceed 2^53 - 1 fen: no close is that high"
    QUERY_REQUIRED = "query_required", 422, "a public search names a holder, a credit code or a serial"
    QUERY_TOO_SHORT = "query_too_short", 422, "a name search needs the holder's whole name"

    # --- courts: freezes, deductions, restoration orders ---------------------------------------------------
    NOT_FREEZABLE = "not_freezable", 422, "cash is frozen at the settlement bank, not in this registry"
    INVALID_TERM = "invalid_term", 422, "the term's dates are not in order"
    DUPLICATE_NOTICE = "duplicate_notice", 409, "this notice number already froze holdings"
    FREEZE_EXPIRED = "freeze_expired", 409, "the freeze has expired"
    FREEZE_CLOSED = "freeze_closed", 409, "the freeze is lifted or covers no units any more"
    NOTHING_FROZEN = "nothing_frozen", 409, "the freeze holds no units any more"
    QUANTITY_EXCEEDS_FREEZE = "quantity_exceeds_freeze", 422, "the deduction exceeds the frozen quantity"
    INVALID_ELIGIBLE_KINDS = "invalid_eligible_kinds", 422, "eligible instrument kinds are among the known ones"
    INVALID_DEADLINE = "invalid_deadline", 422, "the deadline has passed"
    REQUIREMENT_OFF_GRID = "requirement_off_grid", 422, "the required quantity is finer than every eligible instrument's quantity grid: it could never be fulfilled"
    DUPLICATE_ORDER = "duplicate_order", 409, "the case already has a restoration order for this payer"
    ORDER_FULFILLED = "order_fulfilled", 409, "the restoration order is fulfilled or closed"
    EXCEEDS_REQUIREMENT = "exceeds_requirement", 409, "more than the restoration order still requires"
    INSTRUMENT_NOT_ELIGIBLE = "instrument_not_eligible", 409, "the instrument is not eligible for this restoration order"
    NOT_DESIGNATED_SELLER = "not_designated_seller", 409, "the restoration order names its seller: only that seller's listings fulfil it"

    # --- the verifiable ledger: proofs ---------------------------------------------------------------------
    BEYOND_TREE = "beyond_tree", 404, "the log has fewer entries than asked for"
    TREE_SIZE_UNAVAILABLE = "tree_size_unavailable", 409, "no tree of that size is stored"
    INDEX_OUT_OF_RANGE = "index_out_of_range", 422, "the leaf is not in a tree of that size"
    INVALID_RANGE = "invalid_range", 422, "the first tree size exceeds the second"

    @classmethod
    def of(cls, code: str, status: int | None = None) -> Refusal:
        """The member for `code`; `status`, if a raise site gives one, must be the code's. Else a bug."""
        try:
            refusal = cls(code)  # type: ignore[call-arg]  # a lookup by value; mypy reads it as __new__
        except ValueError:
            raise UnknownRefusal(f"refusal code {code!r} is not in the closed set (exchange/core/refusals.py): "
                                 "add it there with its status and meaning, or use a code that is") from None
        if status is not None and status != refusal.status:
            raise UnknownRefusal(f"refusal code {code!r} is answered {refusal.status} (exchange/core/refusals.py), "
                                 f"not {status}: one status per code")
        return refusal


def table() -> str:
    """REFUSALS.md: every code, its status and meaning, in the order of the enum."""
    lines = ["# Refusal codes", "",
             "Generated from `exchange/core/refusals.py` (`python -m exchange.core.refusals > REFUSALS.md`); "
             "tests/test_refusals.py", "checks that this table and the enum agree. Every problem document's "
             "`code` is one of these, and", "the code decides the HTTP status. What is a refusal and what is a "
             "bug: README, *Refusals and bugs*.", "", "| code | status | meaning |", "|---|---|---|"]
    lines += [f"| `{r.value}` | {r.status} | {r.meaning} |" for r in Refusal]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(table())
