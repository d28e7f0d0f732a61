//! `--engine-log FILE` and `--engine-tolerance F`: shared by the commands
//! that check reports (`check`, `report --html`; `diagnose` can flatten it).

use super::error::{CliError, Result};
use crate::check::engine_plan;
use crate::check::kind::Severity;
use crate::check::result::CheckResult;
use crate::engine::{self, EnginePlan};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Debug, Clone)]
pub struct EngineArgs {
    /// The serving engine's log (vLLM, SGLang or TGI): its start-up memory
    /// plan is compared with what the trace measured.
    #[arg(long, value_name = "FILE")]
    pub engine_log: Option<PathBuf>,
    /// How far (a fraction) a measured figure may be from the engine's before
    /// `engine_plan_mismatch` is reported.
    #[arg(long, default_value_t = 0.1, allow_negative_numbers = true)]
    pub engine_tolerance: f64,
}

impl EngineArgs {
    /// The plan of --engine-log, read before the reports: a log that says
    /// nothing, or a tolerance that means nothing, is refused in one line.
    pub fn plan(&self) -> Result<Option<EnginePlan>> {
        if !(self.engine_tolerance > 0.0 && self.engine_tolerance.is_finite()) {
            return Err(CliError::input(format!(
                "--engine-tolerance {} must be above 0",
                self.engine_tolerance
            )));
        }
        match &self.engine_log {
            Some(p) => Ok(Some(engine::parse_file(p).map_err(CliError::input)?)),
            None => Ok(None),
        }
    }

    /// The plan's table and findings added to a check's result.
    pub fn apply(&self, plan: Option<&EnginePlan>, result: &mut CheckResult, fail_on: Severity) {
        if let Some(plan) = plan {
            engine_plan::apply(result, plan, self.engine_tolerance, fail_on);
        }
    }
}
