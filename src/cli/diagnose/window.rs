//! A report as of this run. A server diagnosed before keeps the earlier
//! runs' markers on its timeline (their `serve`, their requests, with the
//! same ids `d0`, `d1`, ...), and the check read them as this run's: steps
//! judged on an earlier run's requests, a finding repeated once per run.
//! Those markers are dropped: the serving and request markers put from
//! outside (source `external`: earlier runs, `kvscope mark PID`) before this
//! run began. The program's own markers stay (its `serve` included: it
//! still says when serving began); without one, what was allocated before
//! this run counts as before serving (the baseline is the server as this
//! run found it).

use crate::check::markers::is_serving_or_request;
use crate::report::{Report, Space};

/// What was left out of a report: the earlier runs' markers, and the device
/// memory still held from allocations made since the first of them (now
/// counted as before serving: part of the weights when not KV cache).
#[derive(Debug, Default, PartialEq)]
pub struct Earlier {
    pub markers: usize,
    pub held_bytes: u64,
}

/// Drops the serving and request markers `r` took from outside before
/// `since_unix_ms`, and renumbers its allocations' phases to match.
pub fn since(r: &mut Report, since_unix_ms: u64) -> Earlier {
    // The report's clock (ms since its process started) against the wall
    // clock, both read when it was written.
    let cut = since_unix_ms as f64 - (r.written_unix_ms as f64 - r.t_ms);
    let dropped: Vec<bool> = r
        .markers
        .iter()
        .map(|m| m.t_ms < cut && m.source == "external" && is_serving_or_request(&m.label))
        .collect();
    let n = dropped.iter().filter(|&&d| d).count();
    let Some(first) = dropped.iter().position(|&d| d) else {
        return Earlier::default();
    };
    let from = r.markers[first].t_ms;
    let held_bytes = r
        .live
        .allocations
        .iter()
        .filter(|a| a.api.space() == Space::Device && a.t_ms >= from && a.t_ms < cut)
        .map(|a| a.size)
        .sum();
    // Phase p is the interval after marker p - 1: it moves down by the
    // markers dropped among the first p.
    let mut before = vec![0u32; dropped.len() + 1];
    for (i, &d) in dropped.iter().enumerate() {
        before[i + 1] = before[i] + d as u32;
    }
    for a in &mut r.live.allocations {
        a.phase -= before[(a.phase as usize).min(dropped.len())];
    }
    // The timeline's points at those markers are plain points now: the
    // check pairs marker points with markers by label.
    for s in &mut r.timeline {
        if s.t_ms < cut && s.marker.as_deref().is_some_and(is_serving_or_request) {
            s.marker = None;
        }
    }
    let mut i = 0;
    r.markers.retain(|_| {
        i += 1;
        !dropped[i - 1]
    });
    Earlier {
        markers: n,
        held_bytes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::markers::Phases;
    use crate::check::testkit::{ReportBuilder, MIB};

    #[test]
    fn an_earlier_runs_markers_are_dropped_and_phases_follow() {
        // An earlier run (ms 2 to 5), then this one (from ms 6).
        let mut r = ReportBuilder::new()
            .marker("load")
            .marker("serve")
            .marker("request d0 start tokens=8")
            .alloc(MIB)
            .marker("request d0 done")
            .marker("serve")
            .marker("request d0 start tokens=4")
            .alloc(2 * MIB)
            .marker("request d0 done")
            .build();
        for m in &mut r.markers[1..] {
            m.source = "external".into();
        }
        r.written_unix_ms = 1_000_000 + r.t_ms as u64;
        // The 1 MiB made during the earlier run is still held.
        assert_eq!(
            since(&mut r, 1_000_006),
            Earlier {
                markers: 3,
                held_bytes: MIB
            }
        );
        let labels: Vec<&str> = r.markers.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(
            labels,
            [
                "load",
                "serve",
                "request d0 start tokens=4",
                "request d0 done"
            ]
        );
        let phase_of = |size| {
            let a = r.live.allocations.iter().find(|a| a.size == size).unwrap();
            r.phase_name(a.phase)
        };
        assert_eq!(phase_of(MIB), "load");
        assert_eq!(phase_of(2 * MIB), "request d0 start tokens=4");
        let p = Phases::of(&r);
        assert_eq!(p.requests.len(), 1);
        assert_eq!(p.requests[0].tokens, Some(4));
        assert_eq!(p.serve_ms, Some(6.0));
    }

    #[test]
    fn a_first_run_is_left_as_it_is() {
        let mut r = ReportBuilder::new()
            .marker("load")
            .alloc(MIB)
            .marker("serve")
            .build();
        r.written_unix_ms = 1_000_000 + r.t_ms as u64;
        let before = serde_json::to_string(&r).unwrap();
        assert_eq!(since(&mut r, 1_000_002), Earlier::default());
        assert_eq!(serde_json::to_string(&r).unwrap(), before);
    }

    #[test]
    fn the_programs_own_markers_stay() {
        // The program's `serve` (source api), then an earlier run's request.
        let mut r = ReportBuilder::new()
            .marker("serve")
            .marker("request d0 start tokens=8")
            .marker("request d0 done")
            .marker("request d0 start tokens=4")
            .build();
        for m in &mut r.markers[1..] {
            m.source = "external".into();
        }
        r.written_unix_ms = 1_000_000 + r.t_ms as u64;
        assert_eq!(since(&mut r, 1_000_004).markers, 2);
        let labels: Vec<&str> = r.markers.iter().map(|m| m.label.as_str()).collect();
        assert_eq!(labels, ["serve", "request d0 start tokens=4"]);
    }
}
