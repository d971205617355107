"""Who a participant is, legally: an organisation with its unified social credit code, or a natural person
with an identity document. Pure: validation and check characters, no I/O.

- USCC (统一社会信用代码, GB 32100-2015): 18 characters from the 31-character set 0-9 A-H J-N P-R T U W-Y
  (no I, O, Z, S, V); character 1 is the registration authority, 2 the institution category, 3-8 the
  administrative division (digits), 9-17 the organisation's code, 18 the check character:
  ``c18 = (31 - Σ value(c_i)·w_i mod 31) mod 31`` with weights w_i = 3^(i-1) mod 31.
- 居民身份证 number (GB 11643-1999): 17 digits (region, birth date YYYYMMDD, sequence) and a check
  character: ``"10X98765432"[Σ d_i·(2^(18-i) mod 11) mod 11]``.
- Passport: the issuing country (ISO 3166-1 alpha-3) and its number, 5-20 of A-Z 0-9.

Everything is ASCII and canonical as given: full-width (０-９, Ａ-Ｚ) or other scripts' digits (٠-٩), lower
case, spaces are refused, never "normalised" into something that would be stored.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Any

from exchange.core.errors import Invalid

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# [0-9] and explicit letters, never \d (which matches every script's digits).
_USCC = re.compile(r"[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}", re.ASCII)
_RESIDENT_ID = re.compile(r"[0-9]{17}[0-9X]", re.ASCII)
_RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_RESIDENT_ID_CHECK = "10X98765432"
_PASSPORT = re.compile(r"[A-Z0-9]{5,20}", re.ASCII)
_COUNTRY = re.compile(r"[A-Z]{3}", re.ASCII)

SUBJECTS = ("organisation", "person")
DOCUMENT_TYPES = ("resident_id_card", "passport")
# A natural person holds, buys and retires units (e.g. a defendant ordered to restore): an enterprise-kind
# holder. Operating, issuing, lending, judging and auditing are done by organisations.
PERSON_KINDS = frozenset({"enterprise"})


def uscc_check_character(first17: str) -> str:
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def check_uscc(code: str) -> str:
    """The code, if it is a well-formed USCC with the right check character; else 422."""
    if not code.isascii() or _USCC.fullmatch(code) is None:
        raise Invalid("invalid_uscc", "a unified social credit code is 18 ASCII characters: digits and the "
                                      "upper-case letters A-H J-N P-R T U W-Y (characters 3-8 digits)")
    expected = uscc_check_character(code[:17])
    if code[17] != expected:
        raise Invalid("uscc_check_failed", "the unified social credit code's check character (GB 32100-2015) "
                                           "does not match: a character is mistyped")
    return code


def resident_id_check_character(first17: str) -> str:
    return _RESIDENT_ID_CHECK[sum(int(d) * w for d, w in zip(first17, _RESIDENT_ID_WEIGHTS, strict=True)) % 11]


def check_resident_id(number: str, today: date | None = None) -> str:
    if not number.isascii() or _RESIDENT_ID.fullmatch(number) is None:
        raise Invalid("invalid_id_document", "a 居民身份证 number is 17 ASCII digits and a check character "
                                             "(a digit or upper-case X)")
    try:
        born = date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise Invalid("invalid_id_document", "the 居民身份证 number does not hold a valid birth date") from None
    if born.year < 1900 or born > (today or date.today()):
        raise Invalid("invalid_id_document", "the 居民身份证 number does not hold a plausible birth date")
    if number[17] != resident_id_check_character(number[:17]):
        raise Invalid("id_document_check_failed", "the 居民身份证 number's check character (GB 11643) does not "
                                                  "match: a digit is mistyped")
    return number


@dataclass(frozen=True, slots=True)
class IdDocument:
    type: str
    number: str
    country: str | None = None  # passports: the issuing state; a 居民身份证 is Chinese by definition

    def masked(self) -> str:
        return f"{self.type} …{self.number[-4:]}"

    def as_dict(self) -> dict[str, Any]:
        return {"type": self.type, "country": self.country, "number": self.number}


def check_id_document(type_: str, number: str, country: str | None) -> IdDocument:
    if type_ == "resident_id_card":
        if country is not None:
            raise Invalid("invalid_id_document", "a 居民身份证 has no country field")
        return IdDocument(type_, check_resident_id(number))
    if type_ == "passport":
        if country is None or not country.isascii() or _COUNTRY.fullmatch(country) is None:
            raise Invalid("invalid_id_document", "a passport needs its issuing country: ISO 3166-1 alpha-3, "
                                                 "e.g. CHN")
        if not number.isascii() or _PASSPORT.fullmatch(number) is None:
            raise Invalid("invalid_id_document", "a passport number is 5-20 ASCII characters A-Z 0-9")
        return IdDocument(type_, number, country)
    raise Invalid("invalid_id_document", f"document type must be one of {', '.join(DOCUMENT_TYPES)}")


@dataclass(frozen=True, slots=True)
class Subject:
    """An organisation (USCC optional: operators and courts may be admitted without one) or a person."""

    kind: str = "organisation"
    uscc: str | None = None
    id_document: IdDocument | None = None

    def payload(self) -> dict[str, Any]:
        return {"subject": self.kind, "uscc": self.uscc,
                "id_document": self.id_document.as_dict() if self.id_document else None}

    def describe(self) -> str:
        if self.id_document is not None:
            return f"a person ({self.id_document.masked()})"
        return f"an organisation (USCC {self.uscc})" if self.uscc else "an organisation"


def subject_of(participant_kind: str, subject: str, uscc: str | None,
               id_document: dict[str, Any] | None) -> Subject:
    """Validate what a participant is; 422 with a machine code for anything that is not right."""
    if subject == "organisation":
        if id_document is not None:
            raise Invalid("invalid_subject", "an organisation has a USCC, not an identity document")
        return Subject("organisation", check_uscc(uscc) if uscc is not None else None, None)
    if subject == "person":
        if uscc is not None:
            raise Invalid("invalid_subject", "a person has an identity document, not a USCC")
        if participant_kind not in PERSON_KINDS:
            raise Invalid("invalid_subject", f"a natural person is admitted as one of: {', '.join(PERSON_KINDS)}")
        if id_document is None:
            raise Invalid("invalid_subject", "a person needs an identity document (id_document)")
        return Subject("person", None, check_id_document(id_document.get("type", ""),
                                                         id_document.get("number", ""), id_document.get("country")))
    raise Invalid("invalid_subject", f"subject must be one of {', '.join(SUBJECTS)}")


def subject_from_payload(kind: str, p: dict[str, Any]) -> Subject:
    return subject_of(kind, p.get("subject") or "organisation", p.get("uscc"), p.get("id_document"))
