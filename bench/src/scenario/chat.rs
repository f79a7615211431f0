//! `chat`: user-to-user and group sends with SENT and delivery latency. The
//! server does not serve persistent messaging yet, so this scenario refuses
//! to run rather than measure something else.

/// What `chat` says instead of running.
pub const NOT_AVAILABLE: &str = "chat: not available until persistent messaging lands \
(the server does not serve SEND/SENT yet); nothing was run";
