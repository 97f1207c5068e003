//! What an edge saw upstream, before filtering: the raw material of the
//! control plane's issue detectors.
//!
//! [`collector`] inventories one scrape body (families, series, bytes,
//! label cardinalities and examples); [`window`] merges the inventoried
//! scrapes of a reporting interval into one bounded `InventoryReport`,
//! masking example values with [`mask`] on the way. [`sketch`] estimates
//! how many distinct values a label takes, in bounded memory and mergeable
//! across edges. All of it is synchronous and does no I/O: the edge feeds
//! it and sends the reports.

pub mod collector;
pub mod mask;
/// Lives in the sdk: the control plane merges what edges encode.
pub use tero_sdk::sketch;
pub mod window;

pub use collector::{CollectorOptions, FamilyStats, LabelStats, ScrapeInventory};
pub use mask::mask_value;
pub use sketch::{CardinalitySketch, SketchError};
pub use window::{InventoryWindow, WindowOptions};
