//! The shape of an asset URL, checked without touching any store: S3 bucket names by S3's
//! naming rules and keys by object_store's path rules (a bucket name is spliced into
//! path-style requests, so `s3://../other-bucket/key` or a bucket with `?` would reach other
//! objects), and `file://` URLs decoded per RFC 8089 / RFC 3986.

use std::path::PathBuf;

use object_store::path::Path;

use crate::error::MediaError;

/// An asset URL taken apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Parsed<'a> {
    /// `s3://bucket/key`, both checked.
    S3 {
        /// A valid S3 bucket name.
        bucket: &'a str,
        /// A key object_store reads as it is.
        key: &'a str,
    },
    /// `file:///path` or `file://localhost/path`: the decoded path, with `.` and `..`
    /// segments resolved lexically (it never climbs above `/`).
    File {
        /// The absolute path.
        path: PathBuf,
    },
    /// `memory:///key`.
    Memory {
        /// The key in the in-memory store.
        key: &'a str,
    },
}

/// Takes `url` apart, or says which rule it breaks.
pub(crate) fn split(url: &str) -> Result<Parsed<'_>, MediaError> {
    let invalid = |reason: String| MediaError::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    if let Some(rest) = url.strip_prefix("s3://") {
        if let Some(c) = rest.chars().find(|c| *c == '?' || *c == '#') {
            return Err(invalid(format!(
                "an S3 URL takes no query or fragment, and {c:?} cannot be part of a bucket \
                 name or key here"
            )));
        }
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| invalid("expected s3://bucket/key".into()))?;
        if bucket.is_empty() || key.is_empty() {
            return Err(invalid("expected s3://bucket/key".into()));
        }
        if let Some(rule) = bucket_rule_broken(bucket) {
            return Err(invalid(format!("bucket name {bucket:?}: {rule}")));
        }
        if let Some(rule) = key_rule_broken(key) {
            return Err(invalid(format!("object key {key:?}: {rule}")));
        }
        Ok(Parsed::S3 { bucket, key })
    } else if let Some(rest) = url.strip_prefix("file://") {
        file_path(rest)
            .map(|path| Parsed::File { path })
            .map_err(invalid)
    } else if let Some(key) = url.strip_prefix("memory://") {
        let key = key.trim_start_matches('/');
        if key.is_empty() {
            return Err(invalid("expected memory:///key".into()));
        }
        Ok(Parsed::Memory { key })
    } else {
        Err(invalid(
            "the scheme must be s3://, file:// or memory://".into(),
        ))
    }
}

/// The S3 bucket naming rule `bucket` breaks, if any
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html>).
pub(crate) fn bucket_rule_broken(bucket: &str) -> Option<String> {
    let length = bucket.chars().count();
    if !(3..=63).contains(&length) {
        return Some(format!(
            "a bucket name has 3 to 63 characters, not {length}"
        ));
    }
    if let Some(c) = bucket
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '.' || *c == '-'))
    {
        return Some(format!(
            "{c:?} is not allowed in a bucket name (only lowercase letters, digits, dots and \
             hyphens)"
        ));
    }
    let alphanumeric = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !alphanumeric(bucket.chars().next()) || !alphanumeric(bucket.chars().last()) {
        return Some("a bucket name starts and ends with a letter or digit".into());
    }
    if bucket.contains("..") {
        return Some("a bucket name has no two adjacent dots".into());
    }
    if bucket.parse::<std::net::Ipv4Addr>().is_ok() {
        return Some("a bucket name is not an IP address".into());
    }
    if let Some(prefix) = ["xn--", "sthree-", "amzn-s3-demo-"]
        .iter()
        .find(|p| bucket.starts_with(*p))
    {
        return Some(format!("a bucket name does not start with {prefix:?}"));
    }
    if let Some(suffix) = ["-s3alias", "--ol-s3", ".mrap", "--x-s3", "--table-s3"]
        .iter()
        .find(|s| bucket.ends_with(*s))
    {
        return Some(format!("a bucket name does not end with {suffix:?}"));
    }
    None
}

/// The key rule `key` breaks, if any: object_store's path rules (no empty, `.` or `..`
/// segments, no control characters), no leading or trailing `/` (object_store would strip it
/// and read another object), and S3's limit of 1,024 bytes.
pub(crate) fn key_rule_broken(key: &str) -> Option<String> {
    if key.starts_with('/') {
        return Some("a key does not start with '/' (write s3://bucket/key)".into());
    }
    if key.ends_with('/') {
        return Some("a key ending in '/' names a folder, not an object".into());
    }
    if key.len() > 1024 {
        return Some(format!("a key has at most 1,024 bytes, not {}", key.len()));
    }
    if key.split('/').any(|s| s == "." || s == "..") {
        return Some("a key has no '.' or '..' segments".into());
    }
    if key.split('/').any(str::is_empty) {
        return Some("a key has no empty segments ('//')".into());
    }
    Path::parse(key).err().map(|e| e.to_string())
}

/// The absolute path of a `file://` URL after the scheme: an empty or `localhost` authority,
/// percent-decoding (refusing `%2F` and NUL), and lexical `.`/`..` resolution.
fn file_path(rest: &str) -> Result<PathBuf, String> {
    let Some(slash) = rest.find('/') else {
        return Err("a file URL needs an absolute path (file:///...)".into());
    };
    let host = &rest[..slash];
    if !host.is_empty() && !host.eq_ignore_ascii_case("localhost") {
        return Err(format!(
            "a file URL names no host but localhost (file:///path or file://localhost/path), \
             not {host:?}"
        ));
    }
    let encoded = &rest[slash..];
    if let Some(c) = encoded.chars().find(|c| *c == '?' || *c == '#') {
        return Err(format!(
            "{c:?} starts a query or fragment in a URL: percent-encode it in a file name ({})",
            if c == '?' { "%3F" } else { "%23" }
        ));
    }
    let mut segments: Vec<Vec<u8>> = Vec::new();
    for segment in encoded.split('/') {
        let decoded = decode(segment)?;
        match decoded.as_slice() {
            b"" | b"." => {}
            b".." => {
                if segments.pop().is_none() {
                    return Err("'..' climbs above the root of the file system".into());
                }
            }
            _ => segments.push(decoded),
        }
    }
    let mut path = b"/".to_vec();
    path.extend(segments.join(&b'/'));
    os_path(path)
}

/// Percent-decodes one path segment.
fn decode(segment: &str) -> Result<Vec<u8>, String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let byte = match bytes[at] {
            b'%' => {
                let hex = bytes
                    .get(at + 1..at + 3)
                    .filter(|h| h.iter().all(u8::is_ascii_hexdigit))
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| {
                        format!(
                            "'%' in {segment:?} is not followed by two hex digits (a literal '%' \
                             is written %25)"
                        )
                    })?;
                if hex == b'/' {
                    return Err(format!(
                        "{segment:?} holds an encoded '/' (%2F), which no file name can contain"
                    ));
                }
                at += 3;
                hex
            }
            other => {
                at += 1;
                other
            }
        };
        if byte == 0 {
            return Err(format!(
                "{segment:?} holds a NUL byte, which no file name can contain"
            ));
        }
        out.push(byte);
    }
    Ok(out)
}

#[cfg(unix)]
fn os_path(bytes: Vec<u8>) -> Result<PathBuf, String> {
    use std::os::unix::ffi::OsStringExt;
    Ok(PathBuf::from(std::ffi::OsString::from_vec(bytes)))
}

#[cfg(not(unix))]
fn os_path(bytes: Vec<u8>) -> Result<PathBuf, String> {
    String::from_utf8(bytes)
        .map(PathBuf::from)
        .map_err(|_| "the decoded path is not UTF-8".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(url: &str) -> String {
        match split(url).expect_err(url) {
            MediaError::InvalidUrl { reason, .. } => reason,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn buckets_follow_the_s3_naming_rules() {
        for good in ["media", "media-a", "a.b.c", "123", "my-bucket-2024"] {
            assert_eq!(bucket_rule_broken(good), None, "{good}");
        }
        let cases = [
            ("s3://../media-a/long.mp4", "3 to 63 characters, not 2"),
            (
                "s3://.../media-a/long.mp4",
                "starts and ends with a letter or digit",
            ),
            ("s3://%2e%2e/media-a/long.mp4", "'%' is not allowed"),
            ("s3://media a/long.mp4", "' ' is not allowed"),
            ("s3://Media/a.mp4", "'M' is not allowed"),
            ("s3://ab/a.mp4", "3 to 63 characters, not 2"),
            (
                "s3://-media/a.mp4",
                "starts and ends with a letter or digit",
            ),
            (
                "s3://media./a.mp4",
                "starts and ends with a letter or digit",
            ),
            ("s3://me..dia/a.mp4", "no two adjacent dots"),
            ("s3://192.168.5.4/a.mp4", "not an IP address"),
            ("s3://xn--media/a.mp4", "does not start with \"xn--\""),
            ("s3://media-s3alias/a.mp4", "does not end with \"-s3alias\""),
            ("s3://media?x=1/a.mp4", "takes no query or fragment"),
            ("s3://media#x/a.mp4", "takes no query or fragment"),
            ("s3://media/a.mp4?versionId=1", "takes no query or fragment"),
        ];
        for (url, rule) in cases {
            let reason = reason(url);
            assert!(reason.contains(rule), "{url}: {reason}");
        }
        assert!(reason("s3://../media-a/long.mp4").starts_with("bucket name \"..\""));
    }

    #[test]
    fn keys_follow_the_object_store_path_rules() {
        assert!(split("s3://media/movies/a b.mp4").is_ok());
        let cases = [
            ("s3://media//a.mp4", "does not start with '/'"),
            ("s3://media/movies/", "names a folder"),
            ("s3://media/a//b.mp4", "no empty segments"),
            ("s3://media/../b/a.mp4", "no '.' or '..' segments"),
            ("s3://media/./a.mp4", "no '.' or '..' segments"),
            ("s3://media/a\u{1}.mp4", "illegal character"),
        ];
        for (url, rule) in cases {
            let reason = reason(url);
            assert!(reason.contains(rule), "{url}: {reason}");
        }
    }

    #[test]
    fn file_urls_are_percent_decoded_and_resolved() {
        let path = |url: &str| match split(url).expect(url) {
            Parsed::File { path } => path,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            path("file:///media/My%20Film.mp4"),
            PathBuf::from("/media/My Film.mp4")
        );
        assert_eq!(
            path("file://localhost/media/a.mp4"),
            PathBuf::from("/media/a.mp4")
        );
        assert_eq!(
            path("file://LOCALHOST/media/%C3%A9t%C3%A9.mp4"),
            PathBuf::from("/media/été.mp4")
        );
        assert_eq!(
            path("file:///media/sub/../a.mp4"),
            PathBuf::from("/media/a.mp4")
        );
        assert_eq!(
            path("file:///media/./%2e%2e/a.mp4"),
            PathBuf::from("/a.mp4")
        );
        assert_eq!(
            path("file:///media/100%25.mp4"),
            PathBuf::from("/media/100%.mp4")
        );
        let cases = [
            ("file:///media/a%2Fb.mp4", "encoded '/' (%2F)"),
            ("file:///media/a%2fb.mp4", "encoded '/' (%2F)"),
            ("file:///media/a%00.mp4", "NUL byte"),
            ("file:///media/100%.mp4", "not followed by two hex digits"),
            ("file:///media/%zz.mp4", "not followed by two hex digits"),
            ("file:///media/a?.mp4", "%3F"),
            ("file:///media/a#1.mp4", "%23"),
            ("file://server/media/a.mp4", "no host but localhost"),
            ("file:///../a.mp4", "climbs above the root"),
        ];
        for (url, rule) in cases {
            let reason = reason(url);
            assert!(reason.contains(rule), "{url}: {reason}");
        }
    }
}
