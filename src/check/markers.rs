//! What the markers of a report say about the run: when loading and serving
//! began, and each request's start, size and end.
//!
//! Conventions (any other label is kept as a phase name):
//! `load`, `profile`, `kv_cache`, `serve` (serving begins: the baseline);
//! `request <id> start tokens=<n>` and `request <id> done`; `idle`.

use crate::report::{Marker, Report};

#[derive(Clone, Debug, PartialEq)]
pub struct Request {
    pub id: String,
    pub tokens: Option<u64>,
    pub start_ms: f64,
    pub done_ms: Option<f64>,
    /// Index of its start marker.
    pub start_marker: usize,
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
}

fn request(m: &Marker) -> Option<(String, bool, Option<u64>)> {
    let mut w = m.label.split_whitespace();
    if w.next()? != "request" {
        return None;
    }
    let id = w.next()?.to_string();
    match w.next()? {
        "start" => {
            let tokens = w
                .find_map(|x| x.strip_prefix("tokens="))
                .and_then(|n| n.parse().ok())
                // Beyond any context window: a damaged label, not a request size.
                .filter(|&n: &u64| n <= 1 << 32);
            Some((id, true, tokens))
        }
        "done" | "end" => Some((id, false, None)),
        _ => None,
    }
}

impl Phases {
    pub fn of(r: &Report) -> Phases {
        let mut p = Phases::default();
        for (i, m) in r.markers.iter().enumerate() {
            if m.label == "serve" && p.serve.is_none() {
                p.serve = Some(i);
                p.serve_ms = Some(m.t_ms);
            }
            match request(m) {
                Some((id, true, tokens)) => p.requests.push(Request {
                    id,
                    tokens,
                    start_ms: m.t_ms,
                    done_ms: None,
                    start_marker: i,
                }),
                Some((id, false, _)) => {
                    p.done_ms.push(m.t_ms);
                    p.last_done_marker = Some(i);
                    if let Some(q) = p
                        .requests
                        .iter_mut()
                        .rev()
                        .find(|q| q.id == id && q.done_ms.is_none())
                    {
                        q.done_ms = Some(m.t_ms);
                    }
                }
                None => {}
            }
        }
        // Without a `serve` marker, serving begins with the first request.
        if p.serve_ms.is_none() {
            p.serve_ms = p.requests.first().map(|q| q.start_ms);
        }
        p
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

    pub fn tokens_served(&self) -> u64 {
        self.requests
            .iter()
            .filter(|q| q.done_ms.is_some())
            .filter_map(|q| q.tokens)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(p.tokens_served(), 400);
    }
}
