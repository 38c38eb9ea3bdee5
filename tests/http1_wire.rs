//! The probe's HTTP/1.1 client against a scripted server on loopback: what real
//! servers and proxies put on the wire (interim responses, chunked bodies with
//! extensions and trailers, HTTP/1.0 bodies that end at the close, idle
//! connections closed by a keep-alive timeout) is read as they mean it, and a
//! connection is reused only when that is safe.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use fediprobe::runner::Reason;
use fediprobe::runner::connect::Tls;
use fediprobe::runner::http::{self as probe_http, Client, Request};
use http::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the server does with one request.
struct Reply {
    bytes: Vec<u8>,
    /// Written a few bytes at a time, each piece flushed on its own.
    trickle: bool,
    /// Close the connection after the reply.
    close: bool,
}

fn reply(text: &str) -> Reply {
    Reply { bytes: text.as_bytes().to_vec(), trickle: false, close: false }
}

/// The requests seen, as (connection number, request text).
type Seen = Arc<Mutex<Vec<(usize, String)>>>;

/// A server whose answer to the n-th request overall is `script(n, request)`;
/// `None` closes the connection without answering.
async fn server(script: impl Fn(usize, &str) -> Option<Reply> + Send + Sync + 'static) -> (String, Seen) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let script = Arc::new(script);
    let log = seen.clone();
    tokio::spawn(async move {
        let mut connections = 0;
        loop {
            let Ok((mut socket, _)) = listener.accept().await else { return };
            connections += 1;
            let (script, log, number) = (script.clone(), log.clone(), connections);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                loop {
                    let Some(request) = read_request(&mut socket, &mut buf).await else { return };
                    let index = {
                        let mut log = log.lock().unwrap();
                        log.push((number, request.clone()));
                        log.len() - 1
                    };
                    let Some(reply) = script(index, &request) else { return };
                    if reply.trickle {
                        for piece in reply.bytes.chunks(3) {
                            socket.write_all(piece).await.unwrap();
                            socket.flush().await.unwrap();
                            tokio::time::sleep(Duration::from_millis(1)).await;
                        }
                    } else {
                        socket.write_all(&reply.bytes).await.unwrap();
                    }
                    if reply.close {
                        let _ = socket.shutdown().await;
                        return;
                    }
                }
            });
        }
    });
    (base, seen)
}

/// One request: its head, and as many body bytes as it announces.
async fn read_request(socket: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<String> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end + 4]).into_owned();
            let length = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_owned()))
                .map_or(0, |v| v.parse::<usize>().unwrap());
            while buf.len() < end + 4 + length {
                let mut more = [0u8; 4096];
                let n = socket.read(&mut more).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&more[..n]);
            }
            let request = String::from_utf8_lossy(&buf[..end + 4 + length]).into_owned();
            buf.drain(..end + 4 + length);
            return Some(request);
        }
        let mut more = [0u8; 4096];
        let n = socket.read(&mut more).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&more[..n]);
    }
}

fn request(method: Method, base: &str, path: &str) -> Request {
    Request {
        method,
        url: format!("{base}{path}").parse().unwrap(),
        headers: Vec::new(),
        bearer: None,
        body: None,
        follow_redirects: false,
    }
}

fn get(base: &str) -> Request {
    request(Method::GET, base, "/api/v1/instance")
}

fn connections(seen: &Seen) -> Vec<usize> {
    seen.lock().unwrap().iter().map(|(c, _)| *c).collect()
}

#[tokio::test]
async fn interim_responses_are_skipped_and_the_final_one_is_read() {
    let (base, _) = server(|_, _| {
        Some(reply(
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n\
             HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Final: yes\r\n\r\nok",
        ))
    })
    .await;
    let client = Client::new(Tls::default());
    let response = probe_http::send(&client, &get(&base)).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(response.headers["x-final"], "yes");
    assert!(response.headers.get("link").is_none(), "the interim response's headers are not the answer's");
    assert_eq!(&response.body[..], b"ok");
}

#[tokio::test]
async fn a_chunked_body_with_extensions_and_trailers_arriving_in_pieces_is_whole_and_the_connection_reused() {
    let (base, seen) = server(|_, _| {
        Some(Reply {
            bytes: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4;name=value\r\nWiki\r\n5\r\npedia\r\n\
                     E\r\n in\r\n\r\nchunks.\r\n0\r\nX-Trailer: done\r\n\r\n"
                .to_vec(),
            trickle: true,
            close: false,
        })
    })
    .await;
    let client = Client::new(Tls::default());
    for _ in 0..2 {
        let response = probe_http::send(&client, &get(&base)).await.unwrap();
        assert_eq!(&response.body[..], b"Wikipedia in\r\n\r\nchunks.");
    }
    assert_eq!(connections(&seen), vec![1, 1], "the second request goes on the same connection");
}

#[tokio::test]
async fn an_http_1_0_body_without_a_length_ends_at_the_close_and_the_connection_is_not_reused() {
    let (base, seen) = server(|_, _| {
        Some(Reply {
            bytes: b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end".to_vec(),
            trickle: true,
            close: true,
        })
    })
    .await;
    let client = Client::new(Tls::default());
    for _ in 0..2 {
        let response = probe_http::send(&client, &get(&base)).await.unwrap();
        assert_eq!(&response.body[..], b"until the end");
    }
    assert_eq!(connections(&seen), vec![1, 2]);
}

#[tokio::test]
async fn head_204_and_304_answers_have_no_body_whatever_they_announce() {
    let (base, seen) = server(|n, _| {
        Some(reply(match n {
            0 => "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
            1 => "HTTP/1.1 204 No Content\r\n\r\n",
            2 => "HTTP/1.1 304 Not Modified\r\nContent-Length: 50\r\n\r\n",
            _ => "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlast",
        }))
    })
    .await;
    let client = Client::new(Tls::default());
    let head = probe_http::send(&client, &request(Method::HEAD, &base, "/")).await.unwrap();
    assert_eq!((head.status, head.body.len()), (200, 0));
    for status in [204, 304] {
        let response = probe_http::send(&client, &get(&base)).await.unwrap();
        assert_eq!((response.status, response.body.len()), (status, 0));
    }
    let last = probe_http::send(&client, &get(&base)).await.unwrap();
    assert_eq!(&last.body[..], b"last");
    assert_eq!(connections(&seen), vec![1, 1, 1, 1], "no body was waited for, so the connection stayed usable");
}

#[tokio::test]
async fn a_post_says_its_length_and_a_bodiless_post_says_zero() {
    let (base, seen) = server(|_, _| Some(reply("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"))).await;
    let client = Client::new(Tls::default());
    let mut post = request(Method::POST, &base, "/api/v1/statuses");
    post.body = Some(("application/x-www-form-urlencoded", Bytes::from_static(b"status=hi")));
    probe_http::send(&client, &post).await.unwrap();
    probe_http::send(&client, &request(Method::POST, &base, "/api/v1/statuses/1/favourite")).await.unwrap();
    let seen = seen.lock().unwrap();
    assert!(seen[0].1.starts_with("POST /api/v1/statuses HTTP/1.1\r\n"), "{}", seen[0].1);
    assert!(seen[0].1.contains("content-length: 9\r\n") && seen[0].1.ends_with("\r\n\r\nstatus=hi"), "{}", seen[0].1);
    assert!(seen[0].1.contains("content-type: application/x-www-form-urlencoded\r\n"), "{}", seen[0].1);
    assert!(seen[1].1.contains("content-length: 0\r\n"), "{}", seen[1].1);
}

#[tokio::test]
async fn an_idle_connection_the_server_closed_is_not_used_again() {
    // nginx's keepalive_timeout: the server closes the connection after the answer.
    let (base, seen) = server(|_, _| {
        Some(Reply { bytes: b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".to_vec(), trickle: false, close: true })
    })
    .await;
    let client = Client::new(Tls::default());
    probe_http::send(&client, &get(&base)).await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // A POST, which is never sent twice: it must go on a new connection at once.
    let response = probe_http::send(&client, &request(Method::POST, &base, "/api/v1/statuses")).await.unwrap();
    assert_eq!(response.status, 200);
    assert_eq!(connections(&seen), vec![1, 2]);
}

#[tokio::test]
async fn bytes_after_the_announced_body_make_the_connection_unusable() {
    let (base, seen) = server(|_, _| Some(reply("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"))).await;
    let client = Client::new(Tls::default());
    for _ in 0..2 {
        let response = probe_http::send(&client, &get(&base)).await.unwrap();
        assert_eq!(&response.body[..], b"ok");
    }
    assert_eq!(connections(&seen), vec![1, 2]);
}

#[tokio::test]
async fn a_reused_connection_closing_under_a_get_sends_it_again_but_never_a_post() {
    // The second request on the first connection is met by a close without an
    // answer (a keep-alive timeout racing the request).
    let script =
        |n: usize, _: &str| if n == 1 { None } else { Some(reply("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")) };
    let (base, seen) = server(script).await;
    let client = Client::new(Tls::default());
    probe_http::send(&client, &get(&base)).await.unwrap();
    let again = probe_http::send(&client, &get(&base)).await.unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(connections(&seen), vec![1, 1, 2], "the GET went again on a new connection");

    let (base, seen) = server(script).await;
    let client = Client::new(Tls::default());
    probe_http::send(&client, &get(&base)).await.unwrap();
    let error = probe_http::send(&client, &request(Method::POST, &base, "/api/v1/statuses")).await.unwrap_err();
    assert_eq!(error.reason, Reason::ConnectionClosed, "{error:?}");
    assert!(error.message.starts_with("POST /api/v1/statuses: "), "{}", error.message);
    assert_eq!(connections(&seen), vec![1, 1], "the POST may have been made: it is not made twice");
}

#[tokio::test]
async fn broken_framing_is_a_protocol_error() {
    let cases = [
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nnope\r\n0\r\n\r\n",
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n",
    ];
    for case in cases {
        let (base, _) =
            server(move |_, _| Some(Reply { bytes: case.as_bytes().to_vec(), trickle: false, close: true })).await;
        let error = probe_http::send(&Client::new(Tls::default()), &get(&base)).await.unwrap_err();
        assert_eq!(error.reason, Reason::Protocol, "{case:?}: {error:?}");
    }
}

#[tokio::test]
async fn an_absurd_chunk_size_is_a_body_too_large_not_a_crash() {
    let (base, _) = server(|_, _| {
        Some(Reply {
            bytes: b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nffffffffffffffff\r\n".to_vec(),
            trickle: false,
            close: true,
        })
    })
    .await;
    let error = probe_http::send(&Client::new(Tls::default()), &get(&base)).await.unwrap_err();
    assert_eq!(error.reason, Reason::BodyTooLarge, "{error:?}");
}
