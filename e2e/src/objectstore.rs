//! The cluster's S3 object store (SeaweedFS, started by `make cluster`), as the backup suites use
//! it: its endpoint and credentials from `e2e/cluster/objectstore.sh`, a Secret for a namespace,
//! and raw object reads and writes over the S3 API (curl's SigV4), to inspect and damage an archive
//! the way a storage fault would.

use anyhow::{Context, Result, bail};

use crate::root;

fn script(args: &[&str]) -> Result<String> {
    let out = crate::run(&root().join("e2e/cluster/objectstore.sh"), args)?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// The endpoint pods (and the host) reach the store at, e.g. `http://10.244.0.1:8333`.
pub fn endpoint() -> Result<String> {
    script(&["endpoint"])
}

/// `(name, value)` of the variables host-side tools need: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY,
/// AWS_REGION, TFS_S3_ENDPOINT.
pub fn env() -> Result<Vec<(String, String)>> {
    let text = script(&["env"])?;
    let vars: Vec<(String, String)> = text
        .split_whitespace()
        .filter(|w| *w != "export")
        .filter_map(|w| w.split_once('=').map(|(k, v)| (k.to_string(), v.trim_matches(['"', '\'']).to_string())))
        .collect();
    for k in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"] {
        if !vars.iter().any(|(n, _)| n == k) {
            bail!("objectstore.sh env printed no {k}: {text}");
        }
    }
    Ok(vars)
}

/// Creates (or updates) Secret `ns/name` with the keys `accessKeyId` and `secretAccessKey`.
pub fn secret(ns: &str, name: &str) -> Result<()> {
    script(&["secret", ns, name]).map(|_| ())
}

/// One signed S3 request (`objectstore.sh curl`: SigV4 with the cluster's credentials); `body` is
/// uploaded when given. Returns the response body.
fn s3(method: &str, path_and_query: &str, body: Option<&[u8]>) -> Result<Vec<u8>> {
    let tmp = body.map(tempfile_with).transpose()?;
    let data = tmp.as_ref().map(|t| format!("@{}", t.display()));
    let mut args = vec!["curl", path_and_query, "--fail-with-body", "-X", method];
    if let Some(d) = &data {
        args.extend(["--data-binary", d.as_str(), "-H", "Content-Type: application/octet-stream"]);
    }
    let out = crate::run(&root().join("e2e/cluster/objectstore.sh"), &args);
    if let Some(t) = &tmp {
        let _ = std::fs::remove_file(t);
    }
    Ok(out.with_context(|| format!("S3 {method} {path_and_query}"))?.stdout)
}

fn tempfile_with(data: &[u8]) -> Result<std::path::PathBuf> {
    let p = std::env::temp_dir().join(format!("tfs-e2e-s3-{}-{}", std::process::id(), crate::now_ms()));
    std::fs::write(&p, data)?;
    Ok(p)
}

/// Keys under `prefix` in `bucket`, in the store's (lexicographic) order.
pub fn list(bucket: &str, prefix: &str) -> Result<Vec<String>> {
    let mut keys = Vec::new();
    let mut token = String::new();
    loop {
        let mut q = format!("{bucket}?list-type=2&prefix={}", urlencode(prefix));
        if !token.is_empty() {
            q.push_str(&format!("&continuation-token={}", urlencode(&token)));
        }
        let xml = String::from_utf8_lossy(&s3("GET", &q, None)?).into_owned();
        keys.extend(tags(&xml, "Key"));
        match tags(&xml, "NextContinuationToken").into_iter().next() {
            Some(t) if tags(&xml, "IsTruncated").first().map(String::as_str) == Some("true") => token = t,
            _ => return Ok(keys),
        }
    }
}

pub fn get(bucket: &str, key: &str) -> Result<Vec<u8>> {
    s3("GET", &format!("{bucket}/{key}"), None)
}

pub fn put(bucket: &str, key: &str, data: &[u8]) -> Result<()> {
    s3("PUT", &format!("{bucket}/{key}"), Some(data)).map(|_| ())
}

/// The text of every `<tag>…</tag>` in `xml` (S3 listings are flat enough for this).
fn tags(xml: &str, tag: &str) -> Vec<String> {
    let (open, close) = (format!("<{tag}>"), format!("</{tag}>"));
    xml.split(&open).skip(1).filter_map(|s| s.split(&close).next()).map(|s| s.replace("&amp;", "&")).collect()
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_tags_and_query_encoding() {
        let xml = "<ListBucketResult><IsTruncated>false</IsTruncated><Contents><Key>a/wal/1.rec</Key></Contents>\
                   <Contents><Key>a/b&amp;c</Key></Contents></ListBucketResult>";
        assert_eq!(tags(xml, "Key"), vec!["a/wal/1.rec".to_string(), "a/b&c".to_string()]);
        assert_eq!(urlencode("e2e/x y"), "e2e%2Fx%20y");
    }
}
