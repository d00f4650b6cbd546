-- IMSS 7.1 admin database (database "imss", owner "sa"), as 7.1 SP2 Patch 1
-- (build 1808) leaves it. Loaded by the 7.1 model (imss-fixture) into a
-- PostgreSQL 10 cluster; read by the upgrade.
--
-- The history tables (tb_policy_event, tb_quarantine, tb_archive) get their
-- primary keys and secondary indexes from 002_indexes.sql, after they are
-- loaded, as pg_restore does it.

-- Global settings: what the admin console saves, by ini-style section and key.
CREATE TABLE tb_global_setting (
    section     varchar(64)  NOT NULL,
    name        varchar(128) NOT NULL,
    value       text         NOT NULL DEFAULT '',
    inifile     varchar(64)  NOT NULL DEFAULT 'imss.ini',
    PRIMARY KEY (section, name)
);

-- Policy rules, in evaluation order.
CREATE TABLE tb_policy_rule (
    rule_id         serial       PRIMARY KEY,
    rule_name       varchar(255) NOT NULL UNIQUE,
    enabled         boolean      NOT NULL DEFAULT true,
    priority        integer      NOT NULL,
    route_type      smallint     NOT NULL DEFAULT 0,      -- 0 incoming, 1 outgoing, 2 both
    senders         text         NOT NULL DEFAULT '*',
    recipients      text         NOT NULL DEFAULT '*',
    scan_condition  text         NOT NULL DEFAULT '',
    action          smallint     NOT NULL DEFAULT 0,      -- see tb_policy_event.action
    notification    text         NOT NULL DEFAULT '',
    created_time    timestamp    NOT NULL DEFAULT now(),
    modified_time   timestamp    NOT NULL DEFAULT now()
);

-- The policy event log: one row per rule match the scanner reports.
CREATE TABLE tb_policy_event (
    event_id        serial        NOT NULL,
    event_time      timestamp     NOT NULL,
    message_id      varchar(255)  NOT NULL,
    scanner_host    varchar(64)   NOT NULL,
    sender          varchar(320)  NOT NULL,
    recipients      text          NOT NULL,
    subject         varchar(998)  NOT NULL DEFAULT '',
    rule_id         integer,
    rule_name       varchar(255)  NOT NULL DEFAULT '',
    action          smallint      NOT NULL,  -- 0 pass, 1 delete, 2 quarantine, 3 archive, 4 tag, 5 strip
    reason          varchar(255)  NOT NULL DEFAULT '',
    message_size    integer       NOT NULL DEFAULT 0
);

-- Quarantine index: each row points at a message file under /var/imss.
CREATE TABLE tb_quarantine (
    quarantine_id   serial        NOT NULL,
    event_id        integer,
    quarantine_time timestamp     NOT NULL,
    area_name       varchar(64)   NOT NULL DEFAULT 'Default',
    message_id      varchar(255)  NOT NULL,
    sender          varchar(320)  NOT NULL,
    recipient       varchar(320)  NOT NULL,
    subject         varchar(998)  NOT NULL DEFAULT '',
    reason          varchar(255)  NOT NULL DEFAULT '',
    file_path       varchar(1024) NOT NULL,
    file_size       integer       NOT NULL DEFAULT 0,
    released        boolean       NOT NULL DEFAULT false
);

-- Archive index: same shape as the quarantine index, other area.
CREATE TABLE tb_archive (
    archive_id      serial        NOT NULL,
    event_id        integer,
    archive_time    timestamp     NOT NULL,
    area_name       varchar(64)   NOT NULL DEFAULT 'Default',
    message_id      varchar(255)  NOT NULL,
    sender          varchar(320)  NOT NULL,
    recipient       varchar(320)  NOT NULL,
    subject         varchar(998)  NOT NULL DEFAULT '',
    file_path       varchar(1024) NOT NULL,
    file_size       integer       NOT NULL DEFAULT 0
);

-- End-user quarantine (EUQ) settings, key/value.
CREATE TABLE tb_euq_setting (
    name            varchar(128)  PRIMARY KEY,
    value           text          NOT NULL DEFAULT ''
);

-- EUQ approved senders, per end user.
CREATE TABLE tb_euq_approved_sender (
    owner_address   varchar(320)  NOT NULL,
    sender_pattern  varchar(320)  NOT NULL,
    created_time    timestamp     NOT NULL DEFAULT now(),
    PRIMARY KEY (owner_address, sender_pattern)
);

-- Pattern files and engines, with the versions the last update installed.
CREATE TABLE tb_component_version (
    component       varchar(64)   PRIMARY KEY,
    kind            varchar(16)   NOT NULL,            -- 'pattern' or 'engine'
    version         varchar(32)   NOT NULL,
    updated_time    timestamp     NOT NULL
);

-- Administrator accounts of the web console.
CREATE TABLE tb_admin_account (
    account_id      serial        PRIMARY KEY,
    login_name      varchar(64)   NOT NULL UNIQUE,
    password_hash   varchar(128)  NOT NULL,
    role            varchar(32)   NOT NULL DEFAULT 'administrator',
    enabled         boolean       NOT NULL DEFAULT true,
    last_login      timestamp
);

-- Scheduled tasks: component updates, log maintenance, reports.
CREATE TABLE tb_scheduled_task (
    task_id         serial        PRIMARY KEY,
    task_name       varchar(128)  NOT NULL UNIQUE,
    task_kind       varchar(32)   NOT NULL,
    schedule        varchar(64)   NOT NULL,            -- cron-style
    enabled         boolean       NOT NULL DEFAULT true,
    last_run        timestamp
);
