"""Request bodies for court restoration orders."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from api.schemas.common import MAX_ID, ClientId, Date, Decimal, Name, Note, RegisteredIdentifier, Strict


class Defendant(Strict):
    name: Name
    id_number: str | None = Field(default=None, max_length=40, description="kept private; not printed")


class RestorationOrderIn(Strict):
    case_number: str = Field(min_length=1, max_length=100, description="案号, e.g. (2022)闽0627刑初XX号")
    case_type: str = Field(min_length=1, max_length=100, description="e.g. 刑事附带民事公益诉讼")
    judgment_reference: str | None = Field(default=None, max_length=200)
    defendants: list[Defendant] = Field(min_length=1, max_length=100)
    payer_id: int = Field(ge=1, le=MAX_ID, description="the participant whose account pays")
    payer_identifier: RegisteredIdentifier
    assessed_loss: Decimal | None = Field(default=None, description="assessed loss, tCO2e (up to 3 decimals)")
    assessment_method: str | None = Field(default=None, max_length=200)
    assessing_body: str | None = Field(default=None, max_length=200)
    multiplier: Decimal | None = None
    required_quantity: Decimal = Field(description="tCO2e to buy and retire (up to 3 decimals)")
    eligible_kinds: list[Literal["ccer", "cdcer", "forest_ticket", "cea"]] = Field(min_length=1, max_length=4)
    designated_seller_id: int | None = Field(default=None, ge=1, le=MAX_ID)
    deadline: Date
    note: Note = None
    client_id: ClientId = None


class RestorationPurchaseIn(Strict):
    market_id: str = Field(min_length=1, max_length=64)
    type: Literal["limit", "market"] = "limit"
    tif: Literal["day", "ioc", "fok"] = "day"
    price: Decimal | None = None
    quantity: Decimal
    client_id: ClientId = None


class RestorationTakeIn(Strict):
    market_id: str = Field(min_length=1, max_length=64)
    listing_id: int = Field(ge=1, le=MAX_ID)
    quantity: Decimal
    client_id: ClientId = None
