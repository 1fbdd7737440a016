//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong in the launchers, the installers and the runner.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A tool is not installed; the message names the command that installs it.
    #[error("{what} is not installed in {}: run `b24-local install {fix}`", dir.display())]
    NotInstalled {
        /// What is missing ("DynamoDB Local", "moto").
        what: &'static str,
        /// Where it was looked for.
        dir: PathBuf,
        /// The `install` argument that fixes it (`ddb`, `moto`).
        fix: &'static str,
    },
    /// A program the installer needs is not on `PATH`.
    #[error("`{program}` not found on PATH ({why})")]
    MissingProgram {
        /// The program (`java`, `npm`, ...).
        program: &'static str,
        /// Why it is needed.
        why: &'static str,
    },
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// An external command (npm, javac, pip) exited unsuccessfully.
    #[error("`{command}` failed ({status}):\n{output}")]
    Command {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// The tail of its output.
        output: String,
    },
    /// A server did not start, exited early or did not become ready.
    #[error("{what}: {detail}")]
    Server {
        /// Which server.
        what: &'static str,
        /// What happened (with the tail of its log when there is one).
        detail: String,
    },
    /// Invalid configuration: a config file, a filter pattern, a command-line value.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// An AWS API call failed.
    #[error("{operation}: {message}")]
    Aws {
        /// The operation (`sqs:ReceiveMessage`, ...).
        operation: &'static str,
        /// The SDK's error with its full context.
        message: String,
    },
    /// The function could not be invoked at all (connection refused, timeout, 404, 429, ...).
    /// This is not a function error: the runner retries it without counting a retry attempt.
    #[error("invoke failed: {0}")]
    Invoke(String),
}

impl LocalError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        LocalError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn aws<E>(operation: &'static str, err: E) -> Self
    where
        E: std::error::Error + 'static,
    {
        LocalError::Aws {
            operation,
            message: aws_sdk_sqs::error::DisplayErrorContext(&err).to_string(),
        }
    }
}
