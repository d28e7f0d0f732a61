//! Failed calls: counts per entry point and error code, and the first ones in order.

use crate::report::Api;
use std::collections::BTreeMap;
use std::sync::Mutex;

pub const FAILURE_LIMIT: usize = 256;

/// One failed call, as recorded on the failing thread.
#[derive(Clone, Copy, Debug)]
pub struct Failure {
    pub ticks: u64,
    pub api: Api,
    pub device: u32,
    pub size: u64,
    pub code: i32,
    pub thread: u32,
}

#[derive(Default)]
struct Log {
    counts: BTreeMap<(Api, i32), u64>,
    first: Vec<Failure>,
}

#[derive(Default)]
pub struct Failures {
    log: Mutex<Log>,
}

impl Failures {
    pub fn record(&self, f: Failure) {
        if let Ok(mut l) = self.log.lock() {
            *l.counts.entry((f.api, f.code)).or_insert(0) += 1;
            if l.first.len() < FAILURE_LIMIT {
                l.first.push(f);
            }
        }
    }

    pub fn snapshot(&self) -> (BTreeMap<(Api, i32), u64>, Vec<Failure>) {
        self.log
            .lock()
            .map(|l| (l.counts.clone(), l.first.clone()))
            .unwrap_or_default()
    }
}
