//! The one error type of the commands: a line for the user and the exit
//! status it maps to. A leaf, so every command can use it without importing
//! `cli/mod.rs` (which imports the commands).

/// An error for the user: one line, and the exit status it maps to.
#[derive(Debug)]
pub struct CliError {
    pub message: String,
    pub code: i32,
}

impl CliError {
    /// Bad input: exit status 2.
    pub fn input(message: impl Into<String>) -> CliError {
        CliError {
            message: message.into(),
            code: 2,
        }
    }
}

impl From<String> for CliError {
    fn from(message: String) -> Self {
        CliError::input(message)
    }
}

pub type Result<T> = std::result::Result<T, CliError>;

/// Refuses an output path that names the input file (a link or another
/// spelling included): writing there would destroy the report being read.
pub fn refuse_overwrite(
    flag: &str,
    out: &std::path::Path,
    input: &std::path::Path,
    example: &str,
) -> Result<()> {
    use std::os::unix::fs::MetadataExt;
    let same = match (std::fs::metadata(out), std::fs::metadata(input)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    };
    if same {
        return Err(CliError::input(format!(
            "{flag} {}: that is the report being read; give another file (e.g. {example})",
            out.display()
        )));
    }
    Ok(())
}
