//! What `kvscope watch` shows: a line per process and device, built from
//! the live states and each one's recent history (the sparkline). Text
//! only; `watch` decides how it reaches the terminal.

use crate::report::state::{DeviceState, State};
use crate::units::bytes;
use std::collections::{BTreeMap, VecDeque};

/// History kept for the sparkline.
pub const WINDOW_MS: u64 = 60_000;
/// Characters of the sparkline.
const SPARK_WIDTH: usize = 20;
const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];

/// A process's device, across restarts of the same pid.
type Key = (u32, u64, u32);

/// Live bytes of each (pid, start, device) over the last minute.
#[derive(Default)]
pub struct History {
    points: BTreeMap<Key, VecDeque<(u64, u64)>>,
}

impl History {
    /// Adds the states' figures at `now_ms`; forgets processes no longer live.
    pub fn add(&mut self, states: &[State], now_ms: u64) {
        let mut seen = Vec::new();
        for s in states {
            for d in &s.devices {
                let key = (s.pid, s.start_unix_ms, d.device);
                let q = self.points.entry(key).or_default();
                q.push_back((now_ms, d.memory.live_bytes));
                while q
                    .front()
                    .is_some_and(|&(t, _)| t + WINDOW_MS < now_ms || q.len() > 4096)
                {
                    q.pop_front();
                }
                seen.push(key);
            }
        }
        self.points.retain(|k, _| seen.contains(k));
    }

    fn spark(&self, key: Key) -> String {
        let Some(q) = self.points.get(&key) else {
            return String::new();
        };
        let values: Vec<u64> = q.iter().map(|&(_, v)| v).collect();
        sparkline(&values, SPARK_WIDTH)
    }
}

/// The last `width` values (evenly picked when there are more) as bars
/// scaled to their maximum.
pub fn sparkline(values: &[u64], width: usize) -> String {
    if values.is_empty() || width == 0 {
        return String::new();
    }
    let picked: Vec<u64> = if values.len() <= width {
        values.to_vec()
    } else {
        (0..width)
            .map(|i| values[i * (values.len() - 1) / (width - 1).max(1)])
            .collect()
    };
    let max = picked.iter().copied().max().unwrap_or(0).max(1);
    picked
        .iter()
        .map(|&v| BARS[((v as u128 * 7 + max as u128 / 2) / max as u128) as usize])
        .collect()
}

/// Weights, KV cache and the rest by the program's markers, as `check`
/// splits them: before the `serve` marker, a phase named for the KV cache is
/// KV and the others are weights (loading is usually marked `load`); from
/// `serve` on, the rest. Without a `serve` marker, only phases named for
/// weights or the KV cache are told apart.
fn categories(d: &DeviceState) -> Option<String> {
    let served = d.phases.iter().any(|p| is_serve(&p.phase));
    let (mut weights, mut kv, mut other) = (0u64, 0u64, 0u64);
    let mut serving = false;
    for p in &d.phases {
        let l = p.phase.to_ascii_lowercase();
        serving |= is_serve(&l);
        if l.contains("kv") && !serving {
            kv += p.bytes;
        } else if (served && !serving) || l.contains("weight") {
            weights += p.bytes;
        } else {
            other += p.bytes;
        }
    }
    (weights + kv > 0).then(|| {
        format!(
            "weights {} kv {} other {}",
            bytes(weights),
            bytes(kv),
            bytes(other)
        )
    })
}

fn is_serve(label: &str) -> bool {
    label.trim().eq_ignore_ascii_case("serve")
}

/// What the device's allocators hold free: pools' reserve beyond use, the
/// framework's reserved beyond allocated (the `check` alerts' fragmentation).
pub fn held_free(d: &DeviceState) -> u64 {
    let pools = d.pool_reserved_bytes.saturating_sub(d.pool_used_bytes);
    let framework = d
        .framework_reserved_bytes
        .zip(d.framework_allocated_bytes)
        .map_or(0, |(r, a)| r.saturating_sub(a));
    pools.max(framework)
}

pub const HEADER: &str =
    "     PID RANK DEV       LIVE       PEAK   RESERVED  HELD-FREE  FAIL  LAST MINUTE";

/// A line per process and device (a process with no device yet: one line).
pub fn lines(states: &[State], history: &History) -> Vec<String> {
    let mut out = Vec::new();
    for s in states {
        let rank = s.rank.map_or("-".to_string(), |r| r.to_string());
        let failures: u64 = s.failures.iter().map(|f| f.count).sum();
        if s.devices.is_empty() {
            out.push(format!(
                "{:>8} {rank:>4}   -  (no device memory yet)",
                s.pid
            ));
        }
        for d in &s.devices {
            let mut line = format!(
                "{:>8} {rank:>4} {:>3} {:>10} {:>10} {:>10} {:>10} {failures:>5}  {}",
                s.pid,
                d.device,
                bytes(d.memory.live_bytes),
                bytes(d.memory.peak_bytes),
                bytes(d.reserved_bytes),
                bytes(held_free(d)),
                history.spark((s.pid, s.start_unix_ms, d.device)),
            );
            if let Some(c) = categories(d) {
                line.push_str("  ");
                line.push_str(&c);
            }
            out.push(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_before_serve_are_weights_as_check_counts_them() {
        let phase = |p: &str, b: u64| crate::report::state::PhaseBytes {
            phase: p.into(),
            bytes: b,
            count: 1,
        };
        let mut d = DeviceState {
            phases: vec![
                phase("start", 1),
                phase("load", 16),
                phase("kv_cache", 55),
                phase("serve", 2),
                phase("request 3 start", 4),
            ],
            ..DeviceState::default()
        };
        assert_eq!(
            categories(&d).as_deref(),
            Some("weights 17 B kv 55 B other 6 B")
        );
        // Without a serve marker: only named phases are told apart.
        d.phases.truncate(3);
        assert_eq!(
            categories(&d).as_deref(),
            Some("weights 0 B kv 55 B other 17 B")
        );
    }

    #[test]
    fn sparklines_scale_to_their_maximum() {
        assert_eq!(sparkline(&[0, 50, 100], 10), "▁▅█");
        assert_eq!(sparkline(&[7; 100], 5).chars().count(), 5);
        assert_eq!(sparkline(&[], 5), "");
    }

    #[test]
    fn history_forgets_ended_processes_and_old_points() {
        let mut h = History::default();
        let mut s = State {
            pid: 3,
            devices: vec![DeviceState::default()],
            ..State::default()
        };
        h.add(std::slice::from_ref(&s), 0);
        s.devices[0].memory.live_bytes = 10;
        h.add(std::slice::from_ref(&s), WINDOW_MS + 1);
        assert_eq!(
            h.points[&(3, 0, 0)].len(),
            1,
            "the point at 0 is out of the window"
        );
        h.add(&[], WINDOW_MS + 2);
        assert!(h.points.is_empty());
    }
}
