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

-- What a command reads before it decides (``EventStore.read_for_command``): the
-- pupil's events after the version its process keeps, and the events its command id
-- already caused, with the pupil's key. A function for the same reason as the two
-- above: a session's plan made while the store was nearly empty read the whole events
-- table for every command (32 ms a command at 150,000 events).
CREATE FUNCTION senflow_read_for_command(pupil uuid, after_version integer, command uuid)
    RETURNS TABLE ("position" bigint, event_id uuid, stream_id uuid, version integer,
                   event_type text, schema_version smallint, occurred_at timestamptz,
                   recorded_at timestamptz, actor_id text, actor_role text, trust_id text,
                   school_urn text, correlation_id uuid, causation_id uuid, data jsonb,
                   prev_hash bytea, hash bytea, key bytea)
    LANGUAGE sql STABLE SET enable_seqscan = off AS $$
    SELECT e.position, e.event_id, e.stream_id, e.version, e.event_type, e.schema_version,
           e.occurred_at, e.recorded_at, e.actor_id, e.actor_role, e.trust_id,
           e.school_urn, e.correlation_id, e.causation_id, e.data, e.prev_hash, e.hash,
           k.key
      FROM events e LEFT JOIN vault_keys k USING (stream_id)
     WHERE (e.stream_id = pupil AND e.version > after_version) OR e.causation_id = command
     ORDER BY e.position
$$;

-- The heads check of every insert into events (0005, 0006) likewise: its plan, kept by
-- the session, looked the heads up by a sequential scan once made on an empty store.
ALTER FUNCTION senflow_events_have_heads() SET enable_seqscan = off;
