//! What the harness reads about a process from `/proc`: open file
//! descriptors, resident memory, the open-files limit.

use std::path::Path;

/// Number of open file descriptors of process `pid` (entries of
/// `/proc/PID/fd`), or `None` when the process is gone.
pub fn fd_count(pid: u32) -> Option<usize> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    Some(dir.count())
}

/// Resident set size of process `pid` in KiB (`VmRSS` of
/// `/proc/PID/status`), or `None` when the process is gone.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status_field_kib(&text, "VmRSS:")
}

/// The value in KiB of a `/proc/PID/status` line such as `VmRSS:  1234 kB`.
///
/// ```
/// let status = "Name:\tx\nVmRSS:\t  2048 kB\n";
/// assert_eq!(ippin_loadtest::procfs::status_field_kib(status, "VmRSS:"), Some(2048));
/// assert_eq!(ippin_loadtest::procfs::status_field_kib(status, "VmHWM:"), None);
/// ```
pub fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.get(field.len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time (user + system) consumed so far by process `pid`, in clock
/// ticks (`utime` + `stime` of `/proc/PID/stat`; 100 per second on Linux).
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: count fields after its `)`.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After `)`: state is field 3, so utime (14) and stime (15) are at 11, 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Clock ticks per second of [`cpu_ticks`] (`USER_HZ`, 100 on Linux).
pub const TICKS_PER_SECOND: u64 = 100;

/// The soft limit on open files of this process (`Max open files` of
/// `/proc/self/limits`); `None` when unreadable or unlimited.
pub fn nofile_soft_limit() -> Option<u64> {
    let text = std::fs::read_to_string(Path::new("/proc/self/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    line.get("Max open files".len()..)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Checks that this process (and so the server it starts, which inherits
/// the limit) may open `needed` files; the error says what to run.
///
/// # Errors
/// A message naming the limit and the `ulimit -n` to run first.
pub fn require_nofile(needed: u64) -> Result<(), String> {
    match nofile_soft_limit() {
        Some(have) if have < needed => Err(format!(
            "the open-files limit is {have}, this run needs about {needed}: \
             run `ulimit -n {}` in this shell first (as root, or raise the hard limit)",
            needed.next_power_of_two()
        )),
        _ => Ok(()),
    }
}
