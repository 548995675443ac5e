//! Exit codes of every command (docs/certification.md 8.3), and the one error type of the
//! command line: a failure that carries its exit code.

#![allow(dead_code, reason = "each build uses the codes of its own commands")]

pub const PASS: u8 = 0;
pub const INVARIANT_FAILED: u8 = 1;
pub const USAGE: u8 = 2;
pub const RUNTIME: u8 = 3;
pub const REJECTED: u8 = 4;

/// A command that could not do its work: what to print (after `error: `, on stderr) and
/// the exit code.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
}

impl Failure {
    pub fn new(code: u8, message: impl Into<String>) -> Failure {
        Failure { code, message: message.into() }
    }
}

/// A usage error (exit 2): the arguments or an input the user gave cannot be used.
pub fn usage(message: impl Into<String>) -> Failure {
    Failure::new(USAGE, message)
}

/// A runtime error (exit 3): the work itself failed.
pub fn runtime(message: impl Into<String>) -> Failure {
    Failure::new(RUNTIME, message)
}

/// The exit code of a command's result; a failure is printed as `error: ...` first.
pub fn report(result: Result<u8, Failure>) -> u8 {
    result.unwrap_or_else(|failure| {
        eprintln!("error: {}", failure.message);
        failure.code
    })
}

impl From<seedcore_sim::ScenarioError> for Failure {
    fn from(error: seedcore_sim::ScenarioError) -> Failure {
        usage(error.to_string())
    }
}

impl From<seedcore_sim::run::RunError> for Failure {
    fn from(error: seedcore_sim::run::RunError) -> Failure {
        Failure::new(if error.is_usage() { USAGE } else { RUNTIME }, error.to_string())
    }
}

impl From<seedcore_reports::certify::CertifyError> for Failure {
    fn from(error: seedcore_reports::certify::CertifyError) -> Failure {
        use seedcore_reports::certify::CertifyError;
        match error {
            CertifyError::Usage(message) => usage(message),
            CertifyError::Runtime(message) => runtime(message),
            CertifyError::Rejected(message) => Failure::new(REJECTED, message),
        }
    }
}

impl From<seedcore_reports::certlog::LogError> for Failure {
    fn from(error: seedcore_reports::certlog::LogError) -> Failure {
        use seedcore_reports::certlog::LogError;
        match error {
            LogError::Io { .. } => usage(error.to_string()),
            LogError::Rejected { .. } => Failure::new(REJECTED, error.to_string()),
        }
    }
}

impl From<seedcore_reports::keys::KeyError> for Failure {
    fn from(error: seedcore_reports::keys::KeyError) -> Failure {
        usage(error.to_string())
    }
}
