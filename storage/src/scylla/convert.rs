//! Conversions between the store's types and CQL's, and driver errors to
//! [`StoreError`].
//!
//! CQL has no unsigned integers. Seqs are stored as `bigint` with their
//! value (so they sort and read naturally in cqlsh) and must stay below
//! 2^63 — `epoch << 40 | counter` does for every epoch below 2^23. Client
//! message ids and timestamps have no order to keep and are stored as their
//! two's-complement bit pattern, so every `u64` round-trips.

use scylla::errors::{DbError, ExecutionError, RequestAttemptError};

use crate::StoreError;

/// A seq as a CQL `bigint`, or an error if it does not fit.
pub(crate) fn seq_to_cql(seq: u64) -> Result<i64, StoreError> {
    i64::try_from(seq)
        .map_err(|_| StoreError::Internal(format!("seq {seq} is beyond the ScyllaDB backend's range (< 2^63)")))
}

/// A stored seq back, rejecting negative values no writer produced.
pub(crate) fn seq_from_cql(seq: i64) -> Result<u64, StoreError> {
    u64::try_from(seq).map_err(|_| StoreError::Internal(format!("corrupt stored seq {seq}")))
}

/// A `u64` stored by bit pattern.
pub(crate) fn bits_to_cql(v: u64) -> i64 {
    v as i64
}

/// A `u64` stored by bit pattern, back.
pub(crate) fn bits_from_cql(v: i64) -> u64 {
    v as u64
}

/// A limit as CQL's `int`.
pub(crate) fn limit_to_cql(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}

/// Maps a failed request: a statement the server rejects as invalid is a
/// bug a retry will not fix; timeouts, unavailable replicas and broken
/// connections may pass.
pub(crate) fn execution(what: &str, e: ExecutionError) -> StoreError {
    let permanent = match &e {
        ExecutionError::BadQuery(_) => true,
        ExecutionError::LastAttemptError(RequestAttemptError::DbError(db, _)) => matches!(
            db,
            DbError::SyntaxError
                | DbError::Invalid
                | DbError::Unauthorized
                | DbError::ConfigError
                | DbError::AuthenticationError
        ),
        _ => false,
    };
    if permanent {
        StoreError::Internal(format!("{what}: {e}"))
    } else {
        StoreError::Unavailable(format!("{what}: {e}"))
    }
}

/// Maps a response that could not be read as the rows expected.
pub(crate) fn decoding(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Internal(format!("{what}: unexpected response: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqs_must_fit_a_bigint() {
        assert_eq!(seq_to_cql(1 << 40).unwrap(), 1 << 40);
        assert_eq!(seq_to_cql(i64::MAX as u64).unwrap(), i64::MAX);
        assert!(seq_to_cql(1 << 63).is_err());
        assert!(seq_from_cql(-1).is_err());
    }

    #[test]
    fn bit_patterns_round_trip() {
        for v in [0, 1, u64::MAX, 1 << 63] {
            assert_eq!(bits_from_cql(bits_to_cql(v)), v);
        }
        assert_eq!(limit_to_cql(usize::MAX), i32::MAX);
    }
}
