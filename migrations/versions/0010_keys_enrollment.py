"""Participants and credentials: subjects (organisation with USCC, person with a private ID document),
suspension history, API key lineage (parent, capped expiry, final revocation), split-knowledge
enrollment codes.

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-25
"""

from migrations.script import run_script

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

SQL = """
-- Who a participant is. A person's identity document is private (operators, auditors and the person).
ALTER TABLE participants
    ADD COLUMN subject text NOT NULL DEFAULT 'organisation' CHECK (subject IN ('organisation', 'person')),
    ADD COLUMN id_document_type text CHECK (id_document_type IN ('resident_id_card', 'passport')),
    ADD COLUMN id_document_country text,
    ADD COLUMN id_document_number text,
    ADD COLUMN suspended_at timestamptz,
    ADD COLUMN suspended_by text,
    ADD COLUMN suspension_reason text;
ALTER TABLE participants ADD CONSTRAINT participants_subject_fields CHECK (
    (subject = 'organisation' AND id_document_type IS NULL AND id_document_country IS NULL
                              AND id_document_number IS NULL)
    OR (subject = 'person' AND uscc IS NULL AND id_document_type IS NOT NULL AND id_document_number IS NOT NULL));
-- ASCII only ([0-9] in a PostgreSQL bracket is the ASCII range); the check character is verified in
-- exchange/registry/subjects.py. NOT VALID: enforced for new and changed rows, rows from before are left as they are.
ALTER TABLE participants ADD CONSTRAINT participants_uscc_ascii
    CHECK (uscc ~ '^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$') NOT VALID;
ALTER TABLE participants ADD CONSTRAINT participants_id_document_ascii
    CHECK (id_document_number ~ '^[0-9A-Z]{5,20}$' AND coalesce(id_document_country, 'CHN') ~ '^[A-Z]{3}$');
CREATE UNIQUE INDEX participants_id_document
    ON participants (id_document_type, coalesce(id_document_country, ''), id_document_number)
    WHERE id_document_number IS NOT NULL;
ALTER TABLE participants ADD CONSTRAINT participants_suspension
    CHECK ((status = 'suspended') = (suspended_at IS NOT NULL)) NOT VALID;

-- Every suspension and reinstatement, kept (insert-only). A reinstatement names two operators.
CREATE TABLE participant_status_changes (
    id bigserial PRIMARY KEY,
    participant_id bigint NOT NULL REFERENCES participants (id),
    change text NOT NULL CHECK (change IN ('suspend', 'reinstate')),
    reason text NOT NULL,
    actor text NOT NULL,
    approved_by text,
    -- No foreign key: the row is written while the approval holds the action's row lock (FOR UPDATE), on
    -- another connection; the key check's FOR KEY SHARE would wait for the approval forever.
    operator_action_id bigint,
    client_id text NOT NULL,
    fingerprint bytea NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CHECK (approved_by IS NULL OR approved_by <> actor)
);
CREATE UNIQUE INDEX participant_status_changes_client_id ON participant_status_changes (actor, client_id);
CREATE INDEX participant_status_changes_participant ON participant_status_changes (participant_id, id);
CREATE TRIGGER participant_status_changes_append_only BEFORE UPDATE OR DELETE ON participant_status_changes
    FOR EACH ROW EXECUTE FUNCTION envx_append_only();

-- Key lineage: a key minted by a key records its parent, belongs to the same participant, never outlives
-- it, and cannot be minted under a revoked parent. Revocation is final. The rules are in exchange/security/keys.py;
-- the trigger is the backstop. Keys from before this migration have created_by 'before-lineage'.
ALTER TABLE api_keys
    ADD COLUMN parent_key_id bigint REFERENCES api_keys (id),
    ADD COLUMN created_by text NOT NULL DEFAULT 'before-lineage',
    ADD COLUMN client_id text,
    ADD COLUMN fingerprint bytea;
ALTER TABLE api_keys ALTER COLUMN created_by DROP DEFAULT;
ALTER TABLE api_keys ADD CONSTRAINT api_keys_not_own_parent CHECK (parent_key_id IS DISTINCT FROM id);
CREATE UNIQUE INDEX api_keys_client_id ON api_keys (parent_key_id, client_id) WHERE client_id IS NOT NULL;
CREATE INDEX api_keys_parent ON api_keys (parent_key_id) WHERE parent_key_id IS NOT NULL;

CREATE FUNCTION envx_api_key_lineage() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    parent api_keys%ROWTYPE;
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.revoked_at IS NOT NULL AND NEW.revoked_at IS DISTINCT FROM OLD.revoked_at THEN
        RAISE EXCEPTION 'envx: api key % is revoked; revocation is final', OLD.id USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'UPDATE' AND (NEW.parent_key_id IS DISTINCT FROM OLD.parent_key_id
                             OR NEW.participant_id <> OLD.participant_id) THEN
        RAISE EXCEPTION 'envx: an api key''s owner and parent never change' USING ERRCODE = 'check_violation';
    END IF;
    IF NEW.parent_key_id IS NULL THEN
        RETURN NEW;
    END IF;
    SELECT * INTO parent FROM api_keys WHERE id = NEW.parent_key_id FOR SHARE;
    IF parent.participant_id <> NEW.participant_id THEN
        RAISE EXCEPTION 'envx: a key mints keys for its own participant only' USING ERRCODE = 'check_violation';
    END IF;
    IF TG_OP = 'INSERT' AND parent.revoked_at IS NOT NULL THEN
        RAISE EXCEPTION 'envx: parent key % is revoked', parent.id USING ERRCODE = 'check_violation';
    END IF;
    IF (TG_OP = 'INSERT' OR NEW.expires_at IS DISTINCT FROM OLD.expires_at) AND parent.expires_at IS NOT NULL
       AND (NEW.expires_at IS NULL OR NEW.expires_at > parent.expires_at) THEN
        RAISE EXCEPTION 'envx: a key never outlives its parent %', parent.id USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER api_keys_lineage BEFORE INSERT OR UPDATE ON api_keys
    FOR EACH ROW EXECUTE FUNCTION envx_api_key_lineage();

-- Enrollment codes: the first credential of a participant, exchanged once for its own API key. Two halves:
-- the first shown only to the proposing operator, the second only to the approving one (four_eyes); only
-- their SHA-256 digests are stored. A code is usable once complete (second half issued), before it expires,
-- unless cancelled (a newer code, a suspension) or used.
CREATE TABLE enrollment_codes (
    id bigserial PRIMARY KEY,
    handle text NOT NULL UNIQUE,
    participant_id bigint REFERENCES participants (id),
    operator_action_id bigint UNIQUE REFERENCES operator_actions (id),
    four_eyes boolean NOT NULL,
    created_by text NOT NULL,
    client_id text NOT NULL,
    first_hash bytea NOT NULL CHECK (length(first_hash) = 32),
    second_hash bytea CHECK (length(second_hash) = 32),
    second_by text,
    created_at timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    expires_at timestamptz,
    used_at timestamptz,
    used_client_id text,
    used_fingerprint bytea,
    key_id bigint REFERENCES api_keys (id),
    cancelled_at timestamptz,
    cancel_reason text,
    -- Split knowledge: the second half never goes to the operator who holds the first.
    CHECK (NOT four_eyes OR second_by IS NULL OR second_by <> created_by),
    CHECK ((second_hash IS NULL) = (completed_at IS NULL) AND (completed_at IS NULL) = (expires_at IS NULL)),
    CHECK (completed_at IS NULL OR participant_id IS NOT NULL),
    CHECK ((used_at IS NULL) = (key_id IS NULL) AND (used_at IS NULL OR completed_at IS NOT NULL)),
    CHECK (used_at IS NULL OR cancelled_at IS NULL)
);
CREATE UNIQUE INDEX enrollment_codes_client_id ON enrollment_codes (created_by, client_id);
CREATE INDEX enrollment_codes_participant ON enrollment_codes (participant_id, id);
"""


def upgrade() -> None:
    run_script(SQL)


def downgrade() -> None:
    run_script("""
DROP TABLE enrollment_codes, participant_status_changes;
DROP TRIGGER api_keys_lineage ON api_keys;
DROP FUNCTION envx_api_key_lineage();
ALTER TABLE api_keys DROP CONSTRAINT api_keys_not_own_parent;
ALTER TABLE api_keys DROP COLUMN parent_key_id, DROP COLUMN created_by, DROP COLUMN client_id, DROP COLUMN fingerprint;
DROP INDEX participants_id_document;
ALTER TABLE participants DROP CONSTRAINT participants_subject_fields, DROP CONSTRAINT participants_uscc_ascii,
    DROP CONSTRAINT participants_id_document_ascii, DROP CONSTRAINT participants_suspension;
ALTER TABLE participants DROP COLUMN subject, DROP COLUMN id_document_type, DROP COLUMN id_document_country,
    DROP COLUMN id_document_number, DROP COLUMN suspended_at, DROP COLUMN suspended_by,
    DROP COLUMN suspension_reason;
""")
