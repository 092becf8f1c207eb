//! The daemon's connection limits against clients that hold connections without progress:
//! slowloris headers, a stalled body, an idle keep-alive connection, and more connections
//! than the limit. Real `taskd`, raw TCP.
#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::Daemon;

const KEY: &str = "limits-test-key";

fn start() -> Daemon {
    Daemon::start(&format!(
        "[[api_keys]]\nkey = \"{KEY}\"\ntenant = \"acme\"\n[products.adbreaks]\n\
         [http]\nheader_read_timeout_secs = 1\nbody_read_timeout_secs = 1\n\
         max_wait_secs = 1\nidle_timeout_secs = 3\nmax_connections = 4\n"
    ))
}

/// Reads until the server closes the connection (or `limit` passes); what it sent.
fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    stream.set_read_timeout(Some(limit)).unwrap();
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return Some(String::from_utf8_lossy(&seen).into_owned()),
            Ok(n) => seen.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return Some(String::from_utf8_lossy(&seen).into_owned());
            }
            Err(_) => return None,
        }
    }
}

fn healthy(addr: &str) -> bool {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .unwrap();
    read_until_closed(&mut stream, Duration::from_secs(10))
        .is_some_and(|answer| answer.starts_with("HTTP/1.1 200"))
}

#[test]
fn slow_headers_are_cut_and_the_connection_limit_holds() {
    let daemon = start();
    let started = Instant::now();
    // Twice the connection limit, each sending half a request head and then nothing.
    let mut slow: Vec<TcpStream> = (0..8)
        .map(|_| {
            let mut stream = TcpStream::connect(&daemon.addr).unwrap();
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n")
                .unwrap();
            stream
        })
        .collect();
    for stream in &mut slow {
        assert!(
            read_until_closed(stream, Duration::from_secs(20)).is_some(),
            "a connection without a full head was held for {:?}",
            started.elapsed()
        );
    }
    assert!(
        healthy(&daemon.addr),
        "the server answers once they are gone"
    );
}

#[test]
fn a_stalled_body_gets_408_with_a_detail() {
    let daemon = start();
    let mut stream = TcpStream::connect(&daemon.addr).unwrap();
    let head = format!(
        "PUT /catalog/v1/item HTTP/1.1\r\nHost: t\r\nX-API-Key: {KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"id\": \"m\""
    );
    stream.write_all(head.as_bytes()).unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(20)).expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.contains(r#""detail":"Request body not received within 1 s""#),
        "{answer}"
    );
    assert!(healthy(&daemon.addr));
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let daemon = start();
    let mut stream = TcpStream::connect(&daemon.addr).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: t\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&mut stream, Duration::from_secs(20)).expect("closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// Requests hyper refuses before the API sees them still get the documented `{"detail"}`.
#[test]
fn requests_the_server_cannot_parse_get_a_json_detail() {
    let daemon = start();
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(70_000));
    let cases: [(&[u8], &str, &str); 3] = [
        (
            b"GET / HTTP/1.1\r\nHo st: t\r\n\r\n",
            "HTTP/1.1 400",
            "could not be parsed",
        ),
        (
            b"\x01\x02 garbage\r\n\r\n",
            "HTTP/1.1 400",
            "could not be parsed",
        ),
        (long_uri.as_bytes(), "HTTP/1.1 414", "URI too long"),
    ];
    for (request, status, detail) in cases {
        let mut stream = TcpStream::connect(&daemon.addr).unwrap();
        stream.write_all(request).unwrap();
        let answer = read_until_closed(&mut stream, Duration::from_secs(20)).expect("an answer");
        assert!(answer.starts_with(status), "{answer}");
        let (head, body) = answer.split_once("\r\n\r\n").expect("head and body");
        assert!(head.contains("content-type: application/json"), "{head}");
        let body: serde_json::Value = serde_json::from_str(body).expect("a JSON body");
        assert!(
            body["detail"].as_str().is_some_and(|d| d.contains(detail)),
            "{body}"
        );
    }
    assert!(healthy(&daemon.addr));
}
