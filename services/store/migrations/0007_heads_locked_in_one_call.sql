-- An append's first step in one round trip instead of four: create the head rows of
-- new streams (and their vault keys), lock every head the append touches, and find
-- which of its event ids are already stored. Each statement of a volatile PL/pgSQL
-- function reads with a fresh snapshot, so the lookup of stored events, made after
-- the heads are locked, sees every append that held one of those heads before this
-- one: what the separate statements saw.
--
-- The result is one row per head, in stream order (the order every append locks
-- in), then a last row with no stream: the event ids already stored, or NULL.
-- SECURITY INVOKER (the default): the API's row-level security applies as before.
CREATE FUNCTION senflow_lock_heads(ids uuid[], new_keys bytea[], event_ids uuid[])
    RETURNS TABLE (stream_id uuid, version integer, last_hash bytea, trust_id text,
                   school_urn text, key bytea, stored uuid[])
    LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    -- A new stream's head row is the one ON CONFLICT in the store, and it writes no
    -- event: it only makes the row there is to lock.
    INSERT INTO streams (stream_id) SELECT unnest(ids) ON CONFLICT (stream_id) DO NOTHING;
    INSERT INTO vault_keys (stream_id, key) SELECT * FROM unnest(ids, new_keys)
        ON CONFLICT (stream_id) DO NOTHING;
    RETURN QUERY
        SELECT s.stream_id, s.version, s.last_hash, s.trust_id, s.school_urn, k.key,
               NULL::uuid[]
          FROM streams s JOIN vault_keys k USING (stream_id)
         WHERE s.stream_id = ANY(ids)
         ORDER BY s.stream_id
           FOR UPDATE OF s;
    RETURN QUERY
        SELECT NULL::uuid, NULL::integer, NULL::bytea, NULL::text, NULL::text, NULL::bytea,
               (SELECT array_agg(e.event_id) FROM events e WHERE e.event_id = ANY(event_ids));
END;
$$;
REVOKE ALL ON FUNCTION senflow_lock_heads(uuid[], bytea[], uuid[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION senflow_lock_heads(uuid[], bytea[], uuid[]) TO senflow_api;
