//! Error codes carried by ERROR and CLOSE frames.
//!
//! Codes are grouped by thousands so a client can act on the family even for
//! a code it does not know: 1xxx the client sent something malformed (fix the
//! client, do not retry as is), 2xxx authentication and permission (get a new
//! token or stop), 3xxx limits (slow down, retry later), 4xxx the server is
//! ending the connection (reconnect after the hint), 5xxx server-side
//! conditions (retry with backoff). `docs/PROTOCOL.md` says what a client
//! should do for each.

/// Every error code the server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u16)]
pub enum ErrorCode {
    /// The frame could not be parsed (bad length, version, field or UTF-8).
    BadFrame = 1001,
    /// The frame is larger than the server's maximum frame length.
    FrameTooLarge = 1002,
    /// The op code is unknown to the server.
    UnknownOp = 1003,
    /// A request other than AUTH or PING arrived before AUTH succeeded.
    NotAuthenticated = 2001,
    /// The token is invalid, expired or signed with the wrong key.
    AuthFailed = 2002,
    /// The token does not allow this room or action.
    Forbidden = 2003,
    /// A configured limit (rooms per connection, name length...) was hit.
    LimitExceeded = 3001,
    /// The client sends faster than it is allowed to.
    RateLimited = 3002,
    /// The client does not read its messages fast enough.
    SlowConsumer = 3003,
    /// The server is shutting down or draining this node.
    ShuttingDown = 4001,
    /// Nothing was received within the idle timeout.
    IdleTimeout = 4002,
    /// An operator removed this connection.
    Kicked = 4003,
    /// The requested thing (conversation, group, message) does not exist.
    NotFound = 5001,
    /// An unexpected server-side failure.
    Internal = 5002,
    /// A dependency (storage, router) is unavailable; retry later.
    Unavailable = 5003,
}

impl ErrorCode {
    /// Every code, for documentation and exhaustive tests.
    pub const ALL: [ErrorCode; 15] = [
        ErrorCode::BadFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnknownOp,
        ErrorCode::NotAuthenticated,
        ErrorCode::AuthFailed,
        ErrorCode::Forbidden,
        ErrorCode::LimitExceeded,
        ErrorCode::RateLimited,
        ErrorCode::SlowConsumer,
        ErrorCode::ShuttingDown,
        ErrorCode::IdleTimeout,
        ErrorCode::Kicked,
        ErrorCode::NotFound,
        ErrorCode::Internal,
        ErrorCode::Unavailable,
    ];

    /// The code as sent on the wire.
    pub fn as_u16(self) -> u16 {
        self as u16
    }

    /// The code for a wire value, if this version knows it.
    pub fn from_u16(value: u16) -> Option<ErrorCode> {
        Self::ALL.into_iter().find(|code| code.as_u16() == value)
    }

    /// A short snake_case name, used in logs, metrics and reasons.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::AuthFailed => "auth_failed",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::LimitExceeded => "limit_exceeded",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::SlowConsumer => "slow_consumer",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::IdleTimeout => "idle_timeout",
            ErrorCode::Kicked => "kicked",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Internal => "internal",
            ErrorCode::Unavailable => "unavailable",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_round_trips_and_has_a_unique_value() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_u16(code.as_u16()), Some(code));
        }
        let mut values: Vec<u16> = ErrorCode::ALL.iter().map(|c| c.as_u16()).collect();
        values.sort_unstable();
        values.dedup();
        assert_eq!(values.len(), ErrorCode::ALL.len());
        assert_eq!(ErrorCode::from_u16(0), None);
    }
}
