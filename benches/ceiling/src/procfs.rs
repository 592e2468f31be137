//! CPU time, resident memory and threads of a process, from /proc.

/// utime + stime of a process and all its threads, in seconds.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state is field 3 (index 0 here); utime 14, stime 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn clock_ticks() -> f64 {
    // SC_CLK_TCK is 100 on every Linux this runs on; read it to be sure.
    extern "C" {
        fn sysconf(name: i32) -> i64;
    }
    const SC_CLK_TCK: i32 = 2;
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { sysconf(SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// VmRSS in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    status_field(pid, "VmRSS:").map(|kib| kib * 1024)
}

/// VmHWM (peak resident) in bytes.
pub fn peak_rss_bytes(pid: u32) -> Option<u64> {
    status_field(pid, "VmHWM:").map(|kib| kib * 1024)
}

fn status_field(pid: u32, name: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

pub fn threads(pid: u32) -> Option<usize> {
    Some(std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.count())
}

/// The jiffy columns of the /proc/stat line named `name` ("cpu" is the whole machine).
fn stat_line(name: &str) -> Vec<u64> {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    stat.lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect()
}

/// Busy and total jiffies of a /proc/stat line (idle and iowait are not busy).
fn busy_total(v: &[u64]) -> (u64, u64) {
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Busy and total jiffies of the whole machine (first line of /proc/stat).
pub fn machine_jiffies() -> (u64, u64) {
    busy_total(&stat_line("cpu"))
}

/// Jiffies spent in hardware and software interrupts, machine-wide (irq + softirq of
/// /proc/stat). Loopback TCP delivery runs in softirqs and is charged to no process.
pub fn interrupt_jiffies() -> u64 {
    let v = stat_line("cpu");
    v.get(5).copied().unwrap_or(0) + v.get(6).copied().unwrap_or(0)
}

/// Busy and total jiffies of one CPU ("cpu1").
pub fn cpu_jiffies(cpu: usize) -> (u64, u64) {
    busy_total(&stat_line(&format!("cpu{cpu}")))
}
