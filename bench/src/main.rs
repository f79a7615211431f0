//! `corecast-bench`: the load generator and C1M harness.
//!
//! It will drive the `connect`, `fanout`, `broadcast` and `chat` scenarios
//! against corecast and its peers (NATS, MQTT, Redis pub/sub), spread over
//! worker processes and source addresses. Until then it only says so.

fn main() {
    eprintln!("corecast-bench: scenarios are not built yet");
    std::process::exit(2);
}
