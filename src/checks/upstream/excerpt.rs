//! What an upstream said, for a reason: the start of its body, made printable on one line.
//!
//! A reason goes to `/readyz?verbose` (one line per check: a body's newline could forge another
//! check's line), to a terminal (`vigil check`, `/diag` text: an ANSI sequence could repaint
//! it) and to logs and Events. Every reason must be one printable line; this is that rule for
//! the one part of a reason an upstream writes. (A shared sanitizer, `core::text`, is on its
//! way on another branch; this function is meant to be folded into it.)

/// How much of the body a reason shows: enough for `{"error":"no healthy upstream"}` or a
/// framework's one-line error, far less than a reason's 512 bytes.
pub(crate) const EXCERPT_BYTES: usize = 200;

/// The body's first [`EXCERPT_BYTES`] bytes as one printable line: escape sequences (CSI, OSC
/// and two-character ones) and control characters replaced by a space, runs of whitespace
/// collapsed into one, bytes that are not UTF-8 shown as U+FFFD, a character cut at the end
/// dropped. Empty when the body says nothing printable.
pub(crate) fn excerpt(body: &[u8]) -> String {
    let head = &body[..body.len().min(EXCERPT_BYTES)];
    // A multi-byte character cut by the limit is dropped rather than shown as U+FFFD.
    let head = match std::str::from_utf8(head) {
        Err(error) if error.error_len().is_none() => &head[..error.valid_up_to()],
        _ => head,
    };
    let text = String::from_utf8_lossy(head);
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    let space = |out: &mut String| {
        if !out.is_empty() && !out.ends_with(' ') {
            out.push(' ');
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => {
                match chars.next() {
                    // CSI: parameters and intermediates up to a final byte in @..~.
                    Some('[') => skip_csi(&mut chars),
                    // OSC (a terminal title, a hyperlink): up to BEL or ESC \.
                    Some(']') => {
                        while let Some(c) = chars.next() {
                            if c == '\u{7}' || (c == '\u{1b}' && chars.next_if_eq(&'\\').is_some()) {
                                break;
                            }
                        }
                    }
                    _ => {}
                }
                space(&mut out);
            }
            '\u{9b}' => {
                skip_csi(&mut chars);
                space(&mut out);
            }
            c if c.is_whitespace() || hidden(c) => space(&mut out),
            c => out.push(c),
        }
    }
    out.truncate(out.trim_end().len());
    out
}

fn skip_csi(chars: &mut std::iter::Peekable<std::str::Chars<'_>>) {
    for c in chars.by_ref() {
        if ('@'..='~').contains(&c) {
            break;
        }
    }
}

/// Characters that do not show as themselves: controls, line and paragraph separators,
/// zero-width and direction marks (a right-to-left override would reorder the rest of the line).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}'
        )
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
    fn escapes_and_controls_become_one_space_and_lines_one_line() {
        let body = b"\x1b[31;1mERROR\x1b[0m down\r\n[+]postgres ok\n\tat Foo.bar()\x07\x00 \x1b]0;title\x07x \x1b]8;;http://a\x1b\\y\x1bcz \xc2\x9b2Jw";
        assert_eq!(excerpt(body), "ERROR down [+]postgres ok at Foo.bar() x y z w");
        assert_eq!(excerpt("a\u{2028}b\u{202e}c\u{feff}d".as_bytes()), "a b c d");
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
        assert_eq!(excerpt(b"ok \xff\xfe ok"), "ok \u{fffd}\u{fffd} ok");
    }
}
