-- The background transfer of the older 7.1 history into 9.1: its cursor,
-- its reject table and the function that settles one batch. Created by the
-- transfer when it first starts (IF NOT EXISTS: every start runs this), in
-- schema upgrade_transfer of the 9.1 database; the rows it moves arrive in
-- the staging tables of schema v71 first (binary COPY from PostgreSQL 10)
-- and go through the same v71.transform_history() as the last 24 hours.
--
-- Exactly once: a batch (the staging rows, the rows they become, the
-- rejects and the cursor's new place) commits in one transaction, so a kill
-- at any moment leaves the cursor and the 9.1 tables in agreement.

CREATE SCHEMA IF NOT EXISTS upgrade_transfer;

-- The staging tables only ever hold the batch in flight, emptied before it
-- commits: unlogged, the batch writes less WAL, and the checkpoints it
-- forces on 9.1 (which live mail's commits wait behind) come less often. After a crash PostgreSQL empties them, as they are
-- between batches anyway.
ALTER TABLE v71.tb_policy_event SET UNLOGGED;
ALTER TABLE v71.tb_quarantine SET UNLOGGED;
ALTER TABLE v71.tb_archive SET UNLOGGED;

-- One row per 7.1 history table: how far the transfer is.
CREATE TABLE IF NOT EXISTS upgrade_transfer.cursor (
    table_name     text         PRIMARY KEY,
    -- Every 7.1 row with an id up to here is in 9.1 or rejected.
    last_id        bigint       NOT NULL DEFAULT 0,
    rows_done      bigint       NOT NULL DEFAULT 0,
    rows_rejected  bigint       NOT NULL DEFAULT 0,
    -- The rows older than the 24-hour window on 7.1, counted at the first start.
    rows_total     bigint       NOT NULL,
    committed_at   timestamptz,
    done           boolean      NOT NULL DEFAULT false
);

-- Rows the transformation refused: kept with the reason, never dropped.
CREATE TABLE IF NOT EXISTS upgrade_transfer.rejected (
    table_name   text         NOT NULL,
    row_id       bigint       NOT NULL,
    reason       text         NOT NULL,
    -- The 7.1 row, as JSON.
    row_71       text         NOT NULL,
    rejected_at  timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (table_name, row_id)
);

-- Settles the batch the staging table of `source_table` holds: rows the
-- transformation refuses go to the reject table, the rest into the 9.1
-- tables, the staging table is emptied and the cursor moves to the
-- batch's highest id (`id_column`). An empty batch marks the table done.
-- Returns the rows of the batch, and of them those added and those
-- rejected (a row 9.1 has already is neither).
CREATE OR REPLACE FUNCTION upgrade_transfer.settle_batch(
    source_table   text,
    id_column      text,
    OUT staged     bigint,
    OUT added      bigint,
    OUT rejected   bigint)
LANGUAGE plpgsql AS $$
DECLARE
    counts record;
    batch_last_id bigint;
BEGIN
    EXECUTE format('SELECT count(*), max(%I) FROM v71.%I', id_column, source_table)
       INTO staged, batch_last_id;
    rejected := 0;
    added := 0;
    IF staged = 0 THEN
        UPDATE upgrade_transfer.cursor c SET done = true, committed_at = now()
         WHERE c.table_name = source_table;
        RETURN;
    END IF;
    IF source_table = 'tb_policy_event' THEN
        WITH refused AS (
            DELETE FROM v71.tb_policy_event
             WHERE compat71.policy_action_name(action) IS NULL
            RETURNING *
        )
        INSERT INTO upgrade_transfer.rejected (table_name, row_id, reason, row_71)
        SELECT source_table, r.event_id,
               format('action code %s has no 9.1 name (9.1 knows 0 to 5)', r.action),
               row_to_json(r)::text
          FROM refused r
        ON CONFLICT DO NOTHING;
        GET DIAGNOSTICS rejected = ROW_COUNT;
    END IF;

    SELECT * INTO counts FROM v71.transform_history();
    added := counts.policy_events + counts.quarantine_messages + counts.archive_messages;
    TRUNCATE v71.tb_policy_event, v71.tb_quarantine, v71.tb_archive;

    UPDATE upgrade_transfer.cursor c
       SET last_id = batch_last_id,
           rows_done = c.rows_done + staged,
           rows_rejected = c.rows_rejected + rejected,
           committed_at = now()
     WHERE c.table_name = source_table;
END
$$;
