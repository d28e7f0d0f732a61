//! What the markers of a report say about the run: when loading and serving
//! began, and each request's start, size and end.
//!
//! The vocabulary (case does not matter):
//! - phases: `load`, `profile`, `kv_cache`, `warmup`, `drain`;
//! - serving begins (the baseline): `serve`, or its aliases `serving`,
//!   `ready`, `baseline`;
//! - requests: `request <id> start [tokens=<n>]` with `request <id> done` (or
//!   `end`), or `request_start [<id>] [tokens=<n>]` with `request_end [<id>]`
//!   (without an id, each end closes the oldest open request);
//! - `idle`: no request in flight (the shim marks it by itself, source `auto`,
//!   after a quiet spell: such a point can fall inside a long request, and
//!   is only taken as quiet when no marked request is in flight).
//!
//! Any other label is kept as a phase name and counted in `unknown`, so that
//! the check can say which labels it did not understand.

use crate::report::Report;

#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: String,
    pub tokens: Option<u64>,
    pub start_ms: f64,
    pub done_ms: Option<f64>,
    /// Index of its start marker.
    pub start_marker: usize,
    /// Index of its done marker: order decides what was in flight when two
    /// markers carry the same time (the clock's resolution is a microsecond).
    pub done_marker: Option<usize>,
}

#[derive(Clone, Debug, Default)]
pub struct Phases {
    /// Index in `markers` of `serve` (phase numbers of allocations made after it are > this).
    pub serve: Option<usize>,
    pub serve_ms: Option<f64>,
    pub requests: Vec<Request>,
    /// Times of `request ... done` markers, in order.
    pub done_ms: Vec<f64>,
    /// Index of the last `request ... done` marker.
    pub last_done_marker: Option<usize>,
    /// Times of `idle` markers (the program's and the shim's), in order.
    pub idle_ms: Vec<f64>,
    /// Labels not in the vocabulary, each with how many times it came, in
    /// the order first seen.
    pub unknown: Vec<(String, u64)>,
}

/// Labels that name a phase and mean nothing more.
const PHASES: [&str; 5] = ["load", "profile", "kv_cache", "warmup", "drain"];
/// Labels that say serving begins.
const SERVE: [&str; 4] = ["serve", "serving", "ready", "baseline"];

/// What one marker says.
#[derive(Debug, PartialEq)]
enum Says {
    Phase,
    Serve,
    Idle,
    Start {
        id: Option<String>,
        tokens: Option<u64>,
    },
    End {
        id: Option<String>,
    },
    Unknown,
}

fn tokens_of<'a>(words: impl Iterator<Item = &'a str>) -> Option<u64> {
    words
        .filter_map(|x| x.strip_prefix("tokens="))
        .find_map(|n| n.parse().ok())
        // Beyond any context window: a damaged label, not a request size.
        .filter(|&n: &u64| n <= 1 << 32)
}

fn says(label: &str) -> Says {
    let lower = label.trim().to_ascii_lowercase();
    let words: Vec<&str> = lower.split_whitespace().collect();
    let orig: Vec<&str> = label.split_whitespace().collect();
    match words.as_slice() {
        [w] if PHASES.contains(w) => Says::Phase,
        [w] if SERVE.contains(w) => Says::Serve,
        ["idle"] => Says::Idle,
        ["request", _, "start", rest @ ..] => Says::Start {
            id: Some(orig[1].to_string()),
            tokens: tokens_of(rest.iter().copied()),
        },
        ["request", _, "done" | "end"] => Says::End {
            id: Some(orig[1].to_string()),
        },
        ["request_start", rest @ ..] => {
            let id = rest.first().filter(|w| !w.contains('=')).map(|_| orig[1]);
            if rest
                .iter()
                .skip(id.is_some() as usize)
                .any(|w| !w.contains('='))
            {
                return Says::Unknown;
            }
            Says::Start {
                id: id.map(str::to_string),
                tokens: tokens_of(rest.iter().copied()),
            }
        }
        ["request_end"] => Says::End { id: None },
        ["request_end", _] => Says::End {
            id: Some(orig[1].to_string()),
        },
        _ => Says::Unknown,
    }
}

/// Whether a marker says serving began or a request started or ended (what
/// `kvscope diagnose` places).
pub fn is_serving_or_request(label: &str) -> bool {
    matches!(
        says(label),
        Says::Serve | Says::Start { .. } | Says::End { .. }
    )
}

/// Whether a marker says a request started or ended.
pub fn is_request(label: &str) -> bool {
    matches!(says(label), Says::Start { .. } | Says::End { .. })
}

/// Whether a marker says no request is in flight: a request's end or `idle`.
pub fn is_quiet(label: &str) -> bool {
    matches!(says(label), Says::End { .. } | Says::Idle)
}

/// Whether a marker is `idle`.
pub fn is_idle(label: &str) -> bool {
    says(label) == Says::Idle
}

impl Phases {
    pub fn of(r: &Report) -> Phases {
        let mut p = Phases::default();
        let mut unnamed = 0;
        for (i, m) in r.markers.iter().enumerate() {
            match says(&m.label) {
                Says::Serve if p.serve.is_none() => {
                    p.serve = Some(i);
                    p.serve_ms = Some(m.t_ms);
                }
                Says::Serve | Says::Phase => {}
                Says::Idle => p.idle_ms.push(m.t_ms),
                Says::Start { id, tokens } => {
                    let id = id.unwrap_or_else(|| {
                        unnamed += 1;
                        format!("#{unnamed}")
                    });
                    p.requests.push(Request {
                        id,
                        tokens,
                        start_ms: m.t_ms,
                        done_ms: None,
                        start_marker: i,
                        done_marker: None,
                    })
                }
                Says::End { id } => {
                    p.done_ms.push(m.t_ms);
                    p.last_done_marker = Some(i);
                    let open = |q: &&mut Request| q.done_ms.is_none();
                    let q = match &id {
                        // The latest open request of that id.
                        Some(id) => p
                            .requests
                            .iter_mut()
                            .rev()
                            .filter(open)
                            .find(|q| &q.id == id),
                        // The oldest open one.
                        None => p.requests.iter_mut().find(|q| q.done_ms.is_none()),
                    };
                    if let Some(q) = q {
                        q.done_ms = Some(m.t_ms);
                        q.done_marker = Some(i);
                    }
                }
                Says::Unknown => match p.unknown.iter_mut().find(|(l, _)| *l == m.label) {
                    Some((_, n)) => *n += 1,
                    None => p.unknown.push((m.label.clone(), 1)),
                },
            }
        }
        // Without a `serve` marker, serving begins with the first request.
        if p.serve_ms.is_none() {
            p.serve_ms = p.requests.first().map(|q| q.start_ms);
        }
        p
    }

    /// Whether the markers say when serving began (a serve marker or requests).
    pub fn marked(&self) -> bool {
        self.serve_ms.is_some()
    }

    /// Phase number from which an allocation counts as made while serving.
    pub fn serving_phase(&self, r: &Report) -> Option<u32> {
        if let Some(i) = self.serve {
            return Some(i as u32 + 1);
        }
        let t = self.serve_ms?;
        Some(r.markers.iter().filter(|m| m.t_ms < t).count() as u32)
    }

    pub fn completed(&self) -> usize {
        self.requests.iter().filter(|q| q.done_ms.is_some()).count()
    }

    /// Requests in flight at `t`.
    /// Requests in flight at the marker of index `i` (by the order of the
    /// markers, not their times).
    pub fn in_flight_at_marker(&self, i: usize) -> Vec<&Request> {
        self.requests
            .iter()
            .filter(|q| q.start_marker < i && q.done_marker.is_none_or(|d| d > i))
            .collect()
    }

    pub fn in_flight(&self, t: f64) -> Vec<&Request> {
        self.requests
            .iter()
            .filter(|q| q.start_ms <= t && q.done_ms.is_none_or(|d| d > t))
            .collect()
    }

    pub fn max_in_flight(&self) -> usize {
        self.requests
            .iter()
            .map(|q| self.in_flight(q.start_ms).len())
            .max()
            .unwrap_or(0)
    }

    pub fn mean_tokens(&self) -> Option<f64> {
        let t: Vec<u64> = self.requests.iter().filter_map(|q| q.tokens).collect();
        (!t.is_empty()).then(|| t.iter().sum::<u64>() as f64 / t.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Marker;

    fn m(t: f64, label: &str) -> Marker {
        Marker {
            t_ms: t,
            label: label.into(),
            source: "api".into(),
        }
    }

    #[test]
    fn reads_requests_and_serving() {
        let r = Report {
            markers: vec![
                m(1.0, "load"),
                m(2.0, "serve"),
                m(3.0, "request a start tokens=100"),
                m(3.5, "request b start tokens=300"),
                m(4.0, "request a done"),
                m(5.0, "request b done"),
                m(6.0, "request c start tokens=50"),
            ],
            ..Report::default()
        };
        let p = Phases::of(&r);
        assert_eq!(p.serve, Some(1));
        assert_eq!(p.serving_phase(&r), Some(2));
        assert_eq!(p.requests.len(), 3);
        assert_eq!(p.completed(), 2);
        assert_eq!(p.max_in_flight(), 2);
        assert_eq!(p.in_flight(6.5).len(), 1);
        assert_eq!(p.mean_tokens(), Some(150.0));
    }

    #[test]
    fn aliases_pairs_without_ids_and_unknown_labels() {
        let r = Report {
            markers: vec![
                m(1.0, "load"),
                m(1.5, "loading weights"),
                m(2.0, "Ready"),
                m(3.0, "request_start tokens=100"),
                m(4.0, "request_end"),
                m(4.5, "idle"),
                m(5.0, "request_start"),
                m(5.5, "request_start q7 tokens=20"),
                m(6.0, "request_end"),
                m(6.5, "request_end q7"),
                m(7.0, "request x start"),
                m(8.0, "request x end"),
                m(9.0, "loading weights"),
                m(9.5, "request x explode"),
            ],
            ..Report::default()
        };
        let p = Phases::of(&r);
        assert_eq!((p.serve, p.serve_ms), (Some(2), Some(2.0)));
        let got: Vec<(&str, Option<u64>, Option<f64>)> = p
            .requests
            .iter()
            .map(|q| (q.id.as_str(), q.tokens, q.done_ms))
            .collect();
        assert_eq!(
            got,
            [
                ("#1", Some(100), Some(4.0)),
                ("#2", None, Some(6.0)),
                ("q7", Some(20), Some(6.5)),
                ("x", None, Some(8.0)),
            ]
        );
        assert_eq!(p.idle_ms, [4.5]);
        assert_eq!(
            p.unknown,
            [
                ("loading weights".to_string(), 2),
                ("request x explode".to_string(), 1)
            ]
        );
        for alias in ["serve", "serving", "baseline", "READY"] {
            let r = Report {
                markers: vec![m(1.0, alias)],
                ..Report::default()
            };
            assert_eq!(Phases::of(&r).serve, Some(0), "{alias}");
        }
    }
}
