//! The standard Prometheus process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, `process_max_fds`,
//! `process_start_time_seconds`), read from `/proc/self` at scrape time on Linux and
//! absent elsewhere. Names and meanings are those of the official client libraries, so
//! dashboards and alerts written for any Prometheus-instrumented process work as is.
//!
//! No crate already in the build gives them (`metrics-process` would bring `procfs` and
//! its dependencies for five numbers); the parsing here is small and unit tested.

use std::fmt::Write as _;

/// Why the process metrics could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProcessStatsError {
    #[error("reading {path}: {source}")]
    Read {
        path: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: no valid {field}")]
    Parse {
        path: &'static str,
        field: &'static str,
    },
    #[error("process metrics are only read on Linux")]
    Unsupported,
}

/// One reading of the process figures.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time, in seconds.
    pub cpu_seconds: f64,
    /// Resident set size, in bytes.
    pub resident_bytes: u64,
    /// File descriptors open now.
    pub open_fds: u64,
    /// The soft limit on open file descriptors (`u64::MAX` when unlimited).
    pub max_fds: u64,
    /// When the process started, in seconds since the Unix epoch.
    pub start_time_seconds: f64,
}

/// The fields of `/proc/self/stat` used here, in the kernel's units.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    /// User and system CPU time, in clock ticks.
    cpu_ticks: u64,
    /// Start time after boot, in clock ticks.
    start_ticks: u64,
    /// Resident set size, in pages.
    rss_pages: u64,
}

/// Parses `/proc/[pid]/stat`. The command name (field 2) is in parentheses and may
/// itself hold spaces and parentheses, so fields are counted after its last `)`.
fn parse_stat(text: &str) -> Result<Stat, ProcessStatsError> {
    const PATH: &str = "/proc/self/stat";
    let after = text
        .rfind(')')
        .map(|i| &text[i + 1..])
        .ok_or(ProcessStatsError::Parse {
            path: PATH,
            field: "command name",
        })?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `fields[0]` is field 3 (state): field N of proc(5) is `fields[N - 3]`.
    let field = |n: usize, name: &'static str| -> Result<u64, ProcessStatsError> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or(ProcessStatsError::Parse {
                path: PATH,
                field: name,
            })
    };
    Ok(Stat {
        cpu_ticks: field(14, "utime")? + field(15, "stime")?,
        start_ticks: field(22, "starttime")?,
        rss_pages: field(24, "rss")?,
    })
}

/// The boot time (`btime`, seconds since the epoch) from `/proc/stat`.
fn parse_boot_time(text: &str) -> Result<u64, ProcessStatsError> {
    text.lines()
        .find_map(|line| line.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
        .ok_or(ProcessStatsError::Parse {
            path: "/proc/stat",
            field: "btime",
        })
}

/// The soft limit of "Max open files" from `/proc/[pid]/limits`.
fn parse_max_open_files(text: &str) -> Result<u64, ProcessStatsError> {
    let soft = text
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))
        .and_then(|rest| rest.split_whitespace().next());
    match soft {
        Some("unlimited") => Ok(u64::MAX),
        Some(v) => v.parse().map_err(|_| ProcessStatsError::Parse {
            path: "/proc/self/limits",
            field: "Max open files",
        }),
        None => Err(ProcessStatsError::Parse {
            path: "/proc/self/limits",
            field: "Max open files",
        }),
    }
}

/// Reads the figures of this process now.
#[cfg(target_os = "linux")]
pub fn read() -> Result<ProcessStats, ProcessStatsError> {
    use std::sync::OnceLock;

    fn file(path: &'static str) -> Result<String, ProcessStatsError> {
        std::fs::read_to_string(path).map_err(|source| ProcessStatsError::Read { path, source })
    }
    // SAFETY: sysconf only reads a system constant.
    let (ticks, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let (ticks, page) = match (u64::try_from(ticks), u64::try_from(page)) {
        (Ok(t), Ok(p)) if t > 0 && p > 0 => (t as f64, p),
        _ => return Err(ProcessStatsError::Unsupported),
    };
    let stat = parse_stat(&file("/proc/self/stat")?)?;
    // The boot time never changes while the process runs.
    static BOOT_TIME: OnceLock<u64> = OnceLock::new();
    let boot = match BOOT_TIME.get() {
        Some(b) => *b,
        None => {
            let b = parse_boot_time(&file("/proc/stat")?)?;
            *BOOT_TIME.get_or_init(|| b)
        }
    };
    let open_fds = std::fs::read_dir("/proc/self/fd")
        .map_err(|source| ProcessStatsError::Read {
            path: "/proc/self/fd",
            source,
        })?
        .count() as u64;
    Ok(ProcessStats {
        cpu_seconds: stat.cpu_ticks as f64 / ticks,
        resident_bytes: stat.rss_pages * page,
        open_fds,
        max_fds: parse_max_open_files(&file("/proc/self/limits")?)?,
        start_time_seconds: boot as f64 + stat.start_ticks as f64 / ticks,
    })
}

/// Reads the figures of this process now (Linux only).
#[cfg(not(target_os = "linux"))]
pub fn read() -> Result<ProcessStats, ProcessStatsError> {
    Err(ProcessStatsError::Unsupported)
}

/// The figures in Prometheus text format, with their `HELP` and `TYPE` lines.
pub fn exposition(stats: &ProcessStats) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, value: f64| {
        let _ = write!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n\n"
        );
    };
    metric(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        stats.cpu_seconds,
    );
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        stats.resident_bytes as f64,
    );
    metric(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        stats.open_fds as f64,
    );
    metric(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        stats.max_fds as f64,
    );
    metric(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        stats.start_time_seconds,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real line from a process whose name holds a space and a parenthesis.
    const STAT: &str = "4242 (my (odd) srv) S 1 4242 4242 0 -1 4194560 1523 0 0 0 \
        250 75 0 0 20 0 9 0 123456 987654321 3072 18446744073709551615 1 1 0 0 0 0 0 \
        4096 17990 0 0 0 17 1 0 0 0 0 0\n";

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        assert_eq!(
            parse_stat(STAT).unwrap(),
            Stat {
                cpu_ticks: 325,
                start_ticks: 123456,
                rss_pages: 3072
            }
        );
    }

    #[test]
    fn truncated_or_garbled_stat_is_an_error() {
        assert!(matches!(
            parse_stat("4242 no-parens S 1"),
            Err(ProcessStatsError::Parse {
                field: "command name",
                ..
            })
        ));
        assert!(matches!(
            parse_stat("4242 (srv) S 1 4242 4242 0 -1 4194560 1523 0 0 0 x 75"),
            Err(ProcessStatsError::Parse { field: "utime", .. })
        ));
        let short = &STAT[..STAT.find(" 123456").unwrap()];
        assert!(matches!(
            parse_stat(short),
            Err(ProcessStatsError::Parse {
                field: "starttime",
                ..
            })
        ));
    }

    #[test]
    fn boot_time_and_fd_limit() {
        assert_eq!(
            parse_boot_time("cpu  1 2 3\nintr 5\nbtime 1765000000\nprocesses 9\n").unwrap(),
            1_765_000_000
        );
        assert!(parse_boot_time("cpu 1 2 3\n").is_err());
        let limits = "Limit                     Soft Limit           Hard Limit           Units     \n\
            Max cpu time              unlimited            unlimited            seconds   \n\
            Max open files            1024                 524288               files     \n";
        assert_eq!(parse_max_open_files(limits).unwrap(), 1024);
        assert_eq!(
            parse_max_open_files(&limits.replace("1024 ", "unlimited ")).unwrap(),
            u64::MAX
        );
        assert!(parse_max_open_files("Max cpu time unlimited\n").is_err());
    }

    #[test]
    fn exposition_has_each_metric_with_its_type() {
        let text = exposition(&ProcessStats {
            cpu_seconds: 3.25,
            resident_bytes: 12_582_912,
            open_fds: 17,
            max_fds: 1024,
            start_time_seconds: 1_765_001_234.56,
        });
        for line in [
            "# TYPE process_cpu_seconds_total counter",
            "process_cpu_seconds_total 3.25",
            "# TYPE process_resident_memory_bytes gauge",
            "process_resident_memory_bytes 12582912",
            "process_open_fds 17",
            "process_max_fds 1024",
            "process_start_time_seconds 1765001234.56",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn this_process_reads_sensibly() {
        let before = read().unwrap();
        assert!(before.resident_bytes > 0 && before.open_fds >= 3);
        assert!(before.max_fds >= before.open_fds);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        // Started in the past, and not before this test binary was built (a day at most).
        assert!(before.start_time_seconds <= now + 1.0, "{before:?}");
        assert!(before.start_time_seconds > now - 86_400.0, "{before:?}");
        // Busy work until the CPU time moves (ticks are 10 ms), with a deadline.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let mut x = 0u64;
        loop {
            for i in 0..1_000_000u64 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(i));
            }
            if read().unwrap().cpu_seconds > before.cpu_seconds {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "CPU time never moved");
        }
    }
}
