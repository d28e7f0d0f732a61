//! Which processes are the server: `--pid`, or the process listening on the
//! URL's port (a socket inode in `/proc/net/tcp{,6}`, found among the
//! `/proc/*/fd` links), with its descendants (vLLM's GPU workers are child
//! processes, one per rank). Only what this host's /proc shows, in this
//! network namespace.

use std::collections::BTreeSet;

/// TCP state LISTEN in /proc/net/tcp.
const LISTEN: &str = "0A";

/// Socket inodes listening on `port` (any address).
pub fn listening_inodes(port: u16) -> BTreeSet<u64> {
    let mut out = BTreeSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        out.extend(text.lines().skip(1).filter_map(|l| listener(l, port)));
    }
    out
}

/// One row of /proc/net/tcp: `sl local_address rem_address st ... inode`.
fn listener(line: &str, port: u16) -> Option<u64> {
    let f: Vec<&str> = line.split_whitespace().collect();
    let local = f.get(1)?;
    let p = u16::from_str_radix(local.rsplit(':').next()?, 16).ok()?;
    (p == port && *f.get(3)? == LISTEN)
        .then(|| f.get(9)?.parse().ok())
        .flatten()
        .filter(|&i| i != 0)
}

fn pids() -> Vec<u32> {
    let Ok(d) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    d.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Processes holding one of the sockets (those whose fds we may read).
pub fn owners(inodes: &BTreeSet<u64>) -> Vec<u32> {
    let want: BTreeSet<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.flatten().any(|fd| {
                    std::fs::read_link(fd.path())
                        .is_ok_and(|t| want.contains(t.to_string_lossy().as_ref()))
                })
            })
        })
        .collect()
}

/// A process's command line, its arguments joined by spaces (empty when
/// /proc does not say).
pub fn cmdline(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|b| {
            b.split(|&c| c == 0)
                .filter(|a| !a.is_empty())
                .map(|a| shell_word(&String::from_utf8_lossy(a)))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

/// An argument as a POSIX shell reads it back: as it is when it holds only
/// characters the shell leaves alone, else in single quotes (the command a
/// refusal suggests is pasted into a shell).
fn shell_word(a: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "_./:=@%+,-".contains(c);
    if a.chars().all(plain) {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// The parent of `pid`, from /proc/PID/stat (after the command's closing
/// parenthesis, which may itself hold spaces and parentheses).
pub fn parent(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(1)?.parse().ok()
}

/// `roots` and every descendant of them, in ascending order.
pub fn with_descendants(roots: &[u32]) -> Vec<u32> {
    let all: Vec<(u32, u32)> = pids()
        .into_iter()
        .filter_map(|p| Some((p, parent(p)?)))
        .collect();
    let mut set: BTreeSet<u32> = roots.iter().copied().collect();
    loop {
        let before = set.len();
        for (p, pp) in &all {
            if set.contains(pp) {
                set.insert(*p);
            }
        }
        if set.len() == before {
            return set.into_iter().collect();
        }
    }
}

/// Whether the URL's host names this machine: only then can a listener on
/// its port here be the server.
pub fn is_local(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    if h.eq_ignore_ascii_case("localhost") || h == "0.0.0.0" || h == "::" || h == "::1" {
        return true;
    }
    if let Ok(ip) = h.parse::<std::net::IpAddr>() {
        return ip.is_loopback() || local_addresses().contains(&ip);
    }
    hostname().is_some_and(|n| n.eq_ignore_ascii_case(h))
}

fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|s| s.trim().to_string())
}

/// This host's IPv4 addresses that have a listener bound to them, read from
/// /proc/net/tcp (enough to tell "here" from "elsewhere" without a crate).
fn local_addresses() -> Vec<std::net::IpAddr> {
    let Ok(text) = std::fs::read_to_string("/proc/net/tcp") else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let local = l.split_whitespace().nth(1)?;
            let hex = u32::from_str_radix(local.split(':').next()?, 16).ok()?;
            // The kernel prints the address in host byte order (little-endian here).
            Some(std::net::IpAddr::V4(std::net::Ipv4Addr::from(
                hex.swap_bytes(),
            )))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_for_a_shell() {
        assert_eq!(shell_word("serve.py"), "serve.py");
        assert_eq!(shell_word("--port=8000"), "--port=8000");
        assert_eq!(shell_word("import a; b()"), "'import a; b()'");
        assert_eq!(shell_word("it's"), "'it'\\''s'");
    }

    #[test]
    fn a_listening_row_gives_its_inode() {
        let row = "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 123456 1 0000000000000000 100 0 0 10 0";
        assert_eq!(listener(row, 8080), Some(123456));
        assert_eq!(listener(row, 8081), None);
        let established = row.replace(" 0A ", " 01 ");
        assert_eq!(listener(&established, 8080), None);
        assert_eq!(listener("garbage", 8080), None);
    }

    #[test]
    fn this_process_has_a_parent_and_loopback_is_local() {
        assert!(parent(std::process::id()).is_some());
        assert!(with_descendants(&[std::process::id()]).contains(&std::process::id()));
        assert!(is_local("127.0.0.1") && is_local("localhost") && is_local("[::1]"));
        assert!(!is_local("192.0.2.1"));
    }
}
