//! The gRPC health protocol, written once by hand: the request and answer of
//! `grpc.health.v1.Health/Check`, their length-prefixed framing, and what an answer means.
//!
//! The whole protocol a probe needs is two one-field protobuf messages
//! (`HealthCheckRequest { string service = 1; }`, `HealthCheckResponse { ServingStatus status = 1; }`),
//! the 5-byte gRPC message header (a compressed flag and a big-endian length) and the
//! `grpc-status` / `grpc-message` trailers. That is a page of code; tonic, tonic-health and prost
//! would bring a code generator's output, tower and a second HTTP stack for it. The request goes
//! out through the one HTTP client ([`crate::net::http`]) over HTTP/2; this module
//! only encodes and decodes, so that it can be tested byte by byte.
//!
//! Everything read is bounded: a message whose header announces more than the caller's limit is
//! refused before anything is decoded, and `grpc-message` is cut to a line.

use bytes::{BufMut as _, Bytes, BytesMut};
use http::{HeaderMap, HeaderValue};

/// The serving statuses by their numbers: the names `vigil_upstream_grpc_serving_status` labels
/// its series with.
pub(crate) const GRPC_SERVING_STATUSES: [&str; 4] = ["UNKNOWN", "SERVING", "NOT_SERVING", "SERVICE_UNKNOWN"];

/// The method every probe calls.
pub(crate) const HEALTH_CHECK_PATH: &str = "/grpc.health.v1.Health/Check";

/// `HealthCheckRequest { service }`, framed: the body of the request.
pub(crate) fn encode_request(service: &str) -> Bytes {
    let mut message = BytesMut::with_capacity(service.len() + 8);
    if !service.is_empty() {
        // Field 1, wire type 2 (length-delimited); proto3 leaves an empty string out.
        message.put_u8(0x0a);
        put_varint(&mut message, service.len() as u64);
        message.put_slice(service.as_bytes());
    }
    let mut framed = BytesMut::with_capacity(5 + message.len());
    framed.put_u8(0); // not compressed
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(&message);
    framed.freeze()
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8 & 0x7f) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

/// `HealthCheckResponse.status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServingStatus {
    Unknown,
    Serving,
    NotServing,
    /// Only `Watch` is meant to send it, but a server may.
    ServiceUnknown,
    /// A number the protocol does not define (yet).
    Other(u64),
}

impl ServingStatus {
    fn from_number(number: u64) -> ServingStatus {
        match number {
            0 => ServingStatus::Unknown,
            1 => ServingStatus::Serving,
            2 => ServingStatus::NotServing,
            3 => ServingStatus::ServiceUnknown,
            other => ServingStatus::Other(other),
        }
    }

    /// Its place in the serving statuses' names; `None` for [`ServingStatus::Other`].
    pub fn index(self) -> Option<usize> {
        match self {
            ServingStatus::Unknown => Some(0),
            ServingStatus::Serving => Some(1),
            ServingStatus::NotServing => Some(2),
            ServingStatus::ServiceUnknown => Some(3),
            ServingStatus::Other(_) => None,
        }
    }

    /// `SERVING`, `NOT_SERVING`, …; `status 7` for a number the protocol does not define.
    pub fn name(self) -> String {
        match self.index() {
            Some(index) => GRPC_SERVING_STATUSES[index].to_owned(),
            None => match self {
                ServingStatus::Other(number) => format!("status {number}"),
                _ => String::new(),
            },
        }
    }
}

/// An answer that is not a usable gRPC health answer. The text says what was wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct DecodeError(String);

/// The framed `HealthCheckResponse` in `body`: its status. A message longer than `limit` is
/// refused without being read; a compressed one too (the request offered no compression).
pub(crate) fn decode_response(body: &[u8], limit: usize) -> Result<ServingStatus, DecodeError> {
    let error = |text: &str| DecodeError(text.to_owned());
    let Some((header, rest)) = body.split_first_chunk::<5>() else {
        return Err(error("the answer holds no gRPC message"));
    };
    if header[0] != 0 {
        return Err(error("the message is compressed, though no compression was offered"));
    }
    let length = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    if length > limit {
        return Err(DecodeError(format!(
            "the message announces {length} bytes, more than the {limit} a health answer may have"
        )));
    }
    let message = rest
        .get(..length)
        .ok_or_else(|| DecodeError(format!("the message is cut short: {} of {length} bytes", rest.len())))?;
    decode_status(message)
}

/// Field 1 (a varint) of a `HealthCheckResponse`; other fields are skipped, the last field 1
/// wins, a message without it is `UNKNOWN` (proto3's default), as protobuf decoders do.
fn decode_status(mut message: &[u8]) -> Result<ServingStatus, DecodeError> {
    let mut status = 0;
    while !message.is_empty() {
        let key = varint(&mut message)?;
        match (key >> 3, key & 7) {
            (1, 0) => status = varint(&mut message)?,
            (_, 0) => {
                varint(&mut message)?;
            }
            (_, 1) => message = skip(message, 8)?,
            (_, 2) => {
                let length = usize::try_from(varint(&mut message)?).unwrap_or(usize::MAX);
                message = skip(message, length)?;
            }
            (_, 5) => message = skip(message, 4)?,
            (field, wire) => {
                return Err(DecodeError(format!(
                    "the message is not a HealthCheckResponse (field {field} of wire type {wire})"
                )));
            }
        }
    }
    Ok(ServingStatus::from_number(status))
}

fn varint(input: &mut &[u8]) -> Result<u64, DecodeError> {
    let mut value = 0u64;
    for (index, byte) in input.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * index);
        if byte & 0x80 == 0 {
            *input = &input[index + 1..];
            return Ok(value);
        }
    }
    Err(DecodeError("the message holds a malformed number".to_owned()))
}

fn skip(input: &[u8], length: usize) -> Result<&[u8], DecodeError> {
    input
        .get(length..)
        .ok_or_else(|| DecodeError("the message is cut short inside a field".to_owned()))
}

/// A gRPC status code (`grpc-status`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Code(pub u32);

impl Code {
    pub const OK: Code = Code(0);
    pub const UNKNOWN: Code = Code(2);
    pub const NOT_FOUND: Code = Code(5);
    pub const PERMISSION_DENIED: Code = Code(7);
    pub const UNIMPLEMENTED: Code = Code(12);
    pub const INTERNAL: Code = Code(13);
    pub const UNAVAILABLE: Code = Code(14);
    pub const UNAUTHENTICATED: Code = Code(16);

    /// The code's name as the gRPC documentation spells it (`UNIMPLEMENTED`).
    pub fn name(self) -> String {
        const NAMES: [&str; 17] = [
            "OK",
            "CANCELLED",
            "UNKNOWN",
            "INVALID_ARGUMENT",
            "DEADLINE_EXCEEDED",
            "NOT_FOUND",
            "ALREADY_EXISTS",
            "PERMISSION_DENIED",
            "RESOURCE_EXHAUSTED",
            "FAILED_PRECONDITION",
            "ABORTED",
            "OUT_OF_RANGE",
            "UNIMPLEMENTED",
            "INTERNAL",
            "UNAVAILABLE",
            "DATA_LOSS",
            "UNAUTHENTICATED",
        ];
        NAMES
            .get(self.0 as usize)
            .map_or_else(|| format!("code {}", self.0), |name| (*name).to_owned())
    }

    /// The code a non-gRPC HTTP status stands for, as gRPC's "HTTP to gRPC status code
    /// mapping" says (a proxy in front of the server answered, not the server).
    fn of_http_status(status: u16) -> Code {
        match status {
            400 => Code::INTERNAL,
            401 => Code::UNAUTHENTICATED,
            403 => Code::PERMISSION_DENIED,
            404 => Code::UNIMPLEMENTED,
            429 | 502 | 503 | 504 => Code::UNAVAILABLE,
            _ => Code::UNKNOWN,
        }
    }
}

/// What the server answered to `Check`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HealthAnswer {
    /// `grpc-status: 0` and a `HealthCheckResponse`.
    Status(ServingStatus),
    /// A gRPC error: its code and `grpc-message` (decoded, cut to a line).
    Error { code: Code, message: String },
}

impl HealthAnswer {
    /// Whether this answer means up: `SERVING`.
    pub fn is_serving(&self) -> bool {
        matches!(self, HealthAnswer::Status(ServingStatus::Serving))
    }

    /// Why the answer is not up, for the check's reason (`None` when serving). `service` is the
    /// name asked for: an unknown one reads as such whether the server said so with
    /// `SERVICE_UNKNOWN` or, as grpcio's and grpc-go's health servicers do, with `NOT_FOUND`.
    pub fn reason(&self, service: &str) -> Option<String> {
        let unknown = || format!("the server does not know the service {service:?}");
        Some(match self {
            HealthAnswer::Status(ServingStatus::Serving) => return None,
            HealthAnswer::Status(status @ ServingStatus::ServiceUnknown) => {
                format!("serving status {}: {}", status.name(), unknown())
            }
            HealthAnswer::Status(status) if service.is_empty() => format!("serving status {}", status.name()),
            HealthAnswer::Status(status) => format!("serving status {} for service {service:?}", status.name()),
            HealthAnswer::Error { code, message } => {
                let what = match *code {
                    Code::UNIMPLEMENTED => "the server has no health service".to_owned(),
                    Code::NOT_FOUND => unknown(),
                    _ => String::new(),
                };
                match (what.is_empty(), message.is_empty()) {
                    (true, true) => code.name(),
                    (true, false) => format!("{}: {message}", code.name()),
                    (false, true) => format!("{}: {what}", code.name()),
                    (false, false) => format!("{}: {what} ({message})", code.name()),
                }
            }
        })
    }
}

/// The answer read from a response: its HTTP status and headers, the body as read (at most
/// `limit` bytes; `truncated` when more followed) and the trailers, if they came.
pub(crate) fn interpret(
    http_status: u16,
    headers: &HeaderMap,
    body: &[u8],
    truncated: bool,
    trailers: Option<&HeaderMap>,
    limit: usize,
) -> Result<HealthAnswer, DecodeError> {
    // Trailers-only (an error at once) puts grpc-status among the headers.
    fn status_in(map: &HeaderMap) -> Option<(&HeaderValue, Option<&HeaderValue>)> {
        map.get("grpc-status").map(|value| (value, map.get("grpc-message")))
    }
    let status = trailers.and_then(status_in).or_else(|| status_in(headers));
    if http_status != 200 && status.is_none() {
        return Ok(HealthAnswer::Error {
            code: Code::of_http_status(http_status),
            message: format!("HTTP status {http_status}, not a gRPC answer"),
        });
    }
    let is_grpc = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/grpc"));
    if !is_grpc && status.is_none() {
        return Err(DecodeError(
            "the answer is not gRPC (no application/grpc content type, no grpc-status)".to_owned(),
        ));
    }
    let Some((code, message)) = status else {
        return Err(DecodeError(if truncated {
            format!("the answer goes on past {limit} bytes without a grpc-status")
        } else {
            "the answer ends without a grpc-status".to_owned()
        }));
    };
    let code = code
        .to_str()
        .ok()
        .and_then(|text| text.parse::<u32>().ok())
        .ok_or_else(|| DecodeError("grpc-status is not a number".to_owned()))?;
    if code != Code::OK.0 {
        return Ok(HealthAnswer::Error {
            code: Code(code),
            message: message.map(|m| readable_message(m.as_bytes())).unwrap_or_default(),
        });
    }
    decode_response(body, limit).map(HealthAnswer::Status)
}

/// How many bytes of a `grpc-message` a reason quotes.
const MESSAGE_LIMIT: usize = 200;

/// `grpc-message` percent-decoded (as the protocol encodes it), made one printable line of at
/// most [`MESSAGE_LIMIT`] bytes (`core::text`): it is the server's text and goes into a reason.
fn readable_message(raw: &[u8]) -> String {
    let decoded: Vec<u8> = percent_encoding::percent_decode(raw).collect();
    crate::core::text::one_line_bytes(&decoded, MESSAGE_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: usize = 64 * 1024;

    fn grpc_headers() -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
        headers
    }

    fn trailers(status: &'static str, message: Option<&'static str>) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("grpc-status", HeaderValue::from_static(status));
        if let Some(message) = message {
            map.insert("grpc-message", HeaderValue::from_static(message));
        }
        map
    }

    #[test]
    fn the_request_is_the_framed_message_protoc_would_write() {
        assert_eq!(
            &encode_request("")[..],
            &[0, 0, 0, 0, 0],
            "an empty service is an empty message"
        );
        assert_eq!(
            &encode_request("orders.v1.Orders")[..],
            b"\x00\x00\x00\x00\x12\x0a\x10orders.v1.Orders"
        );
        // A name of 200 bytes takes a two-byte length.
        let long = "s".repeat(200);
        let framed = encode_request(&long);
        assert_eq!(&framed[..8], &[0, 0, 0, 0, 203, 0x0a, 0xc8, 0x01]);
        assert_eq!(framed.len(), 5 + 203);
    }

    #[test]
    fn each_serving_status_decodes() {
        assert_eq!(
            decode_response(b"\x00\x00\x00\x00\x02\x08\x01", LIMIT),
            Ok(ServingStatus::Serving)
        );
        assert_eq!(
            decode_response(b"\x00\x00\x00\x00\x02\x08\x02", LIMIT),
            Ok(ServingStatus::NotServing)
        );
        assert_eq!(
            decode_response(b"\x00\x00\x00\x00\x02\x08\x03", LIMIT),
            Ok(ServingStatus::ServiceUnknown)
        );
        assert_eq!(
            decode_response(b"\x00\x00\x00\x00\x00", LIMIT),
            Ok(ServingStatus::Unknown),
            "proto3 default"
        );
        assert_eq!(
            decode_response(b"\x00\x00\x00\x00\x02\x08\x09", LIMIT),
            Ok(ServingStatus::Other(9))
        );
        assert_eq!(ServingStatus::Other(9).name(), "status 9");
        // Unknown fields of every wire type are skipped, the last status wins.
        let message = b"\x08\x02\x10\x05\x19\x01\x02\x03\x04\x05\x06\x07\x08\x22\x02hi\x2d\x01\x02\x03\x04\x08\x01";
        let mut framed = vec![0, 0, 0, 0, message.len() as u8];
        framed.extend_from_slice(message);
        assert_eq!(decode_response(&framed, LIMIT), Ok(ServingStatus::Serving));
    }

    #[test]
    fn a_message_over_the_limit_or_cut_or_malformed_is_refused() {
        let huge = decode_response(b"\x00\x7f\xff\xff\xff\x08\x01", LIMIT).unwrap_err();
        assert!(huge.to_string().contains("announces 2147483647 bytes"), "{huge}");
        assert!(
            decode_response(b"\x00\x00\x00\x00\x05\x08\x01", LIMIT)
                .unwrap_err()
                .to_string()
                .contains("cut short")
        );
        assert!(decode_response(b"\x00\x00\x00", LIMIT).is_err());
        assert!(
            decode_response(b"\x01\x00\x00\x00\x02\x08\x01", LIMIT)
                .unwrap_err()
                .to_string()
                .contains("compressed")
        );
        // A varint that never ends, and a wire type protobuf does not have.
        let endless = decode_response(
            b"\x00\x00\x00\x00\x0b\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
            LIMIT,
        );
        assert!(endless.unwrap_err().to_string().contains("malformed number"));
        let wire7 = decode_response(b"\x00\x00\x00\x00\x01\x0f", LIMIT).unwrap_err();
        assert!(wire7.to_string().contains("wire type 7"), "{wire7}");
        let inside = decode_response(b"\x00\x00\x00\x00\x02\x22\x05", LIMIT).unwrap_err();
        assert!(inside.to_string().contains("inside a field"), "{inside}");
    }

    #[test]
    fn the_status_comes_from_the_trailers_or_a_trailers_only_answer() {
        let body = b"\x00\x00\x00\x00\x02\x08\x01";
        let ok = trailers("0", None);
        assert_eq!(
            interpret(200, &grpc_headers(), body, false, Some(&ok), LIMIT),
            Ok(HealthAnswer::Status(ServingStatus::Serving))
        );
        let mut only = grpc_headers();
        only.extend(trailers("12", Some("Method%20not%20found!")));
        let unimplemented = interpret(200, &only, b"", false, None, LIMIT).unwrap();
        assert_eq!(
            unimplemented,
            HealthAnswer::Error {
                code: Code::UNIMPLEMENTED,
                message: "Method not found!".to_owned()
            }
        );
        assert_eq!(
            unimplemented.reason("").unwrap(),
            "UNIMPLEMENTED: the server has no health service (Method not found!)"
        );
        let missing = interpret(200, &grpc_headers(), body, false, None, LIMIT).unwrap_err();
        assert_eq!(missing.to_string(), "the answer ends without a grpc-status");
    }

    #[test]
    fn reasons_name_the_serving_status_or_the_code() {
        let reason = |answer: HealthAnswer| answer.reason("orders.v1.Orders");
        assert_eq!(reason(HealthAnswer::Status(ServingStatus::Serving)), None);
        assert_eq!(
            reason(HealthAnswer::Status(ServingStatus::NotServing)).unwrap(),
            "serving status NOT_SERVING for service \"orders.v1.Orders\""
        );
        assert_eq!(
            HealthAnswer::Status(ServingStatus::Unknown).reason("").unwrap(),
            "serving status UNKNOWN"
        );
        assert_eq!(
            reason(HealthAnswer::Status(ServingStatus::ServiceUnknown)).unwrap(),
            "serving status SERVICE_UNKNOWN: the server does not know the service \"orders.v1.Orders\""
        );
        let not_found = HealthAnswer::Error {
            code: Code::NOT_FOUND,
            message: String::new(),
        };
        assert_eq!(
            reason(not_found).unwrap(),
            "NOT_FOUND: the server does not know the service \"orders.v1.Orders\""
        );
        let unavailable = HealthAnswer::Error {
            code: Code::UNAVAILABLE,
            message: "draining".to_owned(),
        };
        assert_eq!(reason(unavailable).unwrap(), "UNAVAILABLE: draining");
        assert_eq!(Code(99).name(), "code 99");
    }

    #[test]
    fn a_proxy_answer_maps_to_a_code_and_html_is_no_grpc() {
        let answer = interpret(503, &HeaderMap::new(), b"<html>", false, None, LIMIT).unwrap();
        assert_eq!(
            answer.reason("").unwrap(),
            "UNAVAILABLE: HTTP status 503, not a gRPC answer"
        );
        let mut html = HeaderMap::new();
        html.insert(http::header::CONTENT_TYPE, HeaderValue::from_static("text/html"));
        let error = interpret(200, &html, b"<html>", false, None, LIMIT).unwrap_err();
        assert!(error.to_string().contains("not gRPC"), "{error}");
    }

    #[test]
    fn grpc_message_is_decoded_and_kept_to_one_short_line() {
        assert_eq!(readable_message(b"a%0Ab%25"), "a b%");
        let long = "x".repeat(500);
        let cut = readable_message(long.as_bytes());
        assert!(cut.len() <= MESSAGE_LIMIT && cut.ends_with('…'), "{cut}");
        assert!(cut.ends_with('…'));
    }
}
