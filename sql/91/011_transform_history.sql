-- The 7.1 history into the 9.1 tables: policy events (recipients split off),
-- quarantine and archive records, from whatever the staging schema v71
-- holds (the last 24 hours during the downtime; a batch of older history
-- in the background transfer), in one call:
--
--     SELECT * FROM v71.transform_history();
--
-- Migrated rows keep their 7.1 ids and say source '7.1'. Rows already in
-- 9.1 are left alone (ON CONFLICT DO NOTHING on those ids), so a re-run
-- after a partial run, or over a batch that overlaps one done before,
-- neither loses nor duplicates a row; the counts are the rows added.
-- Message files are not touched: file_path keeps the 7.1 path.
--
-- Created in schema v71 with the staging tables, and dropped with them.

CREATE FUNCTION v71.transform_history(
    OUT policy_events       bigint,
    OUT recipients          bigint,
    OUT quarantine_messages bigint,
    OUT archive_messages    bigint)
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT count(*) AS events, min(action) AS action INTO bad
      FROM v71.tb_policy_event
     WHERE compat71.policy_action_name(action) IS NULL;
    IF bad.events > 0 THEN
        RAISE EXCEPTION '% 7.1 policy events have an action code 9.1 does not know (for example %): nothing was migrated',
            bad.events, bad.action;
    END IF;

    -- The recipients of the events added by this call only, in their 7.1
    -- order; an empty recipients text gives no rows, and re-joining the
    -- rows with ',' gives the 7.1 text back exactly (compat71.tb_policy_event).
    WITH added AS (
        INSERT INTO public.policy_event
               (event_id, event_time, message_id, scanner_host, sender, subject, rule_id,
                rule_name, action, reason, message_size, source)
        SELECT event_id, event_time AT TIME ZONE 'UTC', message_id, scanner_host, sender, subject, rule_id,
               rule_name, compat71.policy_action_name(action), reason, message_size, '7.1'
          FROM v71.tb_policy_event
        ON CONFLICT (event_id) DO NOTHING
        RETURNING event_id
    ), added_recipients AS (
        INSERT INTO public.policy_event_recipient (event_id, ordinal, recipient)
        SELECT e.event_id, r.ordinal::integer, r.recipient
          FROM v71.tb_policy_event e
          JOIN added USING (event_id)
         CROSS JOIN LATERAL unnest(string_to_array(e.recipients, ',')) WITH ORDINALITY AS r(recipient, ordinal)
        ON CONFLICT (event_id, ordinal) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM added), (SELECT count(*) FROM added_recipients)
      INTO policy_events, recipients;

    INSERT INTO public.quarantine_message
           (quarantine_id, event_id, quarantined_at, area_name, message_id, sender, recipient,
            subject, reason, file_path, file_size, released, source)
    SELECT quarantine_id, event_id, quarantine_time AT TIME ZONE 'UTC', area_name, message_id, sender, recipient,
           subject, reason, file_path, file_size, released, '7.1'
      FROM v71.tb_quarantine
    ON CONFLICT (quarantine_id) DO NOTHING;
    GET DIAGNOSTICS quarantine_messages = ROW_COUNT;

    INSERT INTO public.archive_message
           (archive_id, event_id, archived_at, area_name, message_id, sender, recipient,
            subject, file_path, file_size, source)
    SELECT archive_id, event_id, archive_time AT TIME ZONE 'UTC', area_name, message_id, sender, recipient,
           subject, file_path, file_size, '7.1'
      FROM v71.tb_archive
    ON CONFLICT (archive_id) DO NOTHING;
    GET DIAGNOSTICS archive_messages = ROW_COUNT;
END
$$;

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
