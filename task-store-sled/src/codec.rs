//! Value encoding: one format-version byte, then JSON.

use serde::Serialize;
use serde::de::DeserializeOwned;
use task_core::store::StoreError;
use task_core::task::HistoryEntry;

use crate::error::Ctx;

/// The value format this build writes and the newest it reads (3: task records hold their
/// history; 2: history values may hold several entries; 1 values are read as well).
pub(crate) const FORMAT_VERSION: u8 = 3;

/// Encodes `value` with the format byte.
pub(crate) fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, StoreError> {
    let mut buf = Vec::with_capacity(256);
    buf.push(FORMAT_VERSION);
    serde_json::to_writer(&mut buf, value).map_err(|e| StoreError::Invalid {
        field: "value",
        reason: format!("cannot be serialized: {e}"),
    })?;
    Ok(buf)
}

/// Decodes a value stored in `tree` at `key`, refusing newer formats and corrupt bytes.
pub(crate) fn decode<T: DeserializeOwned>(
    ctx: &Ctx,
    tree: &str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    let Some((&version, body)) = bytes.split_first() else {
        return Err(ctx.corrupt(tree, key, "empty value"));
    };
    if version == 0 || version > FORMAT_VERSION {
        return Err(ctx.corrupt(
            tree,
            key,
            format!(
                "value format version {version} is not supported (this build reads 1..={FORMAT_VERSION})"
            ),
        ));
    }
    match serde_json::from_slice(body) {
        Ok(value) => Ok(value),
        // Earlier builds accepted extra fields nested close to the decoder's limit of 128,
        // which their own records then passed: read those with a bounded depth of our own.
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => {
            decode_deep(body).map_err(|e| ctx.corrupt(tree, key, format!("undecodable value: {e}")))
        }
        Err(e) => Err(ctx.corrupt(tree, key, format!("undecodable value: {e}"))),
    }
}

/// The deepest nesting [`decode`] reads: far above what any build wrote, low enough for the
/// stack of any thread that reads records.
const MAX_STORED_DEPTH: usize = 512;

fn decode_deep<T: DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    let depth = json_depth(body);
    if depth > MAX_STORED_DEPTH {
        return Err(format!(
            "nested {depth} levels deep, more than the {MAX_STORED_DEPTH} this build reads"
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    deserializer.disable_recursion_limit();
    let value = T::deserialize(&mut deserializer).map_err(|e| e.to_string())?;
    deserializer.end().map_err(|e| e.to_string())?;
    Ok(value)
}

/// The bracket depth of JSON text, skipping strings.
fn json_depth(body: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in body {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Decodes a history value: the entries one store call added (an array), or a single entry
/// (as written before history values held a call's entries together).
pub(crate) fn decode_history(
    ctx: &Ctx,
    tree: &str,
    key: &[u8],
    bytes: &[u8],
    into: &mut Vec<HistoryEntry>,
) -> Result<(), StoreError> {
    if bytes.get(1) == Some(&b'[') {
        into.extend(decode::<Vec<HistoryEntry>>(ctx, tree, key, bytes)?);
    } else {
        into.push(decode(ctx, tree, key, bytes)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx { path: "/db".into() }
    }

    #[test]
    fn round_trips_and_refuses_bad_bytes() {
        let bytes = encode(&vec![1u32, 2]).expect("encode");
        assert_eq!(bytes[0], FORMAT_VERSION);
        let back: Vec<u32> = decode(&ctx(), "t", b"k", &bytes).expect("decode");
        assert_eq!(back, vec![1, 2]);
        for bad in [&b""[..], &[9, b'1'][..], &[FORMAT_VERSION, b'{'][..]] {
            let err = decode::<Vec<u32>>(&ctx(), "tasks", b"key\x01", bad).expect_err("bad");
            let text = err.to_string();
            assert!(matches!(err, StoreError::Corrupt { .. }), "{text}");
            assert!(
                text.contains("/db") && text.contains("tasks") && text.contains("key\\x01"),
                "{text}"
            );
        }
    }

    #[test]
    fn history_values_hold_one_entry_or_a_call_s_entries() {
        let entry = HistoryEntry {
            at: task_core::time::Timestamp(1),
            event: "created".into(),
            from: None,
            to: task_core::task::Status::Pending,
            step: None,
            attempt: 0,
            error: None,
            detail: None,
        };
        let mut read = Vec::new();
        let one = encode(&entry).expect("encode");
        decode_history(&ctx(), "history", b"k", &one, &mut read).expect("one");
        let many = encode(&[entry.clone(), entry.clone()][..]).expect("encode");
        decode_history(&ctx(), "history", b"k", &many, &mut read).expect("many");
        assert_eq!(read, vec![entry.clone(), entry.clone(), entry]);
    }

    #[test]
    fn records_nested_past_the_decoder_limit_read_back_up_to_a_bound() {
        let nested = |depth: usize| {
            let mut value = serde_json::json!("leaf");
            for _ in 0..depth {
                value = serde_json::json!([value]);
            }
            serde_json::json!({ "extra": value })
        };
        // What an earlier build let through the API (126 levels inside the record).
        let deep = nested(140);
        let bytes = encode(&deep).expect("encode");
        let back: serde_json::Value = decode(&ctx(), "items", b"k", &bytes).expect("deep reads");
        assert_eq!(back, deep);
        let too_deep = encode(&nested(MAX_STORED_DEPTH + 10)).expect("encode");
        let err = decode::<serde_json::Value>(&ctx(), "items", b"k", &too_deep).expect_err("bound");
        assert!(err.to_string().contains("levels deep"), "{err}");
        assert_eq!(json_depth(br#"{"a": "[[[{", "b": [1, {"c": []}]}"#), 4);
    }
}
