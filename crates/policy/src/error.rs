//! Errors building a policy engine, each naming the file, position and policy at fault.

use std::fmt;

use miette::Diagnostic;

/// Why a [`crate::PolicyEngine`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// The schema shipped in this crate does not parse. A bug in Portcullis, caught by tests.
    #[error("the built-in policy schema is invalid: {0}")]
    Schema(String),
    /// One or more policies are invalid; every problem found is listed.
    #[error("{}", join(.0))]
    Invalid(Vec<Problem>),
}

fn join(problems: &[Problem]) -> String {
    problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// One thing wrong with one policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file name as given (`<profile default>` for a built-in profile).
    pub file: String,
    /// Where in the file, when known.
    pub position: Option<Position>,
    /// The id of the policy at fault, once ids are assigned (not for syntax errors).
    pub policy: Option<String>,
    /// What is wrong, lowercase, with a hint when one is known.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(Position { line, column }) = self.position {
            write!(f, ":{line}:{column}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// A 1-based line and column (columns count characters).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    /// Line, from 1.
    pub line: usize,
    /// Column, from 1.
    pub column: usize,
}

impl Position {
    /// The position of byte `offset` in `text`; `None` when it is out of range.
    pub(crate) fn at(text: &str, offset: usize) -> Option<Position> {
        let before = text.get(..offset)?;
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
        Some(Position { line, column })
    }
}

/// The byte range of a diagnostic's first label, if it has one.
pub(crate) fn first_span(d: &(impl Diagnostic + ?Sized)) -> Option<(usize, usize)> {
    let label = d.labels()?.next()?;
    Some((label.offset(), label.len()))
}

/// A problem from a Cedar diagnostic whose spans point into `text`.
pub(crate) fn problem(file: &str, text: &str, policy: Option<String>, d: &(impl Diagnostic + ?Sized)) -> Problem {
    let mut message = d.to_string();
    if let Some(help) = d.help() {
        message = format!("{message} ({help})");
    }
    Problem {
        file: file.to_owned(),
        position: first_span(d).and_then(|(offset, _)| Position::at(text, offset)),
        policy,
        message,
    }
}
