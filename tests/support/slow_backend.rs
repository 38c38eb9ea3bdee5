//! A remote-write receiver in front of a real VictoriaMetrics that answers late:
//! every request is forwarded at once (so VictoriaMetrics stores it), and the
//! first `late` answers are held back by `delay`, longer than the sink's push
//! timeout, as an overloaded receiver or a slow proxy would. The sink then sends
//! the batch again, and the backend holds it twice unless it deduplicates.

#![allow(dead_code)] // Each test binary uses a different part of the helpers.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The running receiver; stops when dropped.
pub struct SlowBackend {
    address: SocketAddr,
    forwarded: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SlowBackend {
    /// Listens on a free loopback port, forwarding to `target` (a
    /// VictoriaMetrics write URL).
    pub async fn start(target: url::Url, late: usize, delay: Duration) -> SlowBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a loopback port");
        let address = listener.local_addr().expect("local address");
        let forwarded = Arc::new(AtomicUsize::new(0));
        let counter = forwarded.clone();
        fediprobe::install_crypto_provider();
        let client = reqwest::Client::new();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut stream, _)) = listener.accept().await else { return };
                let (client, target, counter) = (client.clone(), target.clone(), counter.clone());
                tokio::spawn(async move {
                    // One request per connection is all a test needs; keep-alive is
                    // refused by `Connection: close`.
                    let Some((headers, body)) = read_request(&mut stream).await else { return };
                    let mut forward = client.post(target).body(body);
                    for (name, value) in headers {
                        forward = forward.header(name, value);
                    }
                    let status = match forward.send().await {
                        Ok(response) => response.status().as_u16(),
                        Err(_) => 502,
                    };
                    let index = counter.fetch_add(1, Ordering::SeqCst);
                    if index < late {
                        tokio::time::sleep(delay).await;
                    }
                    let answer = format!("HTTP/1.1 {status} X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                    let _ = stream.write_all(answer.as_bytes()).await;
                });
            }
        });
        SlowBackend { address, forwarded, task }
    }

    /// Its write URL.
    pub fn write_url(&self) -> url::Url {
        format!("http://{}/api/v1/write", self.address).parse().expect("valid URL")
    }

    /// Requests forwarded to VictoriaMetrics so far.
    pub fn forwarded(&self) -> usize {
        self.forwarded.load(Ordering::SeqCst)
    }
}

impl Drop for SlowBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one HTTP/1.1 request with a `Content-Length` body; returns the
/// remote-write headers worth forwarding and the body.
async fn read_request(stream: &mut tokio::net::TcpStream) -> Option<(Vec<(String, String)>, Vec<u8>)> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..read]);
        if let Some(at) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > 64 * 1024 {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
    let mut length = 0usize;
    let mut headers = Vec::new();
    for line in head.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else { continue };
        let (name, value) = (name.trim().to_ascii_lowercase(), value.trim().to_owned());
        if name == "content-length" {
            length = value.parse().ok()?;
        } else if ["content-encoding", "content-type", "x-prometheus-remote-write-version"].contains(&name.as_str()) {
            headers.push((name, value));
        }
    }
    let mut body = buffer[head_end..].to_vec();
    while body.len() < length {
        let read = stream.read(&mut chunk).await.ok()?;
        if read == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..read]);
    }
    Some((headers, body))
}
