//! Which reports belong together: the reports of one process merge into
//! one, and processes are the ranks of one job only when what they recorded
//! says so. Everything else is a run of its own, checked on its own.
//!
//! The rule (README, "Several reports"):
//!
//! 1. One process: the same host, pid and start time (`start_unix_ms`).
//!    Its exit report, OOM post-mortem, checkpoints and dumps merge.
//! 2. One run: the same `process.run_id` as `kvscope run` sets it for a
//!    command and all its children. An id the shim made up for the process
//!    itself (`<host>-<pid>-<start_unix_ms>`) or none (kvscope 0.1) says only
//!    that the process was not started by `kvscope run`: such processes form
//!    one "unknown run" among themselves, never with a `kvscope run` id.
//! 3. Ranks of one job, within one run: processes with distinct launch ranks
//!    (`process.launch.rank`, or RANK in a 0.1 report's `env`) of the same
//!    `world_size` (> 1 when given); or, without launch ranks, children of
//!    one parent (same host and `ppid`) whose lifetimes overlap (a shell
//!    running one program after another is a parent too, but its children
//!    do not live at the same time). A rank already taken starts another job.
//! 4. Any other process is a run of its own.

use crate::report::{Reason, Report};

/// The reports of one process, merged: (their names, the merged report).
pub type Proc = (Vec<String>, Report);

/// Processes checked together.
pub struct Run {
    /// `process.run_id` when `kvscope run` set it (not one the shim made up).
    pub run_id: Option<String>,
    /// The processes look like the ranks of one job (more than one of them).
    pub ranks: bool,
    /// The job's world size, when its ranks recorded one.
    pub world_size: Option<u32>,
    pub processes: Vec<Proc>,
}

/// Reports of one process (an exit report and its OOM post-mortem, say) become one.
fn merge(mut group: Vec<(String, Report)>) -> Proc {
    // A final report (exit, signal) holds everything; otherwise the newest
    // snapshot, checkpoint or dump alike: a start-up checkpoint must not win
    // over the dumps `kvscope dump` or `diagnose` asked for later (it had,
    // and the check then judged a server on its state before any request).
    let rank = |r: &Report| match r.reason {
        Some(Reason::Exit) | Some(Reason::Signal) => 2,
        Some(Reason::Checkpoint) | Some(Reason::Dump) => 1,
        _ => 0,
    };
    group.sort_by(|a, b| {
        rank(&a.1)
            .cmp(&rank(&b.1))
            .then(a.1.t_ms.total_cmp(&b.1.t_ms))
    });
    let names = group.iter().map(|(n, _)| n.clone()).collect();
    let oom = group.iter().find_map(|(_, r)| r.oom.clone());
    let (_, mut main) = group.pop().unwrap_or_default();
    if main.oom.is_none() {
        main.oom = oom;
    }
    (names, main)
}

type ProcKey = (Option<String>, u32, u64);

fn proc_key(r: &Report) -> ProcKey {
    let p = &r.process;
    (p.hostname.clone(), p.pid, p.start_unix_ms)
}

/// The run id `kvscope run` gave, or None for one the shim made up for the
/// process itself (or none at all).
pub fn given_run_id(r: &Report) -> Option<String> {
    let p = &r.process;
    let id = p.run_id.as_deref()?;
    let made_up = format!(
        "{}-{}-{}",
        p.hostname.as_deref().unwrap_or(""),
        p.pid,
        p.start_unix_ms
    );
    (id != made_up && !id.ends_with(&format!("-{}-{}", p.pid, p.start_unix_ms)))
        .then(|| id.to_string())
}

/// [start, end] in ms since the epoch, when the report knows its start.
fn lifetime(r: &Report) -> Option<(u64, u64)> {
    let s = r.process.start_unix_ms;
    (s > 0).then(|| (s, s + r.t_ms.max(0.0) as u64))
}

fn overlap(a: &Report, b: &Report) -> bool {
    match (lifetime(a), lifetime(b)) {
        (Some((s1, e1)), Some((s2, e2))) => s1 <= e2 && s2 <= e1,
        // Without start times nothing says they did not run together.
        _ => true,
    }
}

fn siblings(a: &Report, b: &Report) -> bool {
    a.process.ppid > 1
        && a.process.ppid == b.process.ppid
        && a.process.hostname == b.process.hostname
        && overlap(a, b)
}

fn world(r: &Report) -> Option<u32> {
    r.process
        .launch
        .world_size
        .or_else(|| r.process.env.get("WORLD_SIZE").and_then(|w| w.parse().ok()))
}

/// Reports grouped into processes, runs and jobs, in the order first given.
pub fn group(reports: Vec<(String, Report)>) -> Vec<Run> {
    let mut by_proc: Vec<(ProcKey, Vec<(String, Report)>)> = Vec::new();
    for (name, r) in reports {
        let key = proc_key(&r);
        match by_proc.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => g.push((name, r)),
            None => by_proc.push((key, vec![(name, r)])),
        }
    }
    let procs: Vec<Proc> = by_proc.into_iter().map(|(_, g)| merge(g)).collect();

    let mut by_run: Vec<(Option<String>, Vec<Proc>)> = Vec::new();
    for p in procs {
        let id = given_run_id(&p.1);
        match by_run.iter_mut().find(|(k, _)| *k == id) {
            Some((_, g)) => g.push(p),
            None => by_run.push((id, vec![p])),
        }
    }
    let mut runs = Vec::new();
    for (run_id, procs) in by_run {
        runs.extend(jobs(run_id, procs));
    }
    runs
}

/// The jobs among the processes of one run.
fn jobs(run_id: Option<String>, procs: Vec<Proc>) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    let (ranked, plain): (Vec<Proc>, Vec<Proc>) = procs
        .into_iter()
        .partition(|(_, r)| r.process.rank().is_some() && world(r).is_none_or(|w| w > 1));
    // Launch ranks: each process joins the first job of its world size that
    // lacks its rank.
    let mut ranked_jobs: Vec<(Option<u32>, Vec<Proc>)> = Vec::new();
    for p in ranked {
        let (rank, w) = (p.1.process.rank(), world(&p.1));
        match ranked_jobs
            .iter_mut()
            .find(|(jw, g)| *jw == w && g.iter().all(|(_, r)| r.process.rank() != rank))
        {
            Some((_, g)) => g.push(p),
            None => ranked_jobs.push((w, vec![p])),
        }
    }
    for (w, mut g) in ranked_jobs {
        g.sort_by_key(|(_, r)| r.process.rank());
        out.push(Run {
            run_id: run_id.clone(),
            ranks: g.len() > 1,
            world_size: w,
            processes: g,
        });
    }
    // Children of one parent alive together.
    let mut sib_jobs: Vec<Vec<Proc>> = Vec::new();
    for p in plain {
        match sib_jobs
            .iter_mut()
            .find(|g| g.iter().any(|(_, r)| siblings(r, &p.1)))
        {
            Some(g) => g.push(p),
            None => sib_jobs.push(vec![p]),
        }
    }
    for g in sib_jobs {
        out.push(Run {
            run_id: run_id.clone(),
            ranks: g.len() > 1,
            world_size: None,
            processes: g,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::testkit::ReportBuilder;

    fn proc_(pid: u32, ppid: u32, start: u64, run: Option<&str>, rank: Option<u32>) -> Report {
        let mut r = ReportBuilder::new().build();
        let p = &mut r.process;
        p.pid = pid;
        p.ppid = ppid;
        p.hostname = Some("h".into());
        p.start_unix_ms = start;
        p.run_id = Some(run.map_or(format!("h-{pid}-{start}"), String::from));
        p.launch.rank = rank;
        p.launch.world_size = rank.map(|_| 4);
        r.t_ms = 10_000.0;
        r
    }

    fn shape(runs: &[Run]) -> Vec<(bool, Vec<u32>)> {
        runs.iter()
            .map(|r| {
                (
                    r.ranks,
                    r.processes.iter().map(|p| p.1.process.pid).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn the_newest_snapshot_speaks_for_a_process_the_final_one_first() {
        let at = |reason, t| {
            let mut r = proc_(7, 1, 1_000, None, None);
            r.reason = Some(reason);
            r.t_ms = t;
            r
        };
        let pick = |reports: Vec<(&str, Report)>| {
            let named = reports
                .into_iter()
                .map(|(n, r)| (n.to_string(), r))
                .collect();
            let runs = group(named);
            runs[0].processes[0].1.t_ms
        };
        // A start-up checkpoint, then two dumps: the later dump.
        let snapshots = vec![
            ("ck", at(Reason::Checkpoint, 2_200.0)),
            ("d1", at(Reason::Dump, 4_601.0)),
            ("d2", at(Reason::Dump, 3_000.0)),
        ];
        assert_eq!(pick(snapshots), 4_601.0);
        // The exit report wins over a later-stamped dump.
        let with_exit = vec![
            ("d1", at(Reason::Dump, 9_000.0)),
            ("ex", at(Reason::Exit, 8_000.0)),
        ];
        assert_eq!(pick(with_exit), 8_000.0);
    }

    #[test]
    fn separate_runs_are_not_ranks() {
        // Four runs of one program from one shell, one after another.
        let reports = (0..4)
            .map(|i| {
                (
                    format!("{i}"),
                    proc_(100 + i, 50, 1_000_000 + i as u64 * 60_000, None, None),
                )
            })
            .collect();
        assert_eq!(
            shape(&group(reports)),
            [
                (false, vec![100]),
                (false, vec![101]),
                (false, vec![102]),
                (false, vec![103])
            ]
        );
    }

    #[test]
    fn launch_ranks_and_live_siblings_are_one_job() {
        let mut reports: Vec<(String, Report)> = (0..4)
            .map(|i| {
                (
                    format!("r{i}"),
                    proc_(200 + i, 1, 1_000 + i as u64, None, Some(i)),
                )
            })
            .collect();
        // vLLM's workers: children of one engine, alive together, one run.
        reports.extend((0..2).map(|i| {
            (
                format!("w{i}"),
                proc_(300 + i, 299, 5_000, Some("run-a"), None),
            )
        }));
        // The same process's OOM post-mortem merges with its exit report.
        let mut oom = proc_(300, 299, 5_000, Some("run-a"), None);
        oom.reason = Some(Reason::Oom);
        reports.push(("w0-oom".into(), oom));
        // Another `kvscope run` with a child of the same parent pid: another run.
        reports.push(("x".into(), proc_(302, 299, 5_000, Some("run-b"), None)));
        let runs = group(reports);
        assert_eq!(
            shape(&runs),
            [
                (true, vec![200, 201, 202, 203]),
                (true, vec![300, 301]),
                (false, vec![302])
            ]
        );
        assert_eq!(runs[0].world_size, Some(4));
        assert_eq!(runs[1].processes[0].0, ["w0-oom", "w0"]);
        assert_eq!(runs[1].run_id.as_deref(), Some("run-a"));
    }

    #[test]
    fn a_rank_taken_twice_starts_another_job() {
        let reports = [(0, 0), (1, 1), (2, 0), (3, 1)]
            .into_iter()
            .map(|(i, rank)| {
                let mut r = proc_(
                    400 + i,
                    1,
                    1_000 + i as u64 * 100_000,
                    Some("loop"),
                    Some(rank),
                );
                r.process.launch.world_size = Some(2);
                (format!("{i}"), r)
            })
            .collect();
        assert_eq!(
            shape(&group(reports)),
            [(true, vec![400, 401]), (true, vec![402, 403])]
        );
    }
}
