//! NVML's PIDs are the host's (the driver's PID namespace). They are this
//! process's PIDs only when kvscope runs in the host's namespace; a
//! container (or any child namespace) sees its processes under other
//! numbers and cannot see the host's at all. `/proc/<pid>/status`'s NSpid
//! lists a process's PID in each namespace from the one of this /proc down
//! to its own: from the host's namespace it gives a containerised server's
//! PID inside its container too.

use std::path::Path;

/// The initial PID namespace's inode (`PROC_PID_INIT_INO` in the kernel):
/// the host's namespace on every Linux.
const INIT_PID_NS: u64 = 0xEFFF_FFFC;

#[derive(Clone, Debug, PartialEq)]
pub enum View {
    /// This /proc is the host's: NVML's PIDs are ours.
    Host,
    /// A child namespace (a container): NVML's PIDs cannot be mapped.
    Child { inode: u64 },
    /// /proc/self/ns/pid could not be read.
    Unknown(String),
}

impl View {
    pub fn of(proc_root: &Path) -> View {
        match std::fs::read_link(proc_root.join("self/ns/pid")) {
            Ok(target) => {
                let t = target.to_string_lossy();
                match t
                    .strip_prefix("pid:[")
                    .and_then(|x| x.strip_suffix(']'))
                    .and_then(|x| x.parse::<u64>().ok())
                {
                    Some(INIT_PID_NS) => View::Host,
                    Some(inode) => View::Child { inode },
                    None => View::Unknown(format!("/proc/self/ns/pid is {t}")),
                }
            }
            Err(e) => View::Unknown(format!("/proc/self/ns/pid: {e}")),
        }
    }

    /// Why NVML's PIDs are not ours, in one line; None when they are.
    pub fn unmapped_reason(&self) -> Option<String> {
        match self {
            View::Host => None,
            View::Child { inode } => Some(format!("kvscope runs in a PID namespace other than the host's (pid:[{inode}]): NVML reports host PIDs, which cannot be mapped from here; run it in the host's PID namespace (docker --pid=host, Kubernetes hostPID: true) to see which process is which")),
            View::Unknown(why) => Some(format!("cannot tell whether NVML's host PIDs are this namespace's ({why}); they are shown unmapped")),
        }
    }
}

/// A process's PIDs from this /proc's namespace down to its own (NSpid).
pub fn nspid(proc_root: &Path, pid: u32) -> Option<Vec<u32>> {
    let status = std::fs::read_to_string(proc_root.join(pid.to_string()).join("status")).ok()?;
    let line = status.lines().find_map(|l| l.strip_prefix("NSpid:"))?;
    let ids: Option<Vec<u32>> = line.split_whitespace().map(|x| x.parse().ok()).collect();
    ids.filter(|v| !v.is_empty())
}

/// Where a host PID is, seen from here.
#[derive(Clone, Debug, PartialEq)]
pub struct Mapped {
    /// This namespace's PID (None: cannot be mapped, or the process is gone).
    pub pid: Option<u32>,
    /// Its PID in its own namespace, when that is another (a container's).
    pub inner_pid: Option<u32>,
}

pub fn map(view: &View, proc_root: &Path, host_pid: u32) -> Mapped {
    match view {
        View::Host => {
            let ids = nspid(proc_root, host_pid);
            Mapped {
                pid: ids.as_ref().map(|_| host_pid),
                inner_pid: ids.filter(|v| v.len() > 1).and_then(|v| v.last().copied()),
            }
        }
        _ => Mapped {
            pid: None,
            inner_pid: None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_proc(name: &str, ns: &str, procs: &[(u32, &str)]) -> std::path::PathBuf {
        let root =
            std::env::temp_dir().join(format!("kvscope-pidns-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("self/ns")).unwrap();
        std::os::unix::fs::symlink(ns, root.join("self/ns/pid")).unwrap();
        for (pid, nspid) in procs {
            let d = root.join(pid.to_string());
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(
                d.join("status"),
                format!("Name:\tx\nPid:\t{pid}\nNSpid:\t{nspid}\n"),
            )
            .unwrap();
        }
        root
    }

    #[test]
    fn host_namespace_maps_and_finds_the_container_pid() {
        let root = fake_proc(
            "host",
            "pid:[4026531836]",
            &[(4242, "4242\t17"), (99, "99")],
        );
        let v = View::of(&root);
        assert_eq!(v, View::Host);
        assert_eq!(v.unmapped_reason(), None);
        assert_eq!(
            map(&v, &root, 4242),
            Mapped {
                pid: Some(4242),
                inner_pid: Some(17)
            }
        );
        assert_eq!(
            map(&v, &root, 99),
            Mapped {
                pid: Some(99),
                inner_pid: None
            }
        );
        // Gone (no /proc entry): not mapped.
        assert_eq!(
            map(&v, &root, 5),
            Mapped {
                pid: None,
                inner_pid: None
            }
        );
        let _ = std::fs::remove_dir_all(root);
    }

    #[test]
    fn a_child_namespace_says_it_cannot_map() {
        let root = fake_proc("child", "pid:[4026532999]", &[(17, "17")]);
        let v = View::of(&root);
        assert_eq!(v, View::Child { inode: 4026532999 });
        let why = v.unmapped_reason().unwrap();
        assert!(why.contains("--pid=host") && !why.contains('\n'));
        assert_eq!(
            map(&v, &root, 17).pid,
            None,
            "a host PID is never taken for a local one"
        );
        let broken = fake_proc("broken", "nonsense", &[]);
        assert!(matches!(View::of(&broken), View::Unknown(_)));
        let _ = std::fs::remove_dir_all(root);
        let _ = std::fs::remove_dir_all(broken);
    }
}
