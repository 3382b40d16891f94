//! Text that others wrote (messages, names, a relay's error) made safe to print on a
//! terminal: what a terminal would act on, or what reorders or hides text, is shown as an
//! escape instead, so a message can neither rewrite the screen nor pass for another line.

use std::borrow::Cow;

/// Whether `c` must not reach a terminal as it is: control characters (C0, DEL, C1) and the
/// Unicode controls that reorder text (bidirectional marks, embeddings, overrides, isolates)
/// or break lines.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{2028}'
                | '\u{2029}'
        )
}

fn escape_where(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !text.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) && !keep(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// `text` for one line: every unsafe character, newlines and tabs too, as a `\u{…}` escape.
pub fn line(text: &str) -> Cow<'_, str> {
    escape_where(text, |_| false)
}

/// `text` as a block: newlines and tabs kept, every other unsafe character escaped, and each
/// line after the first indented by `indent` so that it cannot pass for a line of its own.
pub fn block<'a>(text: &'a str, indent: &str) -> Cow<'a, str> {
    let escaped = escape_where(text, |c| c == '\n' || c == '\t');
    if !escaped.contains('\n') {
        return escaped;
    }
    Cow::Owned(escaped.replace('\n', &format!("\n{indent}")))
}

/// At most `max` characters of `text` for one line, "…" marking a cut.
pub fn short_line(text: &str, max: usize) -> String {
    let shown = line(text);
    let mut out: String = shown.chars().take(max).collect();
    if shown.chars().nth(max).is_some() {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_as_it_is() {
        for text in ["hello", "grüße, 你好 👋", ""] {
            assert!(matches!(line(text), Cow::Borrowed(t) if t == text));
            assert!(matches!(block(text, "  "), Cow::Borrowed(t) if t == text));
        }
    }

    #[test]
    fn escapes_carriage_returns_and_bidi_overrides_are_made_visible() {
        let hostile = "ok\u{1b}[2J\r[12:00] bob: fake\u{202e}txt.exe\u{7f}\u{9b}";
        let shown = line(hostile);
        assert_eq!(
            shown,
            "ok\\u{1b}[2J\\u{d}[12:00] bob: fake\\u{202e}txt.exe\\u{7f}\\u{9b}"
        );
        assert!(!shown.chars().any(is_unsafe));
        assert_eq!(line("a\nb\tc"), "a\\u{a}b\\u{9}c");
    }

    #[test]
    fn a_block_keeps_its_lines_indented_and_its_tabs() {
        assert_eq!(
            block("one\ntwo\tx\n\u{1b}three", "    "),
            "one\n    two\tx\n    \\u{1b}three"
        );
    }

    #[test]
    fn a_short_line_is_cut_with_a_mark() {
        assert_eq!(short_line("abcdef", 4), "abcd…");
        assert_eq!(short_line("abcd", 4), "abcd");
        assert_eq!(short_line("\u{1b}x", 3), "\\u{…");
    }
}
