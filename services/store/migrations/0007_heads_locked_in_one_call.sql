-- An append's first step in one round trip instead of four: create the head rows of
-- new streams (and their vault keys), lock every head the append touches, then read
-- the heads with their keys and find which of its event ids are already stored. Each
-- statement of a volatile PL/pgSQL function reads with a fresh snapshot, so what is
-- read after the lock sees every transaction that held one of those heads before this
-- one: an append that waited for an erasure sees the key destroyed, a retry that waited
-- for its original sees the original's events.
--
-- The result is one row per head, in stream order (the order every append locks in),
-- then a last row with no stream: the event ids already stored, or NULL. The function
-- runs with its caller's rights (the API's row-level security applies as before), so
-- it needs no grants of its own.
--
-- Its plans are kept for the session, so they must not depend on how big the tables
-- were when they were made: planned while the store was nearly empty, a sequential
-- scan of the heads looked cheapest and stayed, costing time in proportion to the
-- store (33 ms a call at 60,000 pupils). Every lookup here has its index, so the
-- planner is told to use them.
CREATE FUNCTION senflow_lock_heads(ids uuid[], new_keys bytea[], event_ids uuid[])
    RETURNS TABLE (stream_id uuid, version integer, last_hash bytea, trust_id text,
                   school_urn text, key bytea, stored uuid[])
    LANGUAGE plpgsql VOLATILE SET enable_seqscan = off AS $$
#variable_conflict use_column
BEGIN
    -- A new stream's head row is the one ON CONFLICT in the store, and it writes no
    -- event: it only makes the row there is to lock.
    INSERT INTO streams (stream_id) SELECT unnest(ids) ON CONFLICT (stream_id) DO NOTHING;
    INSERT INTO vault_keys (stream_id, key) SELECT * FROM unnest(ids, new_keys)
        ON CONFLICT (stream_id) DO NOTHING;
    PERFORM 1 FROM streams s WHERE s.stream_id = ANY(ids) ORDER BY s.stream_id
        FOR UPDATE;
    RETURN QUERY
        SELECT s.stream_id, s.version, s.last_hash, s.trust_id, s.school_urn, k.key,
               NULL::uuid[]
          FROM streams s JOIN vault_keys k USING (stream_id)
         WHERE s.stream_id = ANY(ids)
         ORDER BY s.stream_id;
    RETURN QUERY
        SELECT NULL::uuid, NULL::integer, NULL::bytea, NULL::text, NULL::text, NULL::bytea,
               (SELECT array_agg(e.event_id) FROM events e WHERE e.event_id = ANY(event_ids));
END;
$$;

-- The heads moved on by an append, under the append lock (``_WRITE`` in eventstore.py),
-- in the same statement as its insert. A function for the same reason: by index,
-- whatever the size the heads' table had when the plan was made.
CREATE FUNCTION senflow_move_heads(ids uuid[], versions integer[], last_hashes bytea[],
                                   trust_ids text[], school_urns text[])
    RETURNS void LANGUAGE sql VOLATILE SET enable_seqscan = off AS $$
    UPDATE streams s
       SET version = h.version, last_hash = h.last_hash, trust_id = h.trust_id,
           school_urn = h.school_urn, updated_at = now()
      FROM unnest(ids, versions, last_hashes, trust_ids, school_urns)
           AS h(stream_id, version, last_hash, trust_id, school_urn)
     WHERE s.stream_id = h.stream_id
$$;
