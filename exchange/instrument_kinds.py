"""The five instrument kinds of DESIGN.md §4 and the attributes each carries.

Instrument attributes describe the whole product (a CEA vintage, an emission right's pollutant and
region); batch attributes describe one issuance (a CCER project and vintage, a forest ticket number).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from exchange.errors import Invalid

_STRICT = ConfigDict(extra="forbid", strict=True, str_max_length=200)  # no coercion, strings as sent


def _calendar_day(value: str) -> str:
    day = date.fromisoformat(value)  # "2025-02-30" is refused here, not later by whoever reads it
    if not date(2000, 1, 1) <= day <= date(2199, 12, 31):
        raise ValueError("dates run from 2000-01-01 to 2199-12-31")
    return value


Day = Annotated[str, Field(pattern=r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"), AfterValidator(_calendar_day)]


class NoAttributes(BaseModel):
    model_config = _STRICT


class CeaInstrument(BaseModel):
    model_config = _STRICT
    compliance_year: int = Field(ge=2013, le=2100)


class EmissionRightInstrument(BaseModel):
    model_config = _STRICT
    pollutant: str = Field(pattern=r"^(COD|NH3-N|SO2|NOx|VOCs|TN|TP)$")
    region: str = Field(min_length=1)
    validity_years: int = Field(ge=1, le=30)


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
    issued_on: Day | None = None


class EmissionRightBatch(BaseModel):
    model_config = _STRICT
    valid_from: Day
    valid_until: Day
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


def batch_attributes(kind: str, data: dict[str, Any]) -> dict[str, Any]:
    return _validate(KINDS[kind]["batch"], data, "batch")
