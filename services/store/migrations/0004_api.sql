-- The HTTP API: bearer tokens, idempotency keys, the access log, and row-level security
-- as a second wall between trusts (the first is the API's own scope checks).

-- Tokens are stored as the SHA-256 of a 256-bit random secret: a leaked table
-- gives nobody a usable token, and a high-entropy secret needs no slow hash.
CREATE TABLE api_tokens (
    token_id    uuid PRIMARY KEY,
    token_hash  bytea NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    user_id     text NOT NULL,
    role        text NOT NULL,
    trust_id    text NOT NULL,
    school_urn  text CHECK (school_urn ~ '^[0-9]{6}$'),
    note        text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    CHECK (expires_at > created_at)
);

-- What a command request with an Idempotency-Key answered, so a retry gets the
-- same answer and a different request under the same key is refused.
CREATE TABLE api_idempotency (
    trust_id      text NOT NULL,
    user_id       text NOT NULL,
    key           text NOT NULL,
    request_hash  bytea NOT NULL,
    status        smallint NOT NULL,
    response      jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (trust_id, user_id, key)
);

-- Who looked at whom, when: one row per read of pupils' personal data.
CREATE TABLE access_log (
    id              bigserial PRIMARY KEY,
    at              timestamptz NOT NULL DEFAULT now(),
    token_id        uuid,
    user_id         text NOT NULL,
    role            text NOT NULL,
    trust_id        text NOT NULL,
    school_urn      text,
    action          text NOT NULL,
    pupil_ids       uuid[] NOT NULL DEFAULT '{}',
    query           jsonb NOT NULL DEFAULT '{}',
    correlation_id  text
);
CREATE INDEX access_log_trust_at ON access_log (trust_id, id);
CREATE INDEX access_log_pupils ON access_log USING gin (pupil_ids);
CREATE INDEX access_log_user ON access_log (trust_id, user_id, id);

-- A record of access that could be edited would prove nothing.
CREATE TRIGGER access_log_append_only
    BEFORE UPDATE OR DELETE ON access_log
    FOR EACH ROW EXECUTE FUNCTION senflow_refuse_change();
CREATE TRIGGER access_log_no_truncate
    BEFORE TRUNCATE ON access_log
    FOR EACH STATEMENT EXECUTE FUNCTION senflow_refuse_change();

-- Row-level security. The API switches each connection it uses for a request to
-- the role senflow_api with the token's trust in senflow.trust_id; policies then
-- hide every other trust's rows. Other senflow processes connect as the owner and
-- are not subject to them. Roles belong to the cluster, so it may already exist.
DO $$
BEGIN
    IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'senflow_api') THEN
        CREATE ROLE senflow_api NOLOGIN;
    END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN
    NULL;  -- created by a concurrent migration of another database
END
$$;

DO $$
BEGIN
    IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)
       AND NOT pg_has_role(current_user, 'senflow_api', 'MEMBER') THEN
        EXECUTE format('GRANT senflow_api TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA public TO senflow_api;
GRANT SELECT, INSERT ON events TO senflow_api;
GRANT USAGE ON SEQUENCE events_position_seq TO senflow_api;
GRANT SELECT, INSERT, UPDATE ON streams TO senflow_api;
GRANT SELECT, INSERT ON vault_keys TO senflow_api;
GRANT SELECT, INSERT ON access_log TO senflow_api;
GRANT USAGE ON SEQUENCE access_log_id_seq TO senflow_api;
GRANT SELECT, INSERT ON api_idempotency TO senflow_api;

ALTER TABLE events ENABLE ROW LEVEL SECURITY;
ALTER TABLE streams ENABLE ROW LEVEL SECURITY;
ALTER TABLE vault_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE access_log ENABLE ROW LEVEL SECURITY;
ALTER TABLE api_idempotency ENABLE ROW LEVEL SECURITY;

-- Without senflow.trust_id set, current_setting(..., true) is '' or NULL: nothing matches.
CREATE POLICY api_trust ON events TO senflow_api
    USING (trust_id = current_setting('senflow.trust_id', true))
    WITH CHECK (trust_id = current_setting('senflow.trust_id', true));
-- A stream's head row has no trust until its first event is appended in the same
-- transaction; such a row carries nothing.
CREATE POLICY api_trust ON streams TO senflow_api
    USING (trust_id IS NULL OR trust_id = current_setting('senflow.trust_id', true))
    WITH CHECK (trust_id IS NULL OR trust_id = current_setting('senflow.trust_id', true));
CREATE POLICY api_trust ON vault_keys TO senflow_api
    USING (EXISTS (SELECT 1 FROM streams s WHERE s.stream_id = vault_keys.stream_id))
    WITH CHECK (EXISTS (SELECT 1 FROM streams s WHERE s.stream_id = vault_keys.stream_id));
CREATE POLICY api_trust ON access_log TO senflow_api
    USING (trust_id = current_setting('senflow.trust_id', true))
    WITH CHECK (trust_id = current_setting('senflow.trust_id', true));
CREATE POLICY api_trust ON api_idempotency TO senflow_api
    USING (trust_id = current_setting('senflow.trust_id', true))
    WITH CHECK (trust_id = current_setting('senflow.trust_id', true));

-- Whether a pupil id is taken anywhere, without showing where: a registration
-- under RLS cannot see another trust's stream, and must not collide with it.
CREATE FUNCTION senflow_stream_taken(id uuid) RETURNS boolean
    LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public
    AS $$ SELECT EXISTS (SELECT 1 FROM streams WHERE stream_id = id AND version > 0) $$;
REVOKE ALL ON FUNCTION senflow_stream_taken(uuid) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION senflow_stream_taken(uuid) TO senflow_api;
