//! HTTP/1.1 exchanges driven by the run's own future.
//!
//! hyper's HTTP/1.1 client runs each connection as a task of its own and hands
//! it the request through a channel: every exchange then crosses two tasks (two
//! wake-ups on the measuring runtime, each a chance to be delayed by another
//! run), and every connection in flight carries the channel's block of 32 slots,
//! an 8 KiB read buffer and an 8 KiB write buffer from the moment it opens, also
//! while the server has not answered (BENCHMARKS.md, "memory per run in flight").
//! Here the run writes the request and reads the answer itself: no task, no
//! channel, and the read buffer is allocated when the first byte can be read.
//! HTTP/2 (chosen by ALPN over TLS) stays with hyper.
//!
//! Parsing the head is `httparse`'s; the framing of the body follows RFC 9112
//! §6.3: none for HEAD, 1xx, 204 and 304; chunked when the last transfer coding
//! is; else `Content-Length`; else until the server closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderName, HeaderValue, TRANSFER_ENCODING};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::connect::{TimedIo, classify_io};
use super::phases::Recorder;
use super::result::Reason;

/// The most header lines a response head may have.
const MAX_HEADERS: usize = 128;
/// The largest response head read (nginx's default `large_client_header_buffers`
/// is 4 × 8 KiB; a head larger than this is not a web server's answer).
const MAX_HEAD_BYTES: usize = 64 * 1024;
/// What the first read of a response gets: a Mastodon API head (with its
/// Content-Security-Policy, Link and rate-limit headers) is 1.5–3 KiB.
const FIRST_READ: usize = 4 * 1024;
/// The longest chunk-size line accepted (size, extensions).
const MAX_CHUNK_LINE: usize = 4 * 1024;

/// The socket of an HTTP/1.1 connection, plain or TLS.
pub(crate) enum Io {
    Plain(TimedIo),
    /// Boxed: rustls' connection state is large and this enum sits in every
    /// connection, plain ones included.
    Tls(Box<tokio_rustls::client::TlsStream<TimedIo>>),
}

impl Io {
    /// Waits until the socket has something to read (or has closed), so that a
    /// run whose server never answers holds no read buffer. Over TLS, rustls
    /// keeps its own buffers and this returns at once.
    async fn readable(&self) -> io::Result<()> {
        match self {
            Io::Plain(io) => io.inner.readable().await,
            Io::Tls(_) => Ok(()),
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_read(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_write(cx, buf),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_flush(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Plain(io) => Pin::new(io).poll_shutdown(cx),
            Io::Tls(io) => Pin::new(io.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What went wrong in an exchange.
#[derive(Debug)]
pub(crate) enum Error {
    /// The connection closed (or failed) before any byte of a response came.
    /// On a reused connection the request may never have reached the server.
    NoResponse(String),
    /// Anything else: the reason it is recorded under and what happened.
    Failed(Reason, String),
    /// The body is larger than the cap (its announced length, when announced).
    TooLarge(Option<u64>),
}

/// A response read to its end.
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
}

/// One HTTP/1.1 connection.
pub(crate) struct Connection {
    io: Io,
    /// Whether another request may follow on this connection.
    reusable: bool,
    /// Set while reading a response that came with bytes beyond its end (a
    /// server answering twice, a broken proxy): the connection is not reused.
    overrun: bool,
}

impl Connection {
    pub(crate) fn new(io: Io) -> Connection {
        Connection { io, reusable: true, overrun: false }
    }

    /// Whether the connection can carry another request: the last response left
    /// it open and the server has not closed it since (nothing to read, no EOF).
    pub(crate) fn is_open(&mut self) -> bool {
        if !self.reusable {
            return false;
        }
        let mut byte = [0u8; 1];
        let mut buf = ReadBuf::new(&mut byte);
        let mut cx = Context::from_waker(std::task::Waker::noop());
        // Pending: nothing to read, still open. EOF, an error, or bytes nobody
        // asked for: not a connection to send a request on.
        let open = matches!(Pin::new(&mut self.io).poll_read(&mut cx, &mut buf), Poll::Pending);
        self.reusable = open;
        open
    }

    /// Writes `head` (and `body`), reads the response. The recorder's open phase
    /// (the caller's `send`) becomes `transfer` when the response head has come.
    pub(crate) async fn exchange(
        &mut self,
        head: &[u8],
        body: Option<&Bytes>,
        head_request: bool,
        max_body: usize,
        recorder: &Recorder,
    ) -> Result<Answer, Error> {
        // Until a response is complete, the connection is not to be used again.
        self.reusable = false;
        self.overrun = false;
        self.write(head, body).await.map_err(|e| Error::NoResponse(e.to_string()))?;
        let mut buf = Vec::new();
        let (status, headers, version_1_0, head_len) = self.read_head(&mut buf).await?;
        recorder.head_received();
        buf.drain(..head_len);
        let mut keep_alive = keep_alive(&headers, version_1_0);
        let body = if head_request || status == 204 || status == 304 {
            Bytes::new()
        } else if let Some(codings) = header_text(&headers, &TRANSFER_ENCODING)? {
            if codings.rsplit(',').next().is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked")) {
                self.read_chunked(buf, max_body).await?
            } else {
                keep_alive = false;
                self.read_to_close(buf, max_body).await?
            }
        } else if let Some(length) = content_length(&headers)? {
            if length > max_body as u64 {
                return Err(Error::TooLarge(Some(length)));
            }
            self.read_exact_body(buf, length as usize).await?
        } else {
            keep_alive = false;
            self.read_to_close(buf, max_body).await?
        };
        self.reusable = keep_alive && !self.overrun;
        Ok(Answer { status, headers, body })
    }

    async fn write(&mut self, head: &[u8], body: Option<&Bytes>) -> io::Result<()> {
        match body {
            // A small body goes in the same segment as the head.
            Some(body) if body.len() <= 16 * 1024 => {
                let mut all = Vec::with_capacity(head.len() + body.len());
                all.extend_from_slice(head);
                all.extend_from_slice(body);
                self.io.write_all(&all).await?;
            }
            Some(body) => {
                self.io.write_all(head).await?;
                self.io.write_all(body).await?;
            }
            None => self.io.write_all(head).await?,
        }
        self.io.flush().await
    }

    /// Whether the last response left the connection fit for another request,
    /// as far as that response said (no look at the socket: see [`Self::is_open`]).
    pub(crate) fn reusable(&self) -> bool {
        self.reusable
    }

    /// Reads until a final (non-1xx) response head is complete in `buf`.
    async fn read_head(&mut self, buf: &mut Vec<u8>) -> Result<(u16, HeaderMap, bool, usize), Error> {
        let mut received = false;
        loop {
            if buf.is_empty() && !received {
                self.io.readable().await.map_err(|e| Error::NoResponse(e.to_string()))?;
            }
            let read = self.read_more(buf).await;
            match read {
                Ok(0) if !received => {
                    return Err(Error::NoResponse("the connection closed before a response".to_owned()));
                }
                Ok(0) => {
                    return Err(Error::Failed(
                        Reason::ConnectionClosed,
                        "the connection closed in the middle of the response head".to_owned(),
                    ));
                }
                Ok(_) => received = true,
                Err(e) if !received => return Err(Error::NoResponse(e.to_string())),
                Err(e) => return Err(Error::Failed(classify_io(&e), e.to_string())),
            }
            while let Some(parsed) = parse_head(buf)? {
                if (100..200).contains(&parsed.0) && parsed.0 != 101 {
                    // 100 Continue, 103 Early Hints: the final answer follows.
                    buf.drain(..parsed.3);
                    continue;
                }
                return Ok(parsed);
            }
            if buf.len() > MAX_HEAD_BYTES {
                return Err(Error::Failed(
                    Reason::Protocol,
                    format!("the response head is larger than {} KiB", MAX_HEAD_BYTES / 1024),
                ));
            }
        }
    }

    /// Reads what the socket has into `buf`'s spare room (growing it first when
    /// it has little): the number of bytes, 0 at the end of the stream.
    async fn read_more(&mut self, buf: &mut Vec<u8>) -> io::Result<usize> {
        if buf.capacity() - buf.len() < 1024 {
            buf.reserve(buf.len().max(FIRST_READ));
        }
        self.io.read_buf(buf).await
    }

    async fn read_exact_body(&mut self, mut buf: Vec<u8>, length: usize) -> Result<Bytes, Error> {
        if buf.len() > length {
            // More than the response: a server that answers twice, or a broken proxy.
            self.overrun = true;
            buf.truncate(length);
            return Ok(Bytes::from(buf));
        }
        buf.reserve_exact(length - buf.len());
        while buf.len() < length {
            let room = length - buf.len();
            let n = (&mut self.io).take(room as u64).read_buf(&mut buf).await.map_err(body_error)?;
            if n == 0 {
                return Err(closed_mid_body(buf.len(), Some(length)));
            }
        }
        Ok(Bytes::from(buf))
    }

    async fn read_to_close(&mut self, mut buf: Vec<u8>, max_body: usize) -> Result<Bytes, Error> {
        loop {
            if buf.len() > max_body {
                return Err(Error::TooLarge(None));
            }
            if self.read_more(&mut buf).await.map_err(body_error)? == 0 {
                return Ok(Bytes::from(buf));
            }
        }
    }

    async fn read_chunked(&mut self, mut buf: Vec<u8>, max_body: usize) -> Result<Bytes, Error> {
        let mut body = Vec::new();
        let mut at = 0;
        loop {
            let line_end = self.line(&mut buf, at).await?;
            let line = std::str::from_utf8(&buf[at..line_end]).unwrap_or("");
            let size_text = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_text, 16).map_err(|_| {
                Error::Failed(Reason::Protocol, "an invalid chunk size in the response body".to_owned())
            })?;
            at = line_end + 2;
            if size == 0 {
                // Trailer lines, then the empty line.
                loop {
                    let end = self.line(&mut buf, at).await?;
                    let empty = end == at;
                    at = end + 2;
                    if empty {
                        break;
                    }
                }
                if buf.len() > at {
                    self.overrun = true;
                }
                return Ok(Bytes::from(body));
            }
            if size > max_body.saturating_sub(body.len()) {
                return Err(Error::TooLarge(None));
            }
            while buf.len() < at + size + 2 {
                if self.read_more(&mut buf).await.map_err(body_error)? == 0 {
                    return Err(closed_mid_body(body.len() + buf.len().saturating_sub(at), None));
                }
            }
            body.extend_from_slice(&buf[at..at + size]);
            if &buf[at + size..at + size + 2] != b"\r\n" {
                return Err(Error::Failed(
                    Reason::Protocol,
                    "a chunk of the response body is not ended by CRLF".to_owned(),
                ));
            }
            at += size + 2;
            // What was consumed is dropped now and then, so `buf` stays small.
            if at > 64 * 1024 {
                buf.drain(..at);
                at = 0;
            }
        }
    }

    /// The end (index of its CR) of the line that starts at `at`, reading more as needed.
    async fn line(&mut self, buf: &mut Vec<u8>, at: usize) -> Result<usize, Error> {
        loop {
            if let Some(i) = buf[at..].windows(2).position(|w| w == b"\r\n") {
                return Ok(at + i);
            }
            if buf.len() - at > MAX_CHUNK_LINE {
                return Err(Error::Failed(Reason::Protocol, "a chunk-size line that does not end".to_owned()));
            }
            if self.read_more(buf).await.map_err(body_error)? == 0 {
                return Err(closed_mid_body(0, None));
            }
        }
    }
}

/// Parses a complete head at the start of `buf`: status, headers, whether the
/// server spoke HTTP/1.0, and the head's length. `None` while incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<(u16, HeaderMap, bool, usize)>, Error> {
    let mut lines = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut response = httparse::Response::new(&mut lines);
    let len = match response.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(Error::Failed(Reason::Protocol, format!("not an HTTP response: {e}"))),
    };
    let status = response.code.unwrap_or_default();
    let mut headers = HeaderMap::with_capacity(response.headers.len());
    for header in response.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes());
        let value = HeaderValue::from_bytes(header.value);
        match (name, value) {
            (Ok(name), Ok(value)) => {
                headers.append(name, value);
            }
            _ => return Err(Error::Failed(Reason::Protocol, "an invalid header in the response".to_owned())),
        }
    }
    Ok(Some((status, headers, response.version == Some(0), len)))
}

fn header_text(headers: &HeaderMap, name: &HeaderName) -> Result<Option<String>, Error> {
    let mut values = headers.get_all(name).iter().peekable();
    if values.peek().is_none() {
        return Ok(None);
    }
    let mut joined = String::new();
    for value in values {
        let text = value
            .to_str()
            .map_err(|_| Error::Failed(Reason::Protocol, format!("an invalid `{name}` header in the response")))?;
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    Ok(Some(joined))
}

/// The announced length: every value (repeated headers, comma lists) must agree.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Error> {
    let Some(text) = header_text(headers, &CONTENT_LENGTH)? else { return Ok(None) };
    let mut length = None;
    for part in text.split(',') {
        let part = part.trim();
        let value =
            part.parse::<u64>().ok().filter(|_| part.bytes().all(|b| b.is_ascii_digit())).ok_or_else(|| {
                Error::Failed(Reason::Protocol, "an invalid Content-Length in the response".to_owned())
            })?;
        if length.is_some_and(|l| l != value) {
            return Err(Error::Failed(
                Reason::Protocol,
                "conflicting Content-Length values in the response".to_owned(),
            ));
        }
        length = Some(value);
    }
    Ok(length)
}

/// HTTP/1.1 keeps the connection unless told `close`; HTTP/1.0 closes it unless told `keep-alive`.
fn keep_alive(headers: &HeaderMap, version_1_0: bool) -> bool {
    let has = |token: &str| {
        headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if version_1_0 { has("keep-alive") } else { !has("close") }
}

fn body_error(e: io::Error) -> Error {
    Error::Failed(classify_io(&e), e.to_string())
}

fn closed_mid_body(read: usize, announced: Option<usize>) -> Error {
    let of = announced.map(|n| format!(" of {n}")).unwrap_or_default();
    Error::Failed(
        Reason::ConnectionClosed,
        format!("the connection closed before the end of the response body ({read}{of} bytes read)"),
    )
}

/// The request head as it goes on the wire (origin-form target, headers in the
/// map's order), with `Content-Length` for a body, and `Content-Length: 0` for a
/// POST, PUT or PATCH without one (as curl and browsers send: some proxies
/// answer 411 to a POST without a length).
pub(crate) fn request_head(
    method: &http::Method,
    target: &str,
    headers: &HeaderMap,
    body_len: Option<usize>,
) -> Vec<u8> {
    let mut head = Vec::with_capacity(
        64 + target.len() + headers.iter().map(|(n, v)| n.as_str().len() + v.len() + 4).sum::<usize>(),
    );
    head.extend_from_slice(method.as_str().as_bytes());
    head.push(b' ');
    head.extend_from_slice(target.as_bytes());
    head.extend_from_slice(b" HTTP/1.1\r\n");
    for (name, value) in headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    let length = body_len
        .or_else(|| matches!(*method, http::Method::POST | http::Method::PUT | http::Method::PATCH).then_some(0));
    if let Some(length) = length {
        head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    }
    head.extend_from_slice(b"\r\n");
    head
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Option<(u16, HeaderMap, bool, usize)>, Error> {
        parse_head(text.as_bytes())
    }

    #[test]
    fn a_head_is_parsed_only_once_complete() {
        assert!(parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n").unwrap().is_none());
        let (status, headers, v10, len) = parse("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi").unwrap().unwrap();
        assert_eq!((status, v10, len), (200, false, 38));
        assert_eq!(content_length(&headers).unwrap(), Some(2));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        assert!(matches!(parse("SSH-2.0-OpenSSH_9.6\r\n\r\n"), Err(Error::Failed(Reason::Protocol, _))));
    }

    #[test]
    fn content_lengths_must_agree_and_be_digits() {
        let head = |v: &str| parse(&format!("HTTP/1.1 200 OK\r\n{v}\r\n\r\n")).unwrap().unwrap().1;
        assert_eq!(content_length(&head("Content-Length: 5, 5")).unwrap(), Some(5));
        assert!(content_length(&head("Content-Length: 5\r\nContent-Length: 6")).is_err());
        assert!(content_length(&head("Content-Length: +5")).is_err());
        assert!(content_length(&head("Content-Length: -1")).is_err());
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        let head = |t: &str| parse(t).unwrap().unwrap();
        let (_, h, v10, _) = head("HTTP/1.1 200 OK\r\n\r\n");
        assert!(keep_alive(&h, v10));
        let (_, h, v10, _) = head("HTTP/1.1 200 OK\r\nConnection: Keep-Alive, Close\r\n\r\n");
        assert!(!keep_alive(&h, v10));
        let (_, h, v10, _) = head("HTTP/1.0 200 OK\r\n\r\n");
        assert!(!keep_alive(&h, v10));
        let (_, h, v10, _) = head("HTTP/1.0 200 OK\r\nconnection: keep-alive\r\n\r\n");
        assert!(keep_alive(&h, v10));
    }

    #[test]
    fn a_post_without_a_body_says_its_length_is_zero() {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::HOST, HeaderValue::from_static("example.org"));
        let head = String::from_utf8(request_head(&http::Method::POST, "/api/v1/x?a=1", &headers, None)).unwrap();
        assert_eq!(head, "POST /api/v1/x?a=1 HTTP/1.1\r\nhost: example.org\r\ncontent-length: 0\r\n\r\n");
        let head = String::from_utf8(request_head(&http::Method::GET, "/", &headers, None)).unwrap();
        assert_eq!(head, "GET / HTTP/1.1\r\nhost: example.org\r\n\r\n");
        let head = String::from_utf8(request_head(&http::Method::PUT, "/", &headers, Some(12))).unwrap();
        assert!(head.ends_with("content-length: 12\r\n\r\n"), "{head}");
    }
}
