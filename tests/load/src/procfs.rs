//! The server's own cost, read from /proc: CPU time (utime + stime of every thread, live
//! or exited, from `/proc/PID/stat`) and resident memory (`VmRSS` from `/proc/PID/status`).

use std::time::Duration;

use anyhow::{Context as _, bail};

/// CPU time and memory of one process at one instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcSample {
    /// User + system CPU time.
    pub cpu: Duration,
    /// Resident set size in KiB.
    pub rss_kib: u64,
}

/// Reads CPU time and RSS of `pid`.
pub fn sample(pid: u32) -> anyhow::Result<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    Ok(ProcSample {
        cpu: cpu_from_stat(&stat, clock_ticks_per_sec())?,
        rss_kib: rss_from_status(&status)?,
    })
}

/// CPU time of a process, or zero if it is gone.
pub fn cpu(pid: u32) -> Duration {
    sample(pid).map(|s| s.cpu).unwrap_or_default()
}

/// `sysconf(_SC_CLK_TCK)`, the unit of utime/stime.
pub fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// utime + stime (fields 14 and 15) of a `/proc/PID/stat` line. The command name (field 2)
/// may contain spaces and parentheses, so fields are counted after its last `)`.
pub fn cpu_from_stat(stat: &str, ticks_per_sec: u64) -> anyhow::Result<Duration> {
    let Some(close) = stat.rfind(')') else {
        bail!("malformed stat line");
    };
    // After ")": field 3 (state) is index 0, so utime (14) is index 11, stime index 12.
    let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
    if fields.len() < 13 {
        bail!("stat line too short");
    }
    let utime: u64 = fields[11].parse().context("utime")?;
    let stime: u64 = fields[12].parse().context("stime")?;
    let ticks = utime + stime;
    Ok(Duration::from_nanos(
        ticks.saturating_mul(1_000_000_000) / ticks_per_sec.max(1),
    ))
}

/// CPU time of a process and all its children, reaped or alive: for a server made of
/// processes (PostgreSQL: the postmaster and a backend per connection). The process's own
/// utime + stime + cutime + cstime (the children it has waited for), plus utime + stime
/// of its live children. Zero if it is gone.
pub fn tree_cpu(pid: u32) -> Duration {
    let ticks = clock_ticks_per_sec().max(1);
    let fields = |p: &str| -> Option<Vec<u64>> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        let close = stat.rfind(')')?;
        // After ")": state is index 0 (a letter, read as 0), ppid 1, utime 11, stime 12,
        // cutime 13, cstime 14.
        Some(
            stat[close + 1..]
                .split_whitespace()
                .take(15)
                .map(|f| f.parse::<i64>().map_or(0, |v| v.max(0) as u64))
                .collect(),
        )
    };
    let Some(own) = fields(&pid.to_string()).filter(|f| f.len() == 15) else {
        return Duration::ZERO;
    };
    let mut total = own[11] + own[12] + own[13] + own[14];
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let name = entry.file_name();
            let Some(p) = name
                .to_str()
                .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
            else {
                continue;
            };
            if let Some(f) = fields(p).filter(|f| f.len() == 15 && f[1] == u64::from(pid)) {
                total += f[11] + f[12];
            }
        }
    }
    Duration::from_nanos(total.saturating_mul(1_000_000_000) / ticks)
}

/// `VmRSS` in KiB from `/proc/PID/status`.
pub fn rss_from_status(status: &str) -> anyhow::Result<u64> {
    for line in status.lines() {
        if let Some(rest) = line.strip_prefix("VmRSS:") {
            let kib = rest
                .split_whitespace()
                .next()
                .context("VmRSS without a value")?;
            return kib.parse().context("VmRSS value");
        }
    }
    bail!("no VmRSS line (is the process a zombie?)")
}

/// `RssAnon` and `RssFile` in KiB from `/proc/PID/status`: memory the process allocated,
/// and pages of mapped files (its own executable's code among them), which the kernel may
/// drop and read again.
pub fn rss_split_from_status(status: &str) -> Option<(u64, u64)> {
    Some((
        status_number(status, "RssAnon:")?,
        status_number(status, "RssFile:")?,
    ))
}

/// The number of threads (`Threads:`) from `/proc/PID/status`.
pub fn threads_from_status(status: &str) -> Option<u64> {
    status_number(status, "Threads:")
}

/// The first number after `name` on its line of `/proc/PID/status`.
fn status_number(status: &str, name: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(name))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// Raises this process's soft open-files limit to its hard limit; returns the new limit.
pub fn raise_nofile_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a stack value.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur < lim.rlim_max {
            let wanted = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &wanted) == 0 {
                lim = wanted;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "1234 (heli (graph) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 9 0 100 1000 50 18446744073709551615";
        assert_eq!(
            cpu_from_stat(line, 100).unwrap(),
            Duration::from_millis(3250)
        );
        assert_eq!(
            cpu_from_stat(line, 1000).unwrap(),
            Duration::from_millis(325)
        );
        assert!(cpu_from_stat("1234 (x) S 1", 100).is_err());
        assert!(cpu_from_stat("garbage", 100).is_err());
    }

    #[test]
    fn parses_status_rss() {
        let status = "Name:\theliograph\nVmPeak:\t  999 kB\nVmRSS:\t   12345 kB\nRssAnon:\t    8000 kB\nRssFile:\t    4345 kB\nThreads:\t3\n";
        assert_eq!(rss_split_from_status(status), Some((8000, 4345)));
        assert_eq!(rss_split_from_status("VmRSS:\t1 kB\n"), None);
        assert_eq!(threads_from_status(status), Some(3));
        assert_eq!(threads_from_status("VmRSS:\t1 kB\n"), None);
        assert_eq!(rss_from_status(status).unwrap(), 12345);
        assert!(rss_from_status("Name:\tx\n").is_err());
    }

    #[test]
    fn tree_cpu_counts_reaped_children() {
        let me = std::process::id();
        let before = tree_cpu(me);
        // A child that burns CPU until it exits: counted once reaped.
        let busy = || {
            std::process::Command::new("sh")
                .args(["-c", "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"])
                .spawn()
                .unwrap()
        };
        let mut child = busy();
        child.wait().unwrap();
        let after = tree_cpu(me);
        assert!(
            after >= before + Duration::from_millis(10),
            "{before:?} -> {after:?}"
        );
        assert_eq!(tree_cpu(u32::MAX), Duration::ZERO);
    }

    #[test]
    fn reads_own_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(raise_nofile_limit() > 0);
    }
}
