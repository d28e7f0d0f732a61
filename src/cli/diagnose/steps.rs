//! The four steps against the live server: a quiet baseline, `repeat`
//! identical requests one after another, `concurrency` requests at once,
//! one long request. Every request is announced by its markers (`request
//! <id> start tokens=<n>` before it is sent, `request <id> done` once it is
//! answered), and never more are in flight than the step asks.

use super::http::{Failure, PromptForm, Server, Usage};
use super::probe::{Probe, SAMPLE_EVERY};
use super::progress::Progress;
use super::record::{Record, RequestRecord, StepWindow};
use super::stop;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the steps ended early.
pub struct Cut(pub String);

pub struct Steps<'a> {
    pub server: Arc<Server>,
    pub probe: &'a mut dyn Probe,
    pub rec: Record,
    pub t0: Instant,
    pub deadline: Instant,
    pub progress: Progress,
    next_id: u64,
    /// Whether `/metrics` offers a KV figure: asked until the first answer
    /// without one, then never again.
    metrics: bool,
}

type Answer = (usize, Result<(PromptForm, Usage), Failure>, Instant);

impl<'a> Steps<'a> {
    pub fn new(
        server: Arc<Server>,
        probe: &'a mut dyn Probe,
        rec: Record,
        t0: Instant,
        deadline: Instant,
    ) -> Steps<'a> {
        Steps {
            server,
            probe,
            rec,
            t0,
            deadline,
            progress: Progress::new(t0),
            next_id: 0,
            metrics: true,
        }
    }

    fn ms(&self, t: Instant) -> f64 {
        t.duration_since(self.t0).as_secs_f64() * 1000.0
    }

    fn check_time(&self) -> Result<(), Cut> {
        if stop::requested() {
            return Err(Cut(format!("stopped ({})", stop::by())));
        }
        if Instant::now() >= self.deadline {
            return Err(Cut("the time limit (--timeout) was reached".into()));
        }
        Ok(())
    }

    fn mark(&mut self, labels: &[String]) -> Result<(), Cut> {
        self.probe.mark(labels).map_err(|e| Cut(e.message))
    }

    fn open(&mut self, number: u8, name: &'static str) {
        let now = self.ms(Instant::now());
        self.rec.steps.push(StepWindow {
            number,
            name,
            start_ms: now,
            end_ms: now,
            requests: 0,
            answered: 0,
            kv_usage_metric: None,
            kv_usage_max: None,
            sampled_peak_bytes: None,
        });
    }

    fn close(&mut self) {
        let now = self.ms(Instant::now());
        let mut number = 0;
        if let Some(w) = self.rec.steps.last_mut() {
            w.end_ms = now;
            number = w.number;
        }
        self.progress.clear();
        // Steps 1 to 3: a report of what was measured, in case the server
        // dies later (the last step's is the final report).
        if number < 4 && !stop::requested() {
            self.probe
                .checkpoint(&format!("kvscope diagnose: after step {number}"));
        }
    }

    /// Step 1: no request in flight (the engine's own count, when it gives
    /// one), then `quiet` without any, then the `serve` marker.
    pub fn baseline(&mut self, quiet: Duration) -> Result<(), Cut> {
        self.open(1, "baseline");
        self.progress.show("step 1/4 baseline", 0, 0);
        let until = (Instant::now() + quiet * 5).min(self.deadline);
        self.server.wait_no_running(until);
        let end = Instant::now() + quiet;
        let mut r = Ok(());
        while r.is_ok() && Instant::now() < end {
            r = self.check_time();
            std::thread::sleep(Duration::from_millis(20).min(quiet));
        }
        if r.is_ok() {
            r = self.mark(&["serve".to_string()]);
        }
        self.close();
        r
    }

    /// Step 2: `repeat` identical requests, one after another.
    pub fn one_request(&mut self, repeat: u64, prompt: u64, output: u64) -> Result<(), Cut> {
        self.open(2, "one request returns to baseline");
        let mut r = Ok(());
        for i in 0..repeat {
            self.progress.show("step 2/4 one request", i, repeat);
            r = self.batch(2, 1, prompt, output);
            if r.is_err() {
                break;
            }
        }
        self.close();
        r
    }

    /// Step 3: `n` requests at once.
    pub fn concurrent(&mut self, n: u64, prompt: u64, output: u64) -> Result<(), Cut> {
        self.open(3, "N concurrent requests");
        let r = self.batch(3, n, prompt, output);
        self.close();
        r
    }

    /// Step 4: one long request.
    pub fn long(&mut self, prompt: u64, output: u64) -> Result<(), Cut> {
        self.open(4, "one long request");
        let r = self.batch(4, 1, prompt, output);
        self.close();
        r
    }

    /// `n` requests sent at once, each in its own thread; the probe and the
    /// engine's metrics sampled while they are in flight.
    fn batch(&mut self, step: u8, n: u64, prompt: u64, output: u64) -> Result<(), Cut> {
        self.check_time()?;
        let first = self.rec.requests.len();
        let mut labels = Vec::new();
        for _ in 0..n {
            let id = format!("d{}", self.next_id);
            self.next_id += 1;
            labels.push(format!("request {id} start tokens={}", prompt + output));
            self.rec.requests.push(RequestRecord {
                id,
                step,
                prompt_tokens: prompt,
                output_tokens: output,
                usage_prompt_tokens: None,
                usage_completion_tokens: None,
                start_ms: 0.0,
                end_ms: None,
                latency_ms: None,
                error: None,
            });
        }
        // Markers first: the request is on the timeline before the server sees it.
        self.mark(&labels)?;
        // Until a form is accepted, the first request tries them in order.
        let forms: Vec<PromptForm> = match self.rec.prompt_form {
            Some(f) => vec![f],
            None => PromptForm::ORDER.to_vec(),
        };
        let (tx, rx) = mpsc::channel::<Answer>();
        let model = self.rec.model.id.clone();
        let timeout = self.deadline.saturating_duration_since(Instant::now());
        let sent = Instant::now();
        for i in first..first + n as usize {
            self.rec.requests[i].start_ms = self.ms(sent);
            let (tx, server, forms, model) = (
                tx.clone(),
                self.server.clone(),
                forms.clone(),
                model.clone(),
            );
            std::thread::spawn(move || {
                let r = send(&server, &model, &forms, prompt, output, timeout);
                let _ = tx.send((i, r, Instant::now()));
            });
        }
        drop(tx);
        if let Some(w) = self.rec.steps.last_mut() {
            w.requests += n;
        }
        let mut left = n;
        let mut failed: Option<String> = None;
        let mut next_sample = Instant::now();
        while left > 0 {
            if Instant::now() >= next_sample {
                self.sample();
                next_sample = Instant::now() + SAMPLE_EVERY;
            }
            if let Err(cut) = self.check_time() {
                self.close_open(first);
                return Err(cut);
            }
            let (i, r, at) = match rx.recv_timeout(SAMPLE_EVERY) {
                Ok(x) => x,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            left -= 1;
            let end = self.ms(at);
            let q = &mut self.rec.requests[i];
            q.end_ms = Some(end);
            match r {
                Ok((form, usage)) => {
                    q.latency_ms = Some(end - q.start_ms);
                    q.usage_prompt_tokens = usage.prompt_tokens;
                    q.usage_completion_tokens = usage.completion_tokens;
                    self.rec.prompt_form.get_or_insert(form);
                    if let Some(w) = self.rec.steps.last_mut() {
                        w.answered += 1;
                    }
                }
                Err(f) => {
                    let line = f.line();
                    q.error = Some(line.clone());
                    failed.get_or_insert(format!("request {}: {line}", q.id));
                }
            }
            let label = format!("request {} done", self.rec.requests[i].id);
            if let Err(Cut(why)) = self.mark(&[label]) {
                // A server that died fails its markers too: its request's error says more.
                return Err(Cut(failed.unwrap_or(why)));
            }
            let done = n - left;
            let name = match step {
                2 => "step 2/4 one request",
                3 => "step 3/4 concurrent requests",
                _ => "step 4/4 long request",
            };
            self.progress.show(name, done, n);
        }
        match failed {
            Some(why) => Err(Cut(why)),
            None => Ok(()),
        }
    }

    /// Requests still without an answer when the run stops: their markers
    /// are closed (`request <id> end`), so that the check sees them end.
    fn close_open(&mut self, first: usize) {
        let labels: Vec<String> = self.rec.requests[first..]
            .iter()
            .filter(|q| q.end_ms.is_none())
            .map(|q| format!("request {} end", q.id))
            .collect();
        if !labels.is_empty() {
            let _ = self.probe.mark(&labels);
        }
    }

    fn sample(&mut self) {
        let bytes = self.probe.sample();
        let usage = if self.metrics {
            self.server.kv_usage(Duration::from_millis(500))
        } else {
            None
        };
        self.metrics = usage.is_some();
        if let Some(w) = self.rec.steps.last_mut() {
            if let Some(b) = bytes {
                w.sampled_peak_bytes = Some(w.sampled_peak_bytes.unwrap_or(0).max(b));
            }
            if let Some((name, v)) = usage {
                w.kv_usage_max = Some(w.kv_usage_max.unwrap_or(0.0).max(v));
                w.kv_usage_metric = Some(name);
            }
        }
    }
}

/// One completion, in the first form the server accepts (a 400 or 422
/// refuses a form; anything else is the answer).
fn send(
    server: &Server,
    model: &str,
    forms: &[PromptForm],
    prompt: u64,
    output: u64,
    timeout: Duration,
) -> Result<(PromptForm, Usage), Failure> {
    let mut last = Failure::Transport("no form to send".into());
    for &form in forms {
        match server.complete(model, form, prompt, output, timeout) {
            Ok(u) => return Ok((form, u)),
            Err(Failure::Status(code @ (400 | 422), body)) if form != PromptForm::Text => {
                last = Failure::Status(code, body);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last)
}
