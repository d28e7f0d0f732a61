//! `kvscope diagnose --url URL`: the four diagnostic steps run against a
//! live OpenAI-compatible server whose processes have the shim loaded, then
//! the diagnosis of `kvscope check` over the reports they wrote.
//!
//! `procs` finds the server's processes, `probe` watches their memory (the
//! shim's probe; `nvml_probe` at device level when no process has the shim,
//! with `device_level` saying what that level can support),
//! `http` talks to the server, `steps` sends the requests with their
//! markers, `record` keeps what was sent and measured.

mod device_level;
mod http;
mod nvml_probe;
mod probe;
mod procs;
mod progress;
mod record;
mod steps;
mod stop;
mod window;

use super::channel;
use super::engine_args::EngineArgs;
use super::error::{CliError, Result};
use super::model_args::{model_ctx, ModelArgs};
use crate::check::context::Thresholds;
use crate::check::kind::Severity;
use crate::render::{json, text};
use clap::Args;
use nvml_probe::NvmlProbe;
use probe::{Probe, ShimProbe};
use record::Record;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(Args, Debug)]
pub struct DiagnoseArgs {
    /// The server's base URL (http://HOST:PORT; its OpenAI routes are under /v1).
    #[arg(long)]
    pub url: String,
    /// The server's processes (default: the one listening on the URL's port, and its descendants).
    #[arg(long)]
    pub pid: Vec<u32>,
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Tokens per request (prompt + output) in steps 2 and 3 (default 1024, at most a quarter of max_model_len).
    #[arg(long)]
    pub context: Option<u64>,
    /// Requests at once in step 3.
    #[arg(long, default_value_t = 4)]
    pub concurrency: u64,
    /// Tokens of the long request of step 4 (default: max_model_len, else 4 x --context; capped by max_model_len).
    #[arg(long)]
    pub long_context: Option<u64>,
    /// Identical requests in step 2 (3 tell warm-up and caching from a leak).
    #[arg(long, default_value_t = 3)]
    pub repeat: u64,
    /// The whole run's time limit, in seconds.
    #[arg(long, default_value_t = 600)]
    pub timeout: u64,
    /// The quiet period of the baseline, in milliseconds.
    #[arg(long, default_value_t = 3000)]
    pub quiet_ms: u64,
    /// Exit with status 1 when a finding is at or above this level.
    #[arg(long, default_value = "critical", value_parser = fail_on())]
    pub fail_on: Severity,
    /// Print one JSON object (kvscope.check.v1 with a `diagnose` section).
    #[arg(long)]
    pub json: bool,
}

fn fail_on() -> impl clap::builder::TypedValueParser<Value = Severity> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new(Severity::NAMES).try_map(|s| s.parse::<Severity>())
}

/// HOST and PORT of an http:// URL.
fn host_port(url: &str) -> Result<(String, u16)> {
    // The scheme is case-insensitive (RFC 3986).
    let rest = url
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("http://"))
        .map(|_| &url[7..])
        .ok_or_else(|| {
            CliError::input(format!("--url {url}: give an http:// URL (https is not supported: diagnose talks to a server on this host)"))
        })?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err(CliError::input(format!(
            "--url {url}: give the server's address without a user name (http://HOST:PORT)"
        )));
    }
    // The routes are appended to the URL: a query or fragment would end up
    // before them.
    if rest.contains(['?', '#']) {
        return Err(CliError::input(format!(
            "--url {url}: give the server's base URL, without a query or fragment (http://HOST:PORT)"
        )));
    }
    // An IPv6 address is in brackets, its colons inside them.
    let colon = match authority.rfind(']') {
        Some(close) => authority[close..].find(':').map(|i| close + i),
        None => authority.rfind(':'),
    };
    let (host, port) = match colon {
        Some(i) => {
            let p = &authority[i + 1..];
            (
                authority[..i].to_string(),
                p.parse::<u16>()
                    .map_err(|_| CliError::input(format!("--url {url}: bad port {p}")))?,
            )
        }
        None => (authority.to_string(), 80),
    };
    if host.is_empty() {
        return Err(CliError::input(format!("--url {url}: no host")));
    }
    Ok((host, port))
}

/// How the server is watched.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Level {
    /// Its processes run the shim: allocations, markers on their timelines.
    Shim,
    /// None does: per-process device memory through NVML.
    Device,
}

/// The server's processes whose shim runs (and notes on those left out);
/// else those NVML lists, at device level; or why there are none.
fn find_processes(a: &DiagnoseArgs) -> Result<(Level, Vec<u32>, Vec<String>)> {
    let roots = if !a.pid.is_empty() {
        for &p in &a.pid {
            if !std::path::Path::new(&format!("/proc/{p}")).exists() {
                return Err(CliError::input(format!("--pid {p}: no such process")));
            }
        }
        a.pid.clone()
    } else {
        let (host, port) = host_port(&a.url)?;
        if !procs::is_local(&host) {
            return Err(CliError::input(format!(
                "{host} is not this host (or not visible from here): give the server's processes with --pid"
            )));
        }
        let owners = procs::owners(&procs::listening_inodes(port));
        if owners.is_empty() {
            return Err(CliError::input(format!(
                "nothing on this host listens on port {port} (is the server running? one in another network namespace or container needs --pid)"
            )));
        }
        owners
    };
    let all = procs::with_descendants(&roots);
    let shimmed: Vec<u32> = all
        .iter()
        .copied()
        .filter(|&p| channel::has_shim(p) == Some(true))
        .collect();
    if shimmed.is_empty() {
        let list: Vec<String> = all.iter().map(u32::to_string).collect();
        let cmd = procs::cmdline(roots[0]);
        let cmd = if cmd.is_empty() {
            "SERVER-COMMAND".into()
        } else {
            cmd
        };
        let list = list.join(", ");
        let refuse = |why: String| {
            CliError::input(format!(
                "no process of the server (pid {list}) has the shim loaded{why}: restart it under the shim, `kvscope run -- {cmd}` or `LD_PRELOAD=/path/to/libkvscope.so {cmd}`"
            ))
        };
        // Device level: what NVML lists of the server's processes.
        let snap = crate::device::probe::read()
            .map_err(|e| refuse(format!(", and device-level reading is not possible ({e})")))?;
        if !snap.pids_mapped {
            return Err(refuse(format!(
                ", and NVML's PIDs cannot be matched with them at device level ({})",
                snap.notes.join("; ")
            )));
        }
        let on: Vec<u32> = all
            .iter()
            .copied()
            .filter(|&p| snap.bytes_of(p).is_some())
            .collect();
        if on.is_empty() {
            return Err(refuse(
                ", and NVML lists none of them holding device memory".into(),
            ));
        }
        return Ok((Level::Device, on, Vec::new()));
    }
    // Loaded is not enough: the shim starts at the first CUDA call.
    let (running, idle): (Vec<u32>, Vec<u32>) =
        shimmed.iter().partition(|&&p| channel::sampler_running(p));
    let list = |v: &[u32]| v.iter().map(u32::to_string).collect::<Vec<_>>().join(", ");
    if running.is_empty() {
        return Err(CliError::input(format!(
            "the shim is loaded in pid {} but not running there (no CUDA call yet, or KVSCOPE_SAMPLE_MS=0): nothing would take the markers",
            list(&idle)
        )));
    }
    let mut notes = Vec::new();
    if !idle.is_empty() {
        notes.push(format!(
            "pid {} {} the shim loaded but made no CUDA call yet: not watched",
            list(&idle),
            if idle.len() == 1 { "has" } else { "have" }
        ));
    }
    Ok((Level::Shim, running, notes))
}

/// Token counts of each step, within the model's limit.
struct Plan {
    context: u64,
    long: u64,
}

fn plan(a: &DiagnoseArgs, max_len: Option<u64>, notes: &mut Vec<String>) -> Result<Plan> {
    if a.context == Some(0) || a.concurrency == 0 || a.repeat == 0 || a.long_context == Some(0) {
        return Err(CliError::input(
            "--context, --concurrency, --repeat and --long-context must be at least 1",
        ));
    }
    if a.concurrency > 256 {
        return Err(CliError::input("--concurrency is at most 256"));
    }
    let limit = max_len.unwrap_or(u64::MAX);
    let mut context = a.context.unwrap_or_else(|| 1024.min((limit / 4).max(2)));
    if context > limit {
        notes.push(format!(
            "--context {context} capped at max_model_len {limit}"
        ));
        context = limit;
    }
    let mut long = a
        .long_context
        .unwrap_or_else(|| max_len.unwrap_or(4 * context));
    if long > limit {
        notes.push(format!(
            "--long-context {long} capped at max_model_len {limit}"
        ));
        long = limit;
    }
    Ok(Plan {
        context: context.max(2),
        long: long.max(2),
    })
}

/// A request of `tokens`: a quarter of it output (1 to 128 tokens), the rest prompt.
fn split(tokens: u64) -> (u64, u64) {
    let output = (tokens / 4).clamp(1, 128).min(tokens - 1);
    (tokens - output, output)
}

pub fn run(a: &DiagnoseArgs) -> Result<i32> {
    // Bounded so that no deadline arithmetic can overflow.
    if a.timeout == 0 || a.timeout > 86_400 || a.quiet_ms > 3_600_000 {
        return Err(CliError::input(
            "--timeout is 1 to 86400 seconds and --quiet-ms at most 3600000",
        ));
    }
    // A bad engine log is refused before the server is touched.
    let engine_plan = a.engine.plan()?;
    let t0 = Instant::now();
    let started_unix_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let deadline = t0 + Duration::from_secs(a.timeout);
    host_port(&a.url)?;
    let (level, pids, found_notes) = find_processes(a)?;
    let server = Arc::new(http::Server::new(&a.url));
    let info = server
        .models(Duration::from_secs(10).min(deadline.saturating_duration_since(Instant::now())))
        .map_err(|e| CliError {
            message: format!(
                "GET {}/v1/models: {}",
                a.url.trim_end_matches('/'),
                e.line()
            ),
            code: 1,
        })?;
    let mut notes = found_notes;
    let plan = plan(a, info.max_model_len, &mut notes)?;
    // The model: --model, else the server's id when kvscope can resolve it.
    let mut margs = a.model.clone();
    if margs.model.is_none() && !info.id.is_empty() {
        if crate::kv::source::load(&info.id).is_ok() {
            margs.model = Some(info.id.clone());
        } else {
            notes.push(format!("the server's model {} is not a local directory, in the local Hugging Face cache, or a preset: checked without a model (give --model)", info.id));
        }
    }
    let ctx = model_ctx(
        &margs,
        1,
        Some(plan.context),
        Some(a.concurrency),
        &mut notes,
    )?;
    stop::install();
    let mut probe: Box<dyn Probe> = match level {
        Level::Shim => Box::new(ShimProbe::new(pids.clone())),
        Level::Device => Box::new(NvmlProbe::new(pids.clone())),
    };
    if level == Level::Device && engine_plan.is_some() {
        notes.push("--engine-log: the engine's plan is not compared at device level (NVML gives no weights / KV cache breakdown to compare it with)".into());
    }
    let rec = Record {
        url: a.url.clone(),
        model: info,
        probe: probe.describe(),
        level: match level {
            Level::Shim => "shim",
            Level::Device => "device",
        },
        level_note: (level == Level::Device).then_some(device_level::SCOPE),
        pids,
        prompt_form: None,
        context: plan.context,
        concurrency: a.concurrency,
        long_context: plan.long,
        repeat: a.repeat,
        quiet_ms: a.quiet_ms,
        requests: Vec::new(),
        steps: Vec::new(),
        stopped: None,
        elapsed_ms: 0.0,
        reports: Vec::new(),
        notes,
    };
    let mut s = steps::Steps::new(server, probe.as_mut(), rec, t0, deadline);
    let (p, o) = split(plan.context);
    let (lp, lo) = split(plan.long);
    let outcome = s
        .baseline(Duration::from_millis(a.quiet_ms))
        .and_then(|_| s.one_request(a.repeat, p, o))
        .and_then(|_| s.concurrent(a.concurrency, p, o))
        .and_then(|_| s.long(lp, lo));
    s.progress.clear();
    let mut rec = s.rec;
    if let Err(steps::Cut(why)) = &outcome {
        eprintln!("kvscope: error: {why}; reporting what was measured");
        rec.stopped = Some(why.clone());
    }
    let collected = probe.finish("kvscope diagnose");
    rec.notes.extend(collected.notes);
    rec.elapsed_ms = t0.elapsed().as_secs_f64() * 1000.0;
    rec.reports = collected
        .reports
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let mut reports = collected.built;
    rec.reports.extend(reports.iter().map(|(l, _)| l.clone()));
    let mut noted = Vec::new();
    for p in &collected.reports {
        match crate::load::load(p) {
            Ok(mut r) => {
                // Only this run's serving and requests are judged.
                let earlier = window::since(&mut r, started_unix_ms);
                // Once per process, not once per report of it.
                if earlier.markers > 0 && !noted.contains(&r.process.pid) {
                    noted.push(r.process.pid);
                    rec.notes.push(format!(
                        "pid {}: diagnosed before; the {} serving and request markers of earlier runs are left out, so the {} still held from allocations made since the first of them count as before serving (weights, when not KV cache: a baseline_too_high may be them)",
                        r.process.pid,
                        earlier.markers,
                        crate::units::bytes(earlier.held_bytes)
                    ));
                }
                reports.push((p.display().to_string(), r))
            }
            Err(e) => rec.notes.push(format!("{}: {}", p.display(), e)),
        }
    }
    if reports.is_empty() {
        if !a.json {
            print!("{}", rec.text());
        }
        return Err(CliError {
            message: "no report from the server's processes: nothing to diagnose".into(),
            code: 1,
        });
    }
    let mut result =
        crate::check::job::check(reports, ctx.as_ref(), Thresholds::default(), a.fail_on);
    match level {
        Level::Shim => a.engine.apply(engine_plan.as_ref(), &mut result, a.fail_on),
        Level::Device => device_level::restrict(&mut result, a.fail_on),
    }
    // A run cut short exits at least 1 (130 after Ctrl-C or SIGTERM); the
    // status is set before printing so that the summary line and the JSON's
    // exit_status say the status the command exits with.
    if rec.stopped.is_some() {
        let stopped_status = if stop::requested() { 130 } else { 1 };
        result.exit_status = result.exit_status.max(stopped_status);
        not_run(&mut result, &rec);
    }
    if a.json {
        let section = serde_json::to_value(&rec).map_err(|e| CliError::input(e.to_string()))?;
        println!("{}", json::render_with(&result, Some(section))?);
    } else {
        print!("{}", rec.text());
        print!("{}", text::render_with(&result, colour()));
    }
    Ok(result.exit_status)
}

/// A run cut short: the steps it never began are skipped, whatever the
/// check made of the requests of the earlier ones (it read step 2's single
/// request as "1 concurrent" for a step 3 that never ran).
fn not_run(result: &mut crate::check::result::CheckResult, rec: &record::Record) {
    let begun = rec.steps.iter().map(|w| w.number).max().unwrap_or(0);
    for p in &mut result.processes {
        for d in &mut p.devices {
            for s in d.steps.iter_mut().filter(|s| s.number > begun) {
                s.status = crate::check::steps::Status::Skipped;
                s.detail = "not run: the run stopped before this step".into();
            }
        }
    }
}

fn colour() -> bool {
    use std::io::IsTerminal;
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_give_host_and_port() {
        assert_eq!(
            host_port("http://127.0.0.1:8000/v1").unwrap(),
            ("127.0.0.1".into(), 8000)
        );
        assert_eq!(
            host_port("http://localhost").unwrap(),
            ("localhost".into(), 80)
        );
        assert_eq!(host_port("http://[::1]:9/").unwrap(), ("[::1]".into(), 9));
        assert!(host_port("https://x:1").is_err());
        assert!(host_port("http://x:notaport").is_err());
        // IPv6 without a port: the colons are the address's.
        assert_eq!(host_port("http://[::1]").unwrap(), ("[::1]".into(), 80));
        assert_eq!(host_port("http://[::1]/v1").unwrap(), ("[::1]".into(), 80));
        // The scheme in any case; no user name.
        assert_eq!(
            host_port("HTTP://127.0.0.1:9").unwrap(),
            ("127.0.0.1".into(), 9)
        );
        let e = host_port("http://user@127.0.0.1:9").unwrap_err();
        assert!(e.message.contains("without a user name"), "{}", e.message);
        // A query would come before the routes: refused, not "bad port".
        let e = host_port("http://127.0.0.1:8000?x=1").unwrap_err();
        assert!(e.message.contains("without a query"), "{}", e.message);
        assert!(host_port("http://127.0.0.1:8000/v1?x=1").is_err());
    }

    #[test]
    fn requests_are_split_into_prompt_and_output() {
        assert_eq!(split(1024), (896, 128));
        assert_eq!(split(100), (75, 25));
        assert_eq!(split(2), (1, 1));
    }
}
