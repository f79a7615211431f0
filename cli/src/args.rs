//! The command line: global options (where the server is, who to be, how to
//! print) and one subcommand per thing a user does, parsed by clap.

use clap::{Args, Parser, Subcommand};

/// A command-line client for corecast, in the spirit of `nats pub/sub`.
#[derive(Debug, Parser)]
#[command(name = "corecast", version)]
pub struct Cli {
    /// Where to connect and as whom.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct Global {
    /// The node's client listener.
    #[arg(long, global = true, default_value = "127.0.0.1:7100", conflicts_with = "dispatch")]
    pub addr: String,
    /// A dispatch URL (`GET /v1/dispatch` of a node or router): connect to
    /// the first node it lists.
    #[arg(long, global = true)]
    pub dispatch: Option<String>,
    /// The token to authenticate with.
    #[arg(long, global = true, conflicts_with = "user")]
    pub token: Option<String>,
    /// Mint a token for this user with CORECAST_JWT_SECRET.
    #[arg(long, global = true)]
    pub user: Option<String>,
    /// Print one JSON object per line instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mint an HS256 client token with CORECAST_JWT_SECRET and print it.
    Token {
        /// The user id (the token's `sub`).
        user: String,
        /// Rooms the token grants (exact names or prefixes ending in `*`);
        /// every room when absent.
        #[arg(long, value_delimiter = ',')]
        rooms: Option<Vec<String>>,
        /// Seconds until the token expires.
        #[arg(long, default_value_t = 3600)]
        ttl_secs: u64,
    },
    /// Join rooms and print every message published to them.
    Sub {
        /// The rooms.
        #[arg(required = true)]
        rooms: Vec<String>,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Print a room's newest stored messages (rooms with history).
    History {
        /// The room.
        room: String,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u16,
    },
    /// Print who is in a room (rooms with presence).
    Presence {
        /// The room.
        room: String,
    },
    /// Publish a message to a room.
    Pub {
        /// The room.
        room: String,
        /// The message.
        message: String,
    },
    /// Send a stored direct message to a user and print its SENT.
    Send {
        /// The recipient's user id.
        #[arg(long)]
        to: String,
        /// The message.
        message: String,
    },
    /// Print the stored messages of a conversation.
    Sync {
        /// The conversation id (`d:…` or `g:…`).
        conv: String,
        /// Only messages with a greater seq.
        #[arg(long, default_value_t = 0)]
        after: u64,
    },
    /// List the conversations with messages this device has not acknowledged.
    Unread,
    /// Measure PING round trips and print min, p50, p99 and max.
    BenchPing {
        /// Round trips to measure.
        #[arg(long, default_value_t = 100)]
        count: usize,
    },
}
