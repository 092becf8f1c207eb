//! The stored form of a fingerprint: its items as little-endian bytes in base64, with the time
//! base and the asset's duration, in a result's JSON data.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};

use crate::{Fingerprint, FingerprintError};

/// The most items a fingerprint may have: 24 hours of Chromaprint's 8.08 items a second.
pub const MAX_ITEMS: usize = 24 * 3600 * 9;

/// A `fingerprint` result's data: about 43 bytes of JSON per second of audio.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FingerprintData {
    /// Chromaprint's algorithm version (ffmpeg's default is 1).
    pub algorithm: u32,
    /// Seconds between consecutive items (the time base).
    pub item_secs: f64,
    /// The asset's duration, seconds.
    pub duration_secs: f64,
    /// How many items there are.
    pub items: usize,
    /// The items as 32-bit little-endian integers, base64 (standard alphabet, padded).
    pub fingerprint: String,
}

impl FingerprintData {
    /// The stored form of `fingerprint`, of an asset of `duration_secs`, made by Chromaprint's
    /// `algorithm`.
    pub fn new(fingerprint: &Fingerprint, duration_secs: f64, algorithm: u32) -> Self {
        let bytes: Vec<u8> = fingerprint
            .values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        Self {
            algorithm,
            item_secs: fingerprint.item_secs,
            duration_secs,
            items: fingerprint.values.len(),
            fingerprint: STANDARD.encode(bytes),
        }
    }

    /// The fingerprint back, checked: valid base64 of whole items, as many as stated, within
    /// [`MAX_ITEMS`], with a positive time base.
    pub fn decode(&self) -> Result<Fingerprint, FingerprintError> {
        // base64 grows 3 bytes into 4 characters: refuse before decoding what cannot fit.
        if self.fingerprint.len() / 4 * 3 > MAX_ITEMS * 4 + 3 {
            return Err(FingerprintError::TooLong {
                items: self.fingerprint.len() / 4 * 3 / 4,
                max: MAX_ITEMS,
            });
        }
        let bytes = STANDARD
            .decode(&self.fingerprint)
            .map_err(|e| FingerprintError::Base64(e.to_string()))?;
        if bytes.len() % 4 != 0 {
            return Err(FingerprintError::PartialItem { bytes: bytes.len() });
        }
        let values: Vec<u32> = bytes
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        if values.len() != self.items {
            return Err(FingerprintError::CountMismatch {
                said: self.items,
                held: values.len(),
            });
        }
        Fingerprint::new(self.item_secs, values)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn bad_records_are_refused_with_the_reason() {
        let good = FingerprintData::new(
            &Fingerprint::new(0.125, vec![1, 2, 3]).expect("valid"),
            1.0,
            1,
        );
        assert_eq!(good.decode().expect("decodes").values, vec![1, 2, 3]);
        let cases = [
            (
                FingerprintData {
                    fingerprint: "!!!".into(),
                    ..good.clone()
                },
                "not valid base64",
            ),
            (
                FingerprintData {
                    fingerprint: STANDARD.encode([1u8, 2, 3]),
                    ..good.clone()
                },
                "3 bytes",
            ),
            (
                FingerprintData {
                    items: 4,
                    ..good.clone()
                },
                "says 4 items but holds 3",
            ),
            (
                FingerprintData {
                    item_secs: f64::NAN,
                    ..good.clone()
                },
                "not a positive number",
            ),
            (
                FingerprintData {
                    fingerprint: "A".repeat(MAX_ITEMS * 6),
                    ..good.clone()
                },
                "more than",
            ),
        ];
        for (record, reason) in cases {
            let err = record.decode().expect_err(reason);
            assert!(err.to_string().contains(reason), "{err} / {reason}");
        }
    }

    proptest! {
        #[test]
        fn every_fingerprint_round_trips(values in proptest::collection::vec(any::<u32>(), 0..300),
                                         item_secs in 0.01f64..10.0) {
            let fp = Fingerprint::new(item_secs, values).expect("valid");
            let stored = FingerprintData::new(&fp, 12.5, 1);
            let json = serde_json::to_string(&stored).expect("serializes");
            let back: FingerprintData = serde_json::from_str(&json).expect("deserializes");
            prop_assert_eq!(back.decode().expect("decodes"), fp);
        }

        #[test]
        fn arbitrary_records_never_panic(text in ".{0,64}", items in 0usize..100, secs in any::<f64>()) {
            let record = FingerprintData {
                algorithm: 1,
                item_secs: secs,
                duration_secs: 1.0,
                items,
                fingerprint: text,
            };
            let _ = record.decode();
        }
    }
}
