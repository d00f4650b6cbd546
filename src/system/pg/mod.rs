//! PostgreSQL servers and clients. With [`crate::migration`], the only
//! place SQL is written.
//!
//! - `cluster`: a cluster set up (`initdb` as the service user) and
//!   started (`postgres` directly, with an argument vector);
//! - `server`: a running server, found by the processes working in its
//!   data directory and stopped by signal, as `pg_ctl stop` does;
//! - `client`: connections, with each reading of `odbc.ini`'s password;
//!   the pgpass file of a client program;
//! - `catalog`: the catalog queries preflight sizes a database with;
//! - `copy`: the binary `COPY` pipe between two servers.
//!
//! Passwords reach `initdb` in a file in memory and the client through
//! `tokio_postgres::Config::password`, never through argv or the
//! environment.

mod catalog;
mod client;
mod cluster;
mod copy;
mod server;

pub use catalog::{TableSize, checkpoint, database_summary};
pub use client::{ConnectError, connect, connect_as_configured, write_pgpass};
pub use cluster::{Cluster, InitOptions, PgInstall};
pub use copy::copy_pipe;
pub use server::{StopMode, remove_cluster, server_running, stop_server, wait_for_shutdown};
