//! The two ways 7.1 history reaches 9.1 give the same rows: the downtime's
//! (the rows copied into the staging schema of the 9.1 database and mapped
//! there by `v71.transform_history()`) and the background transfer's (each
//! batch mapped on the 7.1 server itself and copied into the 9.1 tables).
//! Both are built from one mapping (`migration::history_mapping`), but they
//! run as different statements, on PostgreSQL 15 and 10, with the action
//! words from a function on one and a literal on the other.
//! One 7.1 database (PostgreSQL 10, with `standard_conforming_strings` off
//! as a 7.1 server may have it) holding what its schema allows at the
//! edges: every action code 9.1 has a word for and codes at both ends of
//! `smallint` it has none for, NULLs where 7.1 allows them, the extremes of
//! 7.1's integers and timestamps, recipients texts a split could get wrong,
//! text in many scripts, control characters, quotes and backslashes. Both
//! ways run into two databases of one PostgreSQL 15 server, which are then
//! compared row for row; each is also set against 7.1 by the oracle
//! (`imss_fixture::oracle`), which maps 7.1's rows with SQL of its own.

use chrono::NaiveDateTime;
use imss_fixture::harness::oracle::{History71, HistoryOracle, Part, Piece};
use imss_fixture::harness::{self, PgVersion, TestServer};
use imss_upgrade::migration::copy::copy_selection_to_staging;
use imss_upgrade::migration::{schema, transfer, transform};
use imss_upgrade::system::pg;
use tokio_postgres::Client;

/// Policy events: id, time, recipients, subject, rule id, action, size.
type Event = (i32, &'static str, String, String, Option<i32>, i16, i32);

/// Action codes 9.1 has no word for, at both ends of 7.1's `smallint`
/// and just past the words.
const UNKNOWN_ACTIONS: [i16; 4] = [i16::MIN, -1, 6, i16::MAX];

/// 7.1 timestamps at the edges (all before the test's cutoff, so all the
/// transfer's): PostgreSQL's first, the last before year 1, the epoch, a
/// leap day's last microsecond, the half second before a leap second, a
/// wall-clock time a daylight-saving change skips in Europe, the last
/// microsecond before the cutoff's year, minus infinity.
const TIMES: [&str; 8] = [
    "4713-01-01 00:00:00 BC",
    "0001-12-31 23:59:59.999999 BC",
    "1970-01-01 00:00:00",
    "2000-02-29 23:59:59.999999",
    "2016-12-31 23:59:59.5",
    "2021-03-28 02:30:00",
    "2199-12-31 23:59:59.999999",
    "-infinity",
];

/// Text 7.1 may hold: scripts, combining marks, joiners, right to left,
/// a byte order mark, controls, quotes and backslashes that end a literal
/// or escape in one, and SQL.
fn odd_texts() -> Vec<String> {
    vec![
        String::new(),
        "件名 \"quoted\" \\ back".into(),
        "Ωmega ≈ ç √ ∫ µ ≤ ≥ ÷ — ‘single’ “double”".into(),
        "e\u{301}te\u{301} (combining), ﬁ ligature, ß".into(),
        "family 👨\u{200d}👩\u{200d}👧, flag 🇩🇪, 𝄞 outside the BMP".into(),
        "مرحبا بالعالم, שלום".into(),
        "\u{feff}byte order mark".into(),
        "tab\there, new\nline, return\r, bell\u{7}, escape\u{1b}[0m".into(),
        r"back\slash, 'single', E'\x41', $$dollar$$, \\N, \N".into(),
        "'); DROP TABLE tb_archive; --".into(),
        " leading and trailing blanks ".into(),
        "ü".repeat(998),
    ]
}

/// Recipients texts: empty, empty fields, blanks, commas only, many.
fn recipients_texts() -> Vec<String> {
    let many: Vec<String> = (0..300).map(|i| format!("user{i}@example.com")).collect();
    vec![
        String::new(),
        ",".into(),
        ",,".into(),
        "only@example.com".into(),
        "trailing@example.com,".into(),
        ",leading@example.com".into(),
        "x@example.com,,y@example.com".into(),
        " spaced@example.com , other@example.com ".into(),
        "用户@例子.公司,😀@example.test,\"quoted, comma\"@example.com".into(),
        "tab\t@example.com,new\nline@example.com".into(),
        r"back\slash@example.com,'quote'@example.com".into(),
        many.join(","),
    ]
}

/// The 7.1 policy events: every known action code with every odd text,
/// time and recipients text in turn; the integer extremes; the unknown
/// codes (ids from 1001).
fn events() -> Vec<Event> {
    let texts = odd_texts();
    let recipients = recipients_texts();
    let rule_ids = [None, Some(i32::MIN), Some(0), Some(7), Some(i32::MAX)];
    let sizes = [0, -1, i32::MIN, i32::MAX, 1234];
    let mut events = Vec::new();
    for i in 0..36usize {
        events.push((
            i as i32 + 1,
            TIMES[i % TIMES.len()],
            recipients[i % recipients.len()].clone(),
            texts[i % texts.len()].clone(),
            rule_ids[i % rule_ids.len()],
            (i % 6) as i16,
            sizes[i % sizes.len()],
        ));
    }
    for (n, &action) in UNKNOWN_ACTIONS.iter().enumerate() {
        events.push((
            1001 + n as i32,
            TIMES[n % TIMES.len()],
            recipients[n + 3].clone(),
            texts[n + 1].clone(),
            Some(1),
            action,
            1,
        ));
    }
    events
}

fn unknown_event_ids() -> Vec<i64> {
    (0..UNKNOWN_ACTIONS.len() as i64)
        .map(|n| 1001 + n)
        .collect()
}

/// Loads the 7.1 schema and the edge rows into `c71`.
async fn load_71(c71: &Client) {
    c71.batch_execute(imss_fixture::model::history::SCHEMA_SQL)
        .await
        .unwrap();
    let texts = odd_texts();
    for (id, time, recipients, subject, rule_id, action, size) in events() {
        let i = id as usize;
        c71.execute(
            "INSERT INTO tb_policy_event (event_id, event_time, message_id, scanner_host, sender, \
                                          recipients, subject, rule_id, rule_name, action, reason, \
                                          message_size) \
             VALUES ($1, $2::text::timestamp, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &id,
                &time,
                &cut(
                    &format!("<{id}.{}@example.net>", texts[(i + 5) % texts.len()]),
                    255,
                ),
                &cut(&texts[(i + 2) % texts.len()], 64),
                &cut(&texts[(i + 6) % texts.len()], 320),
                &recipients,
                &subject,
                &rule_id,
                &cut(&texts[(i + 3) % texts.len()], 255),
                &action,
                &cut(&texts[(i + 4) % texts.len()], 255),
                &size,
            ],
        )
        .await
        .unwrap();
    }
    let event_ids = [None, Some(1), Some(i32::MAX), Some(i32::MIN), Some(1001)];
    let sizes = [0, -1, i32::MIN, i32::MAX];
    for i in 0..12usize {
        let (id, event_id, time) = (
            i as i32 + 1,
            event_ids[i % event_ids.len()],
            TIMES[i % TIMES.len()],
        );
        let area = cut(&texts[(i + 1) % texts.len()], 64);
        let (sender, recipient) = (
            cut(&texts[(i + 3) % texts.len()], 320),
            cut(&texts[(i + 4) % texts.len()], 320),
        );
        let file_path = cut(
            &format!("/var/imss/area {}/{i}.eml", texts[i % texts.len()]),
            1024,
        );
        c71.execute(
            "INSERT INTO tb_quarantine (quarantine_id, event_id, quarantine_time, area_name, \
                                        message_id, sender, recipient, subject, reason, file_path, \
                                        file_size, released) \
             VALUES ($1, $2, $3::text::timestamp, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            &[
                &id,
                &event_id,
                &time,
                &area,
                &cut(&texts[(i + 2) % texts.len()], 255),
                &sender,
                &recipient,
                &texts[(i + 5) % texts.len()],
                &cut(&texts[(i + 6) % texts.len()], 255),
                &file_path,
                &sizes[i % sizes.len()],
                &(i % 3 == 0),
            ],
        )
        .await
        .unwrap();
        c71.execute(
            "INSERT INTO tb_archive (archive_id, event_id, archive_time, area_name, message_id, \
                                     sender, recipient, subject, file_path, file_size) \
             VALUES ($1, $2, $3::text::timestamp, $4, $5, $6, $7, $8, $9, $10)",
            &[
                &id,
                &event_ids[(i + 1) % event_ids.len()],
                &TIMES[(i + 3) % TIMES.len()],
                &area,
                &cut(&texts[(i + 7) % texts.len()], 255),
                &recipient,
                &sender,
                &texts[(i + 8) % texts.len()],
                &file_path,
                &sizes[(i + 1) % sizes.len()],
            ],
        )
        .await
        .unwrap();
    }
    c71.batch_execute(imss_fixture::model::history::INDEXES_SQL)
        .await
        .unwrap();
}

/// The first `chars` characters of `text`: what a 7.1 column that wide holds.
fn cut(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

/// A new database `name` on `server`, connected.
async fn database(server: &TestServer, name: &str) -> Client {
    pg::connect(&server.settings("postgres"))
        .await
        .unwrap()
        .batch_execute(&format!(
            "CREATE DATABASE {name} ENCODING 'UTF8' TEMPLATE template0"
        ))
        .await
        .unwrap();
    pg::connect(&server.settings(name)).await.unwrap()
}

/// The rows of a 9.1 history table, each as JSON, by key.
async fn rows_91(client: &Client, table: &str, key: &str) -> Vec<String> {
    client
        .query(
            &format!("SELECT row_to_json(t)::text FROM public.{table} t ORDER BY {key}"),
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect()
}

/// The 9.1 history tables with their keys.
const TABLES_91: [(&str, &str); 4] = [
    ("policy_event", "event_id"),
    ("policy_event_recipient", "event_id, ordinal"),
    ("quarantine_message", "quarantine_id"),
    ("archive_message", "archive_id"),
];

#[tokio::test]
async fn the_downtime_and_the_transfer_map_every_7_1_row_alike() {
    let pg10 = TestServer::start(PgVersion::V10).unwrap();
    let c71 = database(&pg10, "imss").await;
    load_71(&c71).await;
    c71.batch_execute("ALTER DATABASE imss SET standard_conforming_strings = off")
        .await
        .unwrap();
    drop(c71);
    let c71 = pg::connect(&pg10.settings("imss")).await.unwrap();
    let history = History71::capture(&harness::pg_address(&pg10.settings("imss")))
        .await
        .unwrap();
    // Later than every row: all of them are the transfer's.
    let cutoff = NaiveDateTime::parse_from_str("2200-01-01 00:00:00", "%Y-%m-%d %H:%M:%S").unwrap();

    let pg15 = TestServer::start(PgVersion::V15).unwrap();

    // The downtime's way: every row into staging, then the transform.
    let downtime = database(&pg15, "downtime").await;
    schema::load_tables(&downtime).await.unwrap();
    schema::create_staging(&downtime).await.unwrap();
    for selection in transfer::older_history(cutoff) {
        copy_selection_to_staging(&c71, &downtime, &selection)
            .await
            .unwrap();
    }
    let refused = transform::transform_history(&downtime)
        .await
        .expect_err("the transform took action codes 9.1 has no word for");
    assert!(
        format!("{refused:#}").contains(&format!(
            "{} 7.1 policy events have an action code 9.1 does not know (for example {})",
            UNKNOWN_ACTIONS.len(),
            i16::MIN
        )),
        "{refused:#}"
    );
    for (table, key) in TABLES_91 {
        assert_eq!(rows_91(&downtime, table, key).await, Vec::<String>::new());
    }
    downtime
        .execute(
            "DELETE FROM v71.tb_policy_event WHERE event_id = ANY($1)",
            &[&unknown_event_ids()
                .iter()
                .map(|&id| id as i32)
                .collect::<Vec<i32>>()],
        )
        .await
        .unwrap();
    let added = transform::transform_history(&downtime).await.unwrap();
    assert_eq!(added.policy_events, 36);
    assert_eq!(added.quarantine_messages, 12);
    assert_eq!(added.archive_messages, 12);
    schema::create_indexes(&downtime).await.unwrap();

    // The transfer's way: batches of a few ids, mapped on 7.1.
    let moved = database(&pg15, "transfer").await;
    schema::load_schema(&moved).await.unwrap();
    let (plan, mut cursors) = transfer::prepare(&c71, &moved, cutoff).await.unwrap();
    for cursor in &mut cursors {
        while !cursor.done {
            *cursor = transfer::move_batch(&c71, &moved, cursor, &plan, 5)
                .await
                .unwrap()
                .cursor;
        }
    }
    assert_eq!(
        transfer::rejected_ids(
            &moved,
            imss_upgrade::migration::tables::Table71::PolicyEvent
        )
        .await
        .unwrap(),
        unknown_event_ids()
    );
    transfer::verify_transferred(&c71, &moved, &cursors, cutoff)
        .await
        .unwrap();

    for client in [&downtime, &moved] {
        client.batch_execute("SET TimeZone = 'UTC'").await.unwrap();
    }
    for (table, key) in TABLES_91 {
        let (by_downtime, by_transfer) = (
            rows_91(&downtime, table, key).await,
            rows_91(&moved, table, key).await,
        );
        assert!(!by_downtime.is_empty(), "no rows in {table}");
        let differing: Vec<_> = by_downtime
            .iter()
            .zip(&by_transfer)
            .filter(|(a, b)| a != b)
            .take(3)
            .collect();
        assert!(
            differing.is_empty() && by_downtime.len() == by_transfer.len(),
            "{table}: the downtime made {} rows, the transfer {}; differing (downtime, transfer): \
             {differing:#?}",
            by_downtime.len(),
            by_transfer.len()
        );
    }
    for name in ["downtime", "transfer"] {
        HistoryOracle::load(&harness::pg_address(&pg15.settings(name)), &history)
            .await
            .unwrap()
            .check(&[Piece::standard(Part::All)])
            .await
            .unwrap_or_else(|err| panic!("the {name}'s rows are not 7.1's: {err:#}"));
    }
}
