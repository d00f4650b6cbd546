-- Where the ids 9.1 hands out start, as a function in schema v71, created
-- with the staging tables and dropped with them. (The history's
-- transformation, v71.transform_history(), is built from the mapping the
-- background transfer uses too: src/migration/history_mapping.rs.)

-- Makes the ids 9.1 hands out start above every 7.1 id plus `gap`: the
-- maxima are over ALL 7.1 rows (and sequences), not just the migrated ones,
-- because older 7.1 rows keep arriving in the background with their own
-- ids while 9.1 writes new rows. Never lowers a sequence. Returns the next
-- id of each table.
CREATE FUNCTION v71.set_id_floors(
    policy_event_max bigint,
    quarantine_max   bigint,
    archive_max      bigint,
    gap              bigint)
RETURNS TABLE (table_name text, next_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
    floor_row record;
    sequence_name text;
    taken bigint;
BEGIN
    IF gap < 0 THEN
        RAISE EXCEPTION 'the id gap must not be negative (got %)', gap;
    END IF;
    FOR floor_row IN
        SELECT * FROM (VALUES
            ('policy_event', 'event_id', policy_event_max),
            ('quarantine_message', 'quarantine_id', quarantine_max),
            ('archive_message', 'archive_id', archive_max)) AS f(target_table, id_column, max_71)
    LOOP
        sequence_name := pg_get_serial_sequence('public.' || floor_row.target_table, floor_row.id_column);
        EXECUTE format('SELECT coalesce(max(%I), 0) FROM public.%I', floor_row.id_column, floor_row.target_table)
        INTO taken;
        table_name := floor_row.target_table;
        next_id := greatest(coalesce(floor_row.max_71, 0) + gap + 1,
                            taken + 1,
                            coalesce(pg_sequence_last_value(sequence_name::regclass), 0) + 1);
        PERFORM setval(sequence_name, next_id, false);
        RETURN NEXT;
    END LOOP;
END
$$;
