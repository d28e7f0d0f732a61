//! Growth across the points with no request in flight, read as an allocator
//! engineer reads it. A caching allocator (PyTorch's) keeps what it once
//! needed: memory that grows after the first requests (workspaces, the first
//! segments) or after a request larger than every one before (the cache
//! follows the largest request) is the cache, and stops. Memory that grows
//! again after a request no larger than one already served is kept by
//! someone: a leak. Pure: it sees numbers, not reports.

/// What a growth verdict measured.
// The names are the JSON's (`tensor_level`, `segment_level`, `device_level`).
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum View {
    /// The framework's own counters (PyTorch's memory_allocated): bytes in
    /// live tensors, its cache excluded.
    TensorLevel,
    /// The CUDA allocations kvscope saw: a caching allocator's segments, its
    /// cache included.
    SegmentLevel,
    /// What the driver counts for the process (NVML, no shim): the context
    /// and every allocator's cache included.
    DeviceLevel,
}

impl View {
    /// The stable name in JSON.
    pub fn name(self) -> &'static str {
        match self {
            View::TensorLevel => "tensor_level",
            View::SegmentLevel => "segment_level",
            View::DeviceLevel => "device_level",
        }
    }
}

/// One stretch of serving between two points with no request in flight.
#[derive(Clone, Debug, PartialEq)]
pub struct StepIn {
    /// The requests completed in it (none when the phases are inferred).
    pub requests: Vec<String>,
    /// Their sizes in tokens, `None` where a request did not tell.
    pub tokens: Vec<Option<u64>>,
    /// The quiet points it lies between.
    pub from_ms: f64,
    pub to_ms: f64,
    pub before: u64,
    pub after: u64,
}

impl StepIn {
    pub fn delta(&self) -> i64 {
        self.after as i64 - self.before as i64
    }

    /// Its largest request, if every one of them told its size.
    pub fn max_tokens(&self) -> Option<u64> {
        if self.tokens.is_empty() {
            return None;
        }
        self.tokens.iter().try_fold(0, |m, t| t.map(|t| m.max(t)))
    }
}

/// How a step's requests compare with those served before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Size {
    /// The first step: nothing served before.
    First,
    /// No larger than a request already served.
    Repeat,
    /// Larger than every request before it.
    NewHigh,
    /// Sizes not told (or phases inferred): cannot compare.
    Unknown,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub input: StepIn,
    pub size: Size,
    /// Grew by more than the threshold per request.
    pub grew: bool,
}

/// Why growth cannot be told apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unclear {
    /// Every request after the first was larger than the ones before, and
    /// memory grew after each: the cache following the largest request, or a leak.
    EveryRequestLarger,
    /// Only one stretch of serving: warm-up or a leak.
    TooFewRequests,
    /// The requests did not tell their sizes.
    SizesUnknown,
    /// No markers: the quiet points are the shim's automatic idle points.
    PhasesInferred,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Verdict {
    /// Nothing grew.
    Flat,
    /// Growth the allocator's cache explains: after the first step
    /// (`warmup`) and after steps larger than every one before (`high_water`,
    /// indices into `steps`), with steps after them that did not grow.
    Settled {
        warmup: bool,
        high_water: Vec<usize>,
    },
    /// Growth that recurs after requests no larger than ones already served
    /// (`recurring`, indices). `confident`: it came after at least half of
    /// those requests, and their sizes were known.
    Leak {
        recurring: Vec<usize>,
        /// Steps after the first whose requests were no larger than one
        /// already served (the chances it had to recur).
        repeats: usize,
        confident: bool,
    },
    Inconclusive {
        why: Unclear,
        grown: Vec<usize>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Reading {
    pub baseline: u64,
    pub steps: Vec<Step>,
    pub verdict: Verdict,
}

impl Reading {
    /// The last quiet point's level.
    pub fn last(&self) -> u64 {
        self.steps.last().map_or(self.baseline, |s| s.input.after)
    }

    /// Bytes grown over `steps` (indices), and their requests.
    pub fn sum(&self, steps: &[usize]) -> (u64, u64) {
        steps.iter().fold((0, 0), |(b, n), &i| {
            let s = &self.steps[i].input;
            (
                b + s.delta().max(0) as u64,
                n + s.requests.len().max(1) as u64,
            )
        })
    }
}

/// Reads `steps` (in order, each starting where the last ended) from
/// `baseline`. A step grew when it grew by more than `threshold` per request.
pub fn classify(baseline: u64, steps: Vec<StepIn>, threshold: u64, inferred: bool) -> Reading {
    let mut served: Option<u64> = None;
    let mut all_sized = true;
    let steps: Vec<Step> = steps
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            let max = s.max_tokens();
            let size = match (i, max, served) {
                _ if inferred => Size::Unknown,
                (0, _, _) => Size::First,
                (_, Some(m), Some(before)) if m <= before => Size::Repeat,
                (_, Some(_), Some(_)) if all_sized => Size::NewHigh,
                _ => Size::Unknown,
            };
            let known: Vec<u64> = s.tokens.iter().flatten().copied().collect();
            all_sized &= known.len() == s.tokens.len() && !s.tokens.is_empty();
            if let Some(m) = known.iter().max() {
                served = Some(served.map_or(*m, |x| x.max(*m)));
            }
            let per = threshold.max(1) * s.requests.len().max(1) as u64;
            let grew = s.delta() > per as i64;
            Step {
                input: s,
                size,
                grew,
            }
        })
        .collect();
    let verdict = verdict(&steps, inferred);
    Reading {
        baseline,
        steps,
        verdict,
    }
}

fn verdict(steps: &[Step], inferred: bool) -> Verdict {
    let pick = |f: &dyn Fn(&Step) -> bool| -> Vec<usize> {
        (1..steps.len()).filter(|&i| f(&steps[i])).collect()
    };
    let first_grew = steps.first().is_some_and(|s| s.grew);
    if inferred {
        let grown: Vec<usize> = (0..steps.len()).filter(|&i| steps[i].grew).collect();
        return if grown.is_empty() {
            Verdict::Flat
        } else {
            Verdict::Inconclusive {
                why: Unclear::PhasesInferred,
                grown,
            }
        };
    }
    let recurring = pick(&|s| s.grew && s.size == Size::Repeat);
    let repeats = pick(&|s| s.size == Size::Repeat).len();
    let unknown_grown = pick(&|s| s.grew && s.size == Size::Unknown);
    let high = pick(&|s| s.grew && s.size == Size::NewHigh);
    let flat_later = pick(&|s| !s.grew).len();
    if !recurring.is_empty() {
        let confident = 2 * recurring.len() >= repeats && unknown_grown.is_empty();
        return Verdict::Leak {
            recurring,
            repeats,
            confident,
        };
    }
    if !unknown_grown.is_empty() {
        // Without sizes, growth after most steps is still kept memory, but
        // never a confident verdict.
        if unknown_grown.len() >= 2 && unknown_grown.len() >= flat_later {
            return Verdict::Leak {
                repeats: unknown_grown.len(),
                recurring: unknown_grown,
                confident: false,
            };
        }
        let mut grown = unknown_grown;
        grown.extend(&high);
        grown.sort_unstable();
        return Verdict::Inconclusive {
            why: Unclear::SizesUnknown,
            grown,
        };
    }
    if !high.is_empty() && flat_later == 0 {
        let mut grown = high;
        if first_grew {
            grown.insert(0, 0);
        }
        return Verdict::Inconclusive {
            why: Unclear::EveryRequestLarger,
            grown,
        };
    }
    if steps.len() == 1 && first_grew {
        return Verdict::Inconclusive {
            why: Unclear::TooFewRequests,
            grown: vec![0],
        };
    }
    if first_grew || !high.is_empty() {
        Verdict::Settled {
            warmup: first_grew,
            high_water: high,
        }
    } else {
        Verdict::Flat
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    /// Steps from (tokens, level after), one request each, from `base`.
    fn timeline(base: u64, points: &[(Option<u64>, u64)]) -> Vec<StepIn> {
        let mut before = base;
        points
            .iter()
            .enumerate()
            .map(|(i, &(tokens, after))| {
                let s = StepIn {
                    requests: vec![i.to_string()],
                    tokens: vec![tokens],
                    from_ms: i as f64,
                    to_ms: i as f64 + 1.0,
                    before,
                    after,
                };
                before = after;
                s
            })
            .collect()
    }

    fn read(points: &[(Option<u64>, u64)]) -> Reading {
        classify(100 * MIB, timeline(100 * MIB, points), MIB, false)
    }

    /// The healthy H200 run, segment-level: growth after the first request
    /// and after the first requests of 320 and 576 tokens, flat over repeats.
    #[test]
    fn warmup_and_high_water_settle() {
        let m = |x: u64| x * MIB;
        let r = read(&[
            (Some(192), m(228)),
            (Some(320), m(232)),
            (Some(448), m(232)),
            (Some(576), m(252)),
            (Some(192), m(252)),
            (Some(320), m(252)),
            (Some(576), m(252)),
        ]);
        assert_eq!(
            r.verdict,
            Verdict::Settled {
                warmup: true,
                high_water: vec![1, 3]
            }
        );
        assert_eq!(r.sum(&[1, 3]), (24 * MIB, 2));
        assert_eq!(r.steps[2].size, Size::NewHigh);
        assert_eq!(r.steps[4].size, Size::Repeat);
    }

    #[test]
    fn warmup_alone() {
        let r = read(&[(Some(100), 150 * MIB), (Some(100), 150 * MIB)]);
        assert_eq!(
            r.verdict,
            Verdict::Settled {
                warmup: true,
                high_water: vec![]
            }
        );
        // Within the threshold: flat.
        let r = read(&[(Some(100), 100 * MIB + 1000), (Some(50), 100 * MIB)]);
        assert_eq!(r.verdict, Verdict::Flat);
    }

    /// The leak H200 run: 64 MiB more after every request, repeats included.
    #[test]
    fn growth_after_repeats_is_a_leak_at_the_repeats_rate() {
        let mut level = 100 * MIB;
        let mut points = Vec::new();
        for (t, extra) in [
            (192, 128),
            (320, 4),
            (448, 0),
            (576, 20),
            (192, 0),
            (320, 0),
        ] {
            level += (64 + extra) * MIB;
            points.push((Some(t), level));
        }
        let r = read(&points);
        let Verdict::Leak {
            recurring,
            repeats,
            confident,
        } = &r.verdict
        else {
            panic!("{:?}", r.verdict)
        };
        assert_eq!(
            (recurring.as_slice(), *repeats, *confident),
            (&[4, 5][..], 2, true)
        );
        assert_eq!(r.sum(recurring), (128 * MIB, 2));
    }

    #[test]
    fn growth_after_one_repeat_of_many_is_not_confident() {
        let m = |x: u64| x * MIB;
        let r = read(&[
            (Some(100), m(150)),
            (Some(100), m(150)),
            (Some(100), m(152)),
            (Some(100), m(152)),
            (Some(100), m(152)),
        ]);
        assert!(matches!(
            r.verdict,
            Verdict::Leak {
                confident: false,
                repeats: 4,
                ..
            }
        ));
    }

    #[test]
    fn every_request_larger_cannot_be_told_apart() {
        let m = |x: u64| x * MIB;
        let r = read(&[
            (Some(100), m(150)),
            (Some(200), m(200)),
            (Some(300), m(250)),
        ]);
        assert_eq!(
            r.verdict,
            Verdict::Inconclusive {
                why: Unclear::EveryRequestLarger,
                grown: vec![0, 1, 2]
            }
        );
        // One request: warm-up or leak.
        let r = read(&[(Some(100), m(150))]);
        assert!(matches!(
            r.verdict,
            Verdict::Inconclusive {
                why: Unclear::TooFewRequests,
                ..
            }
        ));
        // Larger requests that did not grow show growth is not per request.
        let r = read(&[
            (Some(100), m(150)),
            (Some(200), m(200)),
            (Some(300), m(200)),
        ]);
        assert!(matches!(r.verdict, Verdict::Settled { .. }));
    }

    #[test]
    fn unbounded_growth_recurs_in_proportion_to_tokens() {
        // 1 MiB per token, requests of 100 and 50 tokens: grows after every one.
        let m = |x: u64| x * MIB;
        let r = read(&[
            (Some(100), m(200)),
            (Some(50), m(250)),
            (Some(100), m(350)),
            (Some(50), m(400)),
        ]);
        let Verdict::Leak {
            recurring,
            confident,
            ..
        } = &r.verdict
        else {
            panic!("{:?}", r.verdict)
        };
        assert!(confident);
        assert_eq!(recurring, &[1, 2, 3]);
        assert_eq!(r.sum(recurring), (200 * MIB, 3));
    }

    #[test]
    fn unknown_sizes_and_inferred_phases_are_never_confident() {
        let m = |x: u64| x * MIB;
        let r = read(&[(None, m(150)), (None, m(200)), (None, m(250))]);
        assert!(matches!(
            r.verdict,
            Verdict::Leak {
                confident: false,
                ..
            }
        ));
        let r = read(&[(None, m(150)), (None, m(160)), (None, m(160))]);
        assert!(matches!(
            r.verdict,
            Verdict::Inconclusive {
                why: Unclear::SizesUnknown,
                ..
            }
        ));
        let steps = timeline(m(100), &[(None, m(150)), (None, m(200))]);
        let r = classify(m(100), steps, MIB, true);
        assert_eq!(
            r.verdict,
            Verdict::Inconclusive {
                why: Unclear::PhasesInferred,
                grown: vec![0, 1]
            }
        );
    }
}
