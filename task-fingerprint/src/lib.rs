//! Audio fingerprints for the media task engine: the compact form a `fingerprint` result stores,
//! the search for the segments two assets share, and an episode's intro and credits from what it
//! shares with its siblings ([`find_markers`]).
//!
//! A [`Fingerprint`] is a sequence of 32-bit items, one every [`Fingerprint::item_secs`]
//! seconds (Chromaprint's, as ffmpeg's `chromaprint` muxer writes them). Two recordings of the
//! same sound give items that differ in few bits; unrelated sound differs in about half of them.
//! [`shared_segments`] finds where two fingerprints agree for long enough, at any offset.
//!
//! ```
//! use task_fingerprint::{Fingerprint, FingerprintData, MatchSettings, shared_segments, synthetic_items};
//!
//! // Pseudo-random items stand in for real sound; b holds a's items 100..400 from its item 50 on.
//! let a = synthetic_items(1, 500);
//! let mut b = synthetic_items(2, 50);
//! b.extend_from_slice(&a[100..400]);
//! b.extend(synthetic_items(3, 100));
//! let item_secs = 0.1238;
//! let (a, b) = (Fingerprint::new(item_secs, a)?, Fingerprint::new(item_secs, b)?);
//!
//! let stored = FingerprintData::new(&a, 61.9, 1);
//! assert_eq!(stored.decode()?, a);
//!
//! let settings = MatchSettings {
//!     start_shift_secs: 0.0,
//!     end_extension_secs: 0.0,
//!     ..MatchSettings::default()
//! };
//! let found = shared_segments(&a, &b, &settings)?;
//! assert_eq!(found.len(), 1);
//! assert!((found[0].start - 100.0 * item_secs).abs() < 0.2);
//! assert!((found[0].against_start - 50.0 * item_secs).abs() < 0.2);
//! # Ok::<(), task_fingerprint::FingerprintError>(())
//! ```
#![deny(missing_docs)]

mod codec;
mod markers;
mod matching;

pub use codec::{FingerprintData, MAX_ITEMS};
pub use markers::{Marker, MarkerRules, Markers, find_markers};
pub use matching::{
    CHROMAPRINT_END_EXTENSION_SECS, CHROMAPRINT_START_SHIFT_SECS, MatchSettings, SharedSegment,
    shared_segments,
};

/// Why a fingerprint cannot be used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FingerprintError {
    /// The stored fingerprint is not valid base64.
    #[error("the stored fingerprint is not valid base64: {0}")]
    Base64(String),
    /// The stored bytes are not whole 32-bit items.
    #[error("the stored fingerprint has {bytes} bytes, not a whole number of 4-byte items")]
    PartialItem {
        /// How many bytes there are.
        bytes: usize,
    },
    /// The stored item count disagrees with the bytes.
    #[error("the stored fingerprint says {said} items but holds {held}")]
    CountMismatch {
        /// The count the record states.
        said: usize,
        /// The items its bytes hold.
        held: usize,
    },
    /// More items than any asset needs.
    #[error("the fingerprint has {items} items, more than the {max} allowed")]
    TooLong {
        /// How many items.
        items: usize,
        /// The limit, [`MAX_ITEMS`].
        max: usize,
    },
    /// Two fingerprints to compare have different time bases.
    #[error(
        "the fingerprints have different time bases ({first} s and {second} s per item): make both with the same algorithm"
    )]
    TimeBaseMismatch {
        /// The first one's seconds per item.
        first: f64,
        /// The second one's.
        second: f64,
    },
    /// The time base is not a positive number of seconds.
    #[error("the fingerprint's item duration {0} is not a positive number of seconds")]
    TimeBase(f64),
}

/// `n` pseudo-random items, the same for the same `seed`: a stand-in for the fingerprint of
/// unrelated sound in tests and examples (xorshift32 from a well-mixed seed, its sparse first
/// outputs skipped).
pub fn synthetic_items(seed: u32, n: usize) -> Vec<u32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9) | 1;
    (0..n + 16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x
        })
        .skip(16)
        .collect()
}

/// A sequence of fingerprint items and its time base.
#[derive(Debug, Clone, PartialEq)]
pub struct Fingerprint {
    /// Seconds between consecutive items.
    pub item_secs: f64,
    /// The items, in time order: item `i` describes the sound from `i * item_secs` on.
    pub values: Vec<u32>,
}

impl Fingerprint {
    /// A fingerprint of `values`, one every `item_secs` seconds.
    pub fn new(item_secs: f64, values: Vec<u32>) -> Result<Self, FingerprintError> {
        if !(item_secs.is_finite() && item_secs > 0.0) {
            return Err(FingerprintError::TimeBase(item_secs));
        }
        if values.len() > MAX_ITEMS {
            return Err(FingerprintError::TooLong {
                items: values.len(),
                max: MAX_ITEMS,
            });
        }
        Ok(Self { item_secs, values })
    }

    /// The seconds the items cover.
    pub fn covered_secs(&self) -> f64 {
        self.values.len() as f64 * self.item_secs
    }
}
