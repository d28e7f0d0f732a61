//! The `live` section: every live allocation (a row per allocation, as a
//! JSON array in the order of `LIVE_COLUMNS`) and its totals by kind, stream
//! and size class.

use super::api::{Api, Space};
use serde::de::{self, SeqAccess, Visitor};
use serde::ser::SerializeTuple;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::fmt;

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Live {
    pub count: u64,
    pub bytes: u64,
    /// Rows were capped at `shim.live_limit` (largest kept).
    pub truncated: bool,
    /// Field names of each row of `allocations`, in order.
    pub columns: Vec<String>,
    /// Largest first.
    pub allocations: Vec<LiveAlloc>,
    pub by_kind: Vec<KindTotal>,
    /// Per device and stream (the stream an allocation was asked on; 0: the
    /// legacy default stream, or an entry point without one).
    pub by_stream: Vec<StreamTotal>,
    pub by_size_class: Vec<SizeClass>,
    /// Per device and calling file (`Report::callers`' `file`; "?" when
    /// unknown), largest first: who allocated the live memory.
    pub by_caller: Vec<CallerTotal>,
}

pub const LIVE_COLUMNS: [&str; 10] = [
    "device", "address", "size", "api", "stream", "t_ms", "seq", "thread", "phase", "caller",
];

/// Rows before the `caller` column (older reports) have this many columns.
const OLD_COLUMNS: usize = 9;

/// A live allocation; a JSON array in the order of `LIVE_COLUMNS`, to keep
/// reports of a million allocations small and quick.
#[derive(Clone, Debug, PartialEq)]
pub struct LiveAlloc {
    pub device: u32,
    pub address: u64,
    pub size: u64,
    pub api: Api,
    pub stream: u64,
    pub t_ms: f64,
    /// Per-thread allocation order; `t_ms` orders across threads.
    pub seq: u64,
    pub thread: u32,
    /// Index of the phase (marker interval) the allocation was made in: 0
    /// before the first marker, i after marker i-1.
    pub phase: u32,
    /// Index in `Report::callers` of the code that called CUDA (the
    /// outermost hooked call's return address); null when unknown.
    pub caller: Option<u32>,
}

impl Serialize for LiveAlloc {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut t = s.serialize_tuple(LIVE_COLUMNS.len())?;
        t.serialize_element(&self.device)?;
        t.serialize_element(&self.address)?;
        t.serialize_element(&self.size)?;
        t.serialize_element(self.api.name())?;
        t.serialize_element(&self.stream)?;
        t.serialize_element(&self.t_ms)?;
        t.serialize_element(&self.seq)?;
        t.serialize_element(&self.thread)?;
        t.serialize_element(&self.phase)?;
        t.serialize_element(&self.caller)?;
        t.end()
    }
}

impl<'de> Deserialize<'de> for LiveAlloc {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Row;
        impl<'de> Visitor<'de> for Row {
            type Value = LiveAlloc;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "an array [{}]", LIVE_COLUMNS.join(", "))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<LiveAlloc, A::Error> {
                let mut next = |i: usize| {
                    seq.next_element::<serde_json::Value>()?
                        .ok_or_else(|| de::Error::invalid_length(i, &self))
                };
                let num = |v: serde_json::Value, i: usize| {
                    v.as_u64().ok_or_else(|| {
                        de::Error::custom(format!("{} must be an integer", LIVE_COLUMNS[i]))
                    })
                };
                let device = num(next(0)?, 0)? as u32;
                let address = num(next(1)?, 1)?;
                let size = num(next(2)?, 2)?;
                let api_v = next(3)?;
                let api = api_v
                    .as_str()
                    .and_then(Api::from_name)
                    .ok_or_else(|| de::Error::custom(format!("unknown api {api_v}")))?;
                let stream = num(next(4)?, 4)?;
                let t_ms = next(5)?
                    .as_f64()
                    .ok_or_else(|| de::Error::custom("t_ms must be a number"))?;
                let seq_no = num(next(6)?, 6)?;
                let thread = num(next(7)?, 7)? as u32;
                let phase = num(next(8)?, 8)? as u32;
                // Absent from older reports; null when unknown.
                let caller = match seq.next_element::<serde_json::Value>()? {
                    None | Some(serde_json::Value::Null) => None,
                    Some(v) => Some(num(v, OLD_COLUMNS)? as u32),
                };
                while seq.next_element::<de::IgnoredAny>()?.is_some() {}
                Ok(LiveAlloc {
                    device,
                    address,
                    size,
                    api,
                    stream,
                    t_ms,
                    seq: seq_no,
                    thread,
                    phase,
                    caller,
                })
            }
        }
        d.deserialize_seq(Row)
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct KindTotal {
    pub device: u32,
    pub space: Option<Space>,
    pub api: String,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct StreamTotal {
    pub device: u32,
    pub stream: u64,
    pub count: u64,
    pub bytes: u64,
}

/// Live allocations with size in [min_bytes, max_bytes]: power-of-two classes.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SizeClass {
    pub min_bytes: u64,
    pub max_bytes: u64,
    pub count: u64,
    pub bytes: u64,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct CallerTotal {
    pub device: u32,
    /// The calling file (a library or the executable), as in `CallSite::file`.
    pub caller: String,
    pub count: u64,
    pub bytes: u64,
}

/// A place that called CUDA: the return address of the outermost hooked
/// call, resolved (`dladdr`) by the shim soon after it was first seen.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallSite {
    pub address: u64,
    /// The file the address lies in (a shared library or the executable), as
    /// the dynamic loader names it; "?" when no loaded object holds it.
    pub file: String,
    /// The nearest exported symbol at or below the address, when there is one.
    pub symbol: Option<String>,
    /// `address` minus the file's load address (stable across runs).
    pub offset: u64,
}

impl CallSite {
    /// The file's name without its directories.
    pub fn file_name(&self) -> &str {
        file_name(&self.file)
    }

    /// `symbol (file)`, or `file+0xoffset` without a symbol.
    pub fn label(&self) -> String {
        match &self.symbol {
            Some(s) => format!("{s} ({})", self.file_name()),
            None => format!("{}+{:#x}", self.file_name(), self.offset),
        }
    }
}

/// A path's last component.
pub fn file_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The native stack of a big live allocation (at least the shim's
/// `KVSCOPE_STACK_MIN` bytes), innermost frame first.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StackRow {
    pub device: u32,
    pub address: u64,
    pub size: u64,
    /// Indexes in `Report::callers`: return addresses, the shim's own frames left out.
    pub frames: Vec<u32>,
}
