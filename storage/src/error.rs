//! Errors a store reports, saying which side failed and whether a retry
//! can help.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or timed out; retrying later may work.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The thing asked for does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// The thing to create already exists.
    #[error("already exists: {0}")]
    AlreadyExists(String),
    /// The conversation was fenced below this message's seq (a newer owner
    /// took it over, or its owner gave up on an append it could not
    /// confirm): nothing was stored, and this append can never succeed.
    #[error("fenced: {0}")]
    Fenced(String),
    /// Stored data could not be decoded, or the backend failed in a way a
    /// retry will not fix.
    #[error("storage failure: {0}")]
    Internal(String),
}

impl StoreError {
    /// Whether retrying the same operation later may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self, StoreError::Unavailable(_))
    }
}
