//! How 7.1 history rows become 9.1 rows, written once for the two ways
//! history moves:
//!
//! - during the downtime, the last 24 hours are copied into the staging
//!   schema `v71` of the 9.1 database and mapped there, one set-based
//!   `INSERT … SELECT` per 9.1 table, by `v71.transform_history()`
//!   ([`transform_history_function`]);
//! - in the background transfer, each batch of older rows is mapped on the
//!   7.1 server itself, one `SELECT` per 9.1 table ([`Target91::select`]),
//!   and binary `COPY` takes the result into the 9.1 tables.
//!
//! The mapping: times from UTC wall clock to `timestamptz`, action codes to
//! words (the word of code c is element c + 1 of 9.1's list,
//! `compat71.policy_action_names()`; a code past the list has none),
//! recipients split off in their order (an empty text gives no rows, and
//! joining the rows with ',' again gives the 7.1 text back exactly, as
//! `compat71.tb_policy_event` does), 7.1's narrower types widened to 9.1's,
//! and `source` '7.1'. Migrated rows keep their 7.1 ids. Each expression
//! has its 9.1 column's type, as binary `COPY` needs. Message files are not
//! touched: `file_path` keeps the 7.1 path.
//!
//! The two ways differ only where they must: the words are
//! `compat71.policy_action_names()` on 9.1 and a literal on 7.1 (the
//! transfer reads the list from 9.1 first); the downtime skips rows
//! already in 9.1 and refuses every row when a code has no word, the
//! transfer's batches never overlap and keep such rows in a reject table.

use super::schema::STAGING_SCHEMA;
use super::tables::Table71;

/// A 9.1 table that 7.1 history goes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target91 {
    /// `policy_event`, from `tb_policy_event`.
    PolicyEvent,
    /// `policy_event_recipient`, split off `tb_policy_event.recipients`.
    Recipient,
    /// `quarantine_message`, from `tb_quarantine`.
    Quarantine,
    /// `archive_message`, from `tb_archive`.
    Archive,
}

/// What fills a 9.1 column, from the 7.1 row `e`.
enum Value {
    /// An SQL expression.
    Sql(&'static str),
    /// 9.1's word for the row's policy action code.
    ActionWord,
}

use Value::{ActionWord, Sql};

const POLICY_EVENT: &[(&str, Value)] = &[
    ("event_id", Sql("e.event_id::bigint")),
    ("event_time", Sql("e.event_time AT TIME ZONE 'UTC'")),
    ("message_id", Sql("e.message_id::text")),
    ("scanner_host", Sql("e.scanner_host::text")),
    ("sender", Sql("e.sender::text")),
    ("subject", Sql("e.subject::text")),
    ("rule_id", Sql("e.rule_id::bigint")),
    ("rule_name", Sql("e.rule_name::text")),
    ("action", ActionWord),
    ("reason", Sql("e.reason::text")),
    ("message_size", Sql("e.message_size::bigint")),
    ("source", Sql("'7.1'::text")),
];

const RECIPIENT: &[(&str, Value)] = &[
    ("event_id", Sql("e.event_id::bigint")),
    ("ordinal", Sql("r.ordinal::integer")),
    ("recipient", Sql("r.recipient")),
];

/// The recipients of the event `e`, one row `r` each, in their order.
const SPLIT_RECIPIENTS: &str = "CROSS JOIN LATERAL unnest(string_to_array(e.recipients, ',')) \
                                WITH ORDINALITY AS r(recipient, ordinal)";

const QUARANTINE: &[(&str, Value)] = &[
    ("quarantine_id", Sql("e.quarantine_id::bigint")),
    ("event_id", Sql("e.event_id::bigint")),
    (
        "quarantined_at",
        Sql("e.quarantine_time AT TIME ZONE 'UTC'"),
    ),
    ("area_name", Sql("e.area_name::text")),
    ("message_id", Sql("e.message_id::text")),
    ("sender", Sql("e.sender::text")),
    ("recipient", Sql("e.recipient::text")),
    ("subject", Sql("e.subject::text")),
    ("reason", Sql("e.reason::text")),
    ("file_path", Sql("e.file_path::text")),
    ("file_size", Sql("e.file_size::bigint")),
    ("released", Sql("e.released")),
    ("source", Sql("'7.1'::text")),
];

const ARCHIVE: &[(&str, Value)] = &[
    ("archive_id", Sql("e.archive_id::bigint")),
    ("event_id", Sql("e.event_id::bigint")),
    ("archived_at", Sql("e.archive_time AT TIME ZONE 'UTC'")),
    ("area_name", Sql("e.area_name::text")),
    ("message_id", Sql("e.message_id::text")),
    ("sender", Sql("e.sender::text")),
    ("recipient", Sql("e.recipient::text")),
    ("subject", Sql("e.subject::text")),
    ("file_path", Sql("e.file_path::text")),
    ("file_size", Sql("e.file_size::bigint")),
    ("source", Sql("'7.1'::text")),
];

/// Which 7.1 rows a mapping reads, and where.
#[derive(Debug, Clone, Copy)]
pub struct Rows71<'a> {
    /// The schema of the 7.1 tables: none on the 7.1 server, the staging
    /// schema in the 9.1 database.
    pub schema: Option<&'a str>,
    /// 9.1's words for the policy action codes, an SQL `text[]`.
    pub action_words: &'a str,
    /// Joins on the 7.1 row `e`, or "".
    pub join: &'a str,
    /// A condition on the 7.1 row (its columns unqualified); none: all.
    pub condition: Option<&'a str>,
}

impl Target91 {
    /// The 9.1 tables `table`'s rows go into: the table's own first, then
    /// those that hang on its rows.
    pub fn of(table: Table71) -> &'static [Target91] {
        match table {
            Table71::PolicyEvent => &[Target91::PolicyEvent, Target91::Recipient],
            Table71::Quarantine => &[Target91::Quarantine],
            Table71::Archive => &[Target91::Archive],
            other => unreachable!("{other} is not a history table"),
        }
    }

    fn source(self) -> Table71 {
        match self {
            Target91::PolicyEvent | Target91::Recipient => Table71::PolicyEvent,
            Target91::Quarantine => Table71::Quarantine,
            Target91::Archive => Table71::Archive,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Target91::PolicyEvent => "public.policy_event",
            Target91::Recipient => "public.policy_event_recipient",
            Target91::Quarantine => "public.quarantine_message",
            Target91::Archive => "public.archive_message",
        }
    }

    /// The primary key: what the downtime skips when a row is there.
    fn key(self) -> &'static str {
        match self {
            Target91::PolicyEvent => "event_id",
            Target91::Recipient => "event_id, ordinal",
            Target91::Quarantine => "quarantine_id",
            Target91::Archive => "archive_id",
        }
    }

    fn columns(self) -> &'static [(&'static str, Value)] {
        match self {
            Target91::PolicyEvent => POLICY_EVENT,
            Target91::Recipient => RECIPIENT,
            Target91::Quarantine => QUARANTINE,
            Target91::Archive => ARCHIVE,
        }
    }

    /// The table and its columns, as `INSERT INTO` and `COPY` name them,
    /// in the order of [`Target91::select`]'s.
    pub fn with_columns(self) -> String {
        let names: Vec<&str> = self.columns().iter().map(|(name, _)| *name).collect();
        format!("{} ({})", self.name(), names.join(", "))
    }

    /// The query of this table's rows made of the 7.1 rows `rows` selects.
    pub fn select(self, rows: &Rows71) -> String {
        let values: Vec<String> = self
            .columns()
            .iter()
            .map(|(_, value)| match value {
                Sql(expression) => expression.to_string(),
                ActionWord => action_word(rows.action_words, "e.action"),
            })
            .collect();
        let schema = rows.schema.map(|s| format!("{s}.")).unwrap_or_default();
        let mut select = format!(
            "SELECT {} FROM {schema}{} e",
            values.join(", "),
            self.source().name()
        );
        let split = (self == Target91::Recipient).then_some(SPLIT_RECIPIENTS);
        for more in [Some(rows.join).filter(|join| !join.is_empty()), split] {
            select.extend(more.map(|more| format!(" {more}")));
        }
        select.extend(
            rows.condition
                .map(|condition| format!(" WHERE {condition}")),
        );
        select
    }
}

/// 9.1's word for the action code `code` (an SQL expression): element
/// `code` + 1 of `words`, NULL where there is none.
fn action_word(words: &str, code: &str) -> String {
    format!("({words})[{code} + 1]")
}

/// The condition on a 7.1 policy event (its columns unqualified) that 9.1
/// has a word for its action code.
pub fn has_action_word(words: &str) -> String {
    format!("{} IS NOT NULL", action_word(words, "action"))
}

/// 9.1's words for the action codes, on the 9.1 server.
const WORDS_ON_91: &str = "compat71.policy_action_names()";

/// `v71.transform_history()`: whatever the staging tables hold into the
/// 9.1 tables, in one call, returning the rows added per table:
///
/// ```sql
/// SELECT * FROM v71.transform_history();
/// ```
///
/// Rows already in 9.1 are left alone (`ON CONFLICT DO NOTHING` on their
/// ids), so a re-run after a partial run neither loses nor duplicates a
/// row; the recipients added are those of the events this call added. A
/// policy event whose action code has no word fails the call before
/// anything is added. Created with the staging tables, dropped with them.
pub fn transform_history_function() -> String {
    let staged = |target: Target91, join: &str| {
        target.select(&Rows71 {
            schema: Some(STAGING_SCHEMA),
            action_words: WORDS_ON_91,
            join,
            condition: None,
        })
    };
    let insert = |target: Target91, join: &str| {
        format!(
            "INSERT INTO {}\n        {}\n        ON CONFLICT ({}) DO NOTHING",
            target.with_columns(),
            staged(target, join),
            target.key()
        )
    };
    format!(
        "CREATE FUNCTION {STAGING_SCHEMA}.transform_history(
    OUT policy_events       bigint,
    OUT recipients          bigint,
    OUT quarantine_messages bigint,
    OUT archive_messages    bigint)
LANGUAGE plpgsql AS $$
DECLARE
    bad record;
BEGIN
    SELECT count(*) AS events, min(action) AS action INTO bad
      FROM {STAGING_SCHEMA}.tb_policy_event
     WHERE {word} IS NULL;
    IF bad.events > 0 THEN
        RAISE EXCEPTION '% 7.1 policy events have an action code 9.1 does not know (for example %): nothing was migrated',
            bad.events, bad.action;
    END IF;

    WITH added AS (
        {events}
        RETURNING event_id
    ), added_recipients AS (
        {recipients}
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM added), (SELECT count(*) FROM added_recipients)
      INTO policy_events, recipients;

    {quarantine};
    GET DIAGNOSTICS quarantine_messages = ROW_COUNT;

    {archive};
    GET DIAGNOSTICS archive_messages = ROW_COUNT;
END
$$;",
        word = action_word(WORDS_ON_91, "action"),
        events = insert(Target91::PolicyEvent, ""),
        recipients = insert(Target91::Recipient, "JOIN added USING (event_id)"),
        quarantine = insert(Target91::Quarantine, ""),
        archive = insert(Target91::Archive, ""),
    )
}
