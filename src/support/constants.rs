//! Numbers, names and paths that the vendor's upgrade guide (the seed Q&A)
//! or the 7.1 and 9.1 products define. Each lives here once, with where it
//! comes from, so that no step hard-codes its own copy.

/// 7.1 SP2 Patch 1: the oldest build the vendor supports upgrading from
/// (seed, "before you upgrade", item 1; older builds fail with code 13).
pub const MIN_SOURCE_BUILD: u32 = 1808;

/// The 7.1 version string as `imss.ini` records it.
pub const SOURCE_VERSION: &str = "7.1";

/// The 9.1 release this package installs (seed: `imss_linux_9.1_1195.tar.gz`).
pub const TARGET_VERSION: &str = "9.1";

/// The 9.1 build this package installs.
pub const TARGET_BUILD: u32 = 1195;

/// The program tree of both versions.
pub const PROGRAM_DIR: &str = "/opt/trend/imss";

/// The data tree: quarantine and archive message files, queues, the database.
pub const DATA_DIR: &str = "/var/imss";

/// Database connection settings (seed, item 5: a `%` here broke the vendor's parser).
pub const ODBC_INI: &str = "/opt/trend/imss/config/odbc.ini";

/// Product settings: version, build, installed components.
pub const IMSS_INI: &str = "/opt/trend/imss/config/imss.ini";

/// The bundled PostgreSQL's binaries in the 7.1 program tree.
pub const BUNDLED_PG_DIR: &str = "/opt/trend/imss/PostgreSQL";

/// The 7.1 cluster's data directory.
pub const PG71_DATA_DIR: &str = "/var/imss/pgdata";

/// Directory for sockets and pid files of the 7.1 services.
pub const RUN_DIR: &str = "/var/imss/run";

/// The plain-text install log (the seed's `installlog`, at a fixed place).
pub const INSTALL_LOG: &str = "/var/log/imss-upgrade/install.log";

/// The account the services and the bundled PostgreSQL run as.
pub const SERVICE_USER: &str = "imss";

/// The database the product keeps its settings and logs in (seed, step 5 screen).
pub const DATABASE_NAME: &str = "imss";

/// The database account the product connects as (seed, step 5 screen).
pub const DATABASE_USER: &str = "sa";

/// The bundled PostgreSQL's default address and port (seed, step 5 screen).
pub const DATABASE_HOST: &str = "127.0.0.1";
/// See [`DATABASE_HOST`].
pub const DATABASE_PORT: u16 = 5432;

/// DNS and rndc control ports that the bundled BIND would take (seed, item 6).
pub const DNS_PORT: u16 = 53;
/// See [`DNS_PORT`].
pub const RNDC_PORT: u16 = 953;

/// History newer than this moves during the downtime; older history moves in
/// the background after the switch (seed, "after the upgrade", item 3).
pub const CRITICAL_HISTORY_HOURS: i64 = 24;

/// The vendor's rule for free space on `/var`: 1.5 times the database size
/// (seed, item 3). Preflight computes the real need; this is the comparison.
pub const VENDOR_SPACE_FACTOR: f64 = 1.5;

/// The components a 7.1 server may have installed, as the upgrade wizard's
/// step 3 screen lists them, with the keys `imss.ini` uses for them.
pub const COMPONENTS: [(&str, &str); 5] = [
    ("central_controller", "Central Controller"),
    ("scanner", "Scanner Service"),
    ("euq", "EUQ Service"),
    ("ers", "Email Reputation Services"),
    ("ip_profiler", "IP Profiler"),
];

/// Packages 9.1 needs that 7.1 did not (seed, "before you upgrade", item 2:
/// the vendor's wizard failed at step 4 with "The package "wget" on which
/// InterScan Messaging Security Suite depends is not installed"). Checked
/// by what the rpm database says provides them.
pub const REQUIRED_PACKAGES: &[&str] = &[
    "wget",
    "perl",
    "tar",
    "gzip",
    "libxml2",
    "libuuid",
    "zlib",
    "libstdc++",
    "pam",
    "cyrus-sasl-lib",
    "openssl-libs",
    "procps-ng",
];

/// The rpm database inside the root (RHEL 7 to 9; set explicitly because
/// the rpm that runs the query may have been built with another default).
pub const RPM_DB_PATH: &str = "/var/lib/rpm";

/// Where the 7.1 services keep mail that is waiting to be processed or
/// delivered; the quiesce step waits for it to drain.
pub const MAIL_QUEUE_DIR: &str = "/var/imss/queue";
