-- The background transfer of the older 7.1 history into 9.1: its cursor and
-- its reject table, in schema upgrade_transfer of the 9.1 database. Created
-- by the transfer when it first starts (IF NOT EXISTS: every start runs
-- this).
--
-- Exactly once: a batch (the 9.1 rows a range of 7.1 ids becomes, the
-- rejects, and the cursor's new place and checksum) commits in one
-- transaction, so a kill at any moment leaves the cursor and the 9.1
-- tables in agreement.

CREATE SCHEMA IF NOT EXISTS upgrade_transfer;

-- One row per 7.1 history table: how far the transfer is.
CREATE TABLE IF NOT EXISTS upgrade_transfer.cursor (
    table_name     text         PRIMARY KEY,
    -- Every 7.1 row with an id up to here is in 9.1 or rejected.
    last_id        bigint       NOT NULL DEFAULT 0,
    rows_done      bigint       NOT NULL DEFAULT 0,
    rows_rejected  bigint       NOT NULL DEFAULT 0,
    -- The rows older than the 24-hour window on 7.1, counted at the first
    -- start, and the highest id among them: the table is done once last_id
    -- reaches it.
    rows_total     bigint       NOT NULL,
    max_id         bigint       NOT NULL,
    committed_at   timestamptz,
    done           boolean      NOT NULL DEFAULT false,
    -- What 9.1 held of the moved rows as each batch committed (compared
    -- with 7.1 then), added up: the row count and the checksum sum that
    -- the final comparison sets against 7.1's. 9.1 may change the rows
    -- afterwards (a release, a purge); that does not change these.
    committed_rows bigint       NOT NULL DEFAULT 0,
    committed_sum  numeric      NOT NULL DEFAULT 0
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
