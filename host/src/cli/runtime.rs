//! The server's async runtime: tokio's multi-thread runtime with a bounded blocking pool
//! whose threads stay alive. Storage calls (sled), password derivations and plugin calls
//! run there. With tokio's default (up to 512 threads, each exiting after 10 s idle) the
//! soak's RSS grew for about 20 minutes; bounded and kept, it stays flat (figures in
//! tests/load/README.md, "Soak"). The likely reading: every thread has its own allocator
//! heap, and the more threads take turns at storage work, the more heaps hold partly used
//! pages of long-lived blocks (sled's cached nodes) among short-lived ones.

use std::time::Duration;

/// How long an idle blocking thread waits for work before it exits: effectively never,
/// so the pool keeps the same few threads (and their allocator heaps).
const BLOCKING_KEEP_ALIVE: Duration = Duration::from_secs(365 * 24 * 3600);

/// Blocking threads for a machine with `cpus` CPUs: password derivations and plugin
/// calls each run at most one per CPU at once, so four more are always left for storage.
/// `database_connections` more (the PostgreSQL pool's size, 0 on sled): a PostgreSQL
/// storage call holds its thread for the round trip to the database, and the pool should
/// not wait for threads.
pub fn blocking_threads(cpus: usize, database_connections: usize) -> usize {
    2 * cpus.max(1) + 4 + database_connections
}

/// The runtime `heliograph serve` runs on, for a server with `database_connections`
/// pooled PostgreSQL connections (0 on sled).
pub fn build(database_connections: usize) -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(blocking_threads(cpus, database_connections))
        .thread_keep_alive(BLOCKING_KEEP_ALIVE)
        .enable_all()
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn storage_keeps_four_threads_beside_derivations_and_plugin_calls() {
        assert_eq!(blocking_threads(0, 0), 6);
        assert_eq!(blocking_threads(2, 0), 8);
        assert_eq!(blocking_threads(16, 0), 36);
    }

    #[test]
    fn each_pooled_database_connection_gets_a_thread_of_its_own() {
        assert_eq!(blocking_threads(2, 16), 24);
    }
}
