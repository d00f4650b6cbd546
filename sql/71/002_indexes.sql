-- Secondary indexes of the 7.1 history tables, created after the history is
-- loaded (the primary keys come with 001_schema.sql).
CREATE INDEX ix_policy_event_time       ON tb_policy_event (event_time);
CREATE INDEX ix_policy_event_message_id ON tb_policy_event (message_id);
CREATE INDEX ix_quarantine_time         ON tb_quarantine (quarantine_time);
CREATE INDEX ix_quarantine_recipient    ON tb_quarantine (recipient);
CREATE INDEX ix_archive_time            ON tb_archive (archive_time);
