//! The result of a command that prints and exits: what `main` writes and the
//! exit status it returns.

/// What a command produced: an exit code and the text for stdout and stderr.
///
/// The operator commands (`inspect`, `check`) return this instead of
/// printing, so tests can assert on their exact output without a process.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Outcome {
    /// The process exit status.
    pub code: i32,
    /// Text for standard output, written as is.
    pub stdout: String,
    /// Text for standard error, written as is.
    pub stderr: String,
}

impl Outcome {
    /// Success (exit 0) with `stdout`.
    pub fn ok(stdout: impl Into<String>) -> Outcome {
        Outcome {
            code: 0,
            stdout: stdout.into(),
            stderr: String::new(),
        }
    }

    /// Failure with exit `code` and `stderr`.
    pub fn fail(code: i32, stderr: impl Into<String>) -> Outcome {
        Outcome {
            code,
            stdout: String::new(),
            stderr: stderr.into(),
        }
    }
}
