//! CPU time and memory of the daemons under test, from /proc (Linux).
//! A watched PID includes its descendants, so Kamailio's worker processes
//! count with its main process.

use serde::Serialize;

/// A named process to watch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Watch {
    pub name: String,
    pub pid: u32,
}

impl std::str::FromStr for Watch {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (name, pid) = s.split_once('=').ok_or("expected NAME=PID")?;
        let pid = pid
            .trim()
            .parse()
            .map_err(|_| format!("bad pid in {s:?}"))?;
        Ok(Watch {
            name: name.to_string(),
            pid,
        })
    }
}

/// One reading of a process tree.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq)]
pub struct Sample {
    /// utime + stime of the tree, seconds.
    pub cpu_seconds: f64,
    /// Sum of VmRSS over the tree, KiB (shared pages counted per process).
    pub rss_kib: u64,
    /// Sum of Pss over the tree, KiB (shared pages split between them).
    pub pss_kib: u64,
    pub processes: u32,
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux ABI we run on.
    100.0
}

/// `(ppid, utime + stime ticks)` from /proc/PID/stat.
pub fn parse_stat(stat: &str) -> Option<(u32, u64)> {
    // The command name may hold spaces and parens: fields start after the last ')'.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): ppid = field 4, utime = 14, stime = 15.
    let ppid = f.get(1)?.parse().ok()?;
    let ut: u64 = f.get(11)?.parse().ok()?;
    let st: u64 = f.get(12)?.parse().ok()?;
    Some((ppid, ut + st))
}

/// The value in KiB of a `Name:   123 kB` line.
pub fn kib_field(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

fn tree(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
                continue;
            };
            if let Some((ppid, _)) = std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .as_deref()
                .and_then(parse_stat)
            {
                parents.push((pid, ppid));
            }
        }
    }
    let mut out = vec![root];
    let mut i = 0;
    while let Some(&p) = out.get(i) {
        out.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    out
}

/// Read the tree of `pid` now; `None` if the process is gone.
pub fn sample(pid: u32) -> Option<Sample> {
    let mut s = Sample::default();
    for p in tree(pid) {
        let Some((_, ticks)) = std::fs::read_to_string(format!("/proc/{p}/stat"))
            .ok()
            .as_deref()
            .and_then(parse_stat)
        else {
            if p == pid {
                return None;
            }
            continue;
        };
        s.cpu_seconds += ticks as f64 / clock_ticks();
        if let Ok(st) = std::fs::read_to_string(format!("/proc/{p}/status")) {
            s.rss_kib += kib_field(&st, "VmRSS").unwrap_or(0);
        }
        if let Ok(sm) = std::fs::read_to_string(format!("/proc/{p}/smaps_rollup")) {
            s.pss_kib += kib_field(&sm, "Pss").unwrap_or(0);
        }
        s.processes += 1;
    }
    Some(s)
}

/// Datagrams the kernel dropped on our UDP sockets bound to 127.0.0.1 at
/// `ports` (receive buffer full), from the `drops` column of /proc/net/udp.
pub fn udp_drops(ports: &[u16]) -> u64 {
    std::fs::read_to_string("/proc/net/udp")
        .map(|t| udp_drops_in(&t, ports))
        .unwrap_or(0)
}

/// [`udp_drops`] over the text of /proc/net/udp.
pub fn udp_drops_in(table: &str, ports: &[u16]) -> u64 {
    table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            let (_, port) = f.get(1)?.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            ports
                .contains(&port)
                .then(|| f.last()?.parse::<u64>().ok())?
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let line = "4242 (my (odd) name) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 1 0 5 1000 10";
        assert_eq!(parse_stat(line), Some((1, 300)));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn parses_kib_fields_and_watch_args() {
        let st = "Name:\tx\nVmRSS:\t   12345 kB\nPss:  77 kB\n";
        assert_eq!(kib_field(st, "VmRSS"), Some(12345));
        assert_eq!(kib_field(st, "Pss"), Some(77));
        assert_eq!(kib_field(st, "VmHWM"), None);
        assert_eq!(
            "swbd=12".parse::<Watch>(),
            Ok(Watch {
                name: "swbd".into(),
                pid: 12
            })
        );
        assert!("swbd".parse::<Watch>().is_err());
    }

    #[test]
    fn reads_udp_drops() {
        let t = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
           1: 0100007F:2710 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 17\n\
           2: 0100007F:2711 00000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 1 2 0000000000000000 5\n";
        assert_eq!(udp_drops_in(t, &[10000]), 17);
        assert_eq!(udp_drops_in(t, &[10000, 10001]), 22);
        assert_eq!(udp_drops_in(t, &[9]), 0);
    }

    #[test]
    fn samples_this_process() {
        let s = sample(std::process::id()).unwrap();
        assert!(s.rss_kib > 0);
        assert!(s.processes >= 1);
    }
}
