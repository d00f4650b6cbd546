//! The whole upgrade and its rollback under a root whose path holds what a
//! shell would read: a blank, a `$`, double quotes and backquotes. No path
//! under `--root` is ever handed to `/bin/sh` (`pg_ctl start` would: it
//! runs `postgres` through a shell line with the data directory in double
//! quotes, which is why the servers are started directly).

use imss_fixture::harness::{FixtureServer, Payload, flow};
use imss_upgrade::files::imss_ini::ProductInfo;
use imss_upgrade::flow::upgrade::health;
use imss_upgrade::flow::upgrade::run::Outcome;

/// Short enough for the sockets in the backup directory (a Unix socket's
/// path holds at most 107 bytes).
const SHELL_READ_ROOT: &str = "r $HOME \"q\" `t`";

#[tokio::test]
async fn a_root_whose_path_a_shell_would_read_is_upgraded_and_rolled_back_exactly() {
    let server = FixtureServer::build_named(
        SHELL_READ_ROOT,
        &["--history-rows", "500", "--tree-mb", "0", "--days", "2"],
    )
    .unwrap();
    assert!(server.root_dir().ends_with(SHELL_READ_ROOT));
    server.start().unwrap();
    let payload = Payload::build().unwrap();
    let ctx = payload.context(&server).unwrap();
    let tree_before = server.tree_state("/opt/trend/imss").unwrap();
    let dump_before = server.dump_all().unwrap();

    let outcome = flow::upgrade(&ctx).await.unwrap();
    assert!(matches!(outcome, Outcome::Upgraded(_)), "{outcome:?}");
    assert_eq!(ProductInfo::load(&server.root()).unwrap().version, "9.1");
    health::check_91_takes_mail(&ctx, "shell-read-root")
        .await
        .unwrap();

    flow::roll_back(&ctx).await.unwrap();
    assert_eq!(ProductInfo::load(&server.root()).unwrap().version, "7.1");
    health::check_accepting(&ctx).unwrap();
    assert!(
        server.tree_state("/opt/trend/imss").unwrap() == tree_before,
        "the 7.1 program tree differs after the rollback"
    );
    assert!(
        server.dump_all().unwrap() == dump_before,
        "pg_dumpall of 7.1 differs after the rollback"
    );
}
