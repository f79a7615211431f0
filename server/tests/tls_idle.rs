//! What an idle TLS connection's rustls session holds: a session on the
//! server's own configuration completes a handshake in memory and carries
//! a request and a reply, then is dropped; the heap it gives back is what
//! it held while idle (the shared resumption cache keeps its own entries).
//! The figure is quoted in `src/shard/driver/tls.rs`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{Read, Write};
use std::sync::Arc;

use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};

struct Counting;

thread_local! {
    static FREED: Cell<Option<usize>> = const { Cell::new(None) };
}

// SAFETY: defers to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        let _ = FREED.try_with(|freed| {
            if let Some(n) = freed.get() {
                freed.set(Some(n + layout.size()));
            }
        });
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn key(name: &str) -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/keys").join(name)
}

/// Moves what the client has to send to the server; whether anything moved.
fn to_server(client: &mut rustls::ClientConnection, server: &mut rustls::ServerConnection) -> bool {
    let mut wire = Vec::new();
    while client.wants_write() {
        client.write_tls(&mut wire).unwrap();
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        server.read_tls(&mut rest).unwrap();
        server.process_new_packets().unwrap();
    }
    !wire.is_empty()
}

/// Moves what the server has to send to the client; whether anything moved.
fn to_client(server: &mut rustls::ServerConnection, client: &mut rustls::ClientConnection) -> bool {
    let mut wire = Vec::new();
    while server.wants_write() {
        server.write_tls(&mut wire).unwrap();
    }
    let mut rest = &wire[..];
    while !rest.is_empty() {
        client.read_tls(&mut rest).unwrap();
        client.process_new_packets().unwrap();
    }
    !wire.is_empty()
}

#[test]
fn an_idle_session_holds_a_few_kilobytes() {
    let store = corecast_server::tls::CertStore::open(&key("tls_cert.pem"), &key("tls_key.pem")).unwrap();
    let server_config = store.server_config().unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(key("tls_ca.pem")).unwrap()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client_config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut client =
        rustls::ClientConnection::new(Arc::new(client_config), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut server = Box::new(rustls::ServerConnection::new(server_config).unwrap());

    while to_server(&mut client, &mut server) | to_client(&mut server, &mut client) {}
    assert!(!client.is_handshaking() && !server.is_handshaking());
    // A request and a reply, as an AUTH and its AUTH_OK would go.
    client.writer().write_all(&[7; 200]).unwrap();
    to_server(&mut client, &mut server);
    let mut request = [0; 200];
    server.reader().read_exact(&mut request).unwrap();
    server.writer().write_all(&[9; 100]).unwrap();
    to_client(&mut server, &mut client);
    assert!(!server.wants_write());

    FREED.with(|freed| freed.set(Some(0)));
    drop(server);
    let held = FREED.with(|freed| freed.take()).unwrap();
    eprintln!("an idle session held {held} bytes on the heap (its Box included)");
    assert!(held <= 16 * 1024, "an idle session held {held} bytes");
}
