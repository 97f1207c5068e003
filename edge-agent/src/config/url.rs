//! URLs in a config: parsed and completed with their default path, and
//! shown only with their credentials masked.

use super::*;

/// `url` as it may be shown (error bodies, logs, `--check-config`):
/// credentials it can carry are masked. Userinfo becomes `***`, every query
/// value `***` (names stay, they say what was configured), a fragment
/// `***`. Works on text that is not a valid URL, so config errors can show
/// what was written without its secrets.
pub fn redact_url(url: &str) -> String {
    let (head, fragment) = match url.split_once('#') {
        Some((h, _)) => (h, true),
        None => (url, false),
    };
    let (head, query) = match head.split_once('?') {
        Some((h, q)) => (h, Some(q)),
        None => (head, None),
    };
    let (scheme, rest) = match head.find("://") {
        Some(i) => head.split_at(i + 3),
        None => ("", head),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            out.push_str("***@");
            out.push_str(&rest[at + 1..]);
        }
        None => out.push_str(rest),
    }
    if let Some(query) = query {
        out.push('?');
        let masked: Vec<String> = query
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((name, _)) => format!("{name}=***"),
                None if pair.is_empty() => String::new(),
                None => "***".to_owned(),
            })
            .collect();
        out.push_str(&masked.join("&"));
    }
    if fragment {
        out.push_str("#***");
    }
    out
}

/// Displays a URL through [`redact_url`].
pub struct Redacted<'a>(pub &'a Uri);

impl std::fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&redact_url(&self.0.to_string()))
    }
}

/// A control plane's URL (http:// or https://), with `default_path` added
/// when it has none.
pub(super) fn server_url(key: &str, url: &str, default_path: &str) -> Result<Uri, ConfigError> {
    absolute_url(key, url, default_path)
}

/// An upstream URL: http:// (the application's port on loopback or the
/// pod network) or https:// (a push destination, such as a vendor's
/// intake), with `default_path` added when it has none.
pub(super) fn upstream_url(key: &str, url: &str, default_path: &str) -> Result<Uri, ConfigError> {
    absolute_url(key, url, default_path)
}

pub(super) fn absolute_url(key: &str, url: &str, default_path: &str) -> Result<Uri, ConfigError> {
    let uri: Uri = url.parse().map_err(|e| {
        ConfigError::key(
            key,
            format!("{:?} is not a valid URL: {e}", redact_url(url)),
        )
    })?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) {
        return Err(ConfigError::key(
            key,
            format!(
                "{:?} must be an absolute http:// or https:// URL",
                redact_url(url)
            ),
        ));
    }
    if uri.authority().is_none() {
        return Err(ConfigError::key(
            key,
            format!("{:?} has no host", redact_url(url)),
        ));
    }
    let has_path = !matches!(uri.path(), "" | "/");
    if has_path {
        return Ok(uri);
    }
    let query = uri.query().map(|q| format!("?{q}")).unwrap_or_default();
    let full = format!(
        "{}://{}{}{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        default_path,
        query
    );
    full.parse()
        .map_err(|e| ConfigError::key(key, format!("{:?}: {e}", redact_url(url))))
}
