//! The library behind the `xent` binary: `.npy` reading and writing, the `xent loss`
//! commands from their parsed arguments to the library calls, and the file
//! transaction that writes their outputs.
//!
//! It is a library so that `xent-mpi` (crates/xent-mpi) takes the same flags
//! ([`args`]) and reads and writes the same files, with the same checks and messages,
//! as `xent loss`, and so that the fuzz
//! targets (`fuzz/`, cargo-fuzz) and the tests that replay their corpus call the same
//! code the binary runs; the binary itself holds
//! only the argument parsing, the demo and the benchmark.
#![deny(missing_docs)]

pub mod args;
mod family;
pub mod fuzzing;
pub mod linear;
pub mod loss;
pub mod npy;
pub mod operands;
mod outputs;
pub mod report;

/// A failure to report: one line for stderr.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure(String);

impl Failure {
    /// A failure with this message.
    pub fn new(message: impl Into<String>) -> Self {
        Failure(message.into())
    }

    /// The message, on one line.
    pub fn message(&self) -> String {
        self.0.replace(['\r', '\n'], " ")
    }
}

impl From<xent::Error> for Failure {
    fn from(e: xent::Error) -> Self {
        Failure(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::Failure;

    #[test]
    fn failure_message_is_one_line() {
        assert_eq!(Failure::new("a\nb").message(), "a b");
    }
}
