-- The public feed (one message per event) is now a relay of its own, checkpoint
-- "public". Where a relay already ran, the public feed starts exactly where it had
-- published to, before any new relay can move "main" on: nothing skipped, nothing
-- sent twice. A fresh database has no "main" row and the public feed starts at 0.
INSERT INTO relay_checkpoint (name, position)
SELECT 'public', position FROM relay_checkpoint WHERE name = 'main'
ON CONFLICT (name) DO NOTHING;

-- The head check of 0005, as strict as the foreign key it replaced: the heads are
-- locked FOR KEY SHARE, so a head deleted (or renamed) by a concurrent transaction
-- either waits for this one or makes it fail, instead of both committing and leaving
-- events without a head. (Appends hold their heads FOR UPDATE already, and an import
-- creates its heads in the same transaction: for them the lock costs next to nothing.)
CREATE OR REPLACE FUNCTION senflow_events_have_heads() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
    wanted bigint;
    locked bigint;
    missing uuid;
BEGIN
    SELECT count(DISTINCT stream_id) INTO wanted FROM inserted;
    SELECT count(*) INTO locked FROM (
        SELECT 1 FROM streams s
         WHERE s.stream_id IN (SELECT stream_id FROM inserted)
           FOR KEY SHARE
    ) heads;
    IF locked < wanted THEN
        SELECT n.stream_id INTO missing
          FROM inserted n
         WHERE NOT EXISTS (SELECT 1 FROM streams s WHERE s.stream_id = n.stream_id)
         LIMIT 1;
        RAISE EXCEPTION 'event of stream % has no head row in "streams"', missing
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN NULL;
END;
$$;

-- A head's id may be "changed" to itself, as the foreign key allowed.
CREATE OR REPLACE FUNCTION senflow_head_in_use() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        IF EXISTS (SELECT 1 FROM events) THEN
            RAISE EXCEPTION 'streams still has events: TRUNCATE refused'
                USING ERRCODE = 'foreign_key_violation';
        END IF;
        RETURN NULL;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.stream_id = OLD.stream_id THEN
        RETURN NEW;
    END IF;
    IF EXISTS (SELECT 1 FROM events WHERE stream_id = OLD.stream_id) THEN
        RAISE EXCEPTION 'stream % has events: % of its head refused', OLD.stream_id, TG_OP
            USING ERRCODE = 'foreign_key_violation';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END;
$$;
