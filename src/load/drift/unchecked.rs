//! The drift guard's list of fields nothing can be implausible about.

/// Fields no figure of which is implausible, each with why.
pub const UNCHECKED: &[(&str, &str)] = &[
    (
        "reason_detail",
        "free text: the label given to kvscope_dump",
    ),
    (
        "modes[]",
        "free text kept for people; nothing computes with it",
    ),
    ("process.cmdline[]", "free text: the program's arguments"),
    ("process.exe", "free text: a path"),
    (
        "process.run_id",
        "free text: an id that groups reports, compared for equality only",
    ),
    ("process.hostname", "free text: a host name"),
    (
        "process.launch.visible_devices",
        "free text: CUDA_VISIBLE_DEVICES as set",
    ),
    (
        "process.env",
        "a map of KVSCOPE_* settings as the process saw them",
    ),
    ("shim.version", "free text"),
    ("shim.out_dir", "free text: a path"),
    ("shim.out_dir_note", "free text"),
    (
        "calls",
        "a map: entry point -> count; the counts are checked",
    ),
    (
        "failure_counts",
        "a map: entry point -> code -> count; the counts are checked",
    ),
    (
        "failures[].api",
        "unknown names are tolerated: the check reads the failures of entry points it knows",
    ),
    (
        "failures[].size",
        "what the program asked, however absurd; nothing adds it up",
    ),
    (
        "failures[].code",
        "a CUDA error code, passed through as the driver returned it",
    ),
    ("failures[].code_name", "free text: the code's name"),
    (
        "anomalies.unrouted_entry_points[]",
        "free text: symbol names",
    ),
    ("anomalies.notes[]", "free text"),
    (
        "live.allocations[].address",
        "any 64-bit address is possible",
    ),
    (
        "live.allocations[].stream",
        "a stream handle: any 64-bit value",
    ),
    (
        "live.by_kind[].api",
        "free text kept for people (rows name their api, and are checked)",
    ),
    (
        "live.by_stream[].stream",
        "a stream handle: any 64-bit value",
    ),
    (
        "vmm.reservations[].address",
        "any 64-bit address is possible",
    ),
    ("vmm.handles[].handle", "a handle: any 64-bit value"),
    ("pools[].handle", "a handle: any 64-bit value"),
    (
        "pools[].release_threshold",
        "any value; u64::MAX means never",
    ),
    ("markers[].label", "free text: the program's label"),
    ("markers[].source", "free text kept for people"),
    ("timeline[].marker", "free text: a marker's label"),
    (
        "events[].op",
        "free text kept for people; nothing computes with it",
    ),
    (
        "events[].api",
        "free text kept for people; nothing computes with it",
    ),
    (
        "events[].size",
        "a failed request's size is what the program asked, however absurd; nothing adds it up",
    ),
    (
        "events[].address",
        "any 64-bit address (or VMM handle) is possible",
    ),
    (
        "events[].code",
        "a CUDA error code, passed through as the driver returned it",
    ),
    ("oom.api", "free text; the check reads failures[], not this"),
    (
        "oom.size",
        "what the program asked, however absurd; nothing adds it up",
    ),
    (
        "oom.code",
        "a CUDA error code, passed through as the driver returned it",
    ),
    ("oom.largest[].address", "any 64-bit address is possible"),
    (
        "live.by_caller[].caller",
        "free text: a file name, grouped for people",
    ),
    ("callers[].address", "a return address: any 64-bit value"),
    ("callers[].offset", "an offset in a file: any 64-bit value"),
    ("callers[].file", "free text: a path"),
    ("callers[].symbol", "free text: a symbol name"),
    ("stacks[].address", "any 64-bit address is possible"),
    ("shim.stack_min", "a threshold as set: any size, 0 for none"),
    ("oom.largest[].stream", "a stream handle: any 64-bit value"),
];
