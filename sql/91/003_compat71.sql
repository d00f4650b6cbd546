-- Schema compat71: how 7.1 values map to 9.1 values and back.
--
-- - setting_key: which 7.1 setting each typed settings column replaces, and
--   the kind of its value. The transform (010_transform_config.sql) writes
--   the columns from it; the views below read them back from it.
-- - setting_origin and legacy_setting: what 7.1 had. A key with a typed
--   column is recorded in setting_origin (its 7.1 text and ini file); a key
--   9.1 has no column for is kept verbatim in legacy_setting, so that no 7.1
--   setting is lost.
-- - views named and shaped exactly like the 7.1 tables (tb_policy_event,
--   tb_global_setting, ...), rebuilt from the 9.1 tables: recipients joined
--   again in order, words back to codes, times back to UTC wall-clock times.
--   The migration's checksums read them (the same canonical text on both
--   sides), and so can anything that must carry 9.1 rows back to 7.1.

CREATE SCHEMA compat71;

-- Policy actions: 7.1 stored a code (0 pass, 1 delete, 2 quarantine,
-- 3 archive, 4 tag, 5 strip), 9.1 stores the word: the word of code c is
-- element c + 1. The background transfer reads the list to map the codes
-- on the 7.1 server itself.
CREATE FUNCTION compat71.policy_action_names() RETURNS text[]
LANGUAGE sql IMMUTABLE AS $$
    SELECT ARRAY['pass', 'delete', 'quarantine', 'archive', 'tag', 'strip']
$$;

-- NULL for an unknown code.
CREATE FUNCTION compat71.policy_action_name(code smallint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT (compat71.policy_action_names())[code + 1]
$$;

CREATE FUNCTION compat71.policy_action_code(name text) RETURNS smallint
LANGUAGE sql IMMUTABLE AS $$
    SELECT (array_position(compat71.policy_action_names(), name) - 1)::smallint
$$;

-- Rule directions: 7.1 route_type 0 incoming, 1 outgoing, 2 both.
CREATE FUNCTION compat71.rule_direction_name(code smallint) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT (ARRAY['incoming', 'outgoing', 'both'])[code + 1]
$$;

CREATE FUNCTION compat71.rule_direction_code(name text) RETURNS smallint
LANGUAGE sql IMMUTABLE AS $$
    SELECT (array_position(ARRAY['incoming', 'outgoing', 'both'], name) - 1)::smallint
$$;

-- The kinds of setting values:
--   text     kept as written;
--   list     ';'-separated in 7.1, text[] in 9.1;
--   boolean  1/0 (7.1's console also left yes/no, true/false, on/off);
--   integer, bigint  whole numbers.
CREATE TABLE compat71.setting_key (
    source_table   text  NOT NULL CHECK (source_table IN ('tb_global_setting', 'tb_euq_setting')),
    -- '' for tb_euq_setting, which has no sections.
    section        text  NOT NULL,
    name           text  NOT NULL,
    target_table   text  NOT NULL,
    target_column  text  NOT NULL,
    value_kind     text  NOT NULL CHECK (value_kind IN ('text', 'list', 'boolean', 'integer', 'bigint')),
    PRIMARY KEY (source_table, section, name),
    UNIQUE (target_table, target_column)
);

INSERT INTO compat71.setting_key (source_table, section, name, target_table, target_column, value_kind) VALUES
    ('tb_global_setting', 'smtp',         'Hostname',       'smtp_settings',         'hostname',            'text'),
    ('tb_global_setting', 'smtp',         'MaxMessageSize', 'smtp_settings',         'max_message_size',    'bigint'),
    ('tb_global_setting', 'smtp',         'MaxRecipients',  'smtp_settings',         'max_recipients',      'integer'),
    ('tb_global_setting', 'smtp',         'RelayDomains',   'smtp_settings',         'relay_domains',       'list'),
    ('tb_global_setting', 'notification', 'AdminAddress',   'notification_settings', 'admin_address',       'text'),
    ('tb_global_setting', 'notification', 'SmtpServer',     'notification_settings', 'smtp_server',         'text'),
    ('tb_global_setting', 'log',          'RetentionDays',  'log_settings',          'retention_days',      'integer'),
    ('tb_global_setting', 'log',          'Level',          'log_settings',          'level',               'text'),
    ('tb_global_setting', 'update',       'Source',         'update_settings',       'source_url',          'text'),
    ('tb_global_setting', 'update',       'Proxy',          'update_settings',       'proxy',               'text'),
    ('tb_global_setting', 'ers',          'Enabled',        'reputation_settings',   'ers_enabled',         'boolean'),
    ('tb_global_setting', 'ip_profiler',  'Enabled',        'reputation_settings',   'ip_profiler_enabled', 'boolean'),
    ('tb_global_setting', 'EUQ',          'DigestSchedule', 'euq_settings',          'digest_schedule',     'text'),
    -- 7.1 also mirrored EnableEUQ and EnableEndUserAccess into [EUQ] of
    -- tb_global_setting; the EUQ service read tb_euq_setting, so that is
    -- the one 9.1 takes, and the mirror is kept in legacy_setting.
    ('tb_euq_setting',    '',             'enable_euq',             'euq_settings', 'enabled',         'boolean'),
    ('tb_euq_setting',    '',             'enable_end_user_access', 'euq_settings', 'end_user_access', 'boolean'),
    ('tb_euq_setting',    '',             'console_port',           'euq_settings', 'console_port',    'integer'),
    ('tb_euq_setting',    '',             'ldap_server',            'euq_settings', 'ldap_server',     'text'),
    ('tb_euq_setting',    '',             'digest_enabled',         'euq_settings', 'digest_enabled',  'boolean');

-- 7.1 settings that went into a typed column: where from, and as written.
CREATE TABLE compat71.setting_origin (
    source_table  text         NOT NULL,
    section       text         NOT NULL,
    name          text         NOT NULL,
    -- tb_global_setting.inifile; NULL for tb_euq_setting.
    inifile       text,
    value_71      text         NOT NULL,
    migrated_at   timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (source_table, section, name),
    FOREIGN KEY (source_table, section, name) REFERENCES compat71.setting_key
);

-- 7.1 settings 9.1 has no column for, kept as written.
CREATE TABLE compat71.legacy_setting (
    source_table  text         NOT NULL CHECK (source_table IN ('tb_global_setting', 'tb_euq_setting')),
    section       text         NOT NULL,
    name          text         NOT NULL,
    value         text         NOT NULL,
    inifile       text,
    migrated_at   timestamptz  NOT NULL DEFAULT now(),
    PRIMARY KEY (source_table, section, name)
);

-- A 7.1 setting's text in the form 9.1 stores (1/0 for booleans, a whole
-- number without padding), or an error saying which setting is wrong and
-- what to do. `setting` names it for the message.
CREATE FUNCTION compat71.setting_canonical(value_kind text, value text, setting text) RETURNS text
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
    trimmed text := lower(btrim(value));
BEGIN
    CASE value_kind
    WHEN 'text', 'list' THEN
        RETURN value;
    WHEN 'boolean' THEN
        IF trimmed IN ('1', 'true', 'yes', 'on', 't', 'y') THEN
            RETURN '1';
        ELSIF trimmed IN ('0', 'false', 'no', 'off', 'f', 'n', '') THEN
            RETURN '0';
        END IF;
        RAISE EXCEPTION 'the 7.1 setting % is %, neither on (1) nor off (0): set it on the 7.1 console, then run again',
            setting, quote_literal(value);
    WHEN 'integer', 'bigint' THEN
        IF trimmed ~ '^[+-]?[0-9]{1,18}$' THEN
            IF value_kind = 'bigint' THEN
                RETURN trimmed::bigint::text;
            ELSIF trimmed::bigint BETWEEN -2147483648 AND 2147483647 THEN
                RETURN trimmed::integer::text;
            END IF;
        END IF;
        RAISE EXCEPTION 'the 7.1 setting % is %, not a whole number 9.1 can store: set it on the 7.1 console, then run again',
            setting, quote_literal(value);
    END CASE;
END
$$;

-- The SQL expression that turns canonical text ($1) into the column's value.
CREATE FUNCTION compat71.setting_store_expr(value_kind text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE value_kind
        WHEN 'text'    THEN '$1'
        WHEN 'list'    THEN 'string_to_array($1, '';'')'
        WHEN 'boolean' THEN '$1::boolean'
        WHEN 'integer' THEN '$1::integer'
        WHEN 'bigint'  THEN '$1::bigint'
    END
$$;

-- The SQL expression that turns the column back into canonical text.
CREATE FUNCTION compat71.setting_render_expr(value_kind text, column_name text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format(CASE value_kind
        WHEN 'boolean' THEN 'CASE WHEN %I THEN ''1'' ELSE ''0'' END'
        WHEN 'list'    THEN 'array_to_string(%I, '';'')'
        ELSE '%I::text'
    END, column_name)
$$;

-- Writes one typed setting from 7.1 text.
CREATE FUNCTION compat71.store_setting(mapping compat71.setting_key, value text) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('UPDATE public.%I SET %I = %s', mapping.target_table, mapping.target_column,
                   compat71.setting_store_expr(mapping.value_kind))
    USING compat71.setting_canonical(mapping.value_kind, value, compat71.setting_label(mapping.source_table, mapping.section, mapping.name));
END
$$;

-- "[section] name" for tb_global_setting, "name (EUQ)" for tb_euq_setting.
CREATE FUNCTION compat71.setting_label(source_table text, section text, name text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE source_table
        WHEN 'tb_euq_setting' THEN name || ' (EUQ)'
        ELSE '[' || section || '] ' || name
    END
$$;

-- A typed setting's current value as 7.1 text: the 7.1 text as written
-- while the column still holds what it meant, the canonical text of the
-- column once it was changed in 9.1.
CREATE FUNCTION compat71.setting_value_71(mapping compat71.setting_key, value_71 text) RETURNS text
LANGUAGE plpgsql STABLE AS $$
DECLARE
    current_text text;
BEGIN
    EXECUTE format('SELECT %s FROM public.%I', compat71.setting_render_expr(mapping.value_kind, mapping.target_column),
                   mapping.target_table)
    INTO current_text;
    IF compat71.setting_canonical(mapping.value_kind, value_71, '') = current_text THEN
        RETURN value_71;
    END IF;
    RETURN current_text;
END
$$;

CREATE VIEW compat71.tb_global_setting AS
SELECT o.section, o.name, compat71.setting_value_71(k, o.value_71) AS value, o.inifile
  FROM compat71.setting_origin o
  JOIN compat71.setting_key k USING (source_table, section, name)
 WHERE o.source_table = 'tb_global_setting'
UNION ALL
SELECT section, name, value, inifile
  FROM compat71.legacy_setting
 WHERE source_table = 'tb_global_setting';

CREATE VIEW compat71.tb_euq_setting AS
SELECT o.name, compat71.setting_value_71(k, o.value_71) AS value
  FROM compat71.setting_origin o
  JOIN compat71.setting_key k USING (source_table, section, name)
 WHERE o.source_table = 'tb_euq_setting'
UNION ALL
SELECT name, value
  FROM compat71.legacy_setting
 WHERE source_table = 'tb_euq_setting';

CREATE VIEW compat71.tb_policy_rule AS
SELECT rule_id,
       name AS rule_name,
       enabled,
       priority,
       compat71.rule_direction_code(direction) AS route_type,
       sender_scope AS senders,
       recipient_scope AS recipients,
       scan_condition,
       compat71.policy_action_code(action) AS action,
       notification,
       created_at AT TIME ZONE 'UTC' AS created_time,
       modified_at AT TIME ZONE 'UTC' AS modified_time
  FROM public.policy_rule;

-- `source` is not a 7.1 column: it tells migrated rows from 9.1's own.
CREATE VIEW compat71.tb_policy_event AS
SELECT e.event_id,
       e.event_time AT TIME ZONE 'UTC' AS event_time,
       e.message_id,
       e.scanner_host,
       e.sender,
       -- An array in key order, not string_agg(… ORDER BY …), which sorts
       -- once per row.
       array_to_string(ARRAY(SELECT r.recipient
                               FROM public.policy_event_recipient r
                              WHERE r.event_id = e.event_id
                              ORDER BY r.ordinal), ',') AS recipients,
       e.subject,
       e.rule_id,
       e.rule_name,
       compat71.policy_action_code(e.action) AS action,
       e.reason,
       e.message_size,
       e.source
  FROM public.policy_event e;

CREATE VIEW compat71.tb_quarantine AS
SELECT quarantine_id,
       event_id,
       quarantined_at AT TIME ZONE 'UTC' AS quarantine_time,
       area_name,
       message_id,
       sender,
       recipient,
       subject,
       reason,
       file_path,
       file_size,
       released,
       source
  FROM public.quarantine_message;

CREATE VIEW compat71.tb_archive AS
SELECT archive_id,
       event_id,
       archived_at AT TIME ZONE 'UTC' AS archive_time,
       area_name,
       message_id,
       sender,
       recipient,
       subject,
       file_path,
       file_size,
       source
  FROM public.archive_message;

CREATE VIEW compat71.tb_euq_approved_sender AS
SELECT owner_address, sender_pattern, created_at AT TIME ZONE 'UTC' AS created_time
  FROM public.euq_approved_sender;

CREATE VIEW compat71.tb_component_version AS
SELECT component, kind, version, updated_at AT TIME ZONE 'UTC' AS updated_time
  FROM public.component_version;

CREATE VIEW compat71.tb_admin_account AS
SELECT account_id, login_name, password_hash, role, enabled, last_login_at AT TIME ZONE 'UTC' AS last_login
  FROM public.admin_account;

CREATE VIEW compat71.tb_scheduled_task AS
SELECT task_id, name AS task_name, kind AS task_kind, cron_schedule AS schedule, enabled,
       last_run_at AT TIME ZONE 'UTC' AS last_run
  FROM public.scheduled_task;
