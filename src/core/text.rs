//! Text from a dependency, made safe to show: one printable line, bounded in bytes.
//!
//! A PostgreSQL error, an upstream's body, a gRPC or Kubernetes status message, a pod's status
//! reason: each is written by someone else, and each ends up in a reason that `/readyz?verbose`
//! prints one line per check, that the text `/diag`, `vigil check` and the text log print for a
//! terminal, and that Events carry. A newline in it would forge a line (`[+]postgres ok` under
//! the real `[-]postgres failed`), an escape sequence would drive the reader's terminal (clear
//! the screen, set the window title), and its size is the sender's choice. So every such text
//! goes through [`one_line`] before it is shown: the outcome vocabulary does it for every reason,
//! hint and text observation (`core::outcome`), and a check quoting a body does it for its
//! excerpt.
//!
//! What [`one_line`] does, in one pass:
//! - invalid UTF-8 (from [`one_line_bytes`]) becomes U+FFFD;
//! - line breaks and tabs (`\n`, `\r`, `\t`, `\x0b`, `\x0c`, NEL, U+2028, U+2029) become a
//!   space, and a run of spaces one space; the line is trimmed;
//! - an escape sequence (ESC followed by a CSI `[…`, an OSC `]…` ended by BEL or ST, a string
//!   `P…`/`X…`/`^…`/`_…` ended by ST, or one more character), any other control character
//!   (C0, DEL, C1 such as the one-byte CSI U+009B) and the bidirectional overrides that reorder
//!   what a terminal shows (U+202A–U+202E, U+2066–U+2069) become one U+FFFD each, so that a
//!   reader sees that something was there;
//! - the result is cut to at most `max` bytes on a character boundary, ending with [`CUT`] when
//!   something was left out.
//!
//! Linear in the input, and it stops reading once the line is full: a 100 MB message costs the
//! time to scan to its `max`th byte (and the ESC sequences on the way), not a copy of it.

use std::borrow::Cow;

/// The most bytes a reason takes (SPEC, "HTTP endpoints": one line of at most 512 bytes).
pub(crate) const REASON_MAX: usize = 512;

/// The most bytes a hint or a text observation takes: they quote less from dependencies than
/// reasons do, but lists such as the top application names run longer than a reason.
pub(crate) const NOTE_MAX: usize = 1024;

/// What ends a line that was cut.
pub(crate) const CUT: &str = "…";

/// What stands for a control character, an escape sequence or invalid UTF-8.
const REPLACEMENT: char = '\u{FFFD}';

const ESC: char = '\u{1b}';
const BEL: char = '\u{07}';
/// The one-character String Terminator (C1), as some terminals accept it.
const ST: char = '\u{9c}';

/// `text` as one printable line of at most `max` bytes (see the module docs). Borrowed when
/// it is one already.
pub(crate) fn one_line(text: &str, max: usize) -> Cow<'_, str> {
    if text.len() <= max && is_one_line(text) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(clean(text, max))
}

/// Bytes from a dependency (a body, a message) as one printable line of at most `max` bytes;
/// invalid UTF-8 becomes U+FFFD. Only what fits is decoded.
pub(crate) fn one_line_bytes(bytes: &[u8], max: usize) -> String {
    // Each byte yields at most 3 bytes of output (U+FFFD), and a line of `max` bytes needs at
    // most `max` input bytes that are not dropped; escape sequences are dropped, so read on in
    // chunks until the line is full or the input ends.
    let mut line = Line::new(max);
    let mut rest = bytes;
    while !rest.is_empty() && !line.full {
        let take = rest.len().min(max.max(64));
        let (chunk, after) = split_utf8(rest, take);
        let decoded = String::from_utf8_lossy(chunk);
        line.push_str(&decoded);
        rest = after;
    }
    line.finish(!rest.is_empty())
}

/// Whether `text` is one printable line as [`one_line`] would leave it.
fn is_one_line(text: &str) -> bool {
    let mut previous_space = true; // no leading space
    for c in text.chars() {
        if c == ' ' {
            if previous_space {
                return false;
            }
            previous_space = true;
            continue;
        }
        if is_break(c) || is_unsafe(c) {
            return false;
        }
        previous_space = false;
    }
    !text.ends_with(' ')
}

fn clean(text: &str, max: usize) -> String {
    let mut line = Line::new(max);
    let consumed = line.push_str(text);
    line.finish(consumed < text.len())
}

/// Line breaks, tabs and other whitespace controls: shown as a space.
fn is_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\t' | '\u{0b}' | '\u{0c}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Control characters and the bidirectional overrides: shown as U+FFFD.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// The line being written, within its byte budget.
struct Line {
    out: String,
    max: usize,
    /// A space is owed before the next printable character (a run of breaks is one space).
    space: bool,
    /// Nothing more fits: the next character would take the line over `max` with its marker.
    full: bool,
    /// Where the line may be cut to make room for [`CUT`]: the end of the last character that
    /// left room for it.
    cut_at: usize,
    /// Inside an escape sequence that started in an earlier chunk.
    escape: Escape,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Escape {
    None,
    /// ESC seen.
    Start,
    /// `ESC [`: parameters until a final byte 0x40–0x7E.
    Csi,
    /// `ESC ]`, `ESC P`, `ESC X`, `ESC ^`, `ESC _`: a string until BEL or ST.
    Text,
    /// ESC seen inside a string: `\` ends it (ST).
    TextEsc,
}

impl Line {
    fn new(max: usize) -> Line {
        Line {
            out: String::with_capacity(max.min(REASON_MAX)),
            max,
            space: false,
            full: false,
            cut_at: 0,
            escape: Escape::None,
        }
    }

    /// Adds `text`; returns how many of its bytes were read before the line was full.
    fn push_str(&mut self, text: &str) -> usize {
        for (at, c) in text.char_indices() {
            if self.full {
                return at;
            }
            self.push(c);
        }
        text.len()
    }

    fn push(&mut self, c: char) {
        match self.escape {
            Escape::None => {}
            Escape::Start => {
                self.escape = match c {
                    '[' => Escape::Csi,
                    ']' | 'P' | 'X' | '^' | '_' => Escape::Text,
                    // A two-character sequence (ESC c, ESC 7, ESC ( …): its one character is
                    // taken with it; a control character after ESC is looked at on its own.
                    c if c.is_control() => {
                        self.escape = Escape::None;
                        return self.push(c);
                    }
                    _ => Escape::None,
                };
                return;
            }
            Escape::Csi => {
                if ('\u{40}'..='\u{7e}').contains(&c) {
                    self.escape = Escape::None;
                } else if !('\u{20}'..='\u{3f}').contains(&c) {
                    // Not a CSI character: the sequence is broken; this one stands alone.
                    self.escape = Escape::None;
                    return self.push(c);
                }
                return;
            }
            Escape::Text => {
                match c {
                    BEL | ST => self.escape = Escape::None,
                    ESC => self.escape = Escape::TextEsc,
                    _ => {}
                }
                return;
            }
            Escape::TextEsc => {
                self.escape = match c {
                    '\\' => Escape::None,
                    ESC => Escape::TextEsc,
                    _ => Escape::Text,
                };
                return;
            }
        }
        if c == ' ' || is_break(c) {
            self.space = !self.out.is_empty();
            return;
        }
        let shown = if c == ESC || c == '\u{9b}' || c == '\u{9d}' {
            // ESC, or the one-character CSI and OSC: the sequence they open goes with them.
            self.escape = match c {
                ESC => Escape::Start,
                '\u{9b}' => Escape::Csi,
                _ => Escape::Text,
            };
            REPLACEMENT
        } else if is_unsafe(c) {
            REPLACEMENT
        } else {
            c
        };
        if shown == REPLACEMENT && self.out.ends_with(REPLACEMENT) && !self.space {
            // A run of replaced characters shows as one.
            return;
        }
        self.write(shown);
    }

    fn write(&mut self, c: char) {
        let space = usize::from(self.space);
        let needed = space + c.len_utf8();
        if self.out.len() + needed > self.max {
            self.full = true;
            return;
        }
        if self.space {
            self.out.push(' ');
            self.space = false;
        }
        self.out.push(c);
        if self.out.len() + CUT.len() <= self.max {
            self.cut_at = self.out.len();
        }
    }

    /// The line; `more` says whether input was left unread.
    fn finish(mut self, more: bool) -> String {
        if self.full || more {
            self.out.truncate(self.cut_at);
            let kept = self.out.trim_end().len();
            self.out.truncate(kept);
            if CUT.len() <= self.max {
                self.out.push_str(CUT);
            }
        }
        self.out
    }
}

/// `bytes` split after at most `at` bytes, not inside a UTF-8 sequence that continues past
/// `at` (a sequence cut by the end of the input stays, to become U+FFFD).
fn split_utf8(bytes: &[u8], at: usize) -> (&[u8], &[u8]) {
    if at >= bytes.len() {
        return (bytes, &[]);
    }
    // Back up over continuation bytes (at most 3) to the start of the sequence at `at`.
    let mut cut = at;
    while cut > 0 && at - cut < 3 && (bytes[cut] & 0b1100_0000) == 0b1000_0000 {
        cut -= 1;
    }
    if cut == 0 || (bytes[cut] & 0b1100_0000) == 0b1000_0000 {
        // No sequence start nearby: invalid anyway; cut where asked.
        cut = at;
    }
    bytes.split_at(cut)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> String {
        one_line(text, REASON_MAX).into_owned()
    }

    #[test]
    fn a_clean_line_is_borrowed_as_it_is() {
        let text = "server error P0001: boom";
        assert!(matches!(one_line(text, REASON_MAX), Cow::Borrowed(t) if t == text));
        assert_eq!(
            line("status 503, expected 2xx: {\"error\":\"no healthy upstream\"}"),
            "status 503, expected 2xx: {\"error\":\"no healthy upstream\"}"
        );
    }

    #[test]
    fn newlines_and_tabs_become_one_space_and_no_line_is_forged() {
        assert_eq!(
            line("boom\n[+]postgres ok\r\n\t[+]jwt ok\n"),
            "boom [+]postgres ok [+]jwt ok"
        );
        assert_eq!(line("  a  \u{2028}  b\u{85}c  "), "a b c");
        assert_eq!(line("\n\n"), "");
    }

    #[test]
    fn escape_sequences_are_replaced_whole() {
        // CSI: clear screen, cursor home, colours.
        assert_eq!(
            line("a\u{1b}[2J\u{1b}[H\u{1b}[31mred\u{1b}[0m b"),
            "a\u{fffd}red\u{fffd} b"
        );
        // OSC: window title, ended by BEL or by ST.
        assert_eq!(line("x\u{1b}]0;pwned\u{07}y"), "x\u{fffd}y");
        assert_eq!(line("x\u{1b}]2;pwned\u{1b}\\y"), "x\u{fffd}y");
        // DCS and the one-character C1 CSI.
        assert_eq!(line("x\u{1b}Pq#0;2;0;0;0\u{1b}\\y"), "x\u{fffd}y");
        assert_eq!(line("x\u{9b}31my"), "x\u{fffd}y");
        // Two-character sequences and bare controls.
        assert_eq!(line("x\u{1b}cy\u{07}z\u{7f}"), "x\u{fffd}y\u{fffd}z\u{fffd}");
        // An OSC never ended swallows the rest: nothing of it reaches the terminal.
        assert_eq!(line("x\u{1b}]0;title and more"), "x\u{fffd}");
        // Bidirectional overrides.
        assert_eq!(line("abc\u{202e}fed"), "abc\u{fffd}fed");
    }

    #[test]
    fn invalid_utf8_is_replaced() {
        assert_eq!(one_line_bytes(b"ok \xff\xfe end", REASON_MAX), "ok \u{fffd} end");
        assert_eq!(one_line_bytes("caf\u{e9}".as_bytes(), REASON_MAX), "caf\u{e9}");
    }

    #[test]
    fn a_long_text_is_cut_on_a_character_boundary_with_a_marker() {
        let long = "é".repeat(1000);
        let cut = line(&long);
        assert!(cut.len() <= REASON_MAX, "{}", cut.len());
        assert!(cut.ends_with(CUT));
        assert!(cut.len() > REASON_MAX - 8, "as much as fits: {}", cut.len());
        let bytes = one_line_bytes(long.as_bytes(), 100);
        assert!(bytes.len() <= 100 && bytes.ends_with(CUT), "{bytes}");
        assert_eq!(
            bytes.trim_end_matches(CUT).chars().filter(|c| *c == 'é').count(),
            bytes.trim_end_matches(CUT).chars().count()
        );
        // Exactly at the limit: kept whole, no marker.
        let exact = "a".repeat(REASON_MAX);
        assert_eq!(line(&exact), exact);
        assert_eq!(line(&format!("{exact}b")).len(), REASON_MAX);
        assert_eq!(one_line("abcdef", 2), "");
        assert_eq!(one_line("abcdef", 4), "a…");
    }

    #[test]
    fn a_huge_text_is_not_read_past_the_line() {
        let huge = vec![b'x'; 50 * 1024 * 1024];
        let started = std::time::Instant::now();
        let cut = one_line_bytes(&huge, REASON_MAX);
        assert_eq!(cut.len(), REASON_MAX);
        assert!(started.elapsed() < std::time::Duration::from_millis(100));
    }

    #[test]
    fn whatever_comes_in_one_printable_line_within_the_limit_comes_out() {
        let mut seed = 0x2545_f491_4f6c_dd1d_u64;
        let alphabet: Vec<char> = "a \n\r\t\u{1b}[]\\;0Pm\u{07}\u{9b}\u{9c}é€😀\u{202e}\u{0}\u{7f}"
            .chars()
            .collect();
        for _ in 0..2000 {
            let len = (seed % 300) as usize;
            let text: String = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    alphabet[(seed % alphabet.len() as u64) as usize]
                })
                .collect();
            let max = 16 + (seed % 100) as usize;
            let out = one_line(&text, max);
            assert!(out.len() <= max, "{text:?} → {out:?}");
            assert!(is_one_line(&out), "{text:?} → {out:?}");
            assert_eq!(one_line(&out, max), out, "idempotent: {text:?}");
        }
    }
}
