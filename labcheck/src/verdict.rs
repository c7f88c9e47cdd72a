//! What a check returns: the lines it saw (printed whether it passes or not) and either its
//! one-line `ok: …` summary or its one-line failure.

/// The outcome of one check.
#[derive(Debug, Clone, PartialEq)]
pub struct Verdict {
    /// What the check saw, for the CI log.
    pub seen: Vec<String>,
    /// `Ok(summary)` or `Err(why)`, one line each.
    pub result: Result<String, String>,
}

impl Verdict {
    pub fn pass(seen: Vec<String>, summary: impl Into<String>) -> Self {
        Self {
            seen,
            result: Ok(summary.into()),
        }
    }

    pub fn fail(seen: Vec<String>, why: impl Into<String>) -> Self {
        Self {
            seen,
            result: Err(why.into()),
        }
    }

    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }

    /// The failure's message, if it failed (for tests).
    pub fn failure(&self) -> Option<&str> {
        self.result.as_ref().err().map(String::as_str)
    }
}
