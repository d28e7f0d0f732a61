//! A report as PyTorch's memory snapshot (`torch.cuda.memory._snapshot()`),
//! for pytorch.org/memory_viz and `torch/cuda/_memory_viz.py`.
//!
//! Under preload kvscope sees CUDA allocations, not tensors: each live
//! device allocation is a segment holding one block that tiles it, and the
//! flight recorder's events become `segment_alloc`/`alloc` and
//! `free_requested`/`free_completed`/`segment_free` pairs of the device's
//! trace, so both the "Active Memory" and the "Cached Segment" timelines draw
//! them. Frames come from the caller (file and symbol: the native frame that
//! called CUDA); categories from the check's rules (weights, kv_cache,
//! activations, other), `unknown` for events whose allocation the report no
//! longer holds and for the closing `snapshot` event: the page's legend
//! needs `unknown` among the categories whenever there are any (it pushes to
//! a misspelt field otherwise).

use super::pickle::Pickle;
use crate::check::category::Categorizer;
use crate::report::{Api, CallSite, Report, Space};
use std::collections::HashMap;
use std::io::{self, Write};

/// What the export wrote.
#[derive(Debug, Default, PartialEq)]
pub struct Written {
    pub segments: u64,
    pub trace_events: u64,
}

/// Which frames a list holds: one caller's, or a big allocation's stack.
#[derive(Clone, Copy, Hash, PartialEq, Eq)]
enum FramesOf {
    Caller(Option<u32>),
    Stack(u64),
}

/// Frame lists are written once each and recalled from the pickle's memo
/// after: a million segments share a few call sites.
#[derive(Default)]
struct Memo(HashMap<FramesOf, u32>);

/// Frames innermost first, as PyTorch lists them.
fn frames<'a, W: Write>(
    p: &mut Pickle<W>,
    memo: &mut Memo,
    of: FramesOf,
    sites: impl Iterator<Item = &'a CallSite>,
) -> io::Result<()> {
    if let Some(&slot) = memo.0.get(&of) {
        return p.recall(slot);
    }
    p.begin_list()?;
    for c in sites {
        p.begin_dict()?;
        p.key("name")?;
        match &c.symbol {
            Some(s) => p.str(s)?,
            None => p.str(&format!("{}+{:#x}", c.file_name(), c.offset))?,
        }
        p.key("filename")?;
        p.str(&c.file)?;
        p.key("line")?;
        p.int(0)?;
        p.end_dict()?;
    }
    let slot = p.end_list_remembered()?;
    memo.0.insert(of, slot);
    Ok(())
}

/// A caller's frame list.
fn caller_frames<W: Write>(
    p: &mut Pickle<W>,
    memo: &mut Memo,
    r: &Report,
    caller: Option<u32>,
) -> io::Result<()> {
    frames(
        p,
        memo,
        FramesOf::Caller(caller),
        r.caller(caller).into_iter(),
    )
}

/// One trace event.
struct Ev {
    action: &'static str,
    addr: u64,
    size: u64,
    stream: u64,
    time_us: i64,
    caller: Option<u32>,
    category: Option<&'static str>,
    /// An `oom`'s free device memory (`torch/cuda/_memory_viz.py`'s trace
    /// reads it).
    device_free: Option<u64>,
}

fn event<W: Write>(p: &mut Pickle<W>, memo: &mut Memo, r: &Report, e: &Ev) -> io::Result<()> {
    p.begin_dict()?;
    p.key("action")?;
    p.str(e.action)?;
    p.key("addr")?;
    p.uint(e.addr)?;
    p.key("size")?;
    p.uint(e.size)?;
    p.key("stream")?;
    p.uint(e.stream)?;
    p.key("time_us")?;
    p.int(e.time_us)?;
    p.key("frames")?;
    caller_frames(p, memo, r, e.caller)?;
    if let Some(c) = e.category {
        p.key("category")?;
        p.str(c)?;
    }
    if let Some(free) = e.device_free {
        p.key("device_free")?;
        p.uint(free)?;
    }
    p.end_dict()
}

/// Device allocations and frees whose events name an address: a VMM
/// handle's events name the handle (its segment is the address it is
/// mapped at), so they stay out of the trace.
fn is_device(api: &str) -> bool {
    Api::from_name(api).is_some_and(|a| {
        a.space() == Space::Device
            && !matches!(
                a,
                Api::CuMemCreate | Api::CuMemRelease | Api::CuMemMap | Api::CuMemUnmap
            )
    })
}

/// The events of one device in the viewer's terms, oldest first.
fn trace(r: &Report, device: u32, live_category: &HashMap<u64, &'static str>) -> Vec<Ev> {
    let base_us = r.process.start_unix_ms as f64 * 1000.0;
    // The allocation an address holds at the end is the last one made there.
    let mut last_alloc: HashMap<u64, usize> = HashMap::new();
    for (i, e) in r.events.iter().enumerate() {
        if e.op == "alloc" && e.device == device && is_device(&e.api) {
            last_alloc.insert(e.address, i);
        }
    }
    let mut open: HashMap<u64, (u64, &'static str)> = HashMap::new();
    let mut out = Vec::new();
    for (i, e) in r.events.iter().enumerate() {
        if e.device != device || !is_device(&e.api) {
            continue;
        }
        let time_us = (base_us + e.t_ms * 1000.0) as i64;
        let ev = |action, size, category| Ev {
            action,
            addr: e.address,
            size,
            stream: 0,
            time_us,
            caller: e.caller,
            category: Some(category),
            device_free: None,
        };
        match e.op.as_str() {
            "alloc" => {
                let category = match live_category.get(&e.address) {
                    Some(c) if last_alloc.get(&e.address) == Some(&i) => *c,
                    _ => "unknown",
                };
                open.insert(e.address, (e.size, category));
                out.push(ev("segment_alloc", e.size, category));
                out.push(ev("alloc", e.size, category));
            }
            "free" => {
                let (size, category) = open.remove(&e.address).unwrap_or((e.size, "unknown"));
                out.push(ev("free_requested", size, category));
                out.push(ev("free_completed", size, category));
                out.push(ev("segment_free", size, category));
            }
            "fail" if e.code == 2 => out.push(Ev {
                action: "oom",
                addr: 0,
                size: e.size,
                stream: 0,
                time_us,
                caller: e.caller,
                category: None,
                device_free: Some(oom_free(r, e)),
            }),
            _ => {}
        }
    }
    out
}

/// The device's free memory at an out-of-memory failure: what
/// `cuMemGetInfo` said right after it, which an `oom` report holds for its
/// failure; 0 where the report does not know (other failures, exit reports).
fn oom_free(r: &Report, e: &crate::report::Event) -> u64 {
    r.oom
        .as_ref()
        .filter(|o| o.device == e.device && o.t_ms == e.t_ms)
        .and_then(|o| o.device_free_bytes)
        .unwrap_or(0)
}

/// Writes `r` as a memory snapshot pickle.
pub fn write<W: Write>(r: &Report, out: W) -> io::Result<(W, Written)> {
    let mut rows: Vec<_> = r
        .live
        .allocations
        .iter()
        .filter(|a| a.api.space() == Space::Device)
        .collect();
    rows.sort_by_key(|a| (a.device, a.address));
    let devices = rows
        .iter()
        .map(|a| a.device)
        .chain(r.events.iter().map(|e| e.device))
        .max()
        .map_or(1, |d| d as usize + 1);
    let mut categorizers: HashMap<u32, Categorizer> = HashMap::new();
    let mut live_category: Vec<HashMap<u64, &'static str>> = vec![HashMap::new(); devices];
    for a in &rows {
        let c = categorizers
            .entry(a.device)
            .or_insert_with(|| Categorizer::new(r, a.device));
        live_category[a.device as usize].insert(a.address, c.of(a).name());
    }
    let mut traces: Vec<Vec<Ev>> = (0..devices)
        .map(|d| trace(r, d as u32, &live_category[d]))
        .collect();
    // The page's legend breaks when there are categories but no `unknown`:
    // each used trace ends with the snapshot itself (as PyTorch's traces
    // do), of category `unknown`.
    let end_us = (r.process.start_unix_ms as f64 * 1000.0 + r.t_ms * 1000.0) as i64;
    for (d, t) in traces.iter_mut().enumerate() {
        if t.is_empty() && live_category[d].is_empty() {
            continue;
        }
        let time_us = t.last().map_or(end_us, |e| e.time_us.max(end_us));
        t.push(Ev {
            action: "snapshot",
            addr: 0,
            size: 0,
            stream: 0,
            time_us,
            caller: None,
            category: Some("unknown"),
            device_free: None,
        });
    }

    // A big allocation's native stack, where the report has one, else its caller.
    let stacks: HashMap<u64, &[u32]> = r
        .stacks
        .iter()
        .filter(|s| !s.frames.is_empty())
        .map(|s| (s.address, s.frames.as_slice()))
        .collect();

    let mut w = Written::default();
    let mut memo = Memo::default();
    let mut p = Pickle::new(out)?;
    p.begin_dict()?;
    p.key("segments")?;
    p.begin_list()?;
    for a in &rows {
        p.begin_dict()?;
        for (k, v) in [("device", a.device as u64), ("address", a.address)] {
            p.key(k)?;
            p.uint(v)?;
        }
        for k in [
            "total_size",
            "allocated_size",
            "active_size",
            "requested_size",
        ] {
            p.key(k)?;
            p.uint(a.size)?;
        }
        p.key("stream")?;
        p.uint(a.stream)?;
        p.key("segment_type")?;
        p.str(if a.size <= 1 << 20 { "small" } else { "large" })?;
        p.key("segment_pool_id")?;
        p.pair(0, 0)?;
        p.key("is_expandable")?;
        p.bool(a.api == Api::CuMemCreate)?;
        let stack = stacks.get(&a.address);
        let mut seg_frames = |p: &mut Pickle<W>| match stack {
            Some(f) => frames(
                p,
                &mut memo,
                FramesOf::Stack(a.address),
                f.iter().filter_map(|&i| r.callers.get(i as usize)),
            ),
            None => caller_frames(p, &mut memo, r, a.caller),
        };
        p.key("frames")?;
        seg_frames(&mut p)?;
        p.key("blocks")?;
        p.begin_list()?;
        p.begin_dict()?;
        p.key("address")?;
        p.uint(a.address)?;
        p.key("size")?;
        p.uint(a.size)?;
        p.key("requested_size")?;
        p.uint(a.size)?;
        p.key("state")?;
        p.str("active_allocated")?;
        p.key("frames")?;
        seg_frames(&mut p)?;
        p.end_dict()?;
        p.end_list()?;
        p.end_dict()?;
        w.segments += 1;
    }
    p.end_list()?;
    p.key("device_traces")?;
    p.begin_list()?;
    for t in &traces {
        p.begin_list()?;
        for e in t {
            event(&mut p, &mut memo, r, e)?;
            w.trace_events += 1;
        }
        p.end_list()?;
    }
    p.end_list()?;
    p.key("allocator_settings")?;
    p.begin_dict()?;
    p.key("exported_by")?;
    p.str("kvscope: CUDA allocations seen under preload; each segment is one allocation")?;
    p.end_dict()?;
    p.key("external_annotations")?;
    p.begin_list()?;
    p.end_list()?;
    p.end_dict()?;
    Ok((p.finish()?, w))
}
