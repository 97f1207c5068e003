//! The two things a scrape body does to upstream's bytes: pass them on
//! ([`Identity`], for relays and bodies decoded for the client) or filter
//! them through the loaded policies and compress what is kept
//! ([`Filtering`]).
//!
//! Each also feeds the metric inventory when the scrape was chosen for
//! one, since each sees the bytes in the form the inventory reads: a relay
//! its wire bytes, a filter its decoded input before any policy applies.

use std::io::Write as _;
use std::sync::Arc;

use bytes::Bytes;
use flate2::Compression;
use flate2::write::GzEncoder;
use http::HeaderMap;
use http::header::HeaderValue;
use hyper::body::Frame;
use tero_prometheus::inventory::ScrapeInventory;

use super::body::{Flow, Frames, Transform};
use super::plan::TRUNCATED_HEADER;
use crate::filter::{Limit, ScrapeFilter};
use crate::inventory::{Inventory, WireTee};
use crate::registry::PolicyRegistry;
use crate::telemetry::{EdgeMetrics, ScrapeResult};

/// Upstream's frames, unchanged.
pub struct Identity {
    status_ok: bool,
    /// Inventories the body from its wire bytes, when it is due.
    tee: Option<(WireTee, Arc<Inventory>)>,
}

impl Identity {
    /// `status_ok`: upstream answered 2xx, so a complete body is a
    /// successful scrape.
    pub fn new(status_ok: bool, tee: Option<(WireTee, Arc<Inventory>)>) -> Self {
        Identity { status_ok, tee }
    }
}

impl Transform for Identity {
    fn push(&mut self, frame: Frame<Bytes>, out: &mut Frames) -> Flow {
        if let (Some(data), Some((tee, _))) = (frame.data_ref(), &mut self.tee) {
            tee.push(data);
        }
        out.push_back(frame);
        Flow::More
    }

    fn finish(&mut self, _out: &mut Frames) -> ScrapeResult {
        if let Some((tee, inventory)) = self.tee.take()
            && let Some(mut scrape) = tee.finish()
        {
            scrape.finish();
            inventory.absorb(scrape);
        }
        if self.status_ok {
            ScrapeResult::Ok
        } else {
            ScrapeResult::UpstreamError
        }
    }

    fn abandon(&mut self) {
        self.tee = None;
    }

    /// What passed is what was read, decoded if upstream's encoding was
    /// one the client does not take.
    fn account(&self, metrics: &EdgeMetrics, wire_in: u64, wire_out: u64) {
        metrics.add_bytes(wire_in, wire_out, wire_out, wire_out);
    }
}

/// Decoded upstream chunks through the filter, capped at `input_cap`
/// bytes, gzip-compressed when the client takes it, with the truncation
/// (if any) in a trailer.
pub struct Filtering {
    filter: ScrapeFilter,
    encoder: Option<GzEncoder<Vec<u8>>>,
    /// Decoded bytes a scrape may read; 0 for no cap.
    input_cap: u64,
    decoded: u64,
    segments: Vec<Bytes>,
    /// This scrape's inventory, when it was chosen for one: fed the
    /// decoded upstream chunks before the filter sees them.
    inventory: Option<(ScrapeInventory, Arc<Inventory>)>,
    /// The upstream URI, redacted, for logs.
    shown: String,
    /// Where the scrape's volume goes when it ends.
    registry: Arc<PolicyRegistry>,
}

impl Filtering {
    pub fn new(
        filter: ScrapeFilter,
        gzip: bool,
        input_cap: u64,
        inventory: Option<(ScrapeInventory, Arc<Inventory>)>,
        shown: String,
        registry: Arc<PolicyRegistry>,
    ) -> Self {
        Filtering {
            filter,
            encoder: gzip
                .then(|| GzEncoder::new(Vec::with_capacity(16 * 1024), Compression::fast())),
            input_cap,
            decoded: 0,
            segments: Vec::new(),
            inventory,
            shown,
            registry,
        }
    }

    /// Moves filter output into frames, compressing if negotiated.
    fn emit(&mut self, out: &mut Frames, last: bool) {
        match &mut self.encoder {
            None => {
                for seg in self.segments.drain(..) {
                    if !seg.is_empty() {
                        out.push_back(Frame::data(seg));
                    }
                }
            }
            Some(encoder) => {
                let mut wrote = false;
                for seg in self.segments.drain(..) {
                    wrote |= !seg.is_empty();
                    // Writing to a Vec cannot fail.
                    let _ = encoder.write_all(&seg);
                }
                if wrote || last {
                    let _ = encoder.flush();
                }
                let bytes = std::mem::take(encoder.get_mut());
                if !bytes.is_empty() {
                    out.push_back(Frame::data(Bytes::from(bytes)));
                }
            }
        }
    }

    /// The output is complete: flushes it, says why it ends early if it
    /// does, and merges the inventory up to where reading stopped (a
    /// capped scrape still shows what was read of it).
    fn complete(&mut self, out: &mut Frames) -> ScrapeResult {
        self.emit(out, true);
        if let Some(encoder) = self.encoder.take()
            && let Ok(tail) = encoder.finish()
            && !tail.is_empty()
        {
            out.push_back(Frame::data(Bytes::from(tail)));
        }
        let counters = *self.filter.counters();
        let result = if let Some(limit) = counters.truncated {
            tracing::warn!(
                upstream = %self.shown,
                limit = limit.as_str(),
                bytes_read = self.decoded,
                bytes_written = counters.bytes_out,
                series_kept = counters.series_kept,
                series_dropped = counters.series_dropped,
                "scrape truncated at the {} byte cap",
                limit.as_str()
            );
            let mut trailers = HeaderMap::new();
            trailers.insert(
                TRUNCATED_HEADER,
                HeaderValue::from_static(match limit {
                    Limit::Input => "input",
                    Limit::Output => "output",
                }),
            );
            out.push_back(Frame::trailers(trailers));
            ScrapeResult::Truncated
        } else {
            ScrapeResult::Ok
        };
        if let Some((scrape, inventory)) = self.inventory.take() {
            inventory.absorb(scrape);
        }
        result
    }
}

impl Transform for Filtering {
    fn push(&mut self, frame: Frame<Bytes>, out: &mut Frames) -> Flow {
        // A decoded source yields data frames only.
        let Ok(chunk) = frame.into_data() else {
            return Flow::More;
        };
        let room = if self.input_cap == 0 {
            u64::MAX
        } else {
            self.input_cap - self.decoded
        };
        if (chunk.len() as u64) <= room {
            self.decoded += chunk.len() as u64;
            if let Some((scrape, _)) = &mut self.inventory {
                scrape.push(&chunk);
            }
            self.filter.push(&chunk, &mut self.segments);
            self.emit(out, false);
            return Flow::More;
        }
        let head = chunk.slice(..room as usize);
        self.decoded += head.len() as u64;
        if let Some((scrape, _)) = &mut self.inventory {
            scrape.push(&head);
            scrape.cut_input();
        }
        self.filter.push(&head, &mut self.segments);
        match self.filter.cut_input(&mut self.segments) {
            Ok(()) => Flow::Done(self.complete(out)),
            Err(e) => Flow::Failed(ScrapeResult::Aborted, e.into()),
        }
    }

    fn finish(&mut self, out: &mut Frames) -> ScrapeResult {
        if let Some((scrape, _)) = &mut self.inventory {
            // The filter may stop reading before upstream's end (its
            // output cap, `# EOF`): what it left is unread.
            if self.filter.is_done() {
                scrape.cut_input();
            } else {
                scrape.finish();
            }
        }
        self.filter.finish(&mut self.segments);
        self.complete(out)
    }

    /// A broken body is not an inventory of anything.
    fn abandon(&mut self) {
        self.inventory = None;
    }

    fn is_done(&self) -> bool {
        self.filter.is_done()
    }

    /// Also adds the scrape's volume: the series the policies evaluated
    /// (an aborted scrape's too, as its drops count). A series is one data
    /// point per scrape, as OTLP counts a histogram with all its buckets as
    /// one, and the unit of the series the policies report dropped, so the
    /// share of volume a policy drops is exact. No bytes: the spec reports
    /// only OTLP protobuf sizes, and this is Prometheus text.
    fn account(&self, metrics: &EdgeMetrics, wire_in: u64, wire_out: u64) {
        let counters = self.filter.counters();
        metrics.add_filter(counters);
        let evaluated = counters.series_kept + counters.series_dropped;
        if evaluated > 0 {
            self.registry.volume().add_metric_data_points(evaluated, 0);
        }
        metrics.add_bytes(wire_in, self.decoded, counters.bytes_out, wire_out);
    }
}
