//! A cluster's template as the miner matches it: masked tokens, some of
//! them wildcards.
//!
//! A position where lines differ becomes a wildcard that keeps what the
//! differing tokens share up to a punctuation boundary: `user=alice` and
//! `user=bob` give `user=<*>`, `db-3` and `db-7` give `db-<*>`,
//! `node1.example.com` and `node2.example.com` give `<*>.example.com`. A
//! wildcard matches any token with its prefix and suffix, so `<*>` alone
//! matches anything, as in classic Drain.

use super::mask::MaskedLine;

pub(crate) const WILDCARD: &str = "<*>";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Tok {
    start: u32,
    end: u32,
    /// `Some((prefix, suffix))` byte lengths of a wildcard's fixed ends.
    wild: Option<(u32, u32)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Pattern {
    text: String,
    toks: Vec<Tok>,
}

/// How a line compares to a pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Score {
    /// Positions that match, equal or under a wildcard.
    pub(crate) matched: usize,
    /// Positions equal without a wildcard: the tie-break, so that the most
    /// specific of two matching templates wins.
    pub(crate) exact: usize,
}

impl Pattern {
    pub(crate) fn from_line(line: &MaskedLine) -> Self {
        let mut p = Pattern {
            text: String::with_capacity(line.text.len()),
            toks: Vec::with_capacity(line.len()),
        };
        for i in 0..line.len() {
            let t = line.token(i);
            // A line token reading `<*>` is the tail of a truncated line.
            let wild = (t == WILDCARD).then_some((0, 0));
            p.push(t, wild);
        }
        p
    }

    fn push(&mut self, text: &str, wild: Option<(u32, u32)>) {
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        let start = self.text.len() as u32;
        self.text.push_str(text);
        self.toks.push(Tok {
            start,
            end: self.text.len() as u32,
            wild,
        });
    }

    pub(crate) fn text(&self) -> &str {
        &self.text
    }

    pub(crate) fn token_count(&self) -> usize {
        self.toks.len()
    }

    fn tok_text(&self, t: Tok) -> &str {
        &self.text[t.start as usize..t.end as usize]
    }

    /// Whether `tok` (the pattern's) accepts `other`, and exactly so.
    fn accepts(&self, t: Tok, other: &str) -> Option<bool> {
        let text = self.tok_text(t);
        match t.wild {
            None => (text == other).then_some(true),
            Some((pre, suf)) => {
                let (pre, suf) = (pre as usize, suf as usize);
                let ok = other.len() >= pre + suf
                    && other.as_bytes().starts_with(&text.as_bytes()[..pre])
                    && other
                        .as_bytes()
                        .ends_with(&text.as_bytes()[text.len() - suf..]);
                ok.then_some(false)
            }
        }
    }

    pub(crate) fn score(&self, line: &MaskedLine) -> Score {
        let mut score = Score {
            matched: 0,
            exact: 0,
        };
        for (i, t) in self.toks.iter().enumerate() {
            match self.accepts(*t, line.token(i)) {
                Some(true) => {
                    score.matched += 1;
                    score.exact += 1;
                }
                Some(false) => score.matched += 1,
                None => {}
            }
        }
        score
    }

    /// Every position matches: the line needs no change to the pattern.
    pub(crate) fn matches_fully(&self, line: &MaskedLine) -> bool {
        self.toks.len() == line.len()
            && self
                .toks
                .iter()
                .enumerate()
                .all(|(i, t)| self.accepts(*t, line.token(i)).is_some())
    }

    /// Generalises the positions where `line` differs; true if the pattern
    /// changed.
    pub(crate) fn absorb(&mut self, line: &MaskedLine) -> bool {
        if self.matches_fully(line) {
            return false;
        }
        let mut next = Pattern {
            text: String::with_capacity(self.text.len()),
            toks: Vec::with_capacity(self.toks.len()),
        };
        for (i, t) in self.toks.iter().enumerate() {
            let other = line.token(i);
            if self.accepts(*t, other).is_some() {
                next.push(self.tok_text(*t), t.wild);
                continue;
            }
            let text = self.tok_text(*t);
            let (pre_src, suf_src) = match t.wild {
                Some((pre, suf)) => (&text[..pre as usize], &text[text.len() - suf as usize..]),
                None => (text, text),
            };
            let pre = common_prefix(pre_src, other);
            let mut suf = common_suffix(suf_src, other);
            // The fixed ends may not overlap in the shorter token.
            let room = other.len().min(text.len()).saturating_sub(pre);
            while suf > room {
                suf = common_suffix(&suf_src[suf_src.len() - suf + 1..], other);
            }
            let merged = format!(
                "{}{WILDCARD}{}",
                &pre_src[..pre],
                &suf_src[suf_src.len() - suf..]
            );
            next.push(&merged, Some((pre as u32, suf as u32)));
        }
        let changed = next != *self;
        *self = next;
        changed
    }

    /// True when every line this pattern's `other` accepts is accepted by
    /// this one.
    pub(crate) fn subsumes(&self, other: &Pattern) -> bool {
        self.toks.len() == other.toks.len()
            && self.toks.iter().zip(&other.toks).all(|(mine, theirs)| {
                match (mine.wild, theirs.wild) {
                    (None, Some(_)) => false,
                    // A wildcard accepting the other's text (prefix and
                    // suffix included) accepts all it accepts.
                    _ => self.accepts(*mine, other.tok_text(*theirs)).is_some(),
                }
            })
    }
}

/// Bytes that may end a wildcard's fixed prefix or start its suffix:
/// punctuation (but not the `<` `>` `*` of placeholders), and the spaces
/// inside quoted tokens.
fn is_boundary(c: u8) -> bool {
    (c.is_ascii_punctuation() && !matches!(c, b'<' | b'>' | b'*')) || c.is_ascii_whitespace()
}

/// The longest common prefix of `a` and `b` that ends just after a
/// boundary byte and not inside a placeholder.
fn common_prefix(a: &str, b: &str) -> usize {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut n = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    while n > 0 && (!is_boundary(a[n - 1]) || inside_placeholder(&a[..n])) {
        n -= 1;
    }
    n
}

/// As [`common_prefix`], from the end.
fn common_suffix(a: &str, b: &str) -> usize {
    let (ab, bb) = (a.as_bytes(), b.as_bytes());
    let mut n = ab
        .iter()
        .rev()
        .zip(bb.iter().rev())
        .take_while(|(x, y)| x == y)
        .count();
    while n > 0 {
        let s = &ab[ab.len() - n..];
        let opens_inside = s
            .iter()
            .position(|c| *c == b'>')
            .is_some_and(|close| s[..close].iter().all(|c| *c != b'<'));
        if is_boundary(s[0]) && !opens_inside {
            break;
        }
        n -= 1;
    }
    n
}

/// True when `prefix` stops between a placeholder's `<` and its `>`.
fn inside_placeholder(prefix: &[u8]) -> bool {
    match prefix.iter().rposition(|c| *c == b'<') {
        Some(open) => !prefix[open..].contains(&b'>'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(body: &str) -> MaskedLine {
        let mut l = MaskedLine::default();
        l.fill(body);
        l
    }

    fn absorbed(a: &str, b: &str) -> String {
        let mut p = Pattern::from_line(&line(a));
        p.absorb(&line(b));
        p.text().to_owned()
    }

    #[test]
    fn differing_positions_keep_shared_punctuated_ends() {
        assert_eq!(absorbed("user=alice x", "user=bob x"), "user=<*> x");
        assert_eq!(absorbed("to db-3 ok", "to db-7 ok"), "to db-<*> ok");
        assert_eq!(
            absorbed("node1.example.com", "node2.example.com"),
            "<*>.example.com"
        );
        assert_eq!(absorbed("k=0x1f", "k=10.0.0.1"), "k=<*>");
        assert_eq!(absorbed("alice", "bob"), "<*>");
        assert_eq!(absorbed("a=b=c", "a=c"), "a=<*>");
        assert_eq!(absorbed("abc", "abc,"), "<*>");
        assert_eq!(
            absorbed("ids=[1,2]", "ids=[1,2,3]"),
            "ids=[<num>,<*>]",
            "the masked lists <num>,<num> and <num>,<num>,<num>"
        );
        assert_eq!(
            absorbed(r#""user":"al","#, r#""user":"bo","#),
            r#""user":"<*>","#
        );
        assert_eq!(
            absorbed(
                r#""GET /s/app.js HTTP/1.1""#,
                r#""GET /s/logo.png HTTP/1.1""#
            ),
            r#""GET /s/<*> HTTP/<num>""#
        );
    }

    #[test]
    fn wildcards_match_and_narrow() {
        let mut p = Pattern::from_line(&line("user=alice from x"));
        assert!(p.absorb(&line("user=bob from x")));
        assert!(p.matches_fully(&line("user=carol from x")));
        assert!(!p.matches_fully(&line("name=carol from x")));
        assert_eq!(
            p.score(&line("name=carol from y")),
            Score {
                matched: 1,
                exact: 1
            }
        );
        assert!(p.absorb(&line("name=carol from x")));
        assert_eq!(p.text(), "<*> from x");
        assert!(!p.absorb(&line("anything from x")));
    }

    #[test]
    fn subsumption() {
        let mut general = Pattern::from_line(&line("user=alice from x"));
        general.absorb(&line("user=bob from x"));
        let specific = Pattern::from_line(&line("user=carol from x"));
        assert!(general.subsumes(&specific));
        assert!(!specific.subsumes(&general));
        assert!(general.subsumes(&general.clone()));
        let mut any = Pattern::from_line(&line("a from x"));
        any.absorb(&line("b from x"));
        assert!(any.subsumes(&general));
        assert!(!general.subsumes(&any));
    }
}
