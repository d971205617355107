"""Issuance claims, typed: monitoring periods as date ranges, parcels and projects as normalised
identifiers, forest ticket numbers unique per region, origin serial ranges as numbers; the recorded
override of a flagged approval.

Rows from before keep what can be read from them: a period written `YYYY-MM-DD/YYYY-MM-DD`, the parcel
or project they named, a Sanming ticket number (7 digits, 三明 bureau). An old import's origin serial was
free text: it stays as `origin_reference` and takes part in no overlap check.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from alembic import op  # noqa: F401

from migrations.script import run_script

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

# pg_advisory_xact_lock(ISSUANCE_LOCK_CLASS, hashtext(key)): the same class as exchange/registry/issuance.py.
UPGRADE = """
ALTER TABLE issuance_requests RENAME COLUMN origin_serial TO origin_reference;
DROP INDEX issuance_requests_origin;
ALTER TABLE issuance_requests
    ADD COLUMN period daterange,
    ADD COLUMN ticket_region text,
    ADD COLUMN ticket_number text,
    ADD COLUMN origin_key text,
    ADD COLUMN origin_serials int8range,
    ADD COLUMN override jsonb,
    ADD COLUMN issue_entry_seq bigint,
    ADD CONSTRAINT issuance_period_closed CHECK (period IS NULL OR (NOT isempty(period)
        AND NOT lower_inf(period) AND NOT upper_inf(period))),
    ADD CONSTRAINT issuance_ticket_pair CHECK ((ticket_region IS NULL) = (ticket_number IS NULL)),
    ADD CONSTRAINT issuance_origin_pair CHECK ((origin_key IS NULL) = (origin_serials IS NULL)
        AND (origin_key IS NULL OR origin_registry IS NOT NULL)),
    ADD CONSTRAINT issuance_origin_range CHECK (origin_serials IS NULL OR (NOT isempty(origin_serials)
        AND lower(origin_serials) >= 1 AND NOT upper_inf(origin_serials))),
    -- an override is recorded with its reason, and only on an approval
    ADD CONSTRAINT issuance_override CHECK (override IS NULL OR (status = 'approved'
        AND btrim(coalesce(override ->> 'reason', '')) <> '' AND jsonb_typeof(override -> 'flags') = 'array'));

-- What a request claims for the double-issuance check: `parcel:<key>` (any kind) and
-- `project:<kind>:<key>` (within a kind), keys normalised as exchange/instrument_kinds.identifier_key does.
CREATE TABLE issuance_subjects (
    subject text NOT NULL CHECK (subject ~ '^(parcel|project):.'),
    request_id bigint NOT NULL REFERENCES issuance_requests (id),
    PRIMARY KEY (subject, request_id)
);
CREATE INDEX issuance_subjects_request ON issuance_subjects (request_id);

-- Ticket numbers are unique per issuing region, among requests not rejected.
CREATE UNIQUE INDEX issuance_requests_ticket ON issuance_requests (ticket_region, ticket_number)
    WHERE ticket_number IS NOT NULL AND status <> 'rejected';
-- An exact re-import is refused by this index; an overlapping one by the trigger below.
CREATE UNIQUE INDEX issuance_requests_origin ON issuance_requests (origin_key, origin_serials)
    WHERE origin_key IS NOT NULL AND status <> 'rejected';
CREATE INDEX issuance_requests_origin_serials ON issuance_requests USING gist (origin_serials)
    WHERE origin_serials IS NOT NULL;

CREATE FUNCTION issuance_origin_disjoint() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1769173877, hashtext('origin:' || NEW.origin_key));
    IF EXISTS (SELECT 1 FROM issuance_requests r
               WHERE r.origin_key = NEW.origin_key AND r.origin_serials && NEW.origin_serials
                 AND r.status <> 'rejected' AND r.id <> NEW.id) THEN
        RAISE EXCEPTION 'origin serials % of % overlap another import', NEW.origin_serials, NEW.origin_key
            USING ERRCODE = 'exclusion_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER issuance_origin_disjoint BEFORE INSERT ON issuance_requests
    FOR EACH ROW WHEN (NEW.origin_key IS NOT NULL AND NEW.status <> 'rejected')
    EXECUTE FUNCTION issuance_origin_disjoint();

-- Rows from before: what can be read from them.
UPDATE issuance_requests
   SET period = daterange(split_part(vintage, '/', 1)::date, split_part(vintage, '/', 2)::date, '[]')
 WHERE vintage ~ '^\\d{4}-\\d{2}-\\d{2}/\\d{4}-\\d{2}-\\d{2}$'
   AND split_part(vintage, '/', 1) <= split_part(vintage, '/', 2);
INSERT INTO issuance_subjects (subject, request_id)
SELECT DISTINCT CASE WHEN i.kind = 'forest_ticket' THEN 'parcel:' ELSE 'project:' || i.kind || ':' END
       || btrim(regexp_replace(lower(normalize(r.project, NFKC)), '[[:space:]_/\\\\·・‐‑‒–—―-]+', '-', 'g'), '-'),
       r.id
  FROM issuance_requests r JOIN instruments i ON i.code = r.instrument
 WHERE i.kind IN ('ccer', 'cdcer', 'forest_ticket') AND r.period IS NOT NULL
   AND btrim(regexp_replace(lower(normalize(r.project, NFKC)), '[[:space:]_/\\\\·・‐‑‒–—―-]+', '-', 'g'), '-') <> '';
UPDATE issuance_requests r SET ticket_region = 'sanming', ticket_number = r.attributes ->> 'ticket_number'
  FROM (SELECT DISTINCT ON (q.attributes ->> 'ticket_number') q.id
          FROM issuance_requests q JOIN instruments i ON i.code = q.instrument
         WHERE i.kind = 'forest_ticket' AND q.status <> 'rejected'
           AND q.attributes ->> 'ticket_number' ~ '^[0-9]{7}$' AND q.attributes ->> 'issuing_bureau' LIKE '三明%'
         ORDER BY q.attributes ->> 'ticket_number', q.id) first_of_each
 WHERE r.id = first_of_each.id;
ALTER TABLE issuance_requests DROP COLUMN project, DROP COLUMN vintage;
"""

DOWNGRADE = """
DROP TRIGGER issuance_origin_disjoint ON issuance_requests;
DROP FUNCTION issuance_origin_disjoint();
DROP TABLE issuance_subjects;
DROP INDEX issuance_requests_origin;
DROP INDEX issuance_requests_ticket;
ALTER TABLE issuance_requests ADD COLUMN project text, ADD COLUMN vintage text;
UPDATE issuance_requests SET vintage = lower(period)::text || '/' || (upper(period) - 1)::text
 WHERE period IS NOT NULL;
UPDATE issuance_requests SET project = coalesce(attributes ->> 'project_id', attributes ->> 'project',
                                                attributes ->> 'parcel', attributes -> 'parcels' ->> 0);
ALTER TABLE issuance_requests
    DROP COLUMN period, DROP COLUMN ticket_region, DROP COLUMN ticket_number, DROP COLUMN origin_key,
    DROP COLUMN origin_serials, DROP COLUMN override, DROP COLUMN issue_entry_seq;
ALTER TABLE issuance_requests RENAME COLUMN origin_reference TO origin_serial;
CREATE UNIQUE INDEX issuance_requests_origin ON issuance_requests (origin_registry, origin_serial)
    WHERE origin_registry IS NOT NULL AND status <> 'rejected';
"""


def upgrade() -> None:
    run_script(UPGRADE)


def downgrade() -> None:
    run_script(DOWNGRADE)
