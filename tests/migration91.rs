//! The 7.1 → 9.1 database migration on real servers: a model 7.1 server
//! (PostgreSQL 10) and a 9.1 database (PostgreSQL 15). The configuration
//! goes through `imsx_config.dat`, the last 24 hours through the staging
//! schema. Counts come from the 7.1 server itself; whether 9.1 holds the
//! history 7.1 had, each row once, is judged by the oracle
//! (`imss_fixture::harness::oracle`), which maps 7.1's rows with SQL of its own,
//! and the 7.1 columns are read from the live 7.1 server's catalog. The
//! product's checksums are exercised, not trusted.

use std::os::unix::fs::PermissionsExt;

use chrono::{Duration, NaiveDateTime, Utc};
use imss_fixture::harness::oracle::{self, Config71, History71, HistoryOracle, Part, Piece};
use imss_fixture::harness::{self, FixtureServer, PgVersion, TestServer};
use imss_upgrade::files::imss_ini::ProductInfo;
use imss_upgrade::files::odbc_ini::DbSettings;
use imss_upgrade::migration;
use imss_upgrade::migration::config_export;
use imss_upgrade::migration::selection::{Filter, Selection, config_selections, window_selections};
use imss_upgrade::migration::tables::Table71;
use imss_upgrade::migration::transform::ID_GAP;
use imss_upgrade::migration::verify::ChecksumMismatch;
use imss_upgrade::system::pg;
use tokio_postgres::Client;

/// Recipients texts that a plain split-and-join could get wrong.
const AWKWARD_RECIPIENTS: &[&str] = &[
    "first@example.com,second@example.com,third@example.com",
    "",
    "x@example.com,,y@example.com,",
    " spaced@example.com , other@example.com",
];

/// The id of a 7.1 policy event older than the window, above every other
/// 7.1 id: it is not migrated during the downtime, but 9.1 ids must still
/// start above it.
const OLD_HIGH_EVENT_ID: i32 = 900_000;

/// A model 7.1 server and an empty 9.1 database with the 9.1 schema and
/// the staging schema loaded: the tables only, as during the downtime
/// (indexes and the recipients' foreign key come after the bulk load), or
/// the whole schema, as a 9.1 server in use has it.
struct Servers {
    fixture: FixtureServer,
    pg15: TestServer,
    c71: Client,
    c91: Client,
    cutoff: NaiveDateTime,
    /// 7.1's history, as the oracle read it.
    history: History71,
}

async fn servers(whole_schema: bool) -> Servers {
    let fixture =
        FixtureServer::build(&["--history-rows", "5000", "--tree-mb", "0", "--days", "3"]).unwrap();
    fixture.start().unwrap();
    let c71 = pg::connect(&DbSettings::load(&fixture.root()).unwrap())
        .await
        .unwrap();
    let now = Utc::now();
    let recent = (now - Duration::hours(1)).naive_utc();
    for recipients in AWKWARD_RECIPIENTS {
        c71.execute(
            "INSERT INTO tb_policy_event (event_time, message_id, scanner_host, sender, recipients, \
                                          subject, rule_id, rule_name, action, reason, message_size) \
             VALUES ($1, $2, 'imss71', 'awkward@example.net', $3, '件名 \"quoted\" \\ back', 1, \
                     'Rule 01: Spam filter', 0, '', 1234)",
            &[&recent, &format!("<awkward.{}@example.net>", recipients.len()), recipients],
        )
        .await
        .unwrap();
    }
    let old = (now - Duration::days(5)).naive_utc();
    c71.execute(
        "INSERT INTO tb_policy_event (event_id, event_time, message_id, scanner_host, sender, \
                                      recipients, rule_id, action) \
         VALUES ($1, $2, '<old@example.net>', 'imss71', 'old@example.net', 'a@example.com,b@example.com', 1, 0)",
        &[&OLD_HIGH_EVENT_ID, &old],
    )
    .await
    .unwrap();

    let pg15 = TestServer::start(PgVersion::V15).unwrap();
    pg::connect(&pg15.settings("postgres"))
        .await
        .unwrap()
        .batch_execute("CREATE DATABASE imss")
        .await
        .unwrap();
    let c91 = pg::connect(&pg15.settings("imss")).await.unwrap();
    if whole_schema {
        migration::schema::load_schema(&c91).await.unwrap();
    } else {
        migration::schema::load_tables(&c91).await.unwrap();
    }
    migration::schema::create_staging(&c91).await.unwrap();
    let history = History71::capture(&harness::pg_address(
        &DbSettings::load(&fixture.root()).unwrap(),
    ))
    .await
    .unwrap();
    Servers {
        fixture,
        pg15,
        c71,
        c91,
        cutoff: (now - Duration::hours(24)).naive_utc(),
        history,
    }
}

/// What the oracle says of the rows 9.1 holds from 7.1: exactly `parts`
/// of 7.1's history, mapped, or which rows differ.
async fn oracle_check(s: &Servers, parts: &[Part]) -> anyhow::Result<()> {
    let pieces: Vec<Piece> = parts.iter().map(|&part| Piece::standard(part)).collect();
    HistoryOracle::load(&harness::pg_address(&s.pg15.settings("imss")), &s.history)
        .await?
        .check(&pieces)
        .await
}

/// 7.1's configuration now, as the oracle reads it.
async fn capture_config_71(s: &Servers) -> Config71 {
    Config71::capture(&harness::pg_address(
        &DbSettings::load(&s.fixture.root()).unwrap(),
    ))
    .await
    .unwrap()
}

/// Checks with the oracle that 9.1 holds exactly the configuration `config`.
async fn assert_91_has_config(s: &Servers, config: &Config71) {
    if let Err(err) = config
        .check_in_91(&harness::pg_address(&s.pg15.settings("imss")))
        .await
    {
        panic!("{err:#}");
    }
}

/// Checks with the oracle that 9.1 holds exactly `parts` of 7.1's history.
async fn assert_91_holds(s: &Servers, parts: &[Part]) {
    if let Err(err) = oracle_check(s, parts).await {
        panic!("{err:#}");
    }
}

/// Rows of `table` at or after `cutoff`, counted on 7.1 without the code
/// under test.
async fn count_71(c71: &Client, table: &str, time_column: &str, cutoff: NaiveDateTime) -> u64 {
    let row = c71
        .query_one(
            &format!("SELECT count(*) FROM {table} WHERE {time_column} >= $1"),
            &[&cutoff],
        )
        .await
        .unwrap();
    row.get::<_, i64>(0) as u64
}

/// Copies the window into staging and transforms it.
async fn migrate_window(s: &Servers) -> migration::transform::HistoryCounts {
    migration::copy::copy_window_to_staging(&s.c71, &s.c91, s.cutoff)
        .await
        .unwrap();
    migration::transform::transform_history(&s.c91)
        .await
        .unwrap()
}

async fn export_config(s: &Servers) -> config_export::ConfigExport {
    let product = ProductInfo::load(&s.fixture.root()).unwrap();
    config_export::export(&s.c71, &product).await.unwrap()
}

async fn scalar_i64(client: &Client, sql: &str) -> i64 {
    client.query_one(sql, &[]).await.unwrap().get(0)
}

#[tokio::test]
async fn the_configuration_and_last_24_hours_arrive_with_matching_counts_and_checksums() {
    let mut s = servers(false).await;

    // Configuration: export, file, read back, import.
    let export = export_config(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imsx_config.dat");
    config_export::write(&path, &export).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the export holds password hashes");
    let read_back = config_export::read(&path).unwrap();
    assert_eq!(read_back, export);
    assert_eq!(read_back.exported_from.build, 1808);
    let imported = config_export::import(&mut s.c91, &read_back).await.unwrap();
    assert_eq!(
        imported.typed_settings + imported.legacy_settings,
        (export.global_settings.len() + export.euq_settings.len()) as u64
    );
    assert_eq!(imported.policy_rules, export.policy_rules.len() as u64);
    assert_eq!(imported.admin_accounts, export.admin_accounts.len() as u64);
    assert_eq!(
        imported.component_versions,
        scalar_i64(&s.c71, "SELECT count(*) FROM tb_component_version").await as u64
    );
    assert_91_has_config(&s, &capture_config_71(&s).await).await;

    // History: the last 24 hours.
    let window = migration::copy::copy_window_to_staging(&s.c71, &s.c91, s.cutoff)
        .await
        .unwrap();
    let added = migration::transform::transform_history(&s.c91)
        .await
        .unwrap();
    let events = count_71(&s.c71, "tb_policy_event", "event_time", s.cutoff).await;
    let quarantine = count_71(&s.c71, "tb_quarantine", "quarantine_time", s.cutoff).await;
    let archive = count_71(&s.c71, "tb_archive", "archive_time", s.cutoff).await;
    assert!(
        events > 1000 && quarantine > 0 && archive > 0,
        "{events} {quarantine} {archive}"
    );
    assert!(
        events < 5000,
        "the window must not hold all {events} events"
    );
    assert_eq!(
        (window.policy_events, window.quarantine, window.archive),
        (events, quarantine, archive)
    );
    assert_eq!(
        (
            added.policy_events,
            added.quarantine_messages,
            added.archive_messages
        ),
        (events, quarantine, archive)
    );
    // Recipients counted here, not by the transform's own expression: the
    // 7.1 text split on commas, an empty text holding none.
    let recipients: u64 = s
        .c71
        .query(
            "SELECT recipients FROM tb_policy_event WHERE event_time >= $1",
            &[&s.cutoff],
        )
        .await
        .unwrap()
        .iter()
        .map(|row| match row.get::<_, Option<String>>(0) {
            Some(text) if !text.is_empty() => text.split(',').count() as u64,
            _ => 0,
        })
        .sum();
    assert_eq!(added.recipients, recipients);
    assert_eq!(
        scalar_i64(&s.c91, "SELECT count(*) FROM policy_event_recipient").await as u64,
        recipients,
        "the 9.1 table holds every recipient"
    );
    // The indexes and the recipients' foreign key after the bulk load.
    migration::schema::create_indexes(&s.c91).await.unwrap();
    // 9.1 holds the window, every row once, as the oracle maps it.
    assert_91_holds(&s, &[Part::Window(s.cutoff)]).await;

    // The product's own comparison agrees, row for row, on the window and
    // on the configuration.
    let mut selections = window_selections(s.cutoff);
    selections.extend(config_selections());
    let verified = migration::verify::verify(&s.c71, &s.c91, &selections)
        .await
        .unwrap();
    assert_eq!(verified.len(), 10);
    assert_eq!(verified[0].checksum.rows as u64, events);
    let staged = migration::verify::checksum_staging(&s.c91, &verified[0].selection)
        .await
        .unwrap();
    assert_eq!(staged, verified[0].checksum);

    // Message files keep their paths; versions and EUQ state are the real ones.
    let paths_71: Vec<String> = s
        .c71
        .query(
            "SELECT file_path FROM tb_quarantine WHERE quarantine_time >= $1 ORDER BY quarantine_id",
            &[&s.cutoff],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let paths_91: Vec<String> = s
        .c91
        .query(
            "SELECT file_path FROM quarantine_message ORDER BY quarantine_id",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(paths_91, paths_71);
    let versions_71: Vec<(String, String)> = s
        .c71
        .query(
            "SELECT component, version FROM tb_component_version ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    let versions_91: Vec<(String, String)> = s
        .c91
        .query(
            "SELECT component, version FROM component_version ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect();
    assert_eq!(versions_91, versions_71);
    let euq_71: String = s
        .c71
        .query_one(
            "SELECT value FROM tb_euq_setting WHERE name = 'enable_euq'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let euq_91: bool = s
        .c91
        .query_one("SELECT enabled FROM euq_settings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(euq_91, euq_71 == "1");
    let relay: Vec<String> = s
        .c91
        .query_one("SELECT relay_domains FROM smtp_settings", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(relay, ["example.com", "example.co.jp"]);

    migration::schema::drop_staging(&s.c91).await.unwrap();
    assert!(!migration::schema::staging_exists(&s.c91).await.unwrap());
}

#[tokio::test]
async fn rerunning_the_history_transform_neither_loses_nor_duplicates() {
    let s = servers(true).await;
    let first = migrate_window(&s).await;
    assert!(first.policy_events > 0);
    assert_91_holds(&s, &[Part::Window(s.cutoff)]).await;

    let again = migration::transform::transform_history(&s.c91)
        .await
        .unwrap();
    assert_eq!(again, migration::transform::HistoryCounts::default());
    assert_91_holds(&s, &[Part::Window(s.cutoff)]).await;

    // A run that stopped half-way: part of the rows never arrived.
    s.c91
        .batch_execute(
            "DELETE FROM policy_event WHERE event_id % 2 = 0; \
             DELETE FROM quarantine_message WHERE quarantine_id % 3 = 0; \
             DELETE FROM archive_message WHERE archive_id % 2 = 1",
        )
        .await
        .unwrap();
    let missing_events =
        first.policy_events as i64 - scalar_i64(&s.c91, "SELECT count(*) FROM policy_event").await;
    let resumed = migration::transform::transform_history(&s.c91)
        .await
        .unwrap();
    assert_eq!(resumed.policy_events as i64, missing_events);
    assert_91_holds(&s, &[Part::Window(s.cutoff)]).await;
    // The product's own comparison agrees.
    migration::verify::verify(&s.c71, &s.c91, &window_selections(s.cutoff))
        .await
        .unwrap();
}

#[tokio::test]
async fn new_9_1_rows_get_ids_above_every_7_1_id_including_rows_not_yet_migrated() {
    let s = servers(true).await;
    migrate_window(&s).await;
    let floors = migration::transform::source_id_floors(&s.c71)
        .await
        .unwrap();
    assert!(
        floors.policy_event >= i64::from(OLD_HIGH_EVENT_ID),
        "{floors:?}"
    );
    let migrated_max = scalar_i64(&s.c91, "SELECT max(event_id) FROM policy_event").await;
    assert!(
        migrated_max < i64::from(OLD_HIGH_EVENT_ID),
        "the old event is outside the window"
    );

    let next = migration::transform::set_id_floors(&s.c91, &floors)
        .await
        .unwrap();
    assert_eq!(next.len(), 3);
    let new_event: i64 = s
        .c91
        .query_one(
            "INSERT INTO policy_event (event_time, message_id, scanner_host, sender, action) \
             VALUES (now(), '<new@9.1>', 'imss91', 'n@example.com', 'pass') RETURNING event_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        new_event > floors.policy_event + ID_GAP,
        "{new_event} vs {floors:?}"
    );
    let new_quarantine: i64 = s
        .c91
        .query_one(
            "INSERT INTO quarantine_message (quarantined_at, message_id, sender, recipient, file_path) \
             VALUES (now(), '<new@9.1>', 'n@example.com', 'r@example.com', '/var/imss/quarantine/new.eml') \
             RETURNING quarantine_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(
        new_quarantine > floors.quarantine,
        "{new_quarantine} vs {floors:?}"
    );
    let new_archive: i64 = s
        .c91
        .query_one(
            "INSERT INTO archive_message (archived_at, message_id, sender, recipient, file_path) \
             VALUES (now(), '<new@9.1>', 'n@example.com', 'r@example.com', '/var/imss/archive/new.eml') \
             RETURNING archive_id",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(new_archive > floors.archive, "{new_archive} vs {floors:?}");

    // The older 7.1 rows still fit in below, and a new row is not counted
    // as migrated.
    let older = Selection::new(Table71::PolicyEvent, Filter::Before(s.cutoff)).unwrap();
    migration::schema::clear_staging_history(&s.c91)
        .await
        .unwrap();
    migration::copy::copy_selection_to_staging(&s.c71, &s.c91, &older)
        .await
        .unwrap();
    let added = migration::transform::transform_history(&s.c91)
        .await
        .unwrap();
    assert!(added.policy_events > 0);
    // Every 7.1 event, once; the window's quarantine and archive records.
    let every_event = Piece::standard(Part::All).only(&["tb_policy_event"]);
    let window_records =
        Piece::standard(Part::Window(s.cutoff)).only(&["tb_quarantine", "tb_archive"]);
    let holds = HistoryOracle::load(&harness::pg_address(&s.pg15.settings("imss")), &s.history)
        .await
        .unwrap()
        .check(&[every_event, window_records])
        .await;
    if let Err(err) = holds {
        panic!("{err:#}");
    }

    // Setting the floors again with lower maxima never lowers an id.
    let lower =
        migration::transform::set_id_floors(&s.c91, &migration::transform::IdFloors::default())
            .await
            .unwrap();
    let event_next = lower.iter().find(|n| n.table == "policy_event").unwrap();
    assert!(event_next.next_id > new_event, "{lower:?}");
}

#[tokio::test]
async fn recipients_split_in_order_and_the_checksum_sees_their_order() {
    let s = servers(true).await;
    migrate_window(&s).await;
    let rows = s
        .c91
        .query(
            "SELECT r.recipient FROM policy_event_recipient r JOIN policy_event e USING (event_id) \
              WHERE e.message_id = $1 ORDER BY r.ordinal",
            &[&format!(
                "<awkward.{}@example.net>",
                AWKWARD_RECIPIENTS[2].len()
            )],
        )
        .await
        .unwrap();
    let split: Vec<String> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(split, ["x@example.com", "", "y@example.com", ""]);
    for recipients in AWKWARD_RECIPIENTS {
        let rejoined: String = s
            .c91
            .query_one(
                "SELECT recipients FROM compat71.tb_policy_event WHERE message_id = $1",
                &[&format!("<awkward.{}@example.net>", recipients.len())],
            )
            .await
            .unwrap()
            .get(0);
        assert_eq!(&rejoined, recipients);
    }
    assert_91_holds(&s, &[Part::Window(s.cutoff)]).await;
    let selection = Selection::new(Table71::PolicyEvent, Filter::Since(s.cutoff)).unwrap();
    migration::verify::verify(&s.c71, &s.c91, &[selection])
        .await
        .unwrap();

    // The same recipients in another order are another row.
    s.c91
        .execute(
            "UPDATE policy_event_recipient r SET ordinal = r.ordinal + 10 \
               FROM policy_event e \
              WHERE e.event_id = r.event_id AND e.message_id = $1",
            &[&format!(
                "<awkward.{}@example.net>",
                AWKWARD_RECIPIENTS[0].len()
            )],
        )
        .await
        .unwrap();
    s.c91
        .batch_execute(
            "UPDATE policy_event_recipient SET ordinal = 14 - ordinal WHERE ordinal > 10",
        )
        .await
        .unwrap();
    let err = migration::verify::verify(&s.c71, &s.c91, &[selection])
        .await
        .unwrap_err();
    let mismatch = err
        .downcast_ref::<ChecksumMismatch>()
        .unwrap_or_else(|| panic!("{err:#}"));
    assert_eq!(mismatch.on_71.rows, mismatch.on_91.rows);
    assert_ne!(mismatch.on_71.sum, mismatch.on_91.sum);
    assert!(err.to_string().contains("tb_policy_event"), "{err}");
    let oracle = oracle_check(&s, &[Part::Window(s.cutoff)])
        .await
        .expect_err("the oracle misses recipients in another order");
    assert!(
        format!("{oracle:#}").contains("policy_event_recipient: 2 of 7.1's rows"),
        "{oracle:#}"
    );
}

#[tokio::test]
async fn a_tampered_newer_or_foreign_export_file_is_refused_naming_the_file() {
    let s = servers(true).await;
    let export = export_config(&s).await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("imsx_config.dat");
    config_export::write(&path, &export).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();

    let refused = |contents: String| {
        std::fs::write(&path, contents).unwrap();
        format!("{:#}", config_export::read(&path).unwrap_err())
    };
    let tampered = refused(text.replace("\"sha256$", "\"md5$"));
    assert!(tampered.contains(&path.display().to_string()), "{tampered}");
    assert!(tampered.contains("changed or damaged"), "{tampered}");

    let newer = refused(text.replace("\"version\": 1,", "\"version\": 2,"));
    assert!(newer.contains("made by a newer imss-upgrade"), "{newer}");
    assert!(newer.contains(&path.display().to_string()), "{newer}");

    let foreign = refused(text.replace("\"imsx-config\"", "\"something-else\""));
    assert!(
        foreign.contains("not an imss-upgrade configuration export"),
        "{foreign}"
    );

    let cut = refused(text[..text.len() / 2].to_string());
    assert!(cut.contains("not JSON"), "{cut}");

    let extra = refused(text.replacen('{', "{\n  \"surprise\": true,", 1));
    assert!(extra.contains("surprise"), "{extra}");
}

#[tokio::test]
async fn importing_into_a_server_that_has_settings_replaces_them_in_one_transaction() {
    let mut s = servers(true).await;
    let export = export_config(&s).await;
    config_export::import(&mut s.c91, &export).await.unwrap();

    // 9.1 is used for a while: settings change, an account is added.
    s.c91
        .batch_execute(
            "UPDATE smtp_settings SET max_recipients = 7, relay_domains = '{changed.example}'; \
             UPDATE euq_settings SET enabled = NOT enabled; \
             INSERT INTO admin_account (login_name, password_hash) VALUES ('new91', 'x'); \
             DELETE FROM policy_rule WHERE rule_id = 3",
        )
        .await
        .unwrap();
    let changed = migration::verify::verify(&s.c71, &s.c91, &config_selections()).await;
    assert!(changed.is_err(), "the changes must show in the checksums");
    let changed_text: String = s
        .c91
        .query_one(
            "SELECT value FROM compat71.tb_global_setting WHERE section = 'smtp' AND name = 'MaxRecipients'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(changed_text, "7");

    // The same export again: exactly the export's settings, nothing else.
    let counts = config_export::import(&mut s.c91, &export).await.unwrap();
    assert_eq!(counts.admin_accounts, export.admin_accounts.len() as u64);
    let config_71 = capture_config_71(&s).await;
    assert_91_has_config(&s, &config_71).await;

    // An export with a setting 9.1 cannot store fails as a whole, naming it.
    s.c71
        .batch_execute("UPDATE tb_euq_setting SET value = 'eighty' WHERE name = 'console_port'")
        .await
        .unwrap();
    let bad = export_config(&s).await;
    let err = format!(
        "{:#}",
        config_export::import(&mut s.c91, &bad).await.unwrap_err()
    );
    assert!(err.contains("console_port (EUQ)"), "{err}");
    assert!(err.contains("'eighty'"), "{err}");
    // A failed import leaves the settings as they were.
    assert_91_has_config(&s, &config_71).await;

    // Spellings 7.1 also accepted stay as written, and mean the same.
    s.c71
        .batch_execute(
            "UPDATE tb_euq_setting SET value = '8447' WHERE name = 'console_port'; \
             UPDATE tb_euq_setting SET value = 'yes' WHERE name = 'digest_enabled'; \
             UPDATE tb_global_setting SET value = ' 120' WHERE section = 'smtp' AND name = 'MaxRecipients'",
        )
        .await
        .unwrap();
    let spelled = export_config(&s).await;
    config_export::import(&mut s.c91, &spelled).await.unwrap();
    let typed: (bool, i32) = {
        let row = s
            .c91
            .query_one(
                "SELECT e.digest_enabled, m.max_recipients FROM euq_settings e, smtp_settings m",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!(typed, (true, 120));
    assert_91_has_config(&s, &capture_config_71(&s).await).await;
    // An import of a fresh server (no staging schema) leaves none behind.
    migration::schema::drop_staging(&s.c91).await.unwrap();
    config_export::import(&mut s.c91, &spelled).await.unwrap();
    assert!(!migration::schema::staging_exists(&s.c91).await.unwrap());
}

/// The columns of `table` in `schema`, in order, with their types, from
/// the catalog `client` is connected to.
async fn catalog_columns(client: &Client, schema: &str, table: &str) -> Vec<String> {
    client
        .query(
            "SELECT column_name || ' ' || data_type \
                    || coalesce('(' || character_maximum_length || ')', '') \
               FROM information_schema.columns \
              WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
            &[&schema, &table],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// The column lists the migration copies and checksums, its staging tables
/// and the `compat71` views are 7.1's, as the live 7.1 server the model
/// builds (from `sql/71`) has them in its catalog: every table it has,
/// every column, in order, with its type.
#[tokio::test]
async fn the_copy_and_checksum_column_lists_are_the_7_1_columns() {
    let fixture = FixtureServer::build(&["--history-rows", "10", "--tree-mb", "0"]).unwrap();
    fixture.start().unwrap();
    let live = oracle::connect(&harness::pg_address(
        &DbSettings::load(&fixture.root()).unwrap(),
    ))
    .await
    .unwrap();
    let pg15 = TestServer::start(PgVersion::V15).unwrap();
    let client = pg::connect(&pg15.settings("postgres")).await.unwrap();
    migration::schema::load_schema(&client).await.unwrap();
    migration::schema::create_staging(&client).await.unwrap();

    let tables_71: Vec<String> = live
        .query(
            "SELECT table_name::text FROM information_schema.tables \
              WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY 1",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut covered: Vec<String> = Table71::CONFIG
        .iter()
        .chain(Table71::HISTORY.iter())
        .map(|t| t.name().to_string())
        .collect();
    covered.sort();
    assert_eq!(covered, tables_71, "every 7.1 table is migrated");
    for table in Table71::CONFIG.iter().chain(Table71::HISTORY.iter()) {
        let columns_71 = catalog_columns(&live, "public", table.name()).await;
        let names_71: Vec<&str> = columns_71
            .iter()
            .map(|c| c.split(' ').next().unwrap())
            .collect();
        assert_eq!(table.column_list(), names_71.join(", "), "{table}");
        // The staging table is 7.1's, types too.
        assert_eq!(
            catalog_columns(&client, "v71", table.name()).await,
            columns_71,
            "v71.{table}"
        );
        // The compat71 view starts with the same columns, in the same order.
        let view = catalog_columns(&client, "compat71", table.name()).await;
        let view_names: Vec<&str> = view.iter().map(|c| c.split(' ').next().unwrap()).collect();
        assert_eq!(
            view_names[..names_71.len().min(view_names.len())],
            names_71[..],
            "compat71.{table}"
        );
    }
}
