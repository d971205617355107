"""The instrument kinds of DESIGN.md §4, the attributes each carries, and what an issuance claims.

Instrument attributes describe the whole product (a CEA's compliance year and scheme, an emission
right's pollutant, region and term); batch attributes describe one issuance (a CCER project and
monitoring period, a forest ticket's region, number and parcels, an emission right's grant dates).
`claims()` reads from a batch's attributes the things two issuances must not share: forest parcels and
projects over a period (flagged), a ticket number of one region (refused). Pure: no I/O.

Emission rights (排污权) are granted per year for a term: the instrument (one per pollutant and region)
says how many years every grant of it runs (`validity_years`, commonly 5), and each batch (one grant)
says when its term starts and ends (`valid_from`, `valid_until`, whole years: 2025-04-10 to 2030-04-09).
A quantity is t/yr; a price is per t·yr; a trade of q t/yr settles at price × q × years (`term_years`).
What is left of a batch at the end of its term expires (exchange/registry/expiry.py).

Validation is strict (extra keys refused, no coercion: `"2024"` is not a year) and reports every
missing or invalid attribute at once. Attributes arrive as JSON, so they are validated as JSON: dates
are ISO date strings, and only dates.
"""

from __future__ import annotations

import json
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError, core_schema

from exchange.core.errors import Invalid

_STRICT = ConfigDict(extra="forbid", strict=True, str_max_length=200)  # no coercion, strings as sent

# Dates an issuance may name: monitoring periods of the oldest CCER projects start in the 2000s.
FIRST_DAY, LAST_DAY = date(2000, 1, 1), date(2199, 12, 31)
# Validated from JSON in strict mode: only a `YYYY-MM-DD` string of ASCII digits naming a real calendar day
# ("2025-02-30", "２０２５-01-01", " 2025-01-01", a datetime or a number are refused); the pattern declares it.
_DAY_PATTERN = r"^2[01][0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$"
Day = Annotated[date, Field(ge=FIRST_DAY, le=LAST_DAY, description="ISO date, 2000-01-01 .. 2199-12-31",
                            json_schema_extra={"pattern": _DAY_PATTERN})]
Identifier = Annotated[str, Field(min_length=1, max_length=100)]
RegionSlug = Annotated[str, Field(pattern=r"^[a-z][a-z0-9-]{1,39}$")]

# Pilot emission-trading markets whose allowances this registry records (scheme "pilot").
PILOT_MARKETS: dict[str, str] = {
    "beijing": "北京 BEA", "tianjin": "天津 TJEA", "shanghai": "上海 SHEA", "chongqing": "重庆 CQEA",
    "hubei": "湖北 HBEA", "guangdong": "广东 GDEA", "shenzhen": "深圳 SZA", "fujian": "福建 FJEA",
}

# Forest ticket numbering per issuing region, where the region's format is known; any other region
# numbers its tickets its own way within GENERAL_TICKET_NUMBER.
TICKET_NUMBER_FORMATS: dict[str, tuple[str, str]] = {
    "sanming": (r"^[0-9]{7}$", "7 digits, e.g. 0000001 (三明市林业局)"),
}
GENERAL_TICKET_NUMBER = r"^[A-Za-z0-9][A-Za-z0-9-]{0,39}$"

_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015_·・/\\]+")


def identifier_key(value: str) -> str:
    """The form two identifiers are compared in: NFKC (full-width to ASCII), case-folded, and every run
    of spaces, dashes, underscores, slashes and middle dots as one "-". `沙县 林班12` = `沙县－林班12`."""
    return _SEPARATORS.sub("-", unicodedata.normalize("NFKC", value).casefold()).strip("-")


def _region_list(d: dict[str, Any]) -> str:
    return "; ".join(f"{k}: {v if isinstance(v, str) else v[1]}" for k, v in d.items())


class Period(BaseModel):
    """A monitoring period, both days included."""

    model_config = _STRICT
    start: Day
    end: Day

    @model_validator(mode="after")
    def _ordered(self) -> Period:
        if self.end < self.start:
            raise PydanticCustomError("period_order", "the period ends before it starts")
        return self


def _parcels(value: list[str] | None) -> list[str] | None:
    if value is None:
        return None
    keys = [identifier_key(p) for p in value]
    if not all(keys):
        raise PydanticCustomError("parcel_empty", "a parcel identifier has no letters or digits")
    if len(set(keys)) != len(keys):
        raise PydanticCustomError("parcel_repeated", "a parcel is listed twice (compared case- and "
                                  "width-insensitively, spaces and dashes alike)")
    return value


# Instrument attributes ---------------------------------------------------------------------------

class NoAttributes(BaseModel):
    """CCER and CDCER instruments carry no attributes: their batches do."""

    model_config = _STRICT


class CeaInstrument(BaseModel):
    """Allowances (kind `cea`): the national CEA, or a pilot market's allowance with its region."""

    model_config = _STRICT
    compliance_year: int = Field(ge=2013, le=2100)
    scheme: Literal["national", "pilot"] = Field(
        default="national", description="national: 全国碳排放配额 (CEA); pilot: a pilot market's allowance")
    region: str | None = Field(
        default=None, validate_default=True,
        description=f"required for scheme pilot, absent for national. Pilot markets: {_region_list(PILOT_MARKETS)}")

    @field_validator("region")
    @classmethod
    def _region_for_scheme(cls, region: str | None, info: ValidationInfo) -> str | None:
        scheme = info.data.get("scheme")
        if scheme == "pilot" and region is None:
            raise PydanticCustomError("missing", "a pilot market's allowance names its region")
        if scheme == "national" and region is not None:
            raise PydanticCustomError("region_not_applicable", "the national CEA has no region")
        if region is not None and region not in PILOT_MARKETS:
            raise PydanticCustomError("unknown_pilot_market", "region must be one of {regions}",
                                      {"regions": ", ".join(PILOT_MARKETS)})
        return region


class ForestTicketInstrument(BaseModel):
    """A forest ticket product; with `region`, every batch of it must be of that region."""

    model_config = _STRICT
    region: RegionSlug | None = Field(default=None, description="the issuing region all its tickets belong to")


class EmissionRightInstrument(BaseModel):
    model_config = _STRICT
    pollutant: str = Field(pattern=r"^(COD|NH3-N|SO2|NOx|VOCs|TN|TP)$")
    region: str = Field(min_length=1)
    validity_years: int = Field(ge=1, le=30, description="the term of every grant, in years; prices are per "
                                "t·yr and a trade settles at price × quantity × validity_years")


# Batch attributes --------------------------------------------------------------------------------

class ProjectBatch(BaseModel):
    """CCER and CDCER batches: the project, its methodology, the monitoring period; a forestry project
    names the forest parcels it covers, so a forest ticket over the same parcels and period is flagged."""

    model_config = _STRICT
    project_id: Identifier = Field(description="the project's registration number; compared normalised")
    project: str | None = Field(default=None, min_length=1, description="project name")
    methodology: Identifier = Field(description="e.g. CCER-14-001-V01 (造林碳汇)")
    monitoring_period: Period
    parcels: list[Identifier] | None = Field(default=None, min_length=1, max_length=500,
                                             description="forest parcels (林班/小班) a forestry project covers")
    owner: str | None = Field(default=None, min_length=1)

    @field_validator("parcels")
    @classmethod
    def _distinct_parcels(cls, value: list[str] | None) -> list[str] | None:
        return _parcels(value)


class ForestTicketBatch(BaseModel):
    """A forest carbon ticket (林业碳票): numbered by its issuing region, over named parcels and a period."""

    model_config = _STRICT
    region: RegionSlug = Field(description="issuing region, e.g. sanming; ticket numbers are unique per region")
    ticket_number: str = Field(
        pattern=GENERAL_TICKET_NUMBER,
        description=f"per region: {_region_list(TICKET_NUMBER_FORMATS)}; any other region: 1-40 letters, "
                    "digits and dashes (compared case-insensitively)")
    issuing_bureau: str = Field(min_length=1, description="the forestry bureau, e.g. 三明市林业局")
    parcels: list[Identifier] = Field(min_length=1, max_length=500, description="forest parcels (林班/小班)")
    monitoring_period: Period
    issued_on: Day | None = None

    @field_validator("parcels")
    @classmethod
    def _distinct_parcels(cls, value: list[str]) -> list[str]:
        distinct = _parcels(value)
        assert distinct is not None  # the field is required: pydantic gives a list
        return distinct

    @field_validator("ticket_number")
    @classmethod
    def _number_of_region(cls, number: str, info: ValidationInfo) -> str:
        region = info.data.get("region")
        fmt = TICKET_NUMBER_FORMATS.get(region) if isinstance(region, str) else None
        if fmt is not None and not re.match(fmt[0], number):
            raise PydanticCustomError("ticket_number_format", "{region} tickets are numbered {format}",
                                      {"region": region, "format": fmt[1]})
        return number

    @field_validator("region")
    @classmethod
    def _region_of_instrument(cls, region: str, info: ValidationInfo) -> str:
        fixed = (info.context or {}).get("instrument_region")
        if fixed is not None and region != fixed:
            raise PydanticCustomError("region_mismatch", "this instrument holds tickets of {fixed} only",
                                      {"fixed": fixed})
        return region


class EmissionRightBatch(BaseModel):
    """One grant of an emission right: a term of the instrument's `validity_years` whole years."""

    model_config = _STRICT
    valid_from: Day = Field(description="first day of the grant's term")
    valid_until: Day = Field(description="last day of the term: valid_from + validity_years years - 1 day")
    source: str | None = Field(default=None, description="initial allocation, reserve, purchase ...")

    @field_validator("valid_until")
    @classmethod
    def _whole_term(cls, until: date, info: ValidationInfo) -> date:
        years = (info.context or {}).get("validity_years")
        start = info.data.get("valid_from")
        if isinstance(years, int) and isinstance(start, date) and until != term_end(start, years):
            raise PydanticCustomError("invalid_term", "a {years}-year term from {start} ends on {end}, not {until}",
                                      {"years": years, "start": start.isoformat(),
                                       "end": term_end(start, years).isoformat(), "until": until.isoformat()})
        return until


class CeaBatch(BaseModel):
    model_config = _STRICT
    allocation: str | None = None


KINDS: dict[str, dict[str, Any]] = {
    "cea": {"unit": "tCO2e", "instrument": CeaInstrument, "batch": CeaBatch},
    "ccer": {"unit": "tCO2e", "instrument": NoAttributes, "batch": ProjectBatch},
    "cdcer": {"unit": "tCO2e", "instrument": NoAttributes, "batch": ProjectBatch},
    "forest_ticket": {"unit": "tCO2e", "instrument": ForestTicketInstrument, "batch": ForestTicketBatch},
    "emission_right": {"unit": "t/year", "instrument": EmissionRightInstrument, "batch": EmissionRightBatch},
}


MAX_PROBLEMS = 100  # a list of 500 bad parcels is named up to here


def _problem(err: Any) -> dict[str, str]:
    return {"attribute": ".".join(str(p) for p in err["loc"]) or "(attributes)", "type": err["type"],
            "message": err["msg"]}


def _validate(model: type[BaseModel], data: dict[str, Any], what: str,
              context: dict[str, Any] | None = None) -> dict[str, Any]:
    try:
        return model.model_validate_json(json.dumps(data, ensure_ascii=False), context=context).model_dump(
            mode="json", exclude_none=True)
    except ValidationError as exc:
        problems = [_problem(e) for e in exc.errors(include_url=False)][:MAX_PROBLEMS]
        listed = "; ".join(f"{p['attribute']}: {p['message']}" for p in problems[:20])
        more = f" (and {exc.error_count() - 20} more)" if exc.error_count() > 20 else ""
        raise Invalid("invalid_attributes", f"{what} attributes: {listed}{more}", errors=problems) from None
    except (TypeError, ValueError, RecursionError):  # not JSON at all (only reachable from Python callers)
        raise Invalid("invalid_attributes", f"{what} attributes are not a JSON object") from None


def instrument_attributes(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    if kind not in KINDS:
        raise Invalid("invalid_instrument_kind", f"kind must be one of {', '.join(KINDS)}")
    return _validate(KINDS[kind]["instrument"], data, f"instrument ({kind})")


def batch_attributes(kind: str, data: dict[str, Any], instrument: dict[str, Any] | None = None) -> dict[str, Any]:
    """A batch's attributes, validated for its kind and against its instrument's own attributes (a forest
    ticket's region, an emission right's term)."""
    inst = instrument or {}
    context = ({"instrument_region": inst.get("region")} if kind == "forest_ticket" else
               {"validity_years": inst.get("validity_years")} if kind == "emission_right" else None)
    return _validate(KINDS[kind]["batch"], data, f"batch ({kind})", context)


def term_years(kind: str, instrument: dict[str, Any]) -> int:
    """Years one unit of quantity is granted for: the price multiplier (1 for everything but emission rights)."""
    if kind == "emission_right":
        return int(instrument["validity_years"])
    return 1


def term_end(start: date, years: int) -> date:
    """The last day of a term of whole years starting on `start` (the day before its anniversary)."""
    try:
        anniversary = start.replace(year=start.year + years)
    except ValueError:  # 29 February: the anniversary is 1 March
        anniversary = date(start.year + years, 3, 1)
    return anniversary - timedelta(days=1)


# What an issuance claims -------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class Claims:
    """What no two issuances may share. `subjects` over `period` overlapping another's is flagged
    (parcels across all kinds; a project within its kind); a `ticket` (region, number) is refused."""

    subjects: tuple[str, ...] = ()
    period: tuple[date, date] | None = None
    ticket: tuple[str, str] | None = None


def claims(kind: str, attrs: dict[str, Any]) -> Claims:
    """From attributes as `batch_attributes` returned them."""
    if kind not in ("ccer", "cdcer", "forest_ticket"):
        return Claims()
    subjects = {f"parcel:{identifier_key(p)}" for p in attrs.get("parcels", ())}
    if "project_id" in attrs:
        subjects.add(f"project:{kind}:{identifier_key(attrs['project_id'])}")
    mp = attrs["monitoring_period"]
    ticket = (attrs["region"], attrs["ticket_number"].upper()) if kind == "forest_ticket" else None
    return Claims(tuple(sorted(subjects)), (date.fromisoformat(mp["start"]), date.fromisoformat(mp["end"])), ticket)


def describe_subject(subject: str) -> str:
    """`parcel:沙县-林班12` -> `parcel 沙县-林班12`; `project:ccer:x` -> `ccer project x`."""
    head, _, rest = subject.partition(":")
    if head == "project":
        kind, _, key = rest.partition(":")
        return f"{kind} project {key}"
    return f"{head} {rest}"


# OpenAPI: `attributes` documented by kind --------------------------------------------------------

_OBJECT = TypeAdapter(dict[str, Any])
MAX_ATTRIBUTES = 20


class KindAttributes:
    """`attributes` in a request: validated here only as a JSON object of at most 20 keys (the kind is
    known only once the instrument is looked up; exchange code validates per kind), documented in the
    OpenAPI as any of the per-kind schemas."""

    def __init__(self, side: Literal["instrument", "batch"]) -> None:
        self.side = side

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        models = list(dict.fromkeys(k[self.side] for k in KINDS.values()))
        return core_schema.no_info_plain_validator_function(
            _json_object, json_schema_input_schema=handler.generate_schema(_union(models)))

    def __get_pydantic_json_schema__(self, schema: Any, handler: Any) -> dict[str, Any]:
        js: dict[str, Any] = handler(schema)
        js["maxProperties"] = MAX_ATTRIBUTES
        js["description"] = kind_table(self.side)
        return js


def _union(models: list[type[BaseModel]]) -> Any:
    out: Any = models[0]
    for m in models[1:]:
        out = out | m
    return out


def _json_object(value: Any) -> dict[str, Any]:
    obj = _OBJECT.validate_python(value, strict=True)
    if len(obj) > MAX_ATTRIBUTES:
        raise PydanticCustomError("too_many_attributes", "at most {n} attributes", {"n": MAX_ATTRIBUTES})
    return obj


def kind_table(side: Literal["instrument", "batch"]) -> str:
    rows = "\n".join(f"- `{kind}`: {k[side].__name__}" for kind, k in KINDS.items())
    return (f"{side.capitalize()} attributes; which ones depends on the instrument's kind (each schema below "
            f"says them):\n{rows}\nEvery missing or invalid attribute is named at once in a 422 "
            "`invalid_attributes` problem (`errors`: attribute, type, message).")
