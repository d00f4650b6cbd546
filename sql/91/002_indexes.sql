-- Secondary indexes of the 9.1 history tables: what the console's searches
-- (by time, by Message-ID, by recipient) need, and the recipients' foreign
-- key. Kept apart from 001_schema.sql so that the bulk load of the last 24
-- hours, during the mail downtime, can build them afterwards: one sort per
-- index and one join for the key are several times faster than keeping
-- them up to date row by row.
ALTER TABLE policy_event_recipient
    ADD CONSTRAINT policy_event_recipient_event_id_fkey
    FOREIGN KEY (event_id) REFERENCES policy_event (event_id) ON DELETE CASCADE;

CREATE INDEX ix_policy_event_time            ON policy_event (event_time);
CREATE INDEX ix_policy_event_message_id      ON policy_event (message_id);
CREATE INDEX ix_policy_event_recipient       ON policy_event_recipient (recipient);
CREATE INDEX ix_quarantine_message_time      ON quarantine_message (quarantined_at);
CREATE INDEX ix_quarantine_message_id        ON quarantine_message (message_id);
CREATE INDEX ix_quarantine_message_recipient ON quarantine_message (recipient);
CREATE INDEX ix_archive_message_time         ON archive_message (archived_at);
CREATE INDEX ix_archive_message_id           ON archive_message (message_id);
