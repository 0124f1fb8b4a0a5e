//! Slow and greedy clients against the real listener: connections that never complete a request
//! (silent TCP, a TLS session that trickles half the HTTP/2 preface, an HTTP/2 connection that
//! never asks for anything) are closed after `header_timeout`; connections beyond the per-address
//! limit are closed at accept, and the place comes back when one closes.

mod common;

use std::time::Duration;

use common::{start_node, transport};
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zerohop_control::tls::{self, Trust};
use zerohop_control::{Client, ClientError, Node};

async fn start(header_timeout: Duration, per_ip: usize) -> (Node, String) {
    start_node(|cfg| {
        cfg.header_timeout = header_timeout;
        cfg.max_connections_per_ip = per_ip;
    })
    .await
}

/// Reads until the node closes the connection; `true` when it did within `within`.
async fn closed_by_node<S: tokio::io::AsyncRead + Unpin>(s: &mut S, within: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let until = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(until, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue, // TLS records, SETTINGS, GOAWAY: keep reading until EOF
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_never_complete_a_request_are_closed() {
    let (node, fp) = start(Duration::from_millis(400), 64).await;
    let addr = node.local_addr();

    // Silent TCP: not even a TLS ClientHello.
    let mut silent = TcpStream::connect(addr).await.expect("tcp");
    assert!(closed_by_node(&mut silent, Duration::from_secs(5)).await, "silent TCP connection left open");

    // TLS completed, then half of the HTTP/2 preface, then nothing.
    let config = tls::client_config(&Trust::Pin(fp.clone())).expect("client tls");
    let tcp = TcpStream::connect(addr).await.expect("tcp");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await.expect("handshake");
    tls.write_all(b"PRI * HTTP/2.0\r\n").await.expect("half a preface");
    tls.flush().await.expect("flush");
    assert!(closed_by_node(&mut tls, Duration::from_secs(5)).await, "half-preface connection left open");

    // A complete HTTP/2 connection that never sends a request: sent GOAWAY, then closed.
    let mut idle = Client::connect(&addr.to_string(), &transport(&fp), None).await.expect("connect");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(idle.get("/healthz").await.is_err(), "an HTTP/2 connection with no request was kept");

    // A client that asks at once is served, and stays connected past the timeout once it has.
    let mut prompt = Client::connect(&addr.to_string(), &transport(&fp), None).await.expect("connect");
    assert_eq!(prompt.get("/healthz").await.expect("healthz").0, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(prompt.get("/healthz").await.expect("still connected").0, StatusCode::OK);
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_per_address_limit_are_refused_until_one_closes() {
    let (node, fp) = start(Duration::from_secs(30), 3).await;
    let addr = node.local_addr().to_string();
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut c = Client::connect(&addr, &transport(&fp), None).await.expect("within the limit");
        assert_eq!(c.get("/healthz").await.expect("healthz").0, StatusCode::OK);
        held.push(c);
    }
    // The fourth from the same address is closed at accept (the handshake or the first request
    // fails), well before the 30 s header timeout could have closed it.
    let fourth = async {
        let mut c = Client::connect(&addr, &transport(&fp), None).await?;
        c.get("/healthz").await
    };
    let r = tokio::time::timeout(Duration::from_secs(5), fourth).await.expect("refused promptly");
    // Closed before TLS: the handshake meets the end of the stream or a reset, never a server hello.
    assert!(matches!(r, Err(ClientError::Tls(_))), "a fourth connection was not closed at accept: {r:?}");
    // One closes: a new one is admitted.
    drop(held.pop());
    let mut admitted = false;
    for _ in 0..100 {
        if let Ok(mut c) = Client::connect(&addr, &transport(&fp), None).await
            && matches!(c.get("/healthz").await, Ok((StatusCode::OK, _)))
        {
            admitted = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(admitted, "the freed place was not given back");
    // The held ones still work.
    for c in &mut held {
        assert_eq!(c.get("/healthz").await.expect("held").0, StatusCode::OK);
    }
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_headers_are_refused_and_the_node_goes_on() {
    let (node, fp) = start(Duration::from_secs(10), 64).await;
    let addr = node.local_addr().to_string();
    let mut c = Client::connect(&addr, &transport(&fp), None).await.expect("connect");
    // A first exchange, so the client has read the node's SETTINGS (its 256 KiB frames) and the
    // header block below goes in one HEADERS frame whatever the timing (before them it would be
    // split into 16 KiB frames with CONTINUATIONs: another path through the node's HTTP/2 layer).
    assert_eq!(c.get("/healthz").await.expect("healthz").0, StatusCode::OK);
    // 32 KiB of headers against the 16 KiB limit.
    let req = c
        .request(http::Method::GET, "/healthz")
        .header("x-padding", "a".repeat(32 * 1024))
        .body(zerohop_control::body::ChannelBody::empty())
        .expect("request");
    // HTTP/2 answers the request 431 and the connection goes on.
    let r = c.send(req).await.expect("an answer to the request");
    assert_eq!(r.status(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert_eq!(c.get("/healthz").await.expect("the connection goes on").0, StatusCode::OK);
    let mut fresh = Client::connect(&addr, &transport(&fp), None).await.expect("connect");
    assert_eq!(fresh.get("/healthz").await.expect("healthz").0, StatusCode::OK);
    node.shutdown().await;
}
