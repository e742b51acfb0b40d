//! Query text made fit to show a person: every string and number literal of SQL replaced by
//! `?`, comments dropped, on one line, cut to a length.
//!
//! Why a tokenizer and not a regex: the text of a query (`pg_stat_activity.query`) holds
//! personal data in its literals, and a pattern that knows `'[^']*'` shows the second half of
//! `'it''s'`, the body of a `$$…$$` function, or the secret after a `\'` in `E'…'`. This module
//! follows PostgreSQL's own lexer (`scan.l`) as far as showing text needs:
//!
//! - strings: `'…'` with doubled quotes, `E'…'` with backslash escapes, `U&'…'`, `N'…'`,
//!   `B'…'` and `X'…'`, and dollar quoting `$$…$$` / `$tag$…$tag$`. Whether a backslash
//!   escapes in a plain `'…'` depends on the server's `standard_conforming_strings`, which the
//!   text does not tell: where the two readings end the string at different places, everything
//!   from the string on is hidden (a path ending in `\` costs the rest of the text; showing a
//!   literal's tail never happens);
//! - numbers: integers, decimals (`1.5`, `.5`, `5.`), exponents, `0x`/`0o`/`0b` integers and
//!   `_` between digits (PostgreSQL 16). A digit inside an identifier (`t1`) or a parameter
//!   (`$1`) is not a literal;
//! - identifiers, keywords, operators and `"quoted identifiers"` are kept: they are the shape
//!   of the query, which is what a person on call needs to recognise it;
//! - comments (`--` to the end of the line, nested `/* … */`) are dropped whole: an ORM's or
//!   sqlcommenter's comment may carry a literal too.
//!
//! Anything unterminated (a string, a dollar quote, a comment) runs to the end of the text, as
//! in PostgreSQL, so it swallows the rest: a query cut by the server or by
//! `track_activity_query_size` in the middle of a literal shows nothing of it. An unterminated
//! quoted identifier is not a literal: its quote is kept and the text after it is read as SQL,
//! so that literals in it are still replaced.
//!
//! The result is one line: whitespace runs (and control and bidirectional-formatting
//! characters, which could forge a line or reorder what a terminal shows) become one space.
//! It is at most `max_chars` characters; a cut is marked with `…` and never falls inside a
//! quoted identifier. `normalize` is idempotent, so text that was normalized once (stored,
//! then shown again) reads the same.

/// Marks where [`normalize`] cut the text.
pub(crate) const CUT_MARK: char = '…';

/// What replaces a literal.
const PLACEHOLDER: &str = "?";

/// `query` with every string and number literal replaced by `?`, comments dropped, whitespace
/// collapsed and at most `max_chars` characters (see the module documentation).
pub(crate) fn normalize(query: &str, max_chars: usize) -> String {
    let bytes = query.as_bytes();
    let mut out = Out::new(max_chars);
    let mut i = 0;
    while i < bytes.len() && !out.full {
        let next = bytes.get(i + 1).copied();
        i = match bytes[i] {
            b'\'' => out.literal(plain_string_end(bytes, i + 1)),
            b'"' => match quoted_identifier_end(bytes, i + 1) {
                Some(end) => {
                    out.whole(&query[i..end]);
                    end
                }
                None => {
                    out.piece("\"");
                    i + 1
                }
            },
            b'$' => dollar(query, i, &mut out),
            b'-' if next == Some(b'-') => {
                out.separator();
                line_comment_end(bytes, i + 2)
            }
            b'/' if next == Some(b'*') => {
                out.separator();
                block_comment_end(bytes, i + 2)
            }
            b'0'..=b'9' => out.literal(Some(number_end(bytes, i))),
            // Not after another `.`: `1..10` is 1, `..` and 10 (a PL/pgSQL range).
            b'.' if next.is_some_and(|c| c.is_ascii_digit()) && (i == 0 || bytes[i - 1] != b'.') => {
                out.literal(Some(number_end(bytes, i)))
            }
            b'e' | b'E' if next == Some(b'\'') => out.literal(escape_string_end(bytes, i + 2)),
            b'b' | b'B' | b'x' | b'X' | b'n' | b'N' if next == Some(b'\'') => {
                out.literal(plain_string_end(bytes, i + 2))
            }
            b'u' | b'U' if next == Some(b'&') && bytes.get(i + 2) == Some(&b'\'') => {
                out.literal(plain_string_end(bytes, i + 3))
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = identifier_end(query, i);
                out.piece(&query[i..end]);
                end
            }
            c if c.is_ascii_whitespace() || c.is_ascii_control() => {
                out.separator();
                i + 1
            }
            c if c.is_ascii() => {
                // An operator or punctuation character, kept as it is.
                out.piece(&query[i..=i]);
                i + 1
            }
            _ => {
                let c = char_at(query, i);
                if is_separator(c) {
                    out.separator();
                    i + c.len_utf8()
                } else {
                    let end = identifier_end(query, i);
                    out.piece(&query[i..end]);
                    end
                }
            }
        };
    }
    out.finish()
}

/// The character starting at byte `i` (a char boundary).
fn char_at(s: &str, i: usize) -> char {
    s[i..].chars().next().unwrap_or(' ')
}

/// Whitespace, control characters, and the invisible formatting characters (zero-width and
/// bidirectional controls) that would let a query's text reorder or hide what is shown.
fn is_separator(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Letters, digits, `_`, `$` and any other non-ASCII character that is not a separator
/// (PostgreSQL takes every byte above 0x7F as an identifier byte).
fn is_identifier_char(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || c == '_' || c == '$'
    } else {
        !is_separator(c)
    }
}

fn identifier_end(s: &str, start: usize) -> usize {
    s[start..]
        .char_indices()
        .find(|&(_, c)| !is_identifier_char(c))
        .map_or(s.len(), |(offset, _)| start + offset)
}

/// The end (past the closing quote) of a string whose body starts at `i`, reading quotes
/// doubled (`''`) and, when `backslash` is set, `\` as escaping the next byte. `None`:
/// unterminated.
///
/// Byte-wise is safe in UTF-8: the bytes searched for are ASCII and never occur inside a
/// multi-byte character, and the end returned is just past an ASCII quote.
fn string_end(bytes: &[u8], mut i: usize, backslash: bool) -> Option<usize> {
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if backslash => i += 2,
            b'\'' if bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b'\'' => return Some(i + 1),
            _ => i += 1,
        }
    }
    None
}

/// A string without backslash escapes by the standard (`'…'`, `N'…'`, `B'…'`, `X'…'`,
/// `U&'…'`): where `standard_conforming_strings = off` would end it elsewhere, the text is
/// ambiguous and the string is taken to run to the end.
fn plain_string_end(bytes: &[u8], i: usize) -> Option<usize> {
    let standard = string_end(bytes, i, false);
    (standard == string_end(bytes, i, true)).then_some(standard).flatten()
}

/// `E'…'`: backslash escapes and doubled quotes.
fn escape_string_end(bytes: &[u8], i: usize) -> Option<usize> {
    string_end(bytes, i, true)
}

/// The end of `"…"` (quotes inside doubled) whose body starts at `i`; `None`: unterminated.
fn quoted_identifier_end(bytes: &[u8], mut i: usize) -> Option<usize> {
    while i < bytes.len() {
        if bytes[i] == b'"' {
            if bytes.get(i + 1) == Some(&b'"') {
                i += 2;
                continue;
            }
            return Some(i + 1);
        }
        i += 1;
    }
    None
}

/// `$` at a token's start: a parameter (`$1`, kept), a dollar-quoted string (`$$…$$`,
/// `$tag$…$tag$`, replaced), or a lone `$` (kept). Returns where to go on.
fn dollar(query: &str, i: usize, out: &mut Out) -> usize {
    let bytes = query.as_bytes();
    let tag_char =
        |c: u8, first: bool| c.is_ascii_alphabetic() || c == b'_' || c >= 0x80 || (!first && c.is_ascii_digit());
    match bytes.get(i + 1) {
        Some(c) if c.is_ascii_digit() => {
            let end = bytes[i + 1..]
                .iter()
                .position(|c| !c.is_ascii_digit())
                .map_or(bytes.len(), |n| i + 1 + n);
            out.piece(&query[i..end]);
            end
        }
        _ => {
            let mut j = i + 1;
            while j < bytes.len() && tag_char(bytes[j], j == i + 1) {
                j += 1;
            }
            if bytes.get(j) != Some(&b'$') {
                out.piece("$");
                return i + 1;
            }
            let tag = &bytes[i..=j];
            let body = j + 1;
            let end = bytes[body..]
                .windows(tag.len())
                .position(|w| w == tag)
                .map(|n| body + n + tag.len());
            out.literal(end)
        }
    }
}

fn line_comment_end(bytes: &[u8], i: usize) -> usize {
    bytes[i..]
        .iter()
        .position(|&c| c == b'\n' || c == b'\r')
        .map_or(bytes.len(), |n| i + n)
}

/// Block comments nest in PostgreSQL: `/* a /* b */ still a comment */`.
fn block_comment_end(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 1usize;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1)) {
            (b'/', Some(b'*')) => {
                depth += 1;
                i += 2;
            }
            (b'*', Some(b'/')) => {
                depth -= 1;
                i += 2;
                if depth == 0 {
                    return i;
                }
            }
            _ => i += 1,
        }
    }
    bytes.len()
}

/// The end of a number starting at `i` (a digit, or `.` before a digit).
fn number_end(bytes: &[u8], i: usize) -> usize {
    let at = |j: usize| bytes.get(j).copied().unwrap_or(0);
    // Digits of one base, with `_` allowed between them.
    let digits = |mut j: usize, is_digit: &dyn Fn(u8) -> bool| {
        while is_digit(at(j)) || (at(j) == b'_' && is_digit(at(j + 1))) {
            j += 1;
        }
        j
    };
    if at(i) == b'0' {
        let base: Option<fn(u8) -> bool> = match at(i + 1) {
            b'x' | b'X' => Some(|c| c.is_ascii_hexdigit()),
            b'o' | b'O' => Some(|c| (b'0'..=b'7').contains(&c)),
            b'b' | b'B' => Some(|c| c == b'0' || c == b'1'),
            _ => None,
        };
        if let Some(is_digit) = base {
            let end = digits(i + 2, &is_digit);
            if end > i + 2 {
                return end;
            }
        }
    }
    let decimal = |c: u8| c.is_ascii_digit();
    let mut j = digits(i, &decimal);
    // `1..10` (a range in PL/pgSQL) is 1 followed by `..`, not 1. and .10.
    if at(j) == b'.' && at(j + 1) != b'.' {
        j = digits(j + 1, &decimal);
    }
    if matches!(at(j), b'e' | b'E') {
        let sign = usize::from(matches!(at(j + 1), b'+' | b'-'));
        if at(j + 1 + sign).is_ascii_digit() {
            j = digits(j + 1 + sign, &decimal);
        }
    }
    j
}

/// The text being built: one space between tokens where the query had any separator, at most
/// `max` characters, the cut marked.
struct Out {
    buf: String,
    chars: usize,
    max: usize,
    /// A separator was seen since the last token (written only before the next one).
    space: bool,
    /// No more room: the text was cut.
    full: bool,
    /// Byte and character length of `buf` before the last token, when that token is a quoted
    /// identifier (a cut removes it whole rather than leave it unterminated).
    before_whole: Option<(usize, usize)>,
}

impl Out {
    fn new(max: usize) -> Out {
        Out {
            buf: String::new(),
            chars: 0,
            max,
            space: false,
            full: false,
            before_whole: None,
        }
    }

    fn separator(&mut self) {
        self.space = !self.buf.is_empty();
    }

    /// A literal ending at `end` (`None`: unterminated, so it ends the text). Returns where to
    /// go on.
    fn literal(&mut self, end: Option<usize>) -> usize {
        self.piece(PLACEHOLDER);
        match end {
            Some(end) => end,
            None => {
                self.full = true;
                usize::MAX
            }
        }
    }

    /// A token that may be cut anywhere (a word, an operator, a placeholder).
    fn piece(&mut self, text: &str) {
        if self.full {
            return;
        }
        let space = self.space.then_some(' ');
        for c in space.into_iter().chain(text.chars()) {
            if self.chars >= self.max {
                return self.cut();
            }
            self.buf.push(c);
            self.chars += 1;
            self.space = false;
            // Something follows the last quoted identifier: a cut no longer needs to remove it.
            self.before_whole = None;
        }
    }

    /// A token shown whole or not at all (a quoted identifier), its inner whitespace collapsed.
    fn whole(&mut self, text: &str) {
        if self.full {
            return;
        }
        let mut token = String::with_capacity(text.len());
        let mut in_space = false;
        for c in text.chars() {
            if is_separator(c) {
                in_space = true;
            } else {
                if in_space {
                    token.push(' ');
                    in_space = false;
                }
                token.push(c);
            }
        }
        let len = token.chars().count();
        if self.chars + usize::from(self.space) + len > self.max {
            return self.cut();
        }
        if self.space {
            self.buf.push(' ');
            self.chars += 1;
            self.space = false;
        }
        self.before_whole = Some((self.buf.len(), self.chars));
        self.buf.push_str(&token);
        self.chars += len;
    }

    /// Ends the text at a token that does not fit: at most `max - 1` characters of it and the
    /// mark (with a space before it where one was due and there is room).
    fn cut(&mut self) {
        self.full = true;
        if self.max == 0 {
            self.buf.clear();
            return;
        }
        if let Some((bytes, chars)) = self.before_whole.take()
            && self.chars > self.max - 1
        {
            self.buf.truncate(bytes);
            self.chars = chars;
        }
        while self.chars > self.max - 1 {
            self.buf.pop();
            self.chars -= 1;
        }
        let mut space = self.space;
        while self.buf.ends_with(' ') {
            self.buf.pop();
            self.chars -= 1;
            space = true;
        }
        if space && !self.buf.is_empty() && self.chars + 2 <= self.max {
            self.buf.push(' ');
        }
        self.buf.push(CUT_MARK);
    }

    fn finish(self) -> String {
        self.buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const WIDE: usize = 10_000;

    fn n(query: &str) -> String {
        normalize(query, WIDE)
    }

    #[test]
    fn strings_of_every_kind_become_placeholders() {
        let cases = [
            ("SELECT 'plain'", "SELECT ?"),
            ("SELECT 'it''s a secret'", "SELECT ?"),
            ("SELECT '' , ''''", "SELECT ? , ?"),
            (r"SELECT E'it\'s \\ a secret'", "SELECT ?"),
            (r"SELECT e'x\\' , 'y'", "SELECT ? , ?"),
            ("SELECT E'doubled '' quote'", "SELECT ?"),
            ("SELECT U&'d\\0061t\\+000061' UESCAPE '!'", "SELECT ? UESCAPE ?"),
            ("SELECT u&'x'", "SELECT ?"),
            ("SELECT N'national'", "SELECT ?"),
            ("SELECT B'1010', X'1F', b'0', x'ff'", "SELECT ?, ?, ?, ?"),
            ("SELECT $$it's $1 'quoted'$$", "SELECT ?"),
            ("SELECT $body$ $$ inner $$ $other$ $body$ , 1", "SELECT ? , ?"),
            ("SELECT $a1$x$a1$", "SELECT ?"),
            ("SELECT 'one'\n'continued'", "SELECT ? ?"),
            ("INSERT INTO t VALUES('a','b')", "INSERT INTO t VALUES(?,?)"),
            ("SELECT 'ünïcödé ☃'", "SELECT ?"),
        ];
        for (query, expected) in cases {
            assert_eq!(n(query), expected, "{query:?}");
        }
    }

    #[test]
    fn numbers_of_every_kind_become_placeholders() {
        let cases = [
            ("SELECT 42", "SELECT ?"),
            ("SELECT 3.14, .5, 5., 1e10, 1.5E-3, 2e+7", "SELECT ?, ?, ?, ?, ?, ?"),
            ("SELECT 0x1F, 0X1f, 0o17, 0b101, 0B1", "SELECT ?, ?, ?, ?, ?"),
            ("SELECT 1_000_000, 0x_FF_FF, 1_000.000_1", "SELECT ?, ?, ?"),
            ("SELECT -7, +7", "SELECT -?, +?"),
            ("SELECT a[1:2]", "SELECT a[?:?]"),
            ("FOR i IN 1..10 LOOP", "FOR i IN ?..? LOOP"),
            ("SELECT 1::int4, varchar(255)", "SELECT ?::int4, varchar(?)"),
            ("SELECT 1e", "SELECT ?e"),
            ("SELECT 12abc", "SELECT ?abc"),
        ];
        for (query, expected) in cases {
            assert_eq!(n(query), expected, "{query:?}");
        }
    }

    #[test]
    fn identifiers_parameters_and_operators_are_kept() {
        let cases = [
            (
                "SELECT t1.c2 FROM t1 WHERE c2 = $1",
                "SELECT t1.c2 FROM t1 WHERE c2 = $1",
            ),
            (
                "SELECT \"it's\", \"Col \"\"42\"\"\" FROM \"t--x\"",
                "SELECT \"it's\", \"Col \"\"42\"\"\" FROM \"t--x\"",
            ),
            ("SELECT a$b$c, _x9, é1 FROM s.t", "SELECT a$b$c, _x9, é1 FROM s.t"),
            ("SELECT U&\"d\\0061t\"", "SELECT U&\"d\\0061t\""),
            ("SELECT $ 1", "SELECT $ ?"),
            ("SELECT $x", "SELECT $x"),
            ("SELECT typE'x', ne'y'", "SELECT typE?, ne?"),
            ("a <> b AND c >= d || e", "a <> b AND c >= d || e"),
            ("SELECT ? FROM t", "SELECT ? FROM t"),
        ];
        for (query, expected) in cases {
            assert_eq!(n(query), expected, "{query:?}");
        }
    }

    #[test]
    fn comments_are_dropped_with_what_is_in_them() {
        let cases = [
            ("SELECT 1 -- where id = 'secret'\nFROM t", "SELECT ? FROM t"),
            ("SELECT /* 'secret' 42 */ a", "SELECT a"),
            ("SELECT /* a /* nested 'secret' */ still 42 */ b", "SELECT b"),
            ("SELECT a /* unterminated 'secret'", "SELECT a"),
            ("SELECT a -- to the end 'secret'", "SELECT a"),
            ("SELECT 1-/**/-2", "SELECT ?- -?"),
            ("SELECT 1--2\r+3", "SELECT ? +?"),
            ("/*controller='orders',traceparent='00-4bf9'*/ SELECT 1", "SELECT ?"),
        ];
        for (query, expected) in cases {
            assert_eq!(n(query), expected, "{query:?}");
        }
    }

    #[test]
    fn anything_unterminated_swallows_the_rest() {
        let cases = [
            ("SELECT 'secret AND more", "SELECT ?"),
            ("SELECT E'secret\\' AND more", "SELECT ?"),
            ("SELECT $$secret AND more", "SELECT ?"),
            ("SELECT $t$secret $x$ AND more", "SELECT ?"),
            ("SELECT 'ok', 'cut in the midd", "SELECT ?, ?"),
            // Ambiguous under standard_conforming_strings: hidden from the string on.
            (r"SELECT 'C:\', 'secret' FROM t", "SELECT ?"),
            (r"SELECT 'it\'s', 'secret'", "SELECT ?"),
            // A backslash that both readings agree on is fine.
            (r"SELECT 'a\\', 'b'", "SELECT ?, ?"),
            (r"SELECT 'a\b', 42", "SELECT ?, ?"),
        ];
        for (query, expected) in cases {
            assert_eq!(n(query), expected, "{query:?}");
        }
    }

    #[test]
    fn an_unterminated_quoted_identifier_keeps_its_quote_and_hides_literals_after_it() {
        assert_eq!(n("SELECT \"abc, 'secret', 42"), "SELECT \"abc, ?, ?");
    }

    #[test]
    fn one_line_without_control_characters() {
        assert_eq!(
            n("  SELECT\ta,\r\n\n   b\u{0}\u{1b}[31m FROM\u{202E}t \u{200B}  "),
            "SELECT a, b [?m FROM t"
        );
        assert_eq!(n("\n\t "), "");
        assert_eq!(n("SELECT \"a\n\n b\""), "SELECT \"a b\"");
    }

    #[test]
    fn cut_to_max_chars_with_the_mark() {
        let query = "SELECT name, email FROM customers WHERE id = 12345";
        assert_eq!(normalize(query, 200), "SELECT name, email FROM customers WHERE id = ?");
        assert_eq!(normalize(query, 46), "SELECT name, email FROM customers WHERE id = ?");
        assert_eq!(normalize(query, 45), "SELECT name, email FROM customers WHERE id =…");
        assert_eq!(normalize(query, 12), "SELECT name…");
        assert_eq!(normalize(query, 8), "SELECT …");
        assert_eq!(normalize(query, 7), "SELECT…");
        assert_eq!(normalize(query, 1), "…");
        assert_eq!(normalize(query, 0), "");
        // Counted in characters, not bytes, and never inside a character.
        assert_eq!(normalize("SELECT ünïcödé FROM t", 12), "SELECT ünïc…");
        // Never inside a quoted identifier.
        assert_eq!(normalize("SELECT \"a long name\" FROM t", 15), "SELECT …");
        assert_eq!(normalize("SELECT \"a long name\"", 20), "SELECT \"a long name\"");
        assert_eq!(normalize("SELECT \"a long name\" x", 20), "SELECT …");
        // A huge query costs only what is shown.
        let huge = format!("SELECT {}", "'x', ".repeat(1_000_000));
        assert_eq!(normalize(&huge, 20).chars().count(), 20);
    }

    #[test]
    fn idempotent_on_the_examples() {
        for query in [
            "SELECT \"a long name\" x",
            "SELECT $x",
            "SELECT \"abc, 'secret', 42",
            "SELECT 1e",
            "SELECT 1-/**/-2",
            "x$a$ y",
        ] {
            for max in [0, 1, 5, 10, 15, 20, 200] {
                let once = normalize(query, max);
                assert_eq!(normalize(&once, max), once, "{query:?} at {max}");
            }
        }
    }

    // ----- properties -----

    /// A character no generated identifier, keyword or operator has: found in the output, it
    /// leaked from a literal or a comment.
    const MARK: char = '§';

    /// A piece of SQL and what `normalize` must turn it into.
    #[derive(Debug, Clone)]
    struct Piece {
        sql: String,
        shown: String,
    }

    fn kept(sql: String) -> Piece {
        Piece {
            shown: sql.clone(),
            sql,
        }
    }

    fn hidden(sql: String) -> Piece {
        Piece {
            sql,
            shown: PLACEHOLDER.to_owned(),
        }
    }

    /// Literal content: anything, the mark included, quotes, backslashes, dollars, comment
    /// starters, newlines, digits and non-ASCII.
    fn content(backslash: bool) -> impl Strategy<Value = String> {
        let pieces = prop_oneof![
            Just(MARK.to_string()),
            Just("'".to_owned()),
            Just("\"".to_owned()),
            Just("$".to_owned()),
            Just("$$".to_owned()),
            Just("--".to_owned()),
            Just("/*".to_owned()),
            Just("*/".to_owned()),
            Just("\n".to_owned()),
            Just(" ".to_owned()),
            Just("42".to_owned()),
            Just("☃".to_owned()),
            Just(if backslash { "\\" } else { "x" }.to_owned()),
            "[a-zA-Z0-9]{1,4}",
        ];
        prop::collection::vec(pieces, 0..8).prop_map(|v| {
            let mut s: String = v.concat();
            s.push(MARK);
            s
        })
    }

    fn dollar_tag() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-z_][a-z0-9_]{0,4}"]
    }

    fn number() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{1,8}",
            "[0-9]{1,4}\\.[0-9]{0,4}",
            "\\.[0-9]{1,4}",
            "[0-9]{1,3}(\\.[0-9]{1,3})?[eE][+-]?[0-9]{1,3}",
            "0[xX][0-9a-fA-F]{1,6}",
            "0[oO][0-7]{1,6}",
            "0[bB][01]{1,8}",
            "[1-9][0-9]{0,2}(_[0-9]{3}){1,3}",
        ]
    }

    /// A literal of any kind (`backslash`: plain strings may hold backslashes, which may make
    /// them ambiguous and swallow the rest).
    fn literal(backslash: bool) -> impl Strategy<Value = String> {
        prop_oneof![
            content(backslash).prop_map(|c| format!("'{}'", c.replace('\'', "''"))),
            content(true).prop_map(|c| format!("E'{}'", c.replace('\\', "\\\\").replace('\'', "\\'"))),
            content(true).prop_map(|c| format!("e'{}'", c.replace('\\', "\\\\").replace('\'', "''"))),
            content(false).prop_map(|c| format!("U&'{}'", c.replace('\'', "''"))),
            content(false).prop_map(|c| format!("N'{}'", c.replace('\'', "''"))),
            "[01]{0,8}".prop_map(|c| format!("B'{c}'")),
            "[0-9a-fA-F]{0,8}".prop_map(|c| format!("X'{c}'")),
            (dollar_tag(), content(true)).prop_map(|(tag, c)| {
                let delimiter = format!("${tag}$");
                let mut body = c;
                while body.contains(&delimiter) {
                    body = body.replace(&delimiter, "$");
                }
                format!("{delimiter}{body}{delimiter}")
            }),
            number(),
        ]
    }

    fn keyword() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "SELECT", "FROM", "WHERE", "AND", "OR", "UPDATE", "SET", "INSERT", "INTO", "VALUES", "IN", "IS", "NULL",
            "LIMIT", "ORDER", "BY", "E", "U", "B", "X", "N", "e",
        ])
        .prop_map(str::to_owned)
    }

    fn operator() -> impl Strategy<Value = String> {
        prop::sample::select(vec![
            "=", "<>", "+", "-", "*", "/", "(", ")", ",", ";", "::", "||", "<=", ">=", "%", "[", "]", ".", "&", "?",
        ])
        .prop_map(str::to_owned)
    }

    /// Pieces whose shown form is known: separated by whitespace or comments.
    fn piece() -> impl Strategy<Value = Piece> {
        prop_oneof![
            keyword().prop_map(kept),
            "[a-z_][a-z0-9_$]{0,8}".prop_map(kept),
            "[a-zA-Z0-9'$*/.,-]{1,8}".prop_map(|c| kept(format!("\"{}\"", c.replace('"', "\"\"")))),
            "\\$[1-9][0-9]?".prop_map(kept),
            operator().prop_map(kept),
            literal(false).prop_map(hidden),
        ]
    }

    fn separator() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(" ".to_owned()),
            Just("\n\t  ".to_owned()),
            Just("\r\n".to_owned()),
            Just(format!(" /* {MARK} 'x' 42 */ ")),
            Just(format!(" /* a /* {MARK} */ 42 */\n")),
            Just(format!(" -- {MARK} 'x' 42\n")),
        ]
    }

    fn statement() -> impl Strategy<Value = (String, String)> {
        prop::collection::vec((piece(), separator()), 0..24).prop_map(|pieces| {
            let mut sql = String::new();
            let mut shown = Vec::new();
            for (piece, separator) in pieces {
                sql.push_str(&piece.sql);
                sql.push_str(&separator);
                shown.push(piece.shown);
            }
            (sql, shown.join(" "))
        })
    }

    /// SQL-looking soup: fragments that start and end every kind of token, adjacent.
    fn soup() -> impl Strategy<Value = String> {
        let fragment = prop_oneof![
            prop::sample::select(vec![
                "'", "''", "\"", "\"\"", "$", "$$", "$a$", "$1", "--", "/*", "*/", "\\", "E'", "e'", "U&'", "B'", "X'",
                "0x", "0b", "1", "9", ".", "e", "_", " ", "\n", "\r", "\t", "\u{1}", "\u{202E}", "…", "§", "a",
                "SELECT", "-", "/", "*", "+",
            ])
            .prop_map(str::to_owned),
            any::<char>().prop_map(String::from),
        ];
        prop::collection::vec(fragment, 0..40).prop_map(|v| v.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// With whitespace or comments between the pieces, the result is exactly the pieces
        /// with each literal as `?`; cut, it is a prefix of that with the mark.
        #[test]
        fn statements_read_as_their_pieces((sql, shown) in statement(), max in 0usize..120) {
            prop_assert_eq!(normalize(&sql, WIDE), shown.clone());
            let cut = normalize(&sql, max);
            prop_assert!(cut.chars().count() <= max, "{} chars > {}: {:?}", cut.chars().count(), max, cut);
            if max == 0 {
                prop_assert_eq!(cut, "");
            } else if cut != shown {
                prop_assert!(cut.ends_with(CUT_MARK), "{:?} of {:?}", cut, shown);
                let kept = cut.trim_end_matches(CUT_MARK).trim_end();
                prop_assert!(shown.starts_with(kept), "{:?} is no prefix of {:?}", kept, shown);
            }
        }

        /// Adjacent to punctuation, with backslashes in plain strings: no literal content and
        /// no digit of a number survives.
        #[test]
        fn no_literal_content_survives(
            pieces in prop::collection::vec(
                (
                    prop_oneof![
                        keyword(),
                        "[a-z_][a-z_]{0,6}",
                        "[a-zA-Z'$*/.,-]{1,8}".prop_map(|c| format!("\"{}\"", c.replace('"', "\"\""))),
                        literal(true),
                        literal(true),
                    ],
                    prop::sample::select(vec![" ", "\n", "(", ")", ",", ", ", "=", " || ", "::", ";", "\t"]),
                ),
                0..24,
            ),
            max in 0usize..300,
        ) {
            let sql: String = pieces.iter().map(|(p, s)| format!("{p}{s}")).collect();
            for out in [normalize(&sql, WIDE), normalize(&sql, max)] {
                prop_assert!(!out.contains(MARK), "{:?} -> {:?}", sql, out);
                prop_assert!(!out.chars().any(|c| c.is_ascii_digit()), "{:?} -> {:?}", sql, out);
            }
        }

        #[test]
        fn never_panics_never_too_long_and_idempotent(
            query in prop_oneof![soup(), any::<String>(), statement().prop_map(|(sql, _)| sql)],
            max in 0usize..250,
        ) {
            let once = normalize(&query, max);
            prop_assert!(once.chars().count() <= max);
            prop_assert!(!once.chars().any(|c| c.is_control() || c == '\n'));
            prop_assert!(!once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "));
            prop_assert_eq!(normalize(&once, max), once.clone(), "from {:?}", query);
            prop_assert_eq!(normalize(&once, WIDE), once);
        }
    }
}
