//! What each live allocation is, by the breakdown's rules: the categories
//! that PyTorch's memory_viz colours allocations by.

use super::kv_detect::{self, KvFound};
use super::markers::Phases;
use crate::report::{LiveAlloc, Report};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Category {
    Weights,
    KvCache,
    Activations,
    /// Made after the KV cache without a serving marker to say more.
    Other,
}

impl Category {
    pub fn name(self) -> &'static str {
        match self {
            Category::Weights => "weights",
            Category::KvCache => "kv_cache",
            Category::Activations => "activations",
            Category::Other => "other",
        }
    }
}

/// The time rule of one device, apart from the KV cache it is given: made
/// before serving began (the `serve` marker's phase, or before the first KV
/// tensor without one) is weights; after it, activations and temporaries
/// with a serving marker, other without. The breakdown sums by it.
pub struct Rule {
    serving: Option<u32>,
    first_kv_t: f64,
}

impl Rule {
    pub fn new(r: &Report, kv: &KvFound, phases: &Phases) -> Rule {
        let first_kv_t = r
            .live
            .allocations
            .iter()
            .filter(|a| kv.addresses.contains(&a.address))
            .map(|a| a.t_ms)
            .fold(f64::INFINITY, f64::min);
        Rule {
            serving: phases.serving_phase(r),
            first_kv_t,
        }
    }

    pub fn serving(&self) -> Option<u32> {
        self.serving
    }

    pub fn of(&self, kv: &KvFound, a: &LiveAlloc) -> Category {
        if kv.addresses.contains(&a.address) {
            return Category::KvCache;
        }
        let before_serving = match self.serving {
            Some(s) => a.phase < s,
            None => a.t_ms < self.first_kv_t,
        };
        if before_serving {
            Category::Weights
        } else if self.serving.is_some() {
            Category::Activations
        } else {
            Category::Other
        }
    }
}

/// The rules of one device with its KV cache found by shape (or the
/// model's layout): what memory_viz colours each allocation by.
pub struct Categorizer {
    kv: KvFound,
    rule: Rule,
}

impl Categorizer {
    pub fn new(r: &Report, device: u32) -> Categorizer {
        let phases = Phases::of(r);
        let kv = kv_detect::by_shape(r, device, &phases);
        Categorizer {
            rule: Rule::new(r, &kv, &phases),
            kv,
        }
    }

    pub fn of(&self, a: &LiveAlloc) -> Category {
        self.rule.of(&self.kv, a)
    }
}
