//! Live monitoring: the state files of running processes (`scan`), turned
//! into Prometheus metrics (`metrics`, the one list of names; `expose`, the
//! text formats; `serve`, the HTTP endpoint) or a terminal view (`view`,
//! drawn by `watch`).

pub mod expose;
pub mod metrics;
pub mod scan;
pub mod serve;
pub mod stop;
pub mod view;
pub mod watch;

#[cfg(test)]
mod drift;
