//! The `heliograph` binary: see [`heliograph::cli`].

/// mimalloc instead of glibc's malloc: a stanza is allocated by the task that parsed it
/// and freed by the one that wrote it, often on another worker thread, and glibc's arena
/// locks then cost futex calls on the message path; mimalloc frees such blocks without a
/// shared lock (the 1:1 message path costs 15-25% less server CPU; tests/load/README.md).
/// Built without transparent huge pages (`no_thp`): with them an idle server's memory
/// grew by about 80 MB and each session's by 1 KiB. Built without the `mimalloc` feature,
/// the binary keeps glibc's malloc (for heap profilers).
#[cfg(feature = "mimalloc")]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    heliograph::cli::main()
}
