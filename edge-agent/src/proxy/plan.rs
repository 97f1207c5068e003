//! What to do with upstream's answer, decided from its head and what the
//! client asked for, before a byte of the body is read.
//!
//! A pure decision, so the order of its rules (policies loaded? a 2xx? a
//! format the filter parses? an encoding someone can read?) is tested
//! here on plain values, and the handler only carries it out: relay the
//! body as it came, decode it for a client that cannot read what the Edge
//! asked for on its behalf, filter it, or refuse it with a 502.

use http::header::{self, HeaderValue};
use http::{HeaderMap, Method};

use super::negotiate;
use super::source::Encoding;
use crate::exposition::Format;
use crate::inventory::WireTee;
use crate::telemetry::Unfiltered;

/// Tells the client why a response ends early (`input` or `output`), in a
/// header when known before the body, else in a trailer.
pub const TRUNCATED_HEADER: &str = "x-edge-truncated";

/// What the client's request says about the response it takes.
#[derive(Debug, Clone, Default)]
pub struct ClientAsk {
    pub is_head: bool,
    pub accept_encoding: Option<String>,
    /// `TE: trailers`: the client reads trailers.
    pub reads_trailers: bool,
}

impl ClientAsk {
    pub fn of(method: &Method, headers: &HeaderMap) -> Self {
        ClientAsk {
            is_head: method == Method::HEAD,
            accept_encoding: headers
                .get(header::ACCEPT_ENCODING)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            reads_trailers: wants_trailers(headers),
        }
    }

    fn accepts(&self, coding: &str) -> bool {
        negotiate::encoding_quality(self.accept_encoding.as_deref(), coding) > 0.0
    }
}

/// What the scrape does with upstream's body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// As it came, headers and all; inventoried from its wire bytes when
    /// `inventory` names its format (no policies loaded).
    Relay {
        unfiltered: Unfiltered,
        inventory: Option<Format>,
    },
    /// Unfiltered, but decoded: the Edge asked upstream for an encoding
    /// the client does not take.
    Decode {
        unfiltered: Unfiltered,
        encoding: Encoding,
    },
    Filter(FilterPlan),
    /// A body whose Content-Type names no exposition format (typically
    /// `application/octet-stream`, as static file servers label it):
    /// filtered as text if its first line reads like the text format, as
    /// Prometheus 2 parses it, else relayed unfiltered.
    Sniff(FilterPlan),
    /// Nobody can read the body: a 502.
    Refuse(Refusal),
}

/// Why a body that reached the Edge cannot reach the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// A filterable body in an encoding neither the Edge nor the client
    /// decodes.
    Undecodable { coding: String },
    /// An unfiltered body in an encoding the Edge asked for on the
    /// client's behalf, which the client does not take and the Edge
    /// cannot decode.
    NotAccepted {
        unfiltered: Unfiltered,
        coding: String,
    },
}

/// How a filtered body is read and sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterPlan {
    pub format: Format,
    pub encoding: Encoding,
    /// The client takes gzip, so the output is compressed.
    pub gzip_out: bool,
    /// Known before the body: its declared length is over the input cap.
    pub truncated_up_front: bool,
    /// The truncation, if any, goes in a trailer the client reads.
    pub trailer: bool,
    /// The input cap may cut the body, so long lines are held until their
    /// end (a cut must land on a line boundary).
    pub may_cut: bool,
}

impl Plan {
    /// Decides from upstream's response head. `filtering`: metric policies
    /// are loaded (and upstream was asked for what the filter reads).
    /// `input_cap`: the decoded bytes a scrape may read, 0 for no cap.
    pub fn decide(
        filtering: bool,
        client: &ClientAsk,
        upstream: &http::response::Parts,
        input_cap: u64,
    ) -> Plan {
        let header =
            |name: header::HeaderName| upstream.headers.get(name).and_then(|v| v.to_str().ok());
        let success = upstream.status.is_success();
        let content_type = header(header::CONTENT_TYPE);
        let declared = Format::from_content_type(content_type);
        let coding = header(header::CONTENT_ENCODING);
        // Only a body the Edge can decode can be sniffed; any other is not
        // known to be an exposition and goes as it came.
        let sniff = filtering
            && success
            && declared.is_none()
            && is_sniffable(content_type)
            && Encoding::from_header(coding).is_some();
        let format = if sniff { Some(Format::Text) } else { declared };
        let unfiltered = match (filtering, success, format) {
            (false, _, _) => Some(Unfiltered::NoPolicies),
            (true, false, _) => Some(Unfiltered::Status),
            (true, true, None) => Some(Unfiltered::ContentType),
            (true, true, Some(_)) => None,
        };
        let (Some(format), None) = (format, unfiltered) else {
            let unfiltered = unfiltered.unwrap_or(Unfiltered::ContentType);
            return Self::unfiltered(filtering, client, success, format, coding, unfiltered);
        };
        let Some(encoding) = Encoding::from_header(coding) else {
            let coding = coding.unwrap_or_default();
            if client.accepts(coding) {
                return Plan::Relay {
                    unfiltered: Unfiltered::Encoding,
                    inventory: None,
                };
            }
            return Plan::Refuse(Refusal::Undecodable {
                coding: coding.to_owned(),
            });
        };
        let declared_len = header(header::CONTENT_LENGTH).and_then(|v| v.parse::<u64>().ok());
        let truncated_up_front = encoding == Encoding::Identity
            && input_cap > 0
            && declared_len.is_some_and(|l| l > input_cap);
        let plan = FilterPlan {
            format,
            encoding,
            gzip_out: negotiate::accepts_gzip(client.accept_encoding.as_deref()),
            truncated_up_front,
            // HTTP/1.1 sends a trailer only when the client said it reads
            // them and the response announced it.
            trailer: !truncated_up_front && client.reads_trailers,
            // Always, except for an identity body whose length is known to
            // fit.
            may_cut: input_cap > 0
                && !(encoding == Encoding::Identity
                    && declared_len.is_some_and(|l| l <= input_cap)),
        };
        if sniff {
            Plan::Sniff(plan)
        } else {
            Plan::Filter(plan)
        }
    }

    /// An unfiltered body is relayed as it came unless the Edge asked for
    /// an encoding on the client's behalf that the client does not take:
    /// then it is decoded, or refused if the Edge cannot.
    fn unfiltered(
        filtering: bool,
        client: &ClientAsk,
        success: bool,
        format: Option<Format>,
        coding: Option<&str>,
        unfiltered: Unfiltered,
    ) -> Plan {
        let encoded = coding
            .map(|v| v.trim().to_ascii_lowercase())
            .filter(|v| !v.is_empty() && v != "identity");
        if let Some(coding) = encoded.filter(|c| filtering && !client.accepts(c)) {
            return match Encoding::from_header(Some(&coding)) {
                Some(encoding) => Plan::Decode {
                    unfiltered,
                    encoding,
                },
                None => Plan::Refuse(Refusal::NotAccepted { unfiltered, coding }),
            };
        }
        // Without policies the body passes as it came; the inventory reads
        // it on the side (from its wire bytes, so identity or gzip only).
        let inventory = format
            .filter(|_| !filtering && !client.is_head && success && WireTee::supports(coding));
        Plan::Relay {
            unfiltered,
            inventory,
        }
    }

    /// Why the body goes out unfiltered, if it does.
    pub fn unfiltered_reason(&self) -> Option<Unfiltered> {
        match self {
            Plan::Relay { unfiltered, .. }
            | Plan::Decode { unfiltered, .. }
            | Plan::Refuse(Refusal::NotAccepted { unfiltered, .. }) => Some(*unfiltered),
            Plan::Filter(_) | Plan::Sniff(_) | Plan::Refuse(Refusal::Undecodable { .. }) => None,
        }
    }
}

impl FilterPlan {
    /// The response head's headers: upstream's, without the length and
    /// encoding the filter changes, plus what the client needs to read the
    /// output.
    pub fn headers(&self, upstream: &HeaderMap) -> HeaderMap {
        let mut headers = upstream.clone();
        headers.remove(header::CONTENT_LENGTH);
        headers.remove(header::CONTENT_ENCODING);
        headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
        if self.gzip_out {
            headers.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        if self.truncated_up_front {
            headers.insert(TRUNCATED_HEADER, HeaderValue::from_static("input"));
        } else if self.trailer {
            headers.insert(header::TRAILER, HeaderValue::from_static(TRUNCATED_HEADER));
        }
        headers
    }
}

/// The headers of a body decoded for the client.
pub fn decoded_headers(headers: &mut HeaderMap) {
    headers.remove(header::CONTENT_ENCODING);
    headers.remove(header::CONTENT_LENGTH);
    headers.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
}

/// Whether a body of this Content-Type may be an exposition served under
/// the wrong type. Protobuf is what it says; anything else is looked at
/// (a JSON or HTML body fails the look and passes as it came).
fn is_sniffable(content_type: Option<&str>) -> bool {
    let media = content_type
        .and_then(|ct| ct.split(';').next())
        .unwrap_or_default()
        .trim();
    !media.eq_ignore_ascii_case("application/vnd.google.protobuf")
}

/// True if the client reads trailers (`TE: trailers`).
fn wants_trailers(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| {
            t.split(';')
                .next()
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))
        })
}

#[cfg(test)]
mod tests {
    use http::Response;
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

        #[test]
        fn any_te_header_is_read_without_panicking(te in prop::collection::vec(any::<u8>(), 0..64)) {
            let mut h = HeaderMap::new();
            if let Ok(v) = HeaderValue::from_bytes(&te) {
                h.insert(header::TE, v);
            }
            let _ = wants_trailers(&h);
        }
    }

    const TEXT: &str = "text/plain; version=0.0.4";

    fn head(status: u16, headers: &[(&str, &str)]) -> http::response::Parts {
        let mut resp = Response::builder().status(status);
        for (k, v) in headers {
            resp = resp.header(*k, *v);
        }
        resp.body(()).unwrap().into_parts().0
    }

    fn client(accept_encoding: Option<&str>) -> ClientAsk {
        ClientAsk {
            accept_encoding: accept_encoding.map(str::to_owned),
            ..ClientAsk::default()
        }
    }

    #[test]
    fn without_policies_the_body_is_relayed_and_inventoried_if_readable() {
        let up = head(200, &[("content-type", TEXT), ("content-encoding", "gzip")]);
        assert_eq!(
            Plan::decide(false, &client(None), &up, 0),
            Plan::Relay {
                unfiltered: Unfiltered::NoPolicies,
                inventory: Some(Format::Text)
            }
        );
        let up = head(200, &[("content-type", TEXT), ("content-encoding", "br")]);
        assert_eq!(
            Plan::decide(false, &client(None), &up, 0),
            Plan::Relay {
                unfiltered: Unfiltered::NoPolicies,
                inventory: None
            }
        );
    }

    #[test]
    fn an_error_status_is_relayed_or_decoded_for_the_client() {
        let up = head(500, &[("content-type", TEXT), ("content-encoding", "gzip")]);
        assert_eq!(
            Plan::decide(true, &client(Some("gzip")), &up, 0),
            Plan::Relay {
                unfiltered: Unfiltered::Status,
                inventory: None
            }
        );
        assert_eq!(
            Plan::decide(true, &client(Some("identity")), &up, 0),
            Plan::Decode {
                unfiltered: Unfiltered::Status,
                encoding: Encoding::Gzip
            }
        );
    }

    #[test]
    fn an_encoding_nobody_reads_is_refused() {
        let up = head(200, &[("content-type", TEXT), ("content-encoding", "br")]);
        assert_eq!(
            Plan::decide(true, &client(Some("br")), &up, 0),
            Plan::Relay {
                unfiltered: Unfiltered::Encoding,
                inventory: None
            }
        );
        assert_eq!(
            Plan::decide(true, &client(Some("gzip")), &up, 0),
            Plan::Refuse(Refusal::Undecodable {
                coding: "br".into()
            })
        );
        let up = head(
            200,
            &[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "br"),
            ],
        );
        assert_eq!(
            Plan::decide(true, &client(Some("gzip")), &up, 0),
            Plan::Refuse(Refusal::NotAccepted {
                unfiltered: Unfiltered::ContentType,
                coding: "br".into()
            })
        );
    }

    #[test]
    fn an_unnamed_format_is_sniffed_only_when_filtering_a_success() {
        let octets = head(200, &[("content-type", "application/octet-stream")]);
        let Plan::Sniff(plan) = Plan::decide(true, &client(None), &octets, 0) else {
            panic!("sniffed");
        };
        assert_eq!(plan.format, Format::Text);
        assert_eq!(
            Plan::decide(false, &client(None), &octets, 0).unfiltered_reason(),
            Some(Unfiltered::NoPolicies)
        );
        let failed = head(500, &[("content-type", "application/octet-stream")]);
        assert_eq!(
            Plan::decide(true, &client(None), &failed, 0).unfiltered_reason(),
            Some(Unfiltered::Status)
        );
        let protobuf = head(
            200,
            &[("content-type", "application/vnd.google.protobuf; proto=x")],
        );
        assert_eq!(
            Plan::decide(true, &client(None), &protobuf, 0).unfiltered_reason(),
            Some(Unfiltered::ContentType)
        );
        // An encoding the Edge cannot read is not refused for a body that
        // may not be an exposition at all.
        let br = head(
            200,
            &[
                ("content-type", "application/octet-stream"),
                ("content-encoding", "br"),
            ],
        );
        assert_eq!(
            Plan::decide(true, &client(Some("br")), &br, 0).unfiltered_reason(),
            Some(Unfiltered::ContentType)
        );
    }

    #[test]
    fn a_declared_length_over_the_cap_is_announced_in_a_header() {
        let up = head(200, &[("content-type", TEXT), ("content-length", "2000")]);
        let ask = ClientAsk {
            reads_trailers: true,
            ..client(Some("gzip"))
        };
        let Plan::Filter(over) = Plan::decide(true, &ask, &up, 1000) else {
            panic!("filtered");
        };
        assert!(over.truncated_up_front && !over.trailer && over.may_cut && over.gzip_out);
        let headers = over.headers(&up.headers);
        assert_eq!(headers[TRUNCATED_HEADER], "input");
        assert_eq!(headers[header::CONTENT_ENCODING], "gzip");
        assert!(headers.get(header::CONTENT_LENGTH).is_none());

        let Plan::Filter(fits) = Plan::decide(true, &ask, &up, 4000) else {
            panic!("filtered");
        };
        assert!(!fits.truncated_up_front && fits.trailer && !fits.may_cut);
        assert_eq!(fits.headers(&up.headers)[header::TRAILER], TRUNCATED_HEADER);
    }
}
