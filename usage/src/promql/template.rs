//! Grafana template variables inside an expression: found in each of
//! Grafana's syntaxes and replaced, before parsing, by something that
//! parses where the variable stands.

use std::sync::OnceLock;

use regex::Regex;

use super::{Templating, VariableHint, is_ident_byte};

const PLACEHOLDER_PREFIX: &str = "__tero_var_";
const PLACEHOLDER_SUFFIX: &str = "__";
/// What a variable becomes inside `[...]` or after `offset`.
const DURATION_STANDIN: &str = "5m";
/// What a numeric variable becomes.
const NUMBER_STANDIN: &str = "1";

pub(super) fn placeholder_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        // A literal pattern: cannot fail to compile.
        Regex::new(r"__tero_var_([0-9]+)__").expect("a literal regex compiles")
    })
}

pub(super) struct Substituted {
    pub(super) text: String,
    /// Placeholder index → the variable's name.
    pub(super) variables: Vec<String>,
    /// Whether a bare variable was turned into a number because of the
    /// `bare_numbers` retry (if none was, the retry is pointless).
    pub(super) changed_bare: bool,
}

/// A template variable found at some position of the text.
pub(super) struct VariableToken {
    pub(super) name: String,
    /// Bytes it spans.
    pub(super) len: usize,
}

/// Recognises Grafana's three variable syntaxes at `at` (the same forms as
/// Grafana's own interpolation regex).
pub(super) fn variable_at(text: &str, at: usize) -> Option<VariableToken> {
    let rest = &text[at..];
    let word_len = |s: &str| {
        s.bytes()
            .take_while(|b| b.is_ascii_alphanumeric() || *b == b'_')
            .count()
    };
    if let Some(after) = rest.strip_prefix("${") {
        let name_len = word_len(after);
        let close = after.find('}')?;
        if name_len == 0 || close < name_len || after[name_len..close].contains('{') {
            return None;
        }
        let tail = &after[name_len..close];
        if !(tail.is_empty() || tail.starts_with(':') || tail.starts_with('.')) {
            return None;
        }
        return Some(VariableToken {
            name: after[..name_len].to_string(),
            len: 2 + close + 1,
        });
    }
    if let Some(after) = rest.strip_prefix('$') {
        let name_len = word_len(after);
        let name = &after[..name_len];
        // `$1` is a regex group reference in `label_replace`, not a variable.
        if name_len == 0 || name.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        return Some(VariableToken {
            name: name.to_string(),
            len: 1 + name_len,
        });
    }
    if let Some(after) = rest.strip_prefix("[[") {
        let name_len = word_len(after);
        if name_len == 0 {
            return None;
        }
        let mut tail = &after[name_len..];
        if let Some(fmt) = tail.strip_prefix(':') {
            let fmt_len = word_len(fmt);
            if fmt_len == 0 {
                return None;
            }
            tail = &fmt[fmt_len..];
        }
        if !tail.starts_with("]]") {
            return None;
        }
        let len = rest.len() - tail.len() + 2;
        return Some(VariableToken {
            name: after[..name_len].to_string(),
            len,
        });
    }
    None
}

pub(super) fn is_builtin(name: &str) -> bool {
    name.starts_with("__")
}

/// Replaces every template variable with something that parses where it
/// stands: a duration in ranges and after `offset`, a number where the
/// variable is known (or, on retry, guessed) to be one, a numbered
/// placeholder identifier elsewhere, so a variable in a name position stays
/// recognisable after parsing.
pub(super) fn substitute(text: &str, templating: &Templating, bare_numbers: bool) -> Substituted {
    let mut out = Substituted {
        text: String::with_capacity(text.len() + 16),
        variables: Vec::new(),
        changed_bare: false,
    };
    if !templating.enabled {
        out.text.push_str(text);
        return out;
    }
    #[derive(PartialEq)]
    enum Last {
        Offset,
        At,
        Other,
    }
    let bytes = text.as_bytes();
    let mut quote: Option<u8> = None;
    let mut brackets = 0usize;
    let mut last = Last::Other;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(q) = quote {
            if let Some(var) = variable_at(text, i) {
                push_placeholder(&mut out, var.name);
                i += var.len;
                continue;
            }
            if b == b'\\' && q != b'`' {
                let next = text[i + 1..].chars().next().map_or(0, char::len_utf8);
                out.text.push_str(&text[i..i + 1 + next]);
                i += 1 + next;
                continue;
            }
            if b == q {
                quote = None;
            }
            let len = text[i..].chars().next().map_or(1, char::len_utf8);
            out.text.push_str(&text[i..i + len]);
            i += len;
            continue;
        }
        if let Some(var) = variable_at(text, i) {
            let before = i.checked_sub(1).map(|p| bytes[p]);
            let after = bytes.get(i + var.len).copied();
            let glued = before.is_some_and(is_ident_byte) || after.is_some_and(is_ident_byte);
            let next_sig = text[i + var.len..].trim_start().bytes().next();
            let names_something = matches!(next_sig, Some(b'{') | Some(b'['));
            if brackets > 0 || last == Last::Offset {
                out.text.push_str(DURATION_STANDIN);
            } else if last == Last::At {
                out.text.push_str(NUMBER_STANDIN);
            } else if is_builtin(&var.name) && !glued {
                // `$__interval_ms`, `$__range_s`: numbers, never metric names.
                out.text.push_str(NUMBER_STANDIN);
            } else if !glued && templating.hint(&var.name) == Some(&VariableHint::Number) {
                out.text.push_str(NUMBER_STANDIN);
            } else if bare_numbers && !glued && !names_something {
                out.text.push_str(NUMBER_STANDIN);
                out.changed_bare = true;
            } else {
                push_placeholder(&mut out, var.name);
            }
            last = Last::Other;
            i += var.len;
            continue;
        }
        match b {
            b'"' | b'\'' | b'`' => {
                quote = Some(b);
                last = Last::Other;
            }
            b'#' => {
                // A comment runs to the end of the line; variables in it are
                // irrelevant.
                let end = text[i..].find('\n').map_or(text.len(), |n| i + n);
                out.text.push_str(&text[i..end]);
                i = end;
                continue;
            }
            b'[' => {
                brackets += 1;
                last = Last::Other;
            }
            b']' => {
                brackets = brackets.saturating_sub(1);
                last = Last::Other;
            }
            b'@' => last = Last::At,
            b'-' if last == Last::Offset => {}
            b if b.is_ascii_whitespace() => {}
            b if is_ident_byte(b) => {
                let len = bytes[i..].iter().take_while(|b| is_ident_byte(**b)).count();
                let word = &text[i..i + len];
                last = if word.eq_ignore_ascii_case("offset") {
                    Last::Offset
                } else {
                    Last::Other
                };
                out.text.push_str(word);
                i += len;
                continue;
            }
            _ => last = Last::Other,
        }
        let len = text[i..].chars().next().map_or(1, char::len_utf8);
        out.text.push_str(&text[i..i + len]);
        i += len;
    }
    out
}

fn push_placeholder(out: &mut Substituted, name: String) {
    let index = out.variables.len();
    out.variables.push(name);
    out.text.push_str(PLACEHOLDER_PREFIX);
    out.text.push_str(&index.to_string());
    out.text.push_str(PLACEHOLDER_SUFFIX);
}

pub(super) fn variable_in(text: &str) -> bool {
    (0..text.len()).any(|i| text.is_char_boundary(i) && variable_at(text, i).is_some())
}
