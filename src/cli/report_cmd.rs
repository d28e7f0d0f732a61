//! `kvscope report FILE`.

use super::{load, summary, Result};
use std::path::Path;

pub fn run(file: &Path, json: bool, top: usize) -> Result<i32> {
    let r = load::load(file)?;
    if json {
        let s = serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?;
        println!("{s}");
    } else {
        print!("{}", summary::render(&r, top));
    }
    Ok(0)
}
