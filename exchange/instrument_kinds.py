"""The five instrument kinds of DESIGN.md §4 and the attributes each carries.

Instrument attributes describe the whole product (a CEA vintage, an emission right's pollutant and
region); batch attributes describe one issuance (a CCER project and vintage, a forest ticket number).

Emission rights (排污权) are granted per year for a term: the instrument (one per pollutant and region)
says how many years every grant of it runs (`validity_years`, commonly 5), and each batch (one grant)
says when its term starts and ends (`valid_from`, `valid_until`, whole years: 2025-04-10 to 2030-04-09).
A quantity is t/yr; a price is per t·yr; a trade of q t/yr settles at price × q × years. What is left
of a batch at the end of its term expires (exchange/expiry.py).
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from exchange.errors import Invalid

_STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True, str_max_length=200)


class NoAttributes(BaseModel):
    model_config = _STRICT


class CeaInstrument(BaseModel):
    model_config = _STRICT
    compliance_year: int = Field(ge=2013, le=2100)


class EmissionRightInstrument(BaseModel):
    model_config = _STRICT
    pollutant: str = Field(pattern=r"^(COD|NH3-N|SO2|NOx|VOCs|TN|TP)$")
    region: str = Field(min_length=1)
    validity_years: int = Field(ge=1, le=30, description="the term of every grant, in years; prices are per "
                                "t·yr and a trade settles at price × quantity × validity_years")


class ProjectBatch(BaseModel):
    """CCER and CDCER batches: a project, its methodology and the monitoring period (vintage)."""

    model_config = _STRICT
    project: str = Field(min_length=1)
    project_id: str | None = None
    methodology: str | None = None
    vintage: str | None = Field(default=None, description="monitoring period, e.g. 2021-01-01/2021-12-31")
    owner: str | None = None


class ForestTicketBatch(BaseModel):
    model_config = _STRICT
    ticket_number: str = Field(pattern=r"^[0-9]{7}$")
    parcel: str | None = None
    monitoring_period: str | None = None
    issuing_bureau: str | None = None
    issued_on: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$")


class EmissionRightBatch(BaseModel):
    model_config = _STRICT
    valid_from: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$", description="first day of the grant's term")
    valid_until: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$",
                             description="last day of the term: valid_from + validity_years years - 1 day")
    source: str | None = Field(default=None, description="initial allocation, reserve, purchase ...")


class CeaBatch(BaseModel):
    model_config = _STRICT
    allocation: str | None = None


KINDS: dict[str, dict[str, Any]] = {
    "cea": {"unit": "tCO2e", "instrument": CeaInstrument, "batch": CeaBatch},
    "ccer": {"unit": "tCO2e", "instrument": NoAttributes, "batch": ProjectBatch},
    "cdcer": {"unit": "tCO2e", "instrument": NoAttributes, "batch": ProjectBatch},
    "forest_ticket": {"unit": "tCO2e", "instrument": NoAttributes, "batch": ForestTicketBatch},
    "emission_right": {"unit": "t/year", "instrument": EmissionRightInstrument, "batch": EmissionRightBatch},
}


def _validate(model: type[BaseModel], data: dict[str, Any], what: str) -> dict[str, Any]:
    try:
        return model.model_validate(data).model_dump(exclude_none=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Invalid("invalid_attributes", f"{what} attributes: {where}: {first['msg']}") from None


def instrument_attributes(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    if kind not in KINDS:
        raise Invalid("invalid_instrument_kind", f"kind must be one of {', '.join(KINDS)}")
    return _validate(KINDS[kind]["instrument"], data, "instrument")


def batch_attributes(kind: str, data: dict[str, Any], instrument: dict[str, Any] | None = None) -> dict[str, Any]:
    """A batch's attributes, checked; an emission right's term must be the instrument's whole years."""
    attrs = _validate(KINDS[kind]["batch"], data, "batch")
    if kind == "emission_right":
        start, end = _date(attrs["valid_from"], "valid_from"), _date(attrs["valid_until"], "valid_until")
        years = term_years(kind, instrument or {})
        if end != term_end(start, years):
            raise Invalid("invalid_term", f"a {years}-year term from {start} ends on {term_end(start, years)}, "
                                          f"not {end}")
    return attrs


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


def _date(value: str, name: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise Invalid("invalid_attributes", f"batch attributes: {name}: {value} is not a date") from None
