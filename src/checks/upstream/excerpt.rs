//! What an upstream said, for a reason: the start of its body, by `core::text`'s rule for
//! every text a dependency writes (one printable line: no forged `/readyz` line, no escape
//! sequence reaching a terminal).

use crate::core::text;

/// How much of the body a reason shows: enough for `{"error":"no healthy upstream"}` or a
/// framework's one-line error, far less than a reason's 512 bytes.
pub(crate) const EXCERPT_BYTES: usize = 200;

/// The body's first [`EXCERPT_BYTES`] bytes as one printable line ([`text::one_line_bytes`]),
/// a character cut by the limit dropped. Empty when the body says nothing printable.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let head = &body[..body.len().min(EXCERPT_BYTES)];
    let head = match std::str::from_utf8(head) {
        Err(error) if error.error_len().is_none() => &head[..error.valid_up_to()],
        _ => head,
    };
    // Room for every byte read even were each to become U+FFFD: the limit is on what is read.
    text::one_line_bytes(head, 3 * EXCERPT_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_is_shown_as_sent() {
        assert_eq!(
            excerpt(br#"{"error":"no healthy upstream"}"#),
            r#"{"error":"no healthy upstream"}"#
        );
        assert_eq!(excerpt(b""), "");
        assert_eq!(excerpt(b"\r\n\t "), "");
    }

    #[test]
    fn escapes_and_controls_are_marked_and_lines_one_line() {
        let body = b"\x1b[31;1mERROR\x1b[0m down\r\n[+]postgres ok\n\tat Foo.bar()\x07\x00 \x1b]0;title\x07x";
        assert_eq!(
            excerpt(body),
            "\u{fffd}ERROR\u{fffd} down [+]postgres ok at Foo.bar()\u{fffd} \u{fffd}x"
        );
    }

    #[test]
    fn only_the_first_200_bytes_and_no_cut_character() {
        let long = format!("{}TAIL", "a".repeat(300));
        assert_eq!(excerpt(long.as_bytes()), "a".repeat(200));
        let cut = format!("{}é", "a".repeat(199));
        assert_eq!(
            excerpt(cut.as_bytes()),
            "a".repeat(199),
            "é's first byte alone is dropped"
        );
        assert_eq!(excerpt(b"ok \xff\xfe ok"), "ok \u{fffd} ok");
    }
}
