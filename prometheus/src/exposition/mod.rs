//! The Prometheus exposition formats as the filter and the inventory need
//! them: one line at a time, borrowed, nothing re-serialised.
//!
//! [`reader`] cuts a chunked body into lines, carrying a partial line from
//! chunk to chunk and reporting lines too long to carry; [`line`]
//! classifies a line and finds its metric name and label section;
//! [`labels`] walks a label section (quote- and escape-aware) and decodes
//! values only when asked; [`family`] knows which sample names belong to a
//! declared family and how a TYPE word maps to the OTel vocabulary.
//!
//! This module never judges a line: it only says what the line is.

pub mod family;
pub mod labels;
pub mod line;
pub mod reader;
pub mod sniff;

pub use family::FamilyType;
pub use labels::{LabelIter, LabelPair, decode_escapes};
pub use line::{Line, MetaKind, Metadata, Name, Sample, parse_line};
pub use reader::{LineReader, Piece, Tail};

/// The text format of a scrape body, chosen from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Prometheus text 0.0.4 and 1.0.0.
    Text,
    /// OpenMetrics 1.0.0 / 0.0.1: `# UNIT`, `# EOF`, exemplars.
    OpenMetrics,
}

impl Format {
    /// The format a `Content-Type` announces, or `None` for bodies the
    /// filter must not parse (protobuf, anything unknown). A missing
    /// Content-Type is text 0.0.4, as Prometheus itself assumes.
    pub fn from_content_type(content_type: Option<&str>) -> Option<Format> {
        let Some(ct) = content_type else {
            return Some(Format::Text);
        };
        let media = ct.split(';').next().unwrap_or("").trim();
        if media.eq_ignore_ascii_case("text/plain") || media.is_empty() {
            Some(Format::Text)
        } else if media.eq_ignore_ascii_case("application/openmetrics-text") {
            Some(Format::OpenMetrics)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_pick_the_parser_and_refuse_protobuf() {
        assert_eq!(
            Format::from_content_type(Some("text/plain; version=0.0.4; charset=utf-8")),
            Some(Format::Text)
        );
        assert_eq!(
            Format::from_content_type(Some("application/openmetrics-text; version=1.0.0")),
            Some(Format::OpenMetrics)
        );
        assert_eq!(Format::from_content_type(None), Some(Format::Text));
        assert_eq!(
            Format::from_content_type(Some(
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            )),
            None
        );
        assert_eq!(Format::from_content_type(Some("application/json")), None);
    }
}
