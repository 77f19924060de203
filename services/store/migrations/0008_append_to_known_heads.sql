-- An append in one round trip, when the appending process already knows the heads
-- (``EventStore``'s kept heads: what its own last append left). The rows come sealed
-- and hash-chained from those heads; this function checks, under the heads' row locks,
-- that each head is still where the rows start from (version and hash), with the key
-- they were sealed with, then moves the heads, takes the append lock and inserts, as
-- ``_WRITE`` does. Called outside a transaction, the call is the whole transaction: one
-- round trip instead of four (begin, lock the heads, write, commit).
--
-- A head that moved (another process appended, an erasure destroyed the key) raises
-- SQLSTATE SF001 and writes nothing; an event id already stored (a retry) raises the
-- unique violation. Either way the caller falls back to the locked path, which is the
-- authority on conflicts, retries and new pupils.
--
-- Locks are taken in the same order as the locked path's: the heads (in stream order),
-- then the append lock, so the two paths cannot deadlock. Each statement of a volatile
-- PL/pgSQL function reads with a fresh snapshot, so the check after the lock sees what
-- the last holder of a head committed. The function runs with its caller's rights: the
-- API's row-level security applies, and a head it hides fails the check.
CREATE FUNCTION senflow_append_known(
    e_event_id uuid[], e_stream_id uuid[], e_version integer[], e_event_type text[],
    e_schema_version smallint[], e_occurred_at timestamptz[], e_recorded_at timestamptz[],
    e_actor_id text[], e_actor_role text[], e_trust_id text[], e_school_urn text[],
    e_correlation_id uuid[], e_causation_id uuid[], e_data jsonb[], e_prev_hash bytea[],
    e_hash bytea[],
    channel text, lock_key bigint,
    ids uuid[], versions integer[], last_hashes bytea[], trust_ids text[], school_urns text[],
    known_versions integer[], known_hashes bytea[], known_keys bytea[])
    RETURNS TABLE (event_id uuid, "position" bigint)
    LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
#variable_conflict use_column
DECLARE
    still integer;
    new_ids uuid[];
    new_positions bigint[];
BEGIN
    PERFORM 1 FROM streams s WHERE s.stream_id = ANY(ids) ORDER BY s.stream_id FOR UPDATE;
    SELECT count(*) INTO still
      FROM unnest(ids, known_versions, known_hashes, known_keys) AS h(sid, v, last, key)
      JOIN streams s ON s.stream_id = h.sid
      JOIN vault_keys k ON k.stream_id = h.sid
     WHERE s.version = h.v AND s.last_hash IS NOT DISTINCT FROM h.last AND k.key = h.key;
    IF still <> cardinality(ids) THEN
        RAISE EXCEPTION 'a head moved since it was read: append through the locked path'
            USING ERRCODE = 'SF001';
    END IF;
    PERFORM senflow_move_heads(ids, versions, last_hashes, trust_ids, school_urns);
    PERFORM pg_advisory_xact_lock(lock_key);
    WITH inserted AS (
        INSERT INTO events (event_id, stream_id, version, event_type, schema_version,
                            occurred_at, recorded_at, actor_id, actor_role, trust_id,
                            school_urn, correlation_id, causation_id, data, prev_hash, hash)
        SELECT * FROM unnest(e_event_id, e_stream_id, e_version, e_event_type,
                             e_schema_version, e_occurred_at, e_recorded_at, e_actor_id,
                             e_actor_role, e_trust_id, e_school_urn, e_correlation_id,
                             e_causation_id, e_data, e_prev_hash, e_hash)
        RETURNING events.event_id, events.position
    )
    SELECT array_agg(i.event_id), array_agg(i.position) INTO new_ids, new_positions
      FROM inserted i;
    -- the wake-up for tailing readers, delivered at commit (never the data path)
    PERFORM pg_notify(channel, (SELECT max(p) FROM unnest(new_positions) AS p)::text);
    RETURN QUERY SELECT * FROM unnest(new_ids, new_positions);
END;
$$;
