//! A finding: a name, a severity, the evidence, and what to do next.

use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    pub fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "WARNING",
            Severity::Critical => "CRITICAL",
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    /// Stable identifier, e.g. `leak_per_request`.
    pub name: &'static str,
    pub severity: Severity,
    /// Which process (report) it is about: its label.
    pub process: Option<String>,
    pub device: Option<u32>,
    /// One line.
    pub summary: String,
    /// The numbers, times and allocation groups behind it.
    pub evidence: Vec<String>,
    /// The same numbers for machines (bytes as integers).
    pub numbers: BTreeMap<&'static str, Value>,
    pub next: String,
}

impl Finding {
    pub fn new(name: &'static str, severity: Severity, summary: impl Into<String>) -> Finding {
        Finding {
            name,
            severity,
            process: None,
            device: None,
            summary: summary.into(),
            evidence: Vec::new(),
            numbers: BTreeMap::new(),
            next: String::new(),
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
