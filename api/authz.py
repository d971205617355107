"""The authorization matrix: which participant kinds may call which operation, in one place.

Every route handler has a stable operationId; the app-wide guard looks it up here. An operation
missing from the matrix is refused to everyone (default deny), so a new endpoint cannot ship open
by accident. Object-level rules (a bank sees only its pledges, an enterprise only its accounts) are
enforced by the services, which know the objects.

Refusals are told apart by their problem `code`: this guard answers 401 `unauthenticated` or 403
`role_forbidden`; past it, an object the caller may not see answers 404 `not_found` as an unknown id
does, and a party in the wrong role 403 `forbidden` (tests/security/test_authz_matrix.py checks every
cell against the OpenAPI operations, tests/security/test_object_visibility.py every non-party).
"""

from __future__ import annotations

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

from exchange.core.errors import DomainError
from exchange.core.principal import Principal
from exchange.registry.participants import HOLDER_KINDS

PUBLIC = frozenset({"*public*"})
ANY = frozenset({"operator", "issuer", "enterprise", "bank", "court", "auditor"})
HOLDERS = HOLDER_KINDS
OPERATOR = frozenset({"operator"})
OVERSIGHT = frozenset({"operator", "auditor"})

MATRIX: dict[str, frozenset[str]] = {
    "health": PUBLIC,
    "whoami": ANY,
    # Participants and credentials (exchange/security/credentials.py; the four-eyes rule:
    # exchange/security/operator_actions.py):
    # admission, new enrollment codes and reinstatement are maker-checker; suspension is one operator's brake;
    # keys are minted by their own participant only (object-level: the caller's own id), listed by the
    # participant and oversight, revoked by the participant or an operator (a brake, never a grant).
    "createParticipant": OPERATOR,
    "listParticipants": ANY,
    "getParticipant": ANY,
    "suspendParticipant": OPERATOR,
    "reinstateParticipant": OPERATOR,
    "issueEnrollmentCode": OPERATOR,
    "listEnrollmentCodes": OVERSIGHT,
    "enroll": PUBLIC,  # the enrollment code is the credential
    "createKey": ANY,
    "listKeys": ANY,
    "revokeKey": ANY,
    "getAccount": ANY,
    "defineInstrument": OPERATOR,
    "listInstruments": PUBLIC,
    "getInstrument": PUBLIC,
    "authoriseIssuer": OPERATOR,
    "listInstrumentIssuers": PUBLIC,
    "sweepEmissionRightExpiry": OPERATOR,
    "requestIssuance": frozenset({"issuer"}),
    "listIssuances": frozenset({"operator", "auditor", "issuer", "enterprise"}),
    "getIssuance": frozenset({"operator", "auditor", "issuer", "enterprise"}),
    "approveIssuance": OPERATOR,
    "rejectIssuance": OPERATOR,
    "createTransfer": HOLDERS,
    "createRetirement": HOLDERS,
    "getHoldings": ANY,
    "listLedgerEntries": OVERSIGHT,
    "getLedgerEntry": OVERSIGHT,
    "getLedgerHead": PUBLIC,
    # Verifiable ledger: anyone may check checkpoints and proofs; a receipt holds the entry's bytes,
    # so the service lets only oversight, the entry's author or a party to it have one.
    "getCheckpoint": PUBLIC,
    "listCheckpoints": PUBLIC,
    "listSigningKeys": PUBLIC,
    "rotateSigningKey": OPERATOR,  # maker-checker (exchange/verifiable/rotation.py)
    "getInclusionProof": PUBLIC,
    "getConsistencyProof": PUBLIC,
    "getEntryReceipt": ANY,
    # C2SP tlog-tiles (api/controllers/tlog.py): the checkpoint and hash tiles are public; entry bundles hold
    # the entries' bytes, so the service shows them only to oversight (404 to others) unless
    # ENVX_TLOG_ENTRIES_PUBLIC.
    "getTlogCheckpoint": PUBLIC,
    "getTlogTile": PUBLIC,
    "getEntryTlogProof": ANY,  # as getEntryReceipt: the service decides who may have the entry's bytes
    "listWitnesses": PUBLIC,
    # The public web portal (api/portal): read-only pages over the public services; its static files pass the
    # guard by path (authorize, below).
    "portalHome": PUBLIC,
    "portalInquiry": PUBLIC,
    "portalInquiryPdf": PUBLIC,
    "portalVerify": PUBLIC,
    "portalMarkets": PUBLIC,
    "portalMarket": PUBLIC,
    "portalLedger": PUBLIC,
    "defineMarket": OPERATOR,
    "listMarkets": PUBLIC,
    "getMarket": PUBLIC,
    "setSession": OPERATOR,
    "amendMarket": OPERATOR,
    "listMarketEvents": PUBLIC,
    # Trading calendars (exchange/trading/calendars/): public to read; changed by maker-checker.
    "listCalendars": PUBLIC,
    "getCalendar": PUBLIC,
    "changeCalendar": OPERATOR,
    "getMarketCalendar": PUBLIC,
    "assignMarketCalendar": OPERATOR,
    "haltMarket": OPERATOR,
    "resumeMarket": OPERATOR,
    "placeOrder": HOLDERS,
    "listOrders": ANY,
    "getOrder": ANY,
    "cancelOrder": HOLDERS,
    "reduceOrder": HOLDERS,
    # Batch entry, mass cancel and the dead-man switch act on the caller's own orders only
    # (exchange/trading/batches.py, mass_cancel.py, deadman.py).
    "placeOrderBatch": HOLDERS,
    "cancelAllOrdersInMarket": HOLDERS,
    "cancelAllOrders": HOLDERS,
    "setDeadManSwitch": HOLDERS,
    "listDeadManSwitches": HOLDERS,
    "postListing": HOLDERS,
    "listListings": PUBLIC,
    "takeListing": HOLDERS,
    "getDepth": PUBLIC,
    "listTrades": PUBLIC,
    "getOhlc": PUBLIC,
    "getDailyStats": PUBLIC,
    "listClosePrices": PUBLIC,
    "streamMarket": PUBLIC,
    "createBlockQuote": HOLDERS,
    "listBlockQuotes": ANY,
    "respondBlockQuote": HOLDERS,
    "withdrawBlockQuote": HOLDERS,
    "getDeal": ANY,
    "counterDeal": HOLDERS,
    "confirmDeal": HOLDERS,
    "declineDeal": HOLDERS,
    "announceAuction": HOLDERS,
    "getAuction": PUBLIC,
    "stepAuction": HOLDERS,
    "registerForAuction": HOLDERS,
    "placeBid": HOLDERS,
    "withdrawBid": HOLDERS,
    "createRestorationOrder": frozenset({"court"}),
    "listRestorationOrders": ANY,
    "getRestorationOrder": ANY,
    "listRestorationReminders": ANY,
    "purchaseForRestoration": HOLDERS,
    "takeForRestoration": HOLDERS,
    "getRestorationCertificate": PUBLIC,
    "getRestorationCertificatePdf": PUBLIC,
    "getRestorationCertificateTlogProof": PUBLIC,
    "verifyCertificate": PUBLIC,
    "recordDeposit": OPERATOR,
    "recordWithdrawal": OPERATOR,
    # Pledges: banks file and enforce, pledgors consent; object-level rules (a bank sees its pledges,
    # a pledgor its own, a claimant the lots it claims on) live in exchange.pledging.
    "filePledge": frozenset({"bank"}),
    "listPledges": frozenset({"operator", "auditor", "bank", "enterprise", "issuer"}),
    "getPledge": frozenset({"operator", "auditor", "bank", "enterprise", "issuer"}),
    "listPledgeEvents": frozenset({"operator", "auditor", "bank", "enterprise", "issuer"}),
    "pledgeEventStream": frozenset({"operator", "auditor", "bank", "enterprise", "issuer"}),
    "confirmPledge": frozenset({"enterprise", "issuer", "operator"}),
    "declinePledge": frozenset({"enterprise", "issuer", "operator"}),
    "withdrawPledge": frozenset({"bank"}),
    "amendPledge": frozenset({"bank"}),
    "extendPledge": frozenset({"bank"}),
    "topUpPledge": frozenset({"enterprise", "issuer", "operator"}),
    "partiallyReleasePledge": frozenset({"bank"}),
    "releasePledge": frozenset({"bank"}),
    "enforcePledge": frozenset({"bank"}),
    "acceptPledgeSale": frozenset({"enterprise", "issuer", "operator", "bank"}),
    "cancelPledgeSale": frozenset({"bank"}),
    "declarePledgeDefault": frozenset({"bank"}),
    "consentPledgeEnforcement": frozenset({"enterprise", "issuer", "operator"}),
    "startPledgeSale": frozenset({"bank"}),
    "filePledgeClaim": frozenset({"bank"}),
    "confirmPledgeClaim": frozenset({"enterprise", "issuer", "operator"}),
    "releasePledgeClaim": frozenset({"bank"}),
    "revaluePledges": OPERATOR,
    "sweepPledgeExpiry": OPERATOR,
    "setPledgeWebhook": frozenset({"bank"}),
    "getPledgeWebhook": frozenset({"bank"}),
    "setPledgeHaircut": OPERATOR,
    # Judicial freezes: courts act, each on its own; holders and oversight may look.
    "createFreeze": frozenset({"court"}),
    "renewFreeze": frozenset({"court"}),
    "deductFreeze": frozenset({"court"}),
    "unfreeze": frozenset({"court"}),
    "listFreezes": frozenset({"court", "operator", "auditor", "enterprise", "issuer", "bank"}),
    "getFreeze": frozenset({"court", "operator", "auditor", "enterprise", "issuer", "bank"}),
    # 公示查询: no key.
    "publicPledges": PUBLIC,
    "publicFreezes": PUBLIC,
    "publicRetirements": PUBLIC,
    "publicPledgesTlogProof": PUBLIC,
    "publicFreezesTlogProof": PUBLIC,
    "publicRetirementsTlogProof": PUBLIC,
    "publicInquiryKey": PUBLIC,
    # Security: signing keys and the signature policy (the participant's own only; object-level in the
    # controller), maker-checker operator actions, the audit trail.
    "registerSigningKey": ANY,
    "listParticipantSigningKeys": ANY,
    "revokeSigningKey": ANY,
    "setSignaturePolicy": ANY,
    "getSignaturePolicy": ANY,
    "listOperatorActions": OVERSIGHT,
    "getOperatorAction": OVERSIGHT,
    "approveOperatorAction": OPERATOR,
    "rejectOperatorAction": OPERATOR,
    "listAuditEvents": OVERSIGHT,
    "listAnonymousRefusals": OVERSIGHT,
    "verifyAuditTrail": OVERSIGHT,
}


class RoleForbidden(DomainError):
    """The matrix refuses this participant kind the operation, whatever the object."""

    def __init__(self, message: str) -> None:
        super().__init__("role_forbidden", message, 403)


def operation_of(handler: BaseRouteHandler) -> str | None:
    op = getattr(handler, "operation_id", None)
    if op is None:  # websocket handlers keep it in `opt` (@websocket(..., operation_id=...))
        op = (getattr(handler, "opt", None) or {}).get("operation_id")
    return op if isinstance(op, str) else None


async def authorize(connection: ASGIConnection, handler: BaseRouteHandler) -> None:
    op = operation_of(handler)
    if op is None and connection.scope["path"].startswith(("/schema", "/portal/static/")):
        return  # the OpenAPI document and its viewers, and the portal's scripts and styles, are public
    allowed = MATRIX.get(op or "")
    if allowed is None:
        raise RoleForbidden(f"operation {op!r} is not in the authorization matrix")
    if allowed is PUBLIC:
        return
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise DomainError("unauthenticated", "send an API key as 'Authorization: Bearer <key>'", 401)
    if principal.kind not in allowed:
        raise RoleForbidden(f"a {principal.kind} may not {op}")
