//! Helpers for corecast's integration tests, shared by every crate as a
//! dev-dependency (never a normal one; not published): loopback ports that
//! no other test or server takes ([`ports`]), and real Redis processes to
//! test against ([`redis_server`], [`redis_sentinel`]) — no mocks — and
//! the server binary for tests outside its crate ([`server_binary`]). Its own
//! test (`tests/architecture.rs`) keeps `docs/ARCHITECTURE.md` true to the
//! files it names.
#![warn(missing_docs)]

pub mod ports;
pub mod redis_sentinel;
pub mod redis_server;
pub mod server_binary;
