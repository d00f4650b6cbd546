-- Keys and secondary indexes of the 7.1 history tables, built after the
-- history is loaded. Together with 001_schema.sql this is the 7.1 schema.
ALTER TABLE tb_policy_event ADD CONSTRAINT tb_policy_event_pkey PRIMARY KEY (event_id);
ALTER TABLE tb_quarantine   ADD CONSTRAINT tb_quarantine_pkey   PRIMARY KEY (quarantine_id);
ALTER TABLE tb_archive      ADD CONSTRAINT tb_archive_pkey      PRIMARY KEY (archive_id);

CREATE INDEX ix_policy_event_time       ON tb_policy_event (event_time);
CREATE INDEX ix_policy_event_message_id ON tb_policy_event (message_id);
CREATE INDEX ix_quarantine_time         ON tb_quarantine (quarantine_time);
CREATE INDEX ix_quarantine_recipient    ON tb_quarantine (recipient);
CREATE INDEX ix_archive_time            ON tb_archive (archive_time);
