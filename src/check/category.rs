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

/// The rules of one device: KV cache by shape (or the model's layout),
/// weights before serving began, activations and temporaries while serving.
pub struct Categorizer {
    kv: KvFound,
    serving: Option<u32>,
    first_kv_t: f64,
}

impl Categorizer {
    pub fn new(r: &Report, device: u32) -> Categorizer {
        let phases = Phases::of(r);
        Categorizer::with(r, kv_detect::by_shape(r, device, &phases), &phases)
    }

    pub fn with(r: &Report, kv: KvFound, phases: &Phases) -> Categorizer {
        let first_kv_t = r
            .live
            .allocations
            .iter()
            .filter(|a| kv.addresses.contains(&a.address))
            .map(|a| a.t_ms)
            .fold(f64::INFINITY, f64::min);
        Categorizer {
            serving: phases.serving_phase(r),
            kv,
            first_kv_t,
        }
    }

    pub fn of(&self, a: &LiveAlloc) -> Category {
        if self.kv.addresses.contains(&a.address) {
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
