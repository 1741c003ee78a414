//! A fast reader for the block-style YAML that manifests are written in (what `kubectl`,
//! Helm and Kustomize print, and what people write by hand): block mappings and sequences,
//! one-line plain and quoted scalars, literal and folded block scalars, one-line flow
//! collections, comments.
//!
//! It exists because libyaml's scanner plus serde_yaml_ng's event loader were over half of the
//! offline audit's CPU (docs/benchmarks.md). It is a fast path, not a second YAML
//! implementation: anything it is not certain to read exactly as libyaml does (anchors,
//! aliases, tags, multi-line plain or quoted scalars, tabs, CR line breaks, explicit
//! indentation indicators, directives, odd characters) makes it give up with [`Unsupported`],
//! and the caller parses the document with serde_yaml_ng as before. So for every document it
//! accepts it must produce the events libyaml would; the tests compare both on every
//! construct, on the repository's manifests and on generated documents.

mod de;
#[cfg(test)]
mod tests;

pub(super) use de::from_str;

/// Whether the fast reader reads `doc` (its events are built and dropped): the parsing cost
/// alone, for the parse-limit benchmark.
pub(super) fn reads(doc: &str) -> bool {
    parse(doc).is_ok()
}

use std::borrow::Cow;

/// How a scalar was written: serde_yaml_ng resolves only plain scalars (`80` is a number,
/// `"80"` a string).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    Plain,
    /// Single- or double-quoted, literal or folded.
    Other,
}

#[derive(Debug, PartialEq)]
enum Event<'a> {
    MapStart,
    MapEnd,
    SeqStart,
    SeqEnd,
    Scalar(Cow<'a, str>, Style),
}

/// The document uses YAML this reader leaves to serde_yaml_ng.
#[derive(Debug, PartialEq, Eq)]
struct Unsupported;

type Parsed<T> = Result<T, Unsupported>;

/// Deeper documents go to serde_yaml_ng, whose recursion limit (128, counting newtypes too)
/// then decides; manifests nest about 15 levels.
const MAX_DEPTH: usize = 48;

/// libyaml refuses simple keys longer than this.
const MAX_KEY_LEN: usize = 1000;

#[derive(Clone, Copy)]
struct Line<'a> {
    raw: &'a str,
    /// The column structure is measured at; for a mapping that starts on a sequence item's
    /// line (`- name: x`), the column of its first key.
    indent: usize,
}

impl<'a> Line<'a> {
    fn content(&self) -> &'a str {
        &self.raw[self.indent..]
    }

    fn skippable(&self) -> bool {
        let c = self.content();
        c.is_empty() || c.starts_with('#')
    }
}

struct Parser<'a> {
    lines: Vec<Line<'a>>,
    cur: usize,
    events: Vec<Event<'a>>,
    depth: usize,
    ends_with_newline: bool,
}

/// Reads one document (no `---` markers) into serde_yaml_ng's event sequence.
fn parse(doc: &str) -> Parsed<Vec<Event<'_>>> {
    check_characters(doc)?;
    let lines = split_lines(doc)?;
    let mut p = Parser {
        lines,
        cur: 0,
        events: Vec::with_capacity(doc.len() / 12),
        depth: 0,
        ends_with_newline: doc.ends_with('\n'),
    };
    let first = p.next_content().ok_or(Unsupported)?;
    let indent = p.lines[first].indent;
    p.block(indent)?;
    if p.next_content().is_some() {
        return Err(Unsupported);
    }
    Ok(p.events)
}

/// Characters libyaml treats specially or refuses: tabs (indentation rules), CR and the
/// Unicode line breaks, control characters, byte-order marks, directives and markers.
fn check_characters(doc: &str) -> Parsed<()> {
    let ascii_ok = doc
        .bytes()
        .all(|b| b == b'\n' || (b' '..=b'~').contains(&b) || b >= 0x80);
    if !ascii_ok {
        return Err(Unsupported);
    }
    if !doc.is_ascii()
        && doc.chars().any(|c| {
            matches!(
                c,
                '\u{80}'
                    ..='\u{9f}' | '\u{2028}' | '\u{2029}' | '\u{feff}' | '\u{fffe}' | '\u{ffff}'
            )
        })
    {
        return Err(Unsupported);
    }
    Ok(())
}

/// The lines of `doc` as `str::lines` splits them (CR is refused before), measured; a
/// document marker or directive at column 0 makes the reader give up. One memchr pass: line
/// splitting was the largest item of this reader's profile.
fn split_lines(doc: &str) -> Parsed<Vec<Line<'_>>> {
    let mut lines = Vec::with_capacity(doc.len() / 24);
    for line in super::lines_inclusive(doc) {
        let raw = line.strip_suffix('\n').unwrap_or(line);
        let bytes = raw.as_bytes();
        let marker = matches!(bytes.first(), Some(b'%'))
            || bytes.starts_with(b"---")
            || bytes.starts_with(b"...");
        if marker {
            return Err(Unsupported);
        }
        let indent = bytes.iter().take_while(|&&b| b == b' ').count();
        lines.push(Line { raw, indent });
    }
    Ok(lines)
}

/// Where ` #` (a comment after a space) starts in `s`.
fn comment_start(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    memchr::memchr_iter(b'#', b)
        .find(|&i| i > 0 && b[i - 1] == b' ')
        .map(|i| i - 1)
}

fn is_seq_item(content: &str) -> bool {
    content == "-" || content.starts_with("- ")
}

fn trim_spaces(s: &str) -> &str {
    s.trim_start_matches(' ')
}

/// What may follow a complete value on its line: nothing, or a comment after a space.
fn only_comment(after: &str) -> Parsed<()> {
    let t = trim_spaces(after);
    if t.is_empty() || (t.starts_with('#') && t.len() < after.len()) {
        Ok(())
    } else {
        Err(Unsupported)
    }
}

/// Characters that start something other than a plain scalar (or that this reader leaves
/// alone at the start of one).
fn is_indicator(b: u8) -> bool {
    matches!(
        b,
        b'-' | b'?'
            | b':'
            | b','
            | b'['
            | b']'
            | b'{'
            | b'}'
            | b'#'
            | b'&'
            | b'*'
            | b'!'
            | b'|'
            | b'>'
            | b'\''
            | b'"'
            | b'%'
            | b'@'
            | b'`'
    )
}

impl<'a> Parser<'a> {
    /// Moves to the next line that is neither blank nor a comment.
    fn next_content(&mut self) -> Option<usize> {
        while self.cur < self.lines.len() && self.lines[self.cur].skippable() {
            self.cur += 1;
        }
        (self.cur < self.lines.len()).then_some(self.cur)
    }

    fn enter(&mut self, start: Event<'a>) -> Parsed<()> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(Unsupported);
        }
        self.events.push(start);
        Ok(())
    }

    fn leave(&mut self, end: Event<'a>) {
        self.depth -= 1;
        self.events.push(end);
    }

    /// A block collection whose first line is the current one, at `indent`.
    fn block(&mut self, indent: usize) -> Parsed<()> {
        if is_seq_item(self.lines[self.cur].content()) {
            self.sequence(indent)
        } else {
            self.mapping(indent)
        }
    }

    fn mapping(&mut self, n: usize) -> Parsed<()> {
        self.enter(Event::MapStart)?;
        while let Some(i) = self.next_content() {
            let line = self.lines[i];
            if line.indent < n {
                break;
            }
            let content = line.content();
            if line.indent > n || is_seq_item(content) {
                return Err(Unsupported);
            }
            let (key, rest) = split_key(content)?.ok_or(Unsupported)?;
            self.events.push(key);
            self.cur = i + 1;
            self.value(n, rest, false)?;
        }
        self.leave(Event::MapEnd);
        Ok(())
    }

    fn sequence(&mut self, n: usize) -> Parsed<()> {
        self.enter(Event::SeqStart)?;
        while let Some(i) = self.next_content() {
            let line = self.lines[i];
            if line.indent < n || !is_seq_item(line.content()) {
                break;
            }
            if line.indent > n {
                return Err(Unsupported);
            }
            let after_dash = &line.content()[1..];
            let rest = trim_spaces(after_dash);
            self.cur = i + 1;
            if is_seq_item(rest) {
                return Err(Unsupported);
            }
            if !rest.is_empty() && !rest.starts_with('#') && split_key(rest)?.is_some() {
                // `- name: x`: a mapping whose keys line up with `name`.
                let column = line.raw.len() - rest.len();
                self.lines[i].indent = column;
                self.cur = i;
                self.mapping(column)?;
            } else {
                self.value(n, rest, true)?;
            }
        }
        self.leave(Event::SeqEnd);
        Ok(())
    }

    /// The value after `key:` or `- ` in a collection at indent `n`; `rest` is what follows
    /// the indicator on its line. The current line is the one after it.
    fn value(&mut self, n: usize, rest: &'a str, in_sequence: bool) -> Parsed<()> {
        let rest = trim_spaces(rest);
        if rest.is_empty() || rest.starts_with('#') {
            match self.next_content() {
                Some(j) if self.lines[j].indent > n => {
                    let indent = self.lines[j].indent;
                    return self.block(indent);
                }
                // `key:` followed by `- item` at the key's own indent.
                Some(j)
                    if !in_sequence
                        && self.lines[j].indent == n
                        && is_seq_item(self.lines[j].content()) =>
                {
                    return self.sequence(n);
                }
                _ => self
                    .events
                    .push(Event::Scalar(Cow::Borrowed(""), Style::Plain)),
            }
            return Ok(());
        }
        match rest.as_bytes()[0] {
            b'|' | b'>' => return self.block_scalar(n, rest),
            b'"' | b'\'' => {
                let (s, after) = quoted(rest)?;
                only_comment(after)?;
                self.events.push(Event::Scalar(s, Style::Other));
            }
            b'[' | b'{' => {
                let after = self.flow(rest)?;
                only_comment(after)?;
            }
            _ => {
                let v = plain_in_block(rest)?;
                self.events
                    .push(Event::Scalar(Cow::Borrowed(v), Style::Plain));
            }
        }
        // A deeper line after a one-line value continues it (multi-line scalar) or is an
        // error: either way, serde_yaml_ng's business.
        match self.next_content() {
            Some(j) if self.lines[j].indent > n => Err(Unsupported),
            _ => Ok(()),
        }
    }

    /// `|` or `>` with an optional chomping indicator; the content lines follow.
    fn block_scalar(&mut self, n: usize, header: &'a str) -> Parsed<()> {
        let folded = header.starts_with('>');
        let mut h = &header[1..];
        let chomp = match h.as_bytes().first() {
            Some(b'-') => {
                h = &h[1..];
                Chomp::Strip
            }
            Some(b'+') => return Err(Unsupported),
            _ => Chomp::Clip,
        };
        only_comment(h)?;
        let mut content_indent = None;
        let mut text: Vec<&'a str> = Vec::new();
        let mut pending_blank = 0usize;
        let mut j = self.cur;
        while j < self.lines.len() {
            let raw = self.lines[j].raw;
            if raw.bytes().all(|b| b == b' ') {
                if content_indent.is_none_or(|ci| raw.len() > ci) {
                    // Leading blank lines, or spaces that would be content: libyaml's
                    // indentation detection and trailing-space rules decide those.
                    return Err(Unsupported);
                }
                pending_blank += 1;
                j += 1;
                continue;
            }
            let indent = raw.len() - trim_spaces(raw).len();
            let ci = *content_indent.get_or_insert(indent);
            if indent < ci || ci <= n {
                if indent > n {
                    return Err(Unsupported);
                }
                break;
            }
            text.extend(std::iter::repeat_n("", pending_blank));
            pending_blank = 0;
            let line = &raw[ci..];
            if folded && line.starts_with(' ') {
                // More-indented lines keep their breaks in folded scalars.
                return Err(Unsupported);
            }
            text.push(line);
            j += 1;
        }
        if j == self.lines.len() && !self.ends_with_newline && !text.is_empty() {
            return Err(Unsupported);
        }
        self.cur = j;
        let mut value = if folded {
            fold_blank_runs(&text)
        } else {
            text.join("\n")
        };
        if chomp == Chomp::Clip && !text.is_empty() {
            value.push('\n');
        }
        self.events
            .push(Event::Scalar(Cow::Owned(value), Style::Other));
        Ok(())
    }

    /// A one-line flow collection; returns what follows it.
    fn flow(&mut self, s: &'a str) -> Parsed<&'a str> {
        let (start, end, close) = if s.starts_with('[') {
            (Event::SeqStart, Event::SeqEnd, b']')
        } else {
            (Event::MapStart, Event::MapEnd, b'}')
        };
        let is_map = close == b'}';
        self.enter(start)?;
        let mut s = trim_spaces(&s[1..]);
        if s.as_bytes().first() == Some(&close) {
            self.leave(end);
            return Ok(&s[1..]);
        }
        loop {
            if is_map {
                let (key, after) = self.flow_scalar(s)?;
                self.events.push(key);
                s = after.strip_prefix(": ").ok_or(Unsupported)?;
            }
            s = self.flow_node(trim_spaces(s))?;
            s = trim_spaces(s);
            match s.as_bytes().first() {
                Some(b',') => {
                    s = trim_spaces(&s[1..]);
                    if s.is_empty() || s.as_bytes()[0] == close {
                        // A trailing comma: libyaml's business.
                        return Err(Unsupported);
                    }
                }
                Some(&b) if b == close => {
                    self.leave(end);
                    return Ok(&s[1..]);
                }
                _ => return Err(Unsupported),
            }
        }
    }

    fn flow_node(&mut self, s: &'a str) -> Parsed<&'a str> {
        match s.as_bytes().first() {
            Some(b'[' | b'{') => self.flow(s),
            _ => {
                let (scalar, after) = self.flow_scalar(s)?;
                self.events.push(scalar);
                Ok(after)
            }
        }
    }

    fn flow_scalar(&mut self, s: &'a str) -> Parsed<(Event<'a>, &'a str)> {
        match s.as_bytes().first() {
            Some(b'"' | b'\'') => {
                let (v, after) = quoted(s)?;
                Ok((Event::Scalar(v, Style::Other), after))
            }
            // `-v` is plain; a lone `-` is not.
            Some(&b)
                if !is_indicator(b)
                    || (b == b'-'
                        && s.len() > 1
                        && !matches!(s.as_bytes()[1], b' ' | b',' | b']' | b'}')) =>
            {
                let end = s
                    .find([',', '[', ']', '{', '}', ':', '#'])
                    .unwrap_or(s.len());
                let rest = &s[end..];
                if rest.is_empty() || matches!(rest.as_bytes()[0], b'[' | b'{' | b'#') {
                    return Err(Unsupported);
                }
                if rest.starts_with(':') && !rest.starts_with(": ") {
                    // `a:b` in flow context: libyaml versions disagree; leave it.
                    return Err(Unsupported);
                }
                let v = s[..end].trim_end_matches(' ');
                Ok((Event::Scalar(Cow::Borrowed(v), Style::Plain), rest))
            }
            _ => Err(Unsupported),
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Chomp {
    Clip,
    Strip,
}

/// Folded scalar text: lines joined by spaces, each blank line a line break.
fn fold_blank_runs(text: &[&str]) -> String {
    let mut value = String::new();
    let mut blanks = 0;
    let mut first = true;
    for line in text {
        if line.is_empty() {
            blanks += 1;
            continue;
        }
        if !first {
            if blanks == 0 {
                value.push(' ');
            } else {
                value.extend(std::iter::repeat_n('\n', blanks));
            }
        }
        blanks = 0;
        first = false;
        value.push_str(line);
    }
    value
}

/// A plain scalar that is a block mapping's value or a sequence item: up to a comment,
/// trailing spaces dropped.
fn plain_in_block(rest: &str) -> Parsed<&str> {
    let b = rest.as_bytes()[0];
    // `-1` and `--flag` are plain; `key: - x` is an error.
    if (is_indicator(b) && b != b'-') || is_seq_item(rest) {
        return Err(Unsupported);
    }
    let v = match comment_start(rest) {
        Some(p) => &rest[..p],
        None => rest,
    };
    let v = v.trim_end_matches(' ');
    // Flow indicators and `: ` inside block plain scalars: left to libyaml.
    let b = v.as_bytes();
    let unsure = b.iter().enumerate().any(|(i, &c)| match c {
        b'[' | b']' | b'{' | b'}' => true,
        b':' => i + 1 == b.len() || b[i + 1] == b' ',
        _ => false,
    });
    if unsure {
        return Err(Unsupported);
    }
    Ok(v)
}

/// `key: rest` at the start of `content`. `Ok(None)`: the line is not a mapping entry.
fn split_key(content: &str) -> Parsed<Option<(Event<'_>, &str)>> {
    let b = content.as_bytes()[0];
    if b == b'"' || b == b'\'' {
        let (key, after) = quoted(content)?;
        let Some(rest) = after.strip_prefix(':') else {
            return Ok(None);
        };
        if !(rest.is_empty() || rest.starts_with(' ')) {
            return Ok(None);
        }
        return Ok(Some((Event::Scalar(key, Style::Other), rest)));
    }
    if b == b'[' || b == b'{' {
        // A flow collection; as a key (`{a: b}: c`) it fails as a value later.
        return Ok(None);
    }
    let bytes = content.as_bytes();
    let Some(colon) =
        memchr::memchr_iter(b':', bytes).find(|&i| i + 1 == bytes.len() || bytes[i + 1] == b' ')
    else {
        return Ok(None);
    };
    let key = content[..colon].trim_end_matches(' ');
    let unsure = is_indicator(b)
        || key.is_empty()
        || key.len() > MAX_KEY_LEN
        || key == "<<"
        || key
            .bytes()
            .any(|c| matches!(c, b'[' | b']' | b'{' | b'}' | b',' | b'#'));
    if unsure {
        // A comment before the colon makes the line something else entirely.
        return if comment_start(&content[..colon]).is_some() {
            Ok(None)
        } else {
            Err(Unsupported)
        };
    }
    Ok(Some((
        Event::Scalar(Cow::Borrowed(key), Style::Plain),
        &content[colon + 1..],
    )))
}

/// A quoted scalar closed on this line, and what follows it.
fn quoted(s: &str) -> Parsed<(Cow<'_, str>, &str)> {
    if s.starts_with('\'') {
        single_quoted(s)
    } else {
        double_quoted(s)
    }
}

fn single_quoted(s: &str) -> Parsed<(Cow<'_, str>, &str)> {
    let body = &s[1..];
    let mut out: Option<String> = None;
    let mut from = 0;
    let bytes = body.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\'' {
            if bytes.get(i + 1) == Some(&b'\'') {
                let o = out.get_or_insert_with(String::new);
                o.push_str(&body[from..=i]);
                i += 2;
                from = i;
                continue;
            }
            return Ok(quoted_end(body, out, from, i));
        }
        i += 1;
    }
    Err(Unsupported)
}

/// The value of a quoted scalar whose closing quote is at `body[close]`, and the rest of
/// the line: borrowed when nothing needed unescaping.
fn quoted_end<'a>(
    body: &'a str,
    unescaped: Option<String>,
    from: usize,
    close: usize,
) -> (Cow<'a, str>, &'a str) {
    let value = match unescaped {
        Some(mut o) => {
            o.push_str(&body[from..close]);
            Cow::Owned(o)
        }
        None => Cow::Borrowed(&body[..close]),
    };
    (value, &body[close + 1..])
}

fn double_quoted(s: &str) -> Parsed<(Cow<'_, str>, &str)> {
    let body = &s[1..];
    let mut out: Option<String> = None;
    let mut from = 0;
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                return Ok(quoted_end(body, out, from, i));
            }
            '\\' => {
                let o = out.get_or_insert_with(String::new);
                o.push_str(&body[from..i]);
                let (_, e) = chars.next().ok_or(Unsupported)?;
                let hex = |chars: &mut std::str::CharIndices<'_>, n: usize| -> Parsed<char> {
                    let mut v = 0u32;
                    for _ in 0..n {
                        let d = chars.next().and_then(|(_, c)| c.to_digit(16));
                        v = v * 16 + d.ok_or(Unsupported)?;
                    }
                    char::from_u32(v).ok_or(Unsupported)
                };
                let decoded = match e {
                    '\\' | '"' | '/' => e,
                    ' ' => ' ',
                    'n' => '\n',
                    't' => '\t',
                    'r' => '\r',
                    '0' => '\0',
                    'a' => '\u{7}',
                    'b' => '\u{8}',
                    'e' => '\u{1b}',
                    'f' => '\u{c}',
                    'v' => '\u{b}',
                    'N' => '\u{85}',
                    '_' => '\u{a0}',
                    'L' => '\u{2028}',
                    'P' => '\u{2029}',
                    'x' => hex(&mut chars, 2)?,
                    'u' => hex(&mut chars, 4)?,
                    'U' => hex(&mut chars, 8)?,
                    _ => return Err(Unsupported),
                };
                o.push(decoded);
                from = chars.offset();
            }
            _ => {}
        }
    }
    Err(Unsupported)
}
