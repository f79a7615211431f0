//! A server's ERROR or CLOSE, as the error that ends a command: `main`
//! prints it (text or JSON) and exits non-zero.

use std::fmt;

use corecast_proto::ErrorCode;

/// The server refused a request (ERROR) or ended the connection (CLOSE).
#[derive(Debug)]
pub struct Refused {
    /// `"error"` or `"close"`: which frame said so.
    pub frame: &'static str,
    /// The error code.
    pub code: u16,
    /// The server's message (ERROR) or reason (CLOSE).
    pub message: String,
}

impl Refused {
    /// The code's snake_case name, or `unknown` for a code this client
    /// does not know.
    pub fn name(&self) -> &'static str {
        ErrorCode::from_u16(self.code).map_or("unknown", ErrorCode::name)
    }

    /// The one-line JSON form.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({ "type": self.frame, "code": self.code, "name": self.name(), "message": self.message })
    }
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let frame = self.frame.to_uppercase();
        write!(f, "server {frame} {} ({}): {}", self.name(), self.code, self.message)
    }
}

impl std::error::Error for Refused {}
