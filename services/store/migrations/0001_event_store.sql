-- The event store: one stream per pupil, a global order, append-only, hash-chained.

CREATE TABLE streams (
    stream_id   uuid PRIMARY KEY,
    version     integer NOT NULL DEFAULT 0 CHECK (version >= 0),
    last_hash   bytea,
    trust_id    text,
    school_urn  text,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE SEQUENCE events_position_seq AS bigint;

CREATE TABLE events (
    -- Assigned under the append lock, so positions are in commit order (see eventstore.py).
    position        bigint PRIMARY KEY DEFAULT nextval('events_position_seq'),
    event_id        uuid NOT NULL UNIQUE,
    stream_id       uuid NOT NULL REFERENCES streams (stream_id),
    version         integer NOT NULL CHECK (version >= 1),
    event_type      text NOT NULL,
    schema_version  smallint NOT NULL CHECK (schema_version >= 1),
    occurred_at     timestamptz NOT NULL,
    recorded_at     timestamptz NOT NULL,
    actor_id        text NOT NULL,
    actor_role      text NOT NULL,
    trust_id        text NOT NULL,
    school_urn      text NOT NULL CHECK (school_urn ~ '^[0-9]{6}$'),
    correlation_id  uuid NOT NULL,
    causation_id    uuid,
    data            jsonb NOT NULL,
    prev_hash       bytea,
    hash            bytea NOT NULL,
    UNIQUE (stream_id, version)
);
ALTER SEQUENCE events_position_seq OWNED BY events.position;

CREATE INDEX events_causation ON events (causation_id);
CREATE INDEX events_tenant ON events (trust_id, school_urn, position);
CREATE INDEX events_type ON events (event_type, position);

-- Append-only in the database itself: no UPDATE, DELETE or TRUNCATE, whoever asks.
CREATE FUNCTION senflow_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'senflow events are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege',
              HINT = 'Record a correction (record_corrected) instead.';
END;
$$;

CREATE TRIGGER events_append_only
    BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION senflow_refuse_change();
CREATE TRIGGER events_no_truncate
    BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION senflow_refuse_change();

-- The vault: one AES-256-GCM key per pupil. Destroying the key (forget) puts the
-- pupil's personal fields beyond use while the events themselves stay untouched.
CREATE TABLE vault_keys (
    stream_id     uuid PRIMARY KEY,
    key           bytea,
    created_at    timestamptz NOT NULL DEFAULT now(),
    destroyed_at  timestamptz,
    CHECK ((key IS NULL) = (destroyed_at IS NOT NULL)),
    CHECK (key IS NULL OR length(key) = 32)
);
