//! What vigil reads from a PostgreSQL server, bounded per protocol message before
//! tokio-postgres parses it.
//!
//! tokio-postgres reads a backend message whole before it looks at it: a message announcing
//! 100 MB is buffered (its read buffer doubling on the way), then parsed into owned strings,
//! then quoted in a reason. A server can be made to send one by anybody who can create a
//! function (`RAISE EXCEPTION` with a 100 MB message), and under the Deployment's 64 MiB limit a
//! 10 MB one got vigil OOM-killed. So every connection's stream goes through [`Bounded`], which
//! reads the protocol's framing (a type byte and a 4-byte length) as the bytes pass:
//!
//! - a message of at most [`MESSAGE_LIMIT`] bytes passes untouched;
//! - a longer ErrorResponse or NoticeResponse is condensed as it streams by: each field kept to
//!   [`FIELD_KEEP`] bytes (cut on a character boundary, ending with `…`), at most
//!   [`MESSAGE_KEEP`] bytes in all, the rest read and dropped, and the message handed on with its
//!   new length. The server's words (its SQLSTATE, the start of its message) still make the
//!   reason, and the connection stays usable;
//! - any other longer message is refused: the read fails with [`Oversized`], and the connection
//!   with it.
//!
//! On a TLS connection the framing lives inside TLS, so the TLS stream is wrapped again
//! ([`Bounded::messages`]); the socket below it sees only TLS records, which rustls bounds.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, TlsStream};

use crate::core::text::CUT;

/// The largest backend message passed on whole. vigil's own statements answer in a few KiB (the
/// statistics row: ten application names, five query texts of 100 characters).
pub(super) const MESSAGE_LIMIT: usize = 1024 * 1024;

/// How much of each field of an oversized error or notice is kept: a reason shows 512 bytes.
pub(super) const FIELD_KEEP: usize = 2048;

/// How much of an oversized error or notice is kept in all.
pub(super) const MESSAGE_KEEP: usize = 16 * 1024;

/// How much is read from the stream below at a time.
const READ_CHUNK: usize = 8 * 1024;

const CUT_LEN: usize = CUT.len();

const ERROR_RESPONSE: u8 = b'E';
const NOTICE_RESPONSE: u8 = b'N';

/// A backend message longer than vigil reads, refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the server sent a {what} of {}, more than the {} vigil reads; the connection was dropped",
    crate::core::fmt::bytes(*.length as u64),
    crate::core::fmt::bytes(MESSAGE_LIMIT as u64)
)]
pub(super) struct Oversized {
    /// The message's name (`DataRow`, `message 'x'`).
    pub what: String,
    /// Its announced length.
    pub length: usize,
}

/// A stream whose backend messages are bounded (see the module docs).
#[derive(Debug)]
pub(crate) struct Bounded<S> {
    inner: S,
    state: State,
    /// What the caller has not taken yet.
    out: Vec<u8>,
    /// Where in `out` the caller is.
    taken: usize,
    /// Set once a message was refused: every later read fails the same way.
    refused: Option<Oversized>,
}

#[derive(Debug)]
enum State {
    /// Below TLS: the bytes are TLS records, not messages.
    Passthrough,
    /// The one-byte answer to the SSLRequest comes first: `S` (TLS follows: passthrough) or
    /// anything else (messages follow, in the clear).
    SslAnswer,
    /// Reading a message header: type byte and length.
    Header { bytes: [u8; 5], filled: usize },
    /// Passing on the rest of a message of acceptable length.
    Body { remaining: usize },
    /// Condensing an oversized error or notice.
    Condense(Condensed),
}

impl<S> Bounded<S> {
    /// A stream whose first bytes are backend messages: plain TCP with `sslmode=disable`, or the
    /// stream inside TLS.
    pub(super) fn messages(inner: S) -> Bounded<S> {
        Bounded::with(
            inner,
            State::Header {
                bytes: [0; 5],
                filled: 0,
            },
        )
    }

    /// A socket on which the client asks for TLS first: the server's one-byte answer, then
    /// either TLS (wrapped again by the connector) or messages in the clear.
    pub(super) fn negotiating(inner: S) -> Bounded<S> {
        Bounded::with(inner, State::SslAnswer)
    }

    /// A socket that speaks TLS from its first byte (`sslnegotiation=direct`).
    pub(super) fn tls_below(inner: S) -> Bounded<S> {
        Bounded::with(inner, State::Passthrough)
    }

    fn with(inner: S, state: State) -> Bounded<S> {
        Bounded {
            inner,
            state,
            out: Vec::new(),
            taken: 0,
            refused: None,
        }
    }

    /// Runs `chunk` through the framing, appending what the caller gets to `out`.
    fn feed(&mut self, mut chunk: &[u8]) -> Result<(), Oversized> {
        while !chunk.is_empty() {
            match &mut self.state {
                State::Passthrough => {
                    self.out.extend_from_slice(chunk);
                    return Ok(());
                }
                State::SslAnswer => {
                    self.state = if chunk[0] == b'S' {
                        State::Passthrough
                    } else {
                        State::Header {
                            bytes: [0; 5],
                            filled: 0,
                        }
                    };
                    self.out.push(chunk[0]);
                    chunk = &chunk[1..];
                }
                State::Header { bytes, filled } => {
                    let take = (5 - *filled).min(chunk.len());
                    bytes[*filled..*filled + take].copy_from_slice(&chunk[..take]);
                    *filled += take;
                    chunk = &chunk[take..];
                    if *filled < 5 {
                        continue;
                    }
                    let header = *bytes;
                    let tag = header[0];
                    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
                    // The length counts itself; a smaller one is garbage tokio-postgres refuses.
                    let body = length.saturating_sub(4);
                    if body <= MESSAGE_LIMIT {
                        self.out.extend_from_slice(&header);
                        self.state = State::Body { remaining: body };
                    } else if tag == ERROR_RESPONSE || tag == NOTICE_RESPONSE {
                        self.state = State::Condense(Condensed::new(tag, body));
                    } else {
                        return Err(Oversized {
                            what: message_name(tag),
                            length,
                        });
                    }
                }
                State::Body { remaining } => {
                    let take = (*remaining).min(chunk.len());
                    self.out.extend_from_slice(&chunk[..take]);
                    *remaining -= take;
                    chunk = &chunk[take..];
                    if *remaining == 0 {
                        self.state = State::Header {
                            bytes: [0; 5],
                            filled: 0,
                        };
                    }
                }
                State::Condense(condensed) => {
                    let take = condensed.remaining.min(chunk.len());
                    condensed.feed(&chunk[..take]);
                    chunk = &chunk[take..];
                    if condensed.remaining == 0 {
                        condensed.finish_into(&mut self.out);
                        self.state = State::Header {
                            bytes: [0; 5],
                            filled: 0,
                        };
                    }
                }
            }
        }
        if matches!(self.state, State::Body { remaining: 0 }) {
            self.state = State::Header {
                bytes: [0; 5],
                filled: 0,
            };
        }
        Ok(())
    }
}

/// An oversized error or notice, kept field by field as it streams by.
#[derive(Debug)]
struct Condensed {
    tag: u8,
    /// Bytes of the message body still to come.
    remaining: usize,
    /// The fields kept, each `type byte, text, NUL`.
    kept: Vec<u8>,
    /// The field being read: its start in `kept`, and whether part of it was dropped.
    field: Option<(usize, bool)>,
    /// The terminating NUL of the field list was seen.
    ended: bool,
}

impl Condensed {
    fn new(tag: u8, remaining: usize) -> Condensed {
        Condensed {
            tag,
            remaining,
            kept: Vec::new(),
            field: None,
            ended: false,
        }
    }

    fn feed(&mut self, mut bytes: &[u8]) {
        self.remaining -= bytes.len();
        while !bytes.is_empty() && !self.ended {
            match self.field {
                None if bytes[0] == 0 => self.ended = true,
                None => {
                    // A field starts with its type; with no room for it, it is dropped whole.
                    let room = self.kept.len() + 2 + CUT_LEN <= MESSAGE_KEEP;
                    if room {
                        self.kept.push(bytes[0]);
                    }
                    self.field = Some((self.kept.len(), !room));
                    bytes = &bytes[1..];
                }
                Some((start, dropped)) => {
                    // The field's text up to its NUL (or the end of what came), whole slices at
                    // a time: a 100 MB field is scanned, not copied.
                    let end = bytes.iter().position(|b| *b == 0);
                    let text = &bytes[..end.unwrap_or(bytes.len())];
                    let room = FIELD_KEEP
                        .saturating_sub(self.kept.len() - start)
                        .min(MESSAGE_KEEP.saturating_sub(self.kept.len() + 1 + CUT_LEN + 1));
                    let keep = if dropped { 0 } else { text.len().min(room) };
                    self.kept.extend_from_slice(&text[..keep]);
                    let dropped = dropped || keep < text.len();
                    self.field = Some((start, dropped));
                    match end {
                        Some(at) => {
                            self.close_field(start, dropped);
                            self.field = None;
                            bytes = &bytes[at + 1..];
                        }
                        None => bytes = &[],
                    }
                }
            }
        }
    }

    /// Ends the field that started at `start`: a cut one on a character boundary with `…`; a
    /// field whose type did not fit is not there at all.
    fn close_field(&mut self, start: usize, dropped: bool) {
        if start == self.kept.len() && dropped && (start == 0 || self.kept[start - 1] == 0) {
            // Dropped before its type byte was kept.
            return;
        }
        if dropped {
            let text = &self.kept[start..];
            let valid = match std::str::from_utf8(text) {
                Ok(_) => text.len(),
                Err(error) => error.valid_up_to(),
            };
            self.kept.truncate(start + valid);
            self.kept.extend_from_slice(CUT.as_bytes());
        }
        self.kept.push(0);
    }

    /// The condensed message, framed, appended to `out`.
    fn finish_into(&mut self, out: &mut Vec<u8>) {
        if let Some((start, _)) = self.field.take() {
            self.close_field(start, true);
        }
        self.kept.push(0);
        let length = u32::try_from(self.kept.len() + 4).unwrap_or(u32::MAX);
        out.push(self.tag);
        out.extend_from_slice(&length.to_be_bytes());
        out.append(&mut self.kept);
    }
}

/// A backend message type as a person reads it.
fn message_name(tag: u8) -> String {
    match tag {
        b'D' => "DataRow".to_owned(),
        b'T' => "RowDescription".to_owned(),
        b'S' => "ParameterStatus".to_owned(),
        b'C' => "CommandComplete".to_owned(),
        b'A' => "NotificationResponse".to_owned(),
        b'd' => "CopyData".to_owned(),
        b'R' => "Authentication message".to_owned(),
        other if other.is_ascii_graphic() => format!("message of type '{}'", other as char),
        other => format!("message of type 0x{other:02x}"),
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Bounded<S> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.taken < this.out.len() {
                let give = (this.out.len() - this.taken).min(buf.remaining());
                buf.put_slice(&this.out[this.taken..this.taken + give]);
                this.taken += give;
                if this.taken == this.out.len() {
                    this.out.clear();
                    this.taken = 0;
                }
                return Poll::Ready(Ok(()));
            }
            if let Some(refused) = &this.refused {
                return Poll::Ready(Err(io::Error::new(io::ErrorKind::InvalidData, refused.clone())));
            }
            let mut chunk = [0u8; READ_CHUNK];
            let mut read = ReadBuf::new(&mut chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => {
                    if let Err(refused) = this.feed(read.filled()) {
                        // What came before the refused message is dropped with it: the
                        // connection ends here.
                        this.out.clear();
                        this.taken = 0;
                        this.refused = Some(refused);
                    }
                }
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Bounded<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The TLS stream inside, bounded: channel binding is its.
impl<S: TlsStream + Unpin> TlsStream for Bounded<S> {
    fn channel_binding(&self) -> ChannelBinding {
        self.inner.channel_binding()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt as _;

    type Source = std::io::Cursor<Vec<u8>>;

    fn message(tag: u8, body: &[u8]) -> Vec<u8> {
        let mut m = vec![tag];
        m.extend_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
        m.extend_from_slice(body);
        m
    }

    fn error_body(message: &[u8]) -> Vec<u8> {
        let mut body = b"SERROR\0VERROR\0CP0001\0M".to_vec();
        body.extend_from_slice(message);
        body.extend_from_slice(b"\0Fpl_exec.c\0L3911\0\0");
        body
    }

    /// Reads `stream` through [`Bounded`] in small, odd-sized reads, as a codec would.
    async fn read_all(stream: Vec<u8>, wrap: fn(Source) -> Bounded<Source>) -> io::Result<Vec<u8>> {
        let mut bounded = wrap(std::io::Cursor::new(stream));
        let mut all = Vec::new();
        let mut buf = [0u8; 777];
        loop {
            let n = bounded.read(&mut buf).await?;
            if n == 0 {
                return Ok(all);
            }
            all.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn messages_within_the_limit_pass_untouched() {
        let mut stream = message(b'R', &[0, 0, 0, 0]);
        stream.extend(message(b'D', &vec![b'x'; MESSAGE_LIMIT]));
        stream.extend(message(b'E', &error_body(b"short")));
        stream.extend(message(b'Z', b"I"));
        assert_eq!(read_all(stream.clone(), Bounded::messages).await.unwrap(), stream);
        // After the SSLRequest's `N`, the same; after `S`, everything (TLS records) passes.
        let mut negotiated = vec![b'N'];
        negotiated.extend_from_slice(&stream);
        assert_eq!(
            read_all(negotiated.clone(), Bounded::negotiating).await.unwrap(),
            negotiated
        );
        let mut tls = vec![b'S'];
        tls.extend(message(b'D', &vec![b'x'; MESSAGE_LIMIT + 10]));
        assert_eq!(read_all(tls.clone(), Bounded::negotiating).await.unwrap(), tls);
    }

    #[tokio::test]
    async fn an_oversized_error_is_condensed_and_what_follows_is_read() {
        let huge = "é".repeat(3 * MESSAGE_LIMIT);
        let mut stream = message(b'E', &error_body(huge.as_bytes()));
        stream.extend(message(b'Z', b"I"));
        let read = read_all(stream, Bounded::messages).await.unwrap();
        assert_eq!(read[0], b'E');
        let length = u32::from_be_bytes([read[1], read[2], read[3], read[4]]) as usize;
        assert!(length < MESSAGE_KEEP, "{length}");
        let body = &read[5..1 + length];
        let fields: Vec<&[u8]> = body.split(|b| *b == 0).collect();
        assert_eq!(&fields[..3], &[&b"SERROR"[..], b"VERROR", b"CP0001"]);
        let text = std::str::from_utf8(&fields[3][1..]).expect("cut on a character boundary");
        assert!(text.starts_with("éé") && text.ends_with('…'), "{text}");
        assert!(fields[3].len() <= FIELD_KEEP + 4);
        assert_eq!(&fields[4..6], &[&b"Fpl_exec.c"[..], b"L3911"], "later fields kept");
        assert_eq!(
            &read[1 + length..],
            &message(b'Z', b"I")[..],
            "the next message follows"
        );
        // tokio-postgres' own parser reads it.
        let mut bytes = bytes::BytesMut::from(&read[..]);
        let parsed = postgres_protocol::message::backend::Message::parse(&mut bytes).unwrap();
        assert!(matches!(
            parsed,
            Some(postgres_protocol::message::backend::Message::ErrorResponse(_))
        ));
    }

    #[tokio::test]
    async fn an_error_of_a_million_small_fields_keeps_a_bounded_few() {
        let mut body = b"SERROR\0CP0001\0".to_vec();
        for _ in 0..(MESSAGE_LIMIT / 3 + 10) {
            body.extend_from_slice(b"Mx\0");
        }
        body.push(0);
        let read = read_all(message(b'E', &body), Bounded::messages).await.unwrap();
        assert!(read.len() <= MESSAGE_KEEP + 8, "{}", read.len());
        let mut bytes = bytes::BytesMut::from(&read[..]);
        let parsed = postgres_protocol::message::backend::Message::parse(&mut bytes).unwrap();
        assert!(matches!(
            parsed,
            Some(postgres_protocol::message::backend::Message::ErrorResponse(_))
        ));
        assert!(bytes.is_empty());
    }

    #[tokio::test]
    async fn an_oversized_row_is_refused() {
        let mut stream = message(b'T', b"\0\0");
        stream.extend(message(b'D', &vec![b'x'; MESSAGE_LIMIT + 1]));
        let error = read_all(stream, Bounded::messages).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        assert!(
            error.to_string().starts_with("the server sent a DataRow of 1MiB"),
            "{error}"
        );
    }
}
