//! A tiny blocking HTTP/1.1 client on a plain `std::net::TcpStream`.
//!
//! One request per connection (`Connection: close`), read to EOF, then parsed: status line, headers,
//! and a body framed by `Content-Length`, chunked transfer-encoding or EOF. `HEAD` (and 1xx/204/304)
//! answers have no body. Deliberately independent of the crate's own HTTP stack, so a test sees the
//! bytes a kubelet or `curl` would see.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

/// Time allowed to connect, and then to read the whole answer.
pub const TIMEOUT: Duration = Duration::from_secs(5);

/// A parsed HTTP answer.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    /// Status code, e.g. 200.
    pub status: u16,
    /// Headers in the order received; names as sent by the server.
    pub headers: Vec<(String, String)>,
    /// The body, decoded as UTF-8 (lossily); empty for HEAD.
    pub body: String,
}

impl HttpResponse {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every header named `name` (case-insensitive).
    pub fn header_all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The `Content-Type` header, if any.
    pub fn content_type(&self) -> Option<&str> {
        self.header("content-type")
    }

    /// The body parsed as JSON; panics with the body when it is not JSON.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}); status {}, body:\n{}", self.status, self.body))
    }
}

/// Sends one request and returns the parsed answer, or the I/O or parse error.
///
/// Adds `Host` (unless given) and `Connection: close`, and `Content-Length` when `body` is not empty.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> io::Result<HttpResponse> {
    let deadline = Instant::now() + TIMEOUT;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    stream.set_write_timeout(Some(TIMEOUT))?;
    stream.set_nodelay(true)?;

    let mut head = format!("{method} {path} HTTP/1.1\r\n");
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    head.push_str("Connection: close\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() && !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("content-length")) {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body);
    stream.write_all(&out)?;
    stream.flush()?;

    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no complete answer within {TIMEOUT:?}"),
            ));
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A reset after a complete answer (the server closed with unread input) is not a failure.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !raw.is_empty() => break,
            Err(e) => return Err(e),
        }
    }
    parse_response(&raw, method.eq_ignore_ascii_case("HEAD"))
}

/// Sends one request; panics with the error when it fails.
#[track_caller]
pub fn request(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> HttpResponse {
    try_request(addr, method, path, headers, &[]).unwrap_or_else(|e| panic!("{method} http://{addr}{path} failed: {e}"))
}

/// `GET path`; panics when the request fails.
#[track_caller]
pub fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    request(addr, "GET", path, &[])
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg.into())
}

/// Parses a complete HTTP/1.x answer as read to EOF.
pub fn parse_response(raw: &[u8], head_request: bool) -> io::Result<HttpResponse> {
    let end = find(raw, b"\r\n\r\n")
        .ok_or_else(|| invalid(format!("no end of headers in {:?}", String::from_utf8_lossy(raw))))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| invalid("headers are not UTF-8"))?;
    let rest = &raw[end + 4..];

    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") {
        return Err(invalid(format!("bad status line {status_line:?}")));
    }
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid(format!("bad status line {status_line:?}")))?;
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or_else(|| invalid(format!("bad header line {line:?}")))?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };

    let body: Vec<u8> = if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        Vec::new()
    } else if header("transfer-encoding").is_some_and(|te| te.to_ascii_lowercase().contains("chunked")) {
        decode_chunked(rest)?
    } else if let Some(len) = header("content-length") {
        let len: usize = len
            .parse()
            .map_err(|_| invalid(format!("bad Content-Length {len:?}")))?;
        if rest.len() < len {
            return Err(invalid(format!("body truncated: {} of {len} bytes", rest.len())));
        }
        rest[..len].to_vec()
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn decode_chunked(mut data: &[u8]) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let line_end = find(data, b"\r\n").ok_or_else(|| invalid("chunked body: missing chunk size line"))?;
        let size_line = std::str::from_utf8(&data[..line_end]).map_err(|_| invalid("chunked body: bad size"))?;
        let size_hex = size_line.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| invalid(format!("chunked body: bad chunk size {size_line:?}")))?;
        data = &data[line_end + 2..];
        if size == 0 {
            // Trailers (ignored) follow until an empty line.
            return Ok(body);
        }
        if data.len() < size + 2 {
            return Err(invalid("chunked body: truncated chunk"));
        }
        body.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}
