//! The HTTP fallback for clients whose network blocks WebSocket. A client
//! opens `GET /v1/sse?token=T`, a Server-Sent Events stream; the gateway
//! opens a wire-protocol connection to this node's own client listener
//! (over TLS on a TLS node), authenticates it with the token, and passes
//! every server frame down as an `event: frame` whose data is the frame in
//! base64 (the first event, `session`, names the session). The client sends frames with
//! `POST /v1/send?session=ID` (body: whole client frames), which the
//! gateway writes to that connection. So the fallback client is an
//! ordinary connection to the shards: same authentication, rooms, chat and
//! limits; it costs one loopback socket more. The session id is a random
//! 128-bit secret only the stream's holder learns.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use corecast_proto::{encode_client, peek_frame, ClientRequest, Peek, DEFAULT_MAX_FRAME_LEN};
use futures_util::stream::Stream;
use serde::Deserialize;
use tokio::io::AsyncReadExt;

use super::upstream::{self, UpstreamWriter};
use super::WebState;

/// The rid of the gateway's own PINGs; their PONGs are not passed down.
const GATEWAY_RID: u32 = u32::MAX;
/// Most bytes one POST may carry.
const MAX_POST_BYTES: usize = 256 * 1024;

type Upstream = Arc<tokio::sync::Mutex<UpstreamWriter>>;

/// Live sessions by id.
#[derive(Clone, Default)]
pub struct Sessions(Arc<Mutex<HashMap<String, Upstream>>>);

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Upstream>> {
        // A panic while holding the lock leaves a plain map behind.
        corecast_proto::sync::lock(&self.0)
    }
}

/// Removes the session when its event stream is dropped (the client left).
struct SessionGuard {
    sessions: Sessions,
    id: String,
    pinger: tokio::task::JoinHandle<()>,
}

impl Drop for SessionGuard {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.id);
        self.pinger.abort();
        metrics::gauge!("corecast_fallback_sessions").decrement(1);
    }
}

#[derive(Deserialize)]
pub struct EventsQuery {
    token: String,
}

fn frame(rid: u32, request: &ClientRequest<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    // AUTH with a token under the frame limit and PING always encode.
    let _ = encode_client(rid, 0, request, &mut out);
    out
}

/// `GET /v1/sse?token=T`: the session's event stream.
pub async fn events(State(state): State<WebState>, Query(query): Query<EventsQuery>) -> Response {
    let connector = state.tls.as_ref().map(|tls| &tls.connector);
    let (reader, mut writer) = match upstream::connect(state.client_addr, connector).await {
        Ok(halves) => halves,
        Err(e) => {
            tracing::warn!("fallback gateway cannot reach the client listener: {e}");
            return (StatusCode::SERVICE_UNAVAILABLE, "the node is not accepting connections").into_response();
        }
    };
    let auth = frame(1, &ClientRequest::Auth { token: &query.token, device: "sse" });
    if upstream::send(&mut writer, &auth).await.is_err() {
        return (StatusCode::SERVICE_UNAVAILABLE, "the node closed the connection").into_response();
    }
    let id: String = rand::random::<[u8; 16]>().iter().map(|b| format!("{b:02x}")).collect();
    let upstream: Upstream = Arc::new(tokio::sync::Mutex::new(writer));
    state.sessions.lock().insert(id.clone(), upstream.clone());
    metrics::gauge!("corecast_fallback_sessions").increment(1);
    let interval = Duration::from_millis((state.heartbeat_ms / 2).max(100) as u64);
    let pinger = tokio::spawn(async move {
        let ping = frame(GATEWAY_RID, &ClientRequest::Ping);
        loop {
            tokio::time::sleep(interval).await;
            if upstream::send(&mut *upstream.lock().await, &ping).await.is_err() {
                return;
            }
        }
    });
    let guard = SessionGuard { sessions: state.sessions.clone(), id: id.clone(), pinger };
    let first = Event::default().event("session").data(id);
    let events = futures_util::stream::unfold(
        (Vec::<u8>::new(), reader, Some(first), guard),
        |(mut buf, mut reader, first, guard)| async move {
            if let Some(first) = first {
                return Some((Ok::<Event, Infallible>(first), (buf, reader, None, guard)));
            }
            loop {
                if let Ok(Peek::Complete(header)) = peek_frame(&buf, DEFAULT_MAX_FRAME_LEN.max(1 << 20)) {
                    let bytes: Vec<u8> = buf.drain(..header.len as usize).collect();
                    if header.op == corecast_proto::server::op::PONG && header.rid == GATEWAY_RID {
                        continue;
                    }
                    let data = base64::engine::general_purpose::STANDARD.encode(&bytes);
                    return Some((Ok(Event::default().event("frame").data(data)), (buf, reader, None, guard)));
                }
                let mut chunk = [0u8; 16 * 1024];
                match reader.read(&mut chunk).await {
                    Ok(0) | Err(_) => return None,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
        },
    );
    Sse::new(Box::pin(events) as std::pin::Pin<Box<dyn Stream<Item = Result<Event, Infallible>> + Send>>)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

#[derive(Deserialize)]
pub struct SendQuery {
    session: String,
}

/// `POST /v1/send?session=ID`: client frames for the session's connection.
pub async fn send(State(state): State<WebState>, Query(query): Query<SendQuery>, body: Bytes) -> Response {
    if body.len() > MAX_POST_BYTES {
        return (StatusCode::PAYLOAD_TOO_LARGE, "at most 256 KiB of frames per request").into_response();
    }
    let upstream = state.sessions.lock().get(&query.session).cloned();
    let Some(upstream) = upstream else {
        return (StatusCode::NOT_FOUND, "no such session").into_response();
    };
    let written = upstream::send(&mut *upstream.lock().await, &body).await;
    match written {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => (StatusCode::GONE, "the session's connection is closed").into_response(),
    }
}
