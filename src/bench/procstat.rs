//! What the bench reads about processes from /proc (zeros or `None` elsewhere): CPU time of
//! this process or of some of its threads, resident memory of this or another process, and
//! the heap in use by glibc's allocator.

use std::time::Duration;

/// User + system CPU time from a /proc `stat` line (fields 14 and 15, in 100 Hz ticks).
fn stat_cpu(stat: &str) -> Duration {
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|v| v.parse::<u64>().ok()).sum());
    Duration::from_secs_f64(ticks as f64 / 100.0)
}

/// CPU time (user + system) of this process.
pub fn cpu_time() -> Duration {
    stat_cpu(&std::fs::read_to_string("/proc/self/stat").unwrap_or_default())
}

/// CPU time of this process's threads named `prefix...` (live threads only).
pub fn threads_cpu_time(prefix: &str) -> Duration {
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else { return Duration::ZERO };
    dir.flatten()
        .filter(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.starts_with(prefix)))
        .map(|t| stat_cpu(&std::fs::read_to_string(t.path().join("stat")).unwrap_or_default()))
        .sum()
}

/// A `Name:   1234 kB` field of a /proc `status` file, in KiB.
fn status_kib(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))?.split_whitespace().next()?.parse().ok()
}

/// VmRSS and VmHWM (peak) of this process, MiB.
pub fn rss_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let mib = |name| status_kib(&status, name).map_or(0.0, |kib| kib as f64 / 1024.0);
    (mib("VmRSS"), mib("VmHWM"))
}

/// VmRSS of process `pid`, KiB (`None` when it is gone).
pub fn rss_kib_of(pid: u32) -> Option<u64> {
    status_kib(&std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?, "VmRSS")
}

/// Bytes the allocator has handed out and not got back (glibc's `mallinfo2`: in-use arena
/// chunks plus mmapped blocks), MiB: what a leak grows, as opposed to RSS, which also holds
/// memory freed but kept by the allocator.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn heap_in_use_mib() -> Option<f64> {
    #[repr(C)]
    struct Mallinfo2 {
        arena: usize,
        ordblks: usize,
        smblks: usize,
        hblks: usize,
        hblkhd: usize,
        usmblks: usize,
        fsmblks: usize,
        uordblks: usize,
        fordblks: usize,
        keepcost: usize,
    }
    unsafe extern "C" {
        fn mallinfo2() -> Mallinfo2;
    }
    // SAFETY: glibc's mallinfo2 (2.33+) takes nothing and returns this plain struct by value.
    let m = unsafe { mallinfo2() };
    let _ = (m.arena, m.ordblks, m.smblks, m.hblks, m.usmblks, m.fsmblks, m.fordblks, m.keepcost);
    Some((m.uordblks + m.hblkhd) as f64 / (1024.0 * 1024.0))
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn heap_in_use_mib() -> Option<f64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_come_after_the_command_name() {
        // pid (comm with ") " inside) state ppid ... utime=250 stime=50 (fields 14 and 15)
        let stat = "42 (a) b) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        assert_eq!(stat_cpu(stat), Duration::from_secs(3));
        assert_eq!(stat_cpu(""), Duration::ZERO);
    }

    #[test]
    fn status_fields_in_kib() {
        let status = "Name:\tzerohop\nVmHWM:\t  4096 kB\nVmRSS:\t  2048 kB\n";
        assert_eq!(status_kib(status, "VmRSS"), Some(2048));
        assert_eq!(status_kib(status, "VmHWM"), Some(4096));
        assert_eq!(status_kib(status, "VmSwap"), None);
        assert_eq!(status_kib(status, "Vm"), None, "a whole field name only");
    }

    #[test]
    fn this_process_is_seen() {
        if std::path::Path::new("/proc/self/status").exists() {
            assert!(rss_mib().0 > 0.0);
            assert!(rss_kib_of(std::process::id()).is_some_and(|k| k > 0));
        }
    }
}
