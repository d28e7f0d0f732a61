//! The builder every finding's words go through: a summary, evidence lines,
//! the numbers machines read, and what to do next.

use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Default)]
pub struct Words {
    pub summary: String,
    pub evidence: Vec<String>,
    pub numbers: BTreeMap<&'static str, Value>,
    pub next: String,
}

impl Words {
    pub fn new(summary: impl Into<String>) -> Words {
        Words {
            summary: summary.into(),
            ..Words::default()
        }
    }
    pub fn evidence(mut self, line: impl Into<String>) -> Self {
        self.evidence.push(line.into());
        self
    }
    pub fn number(mut self, key: &'static str, v: impl Into<Value>) -> Self {
        self.numbers.insert(key, v.into());
        self
    }
    pub fn next(mut self, what: impl Into<String>) -> Self {
        self.next = what.into();
        self
    }
}
