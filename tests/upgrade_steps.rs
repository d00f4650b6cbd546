//! The upgrade's steps one at a time on model 7.1 servers, each with its
//! undo: what a step does is seen on the real services, files and
//! databases, and undo puts them back.

use imss_fixture::harness::FixtureServer;
use imss_upgrade::config::DbSettings;
use imss_upgrade::context::Context;
use imss_upgrade::pg;
use imss_upgrade::step_journal::{Step, StepJournal};
use imss_upgrade::steps::{self, quiesce};

fn smtp_answers(port: u16) -> bool {
    std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
}

#[tokio::test]
async fn quiesce_stops_the_71_server_and_its_undo_brings_it_back_accepting_mail() {
    let server = FixtureServer::build(&["--history-rows", "100", "--tree-mb", "0"]).unwrap();
    server.start().unwrap();
    let ctx = Context::new(server.root());
    let backup = tempfile::tempdir().unwrap();
    let mut journal = StepJournal::create(backup.path()).unwrap();
    steps::check_mail_accepted(&ctx, "before").unwrap();

    journal.begin(Step::Quiesce).unwrap();
    quiesce::run(&ctx, &mut journal).await.unwrap();
    journal.finish(Step::Quiesce).unwrap();
    assert!(!smtp_answers(server.smtp_port), "the scanner must be down");
    assert!(!steps::source_cluster(&ctx).unwrap().is_running().unwrap());
    let probe = steps::check_mail_accepted(&ctx, "while-down").unwrap_err();
    assert!(format!("{probe:#}").contains("did not accept"), "{probe:#}");

    journal.begin_rollback("test").unwrap();
    let record = journal.record(Step::Quiesce).unwrap().clone();
    journal.begin_undo(Step::Quiesce).unwrap();
    quiesce::undo(&ctx, &record).await.unwrap();
    journal.finish_undo(Step::Quiesce).unwrap();
    assert!(smtp_answers(server.smtp_port));
    let client = pg::connect(&DbSettings::load(&server.root()).unwrap())
        .await
        .unwrap();
    let probes: i64 = client
        .query_one(
            "SELECT count(*) FROM tb_policy_event WHERE message_id LIKE '<imss-upgrade-%'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(
        probes, 2,
        "the probe before and the one after rollback are both logged"
    );
}
