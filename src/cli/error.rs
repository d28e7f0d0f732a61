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
