//! Datadog tags: `key:value` strings, split at the first `:` (a tag without
//! one is a key with an empty value), in a series' `tags` array or a log's
//! comma-separated `ddtags`.

/// A tag's key and value.
pub(crate) fn split(tag: &str) -> (&str, &str) {
    let tag = tag.trim();
    tag.split_once(':').unwrap_or((tag, ""))
}

/// The value of the first tag keyed `key` in a `ddtags` list.
pub(crate) fn find<'t>(list: &'t str, key: &str) -> Option<&'t str> {
    list.split(',')
        .map(split)
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

fn join(pieces: &[String]) -> String {
    pieces.join(",")
}

fn pieces(list: &str) -> Vec<String> {
    if list.is_empty() {
        return Vec::new();
    }
    list.split(',').map(str::to_owned).collect()
}

/// `list` without the tags keyed `key`; `None` when it has none.
pub(crate) fn remove(list: &str, key: &str) -> Option<String> {
    let mut pieces = pieces(list);
    let before = pieces.len();
    pieces.retain(|p| split(p).0 != key);
    (pieces.len() != before).then(|| join(&pieces))
}

/// `list` with the tag `key` set to `value`: the first such tag replaced
/// when `overwrite`, or a tag appended when there is none. `None` when
/// nothing changes.
pub(crate) fn set(list: &str, key: &str, value: &str, overwrite: bool) -> Option<String> {
    let mut pieces = pieces(list);
    let tag = format!("{key}:{value}");
    match pieces.iter().position(|p| split(p).0 == key) {
        Some(_) if !overwrite => return None,
        Some(at) => pieces[at] = tag,
        None => pieces.push(tag),
    }
    Some(join(&pieces))
}

/// `list` with the first tag keyed `from` keyed `to` instead (tags keyed
/// `to` replaced when `upsert`). `None` when nothing changes.
pub(crate) fn rename(list: &str, from: &str, to: &str, upsert: bool) -> Option<String> {
    let mut pieces = pieces(list);
    let at = pieces.iter().position(|p| split(p).0 == from)?;
    let taken = pieces.iter().any(|p| split(p).0 == to);
    if taken && !upsert {
        return None;
    }
    let value = split(&pieces[at]).1.to_owned();
    pieces[at] = if value.is_empty() {
        to.to_owned()
    } else {
        format!("{to}:{value}")
    };
    if taken {
        let mut seen = false;
        let renamed = pieces[at].clone();
        pieces.retain(|p| {
            if *p == renamed && !seen {
                seen = true;
                return true;
            }
            split(p).0 != to
        });
    }
    Some(join(&pieces))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_split_at_the_first_colon() {
        assert_eq!(split("env:prod"), ("env", "prod"));
        assert_eq!(split("url:http://x:80"), ("url", "http://x:80"));
        assert_eq!(split("flag"), ("flag", ""));
        assert_eq!(find("env:prod, team:core,flag", "team"), Some("core"));
        assert_eq!(find("env:prod,flag", "flag"), Some(""));
        assert_eq!(find("env:prod", "team"), None);
    }

    #[test]
    fn edits_keep_the_other_tags_as_written() {
        assert_eq!(
            remove("a:1,b:2,a:3", "a").as_deref(),
            Some("b:2"),
            "every tag with the key goes"
        );
        assert_eq!(remove("a:1", "b"), None);
        assert_eq!(set("a:1,b:2", "b", "x", false), None);
        assert_eq!(set("a:1,b:2", "b", "x", true).as_deref(), Some("a:1,b:x"));
        assert_eq!(set("", "c", "3", false).as_deref(), Some("c:3"));
        assert_eq!(
            rename("a:1,b:2", "a", "c", false).as_deref(),
            Some("c:1,b:2")
        );
        assert_eq!(rename("a:1,b:2", "a", "b", false), None);
        assert_eq!(rename("a:1,b:2", "a", "b", true).as_deref(), Some("b:1"));
        assert_eq!(rename("a:1", "z", "b", true), None);
    }
}
