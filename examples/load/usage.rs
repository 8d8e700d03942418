//! CPU and memory of a process from `/proc/<pid>` (Linux), so each figure is one process's
//! alone: the gateway, the broker, this program, the raw publisher.

/// CPU seconds (user + system), peak RSS and current RSS (KiB) of a process.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcUsage {
    pub cpu: f64,
    pub hwm_kib: u64,
    pub rss_kib: u64,
}

pub fn proc_usage(pid: u32) -> ProcUsage {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    ProcUsage {
        cpu: (ticks(11) + ticks(12)) / 100.0,
        hwm_kib: kib("VmHWM:"),
        rss_kib: kib("VmRSS:"),
    }
}

/// The RabbitMQ node's process (`beam.smp`), if it runs on this machine.
pub fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|e| {
        let pid: u32 = e.file_name().to_str()?.parse().ok()?;
        let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
        (comm.trim() == "beam.smp").then_some(pid)
    })
}
