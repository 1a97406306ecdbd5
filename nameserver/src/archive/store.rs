//! Access to the object store that holds the archive: `s3://bucket/prefix` (any S3 API: AWS,
//! SeaweedFS, MinIO) or `file:///abs/dir` (tests, benches, a mounted volume).

use std::sync::Arc;

use bytes::Bytes;
use futures_util::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::ArchiveError;
use super::layout::ObjectName;

/// Where the archive is and how to reach it (credentials come from the environment:
/// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, optionally `AWS_SESSION_TOKEN`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreConfig {
    pub url: String,
    /// The S3 endpoint (`http://10.244.0.1:8333`); none: AWS for the region.
    pub endpoint: Option<String>,
    pub region: String,
}

impl StoreConfig {
    pub fn new(url: &str) -> Self {
        StoreConfig { url: url.to_string(), endpoint: None, region: "us-east-1".into() }
    }
}

/// One object of a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    pub name: ObjectName,
    pub size: u64,
}

#[derive(Clone, Debug)]
pub struct Store {
    inner: Arc<dyn ObjectStore>,
    prefix: Path,
    url: String,
}

impl Store {
    /// Opens the store named by `cfg.url`. Nothing is contacted yet: a wrong endpoint or missing
    /// credentials show in the first listing or upload.
    pub fn open(cfg: &StoreConfig) -> Result<Store, ArchiveError> {
        let bad = |reason: String| ArchiveError::Url { url: cfg.url.clone(), reason };
        if let Some(dir) = cfg.url.strip_prefix("file://") {
            if !dir.starts_with('/') {
                return Err(bad("a file:// archive needs an absolute path (file:///dir)".into()));
            }
            std::fs::create_dir_all(dir).map_err(|e| bad(format!("cannot create {dir}: {e}")))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(dir).map_err(|e| bad(e.to_string()))?;
            return Ok(Store { inner: Arc::new(fs), prefix: Path::default(), url: cfg.url.clone() });
        }
        let Some(rest) = cfg.url.strip_prefix("s3://") else {
            return Err(bad("expected s3://bucket/prefix or file:///dir".into()));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(bad("no bucket".into()));
        }
        if bucket.contains('@') {
            return Err(bad(
                "credentials do not belong in the URL: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".into()
            ));
        }
        crate::tls::install_default_provider();
        let mut b = object_store::aws::AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(&cfg.region)
            // Path-style requests: S3-compatible servers rarely have a DNS name per bucket.
            .with_virtual_hosted_style_request(false);
        if let Some(ep) = &cfg.endpoint {
            if !ep.starts_with("http://") && !ep.starts_with("https://") {
                return Err(bad(format!("--archive-endpoint {ep:?} must start with http:// or https://")));
            }
            b = b.with_endpoint(ep).with_allow_http(ep.starts_with("http://"));
        }
        for (var, set) in [
            ("AWS_ACCESS_KEY_ID", object_store::aws::AmazonS3ConfigKey::AccessKeyId),
            ("AWS_SECRET_ACCESS_KEY", object_store::aws::AmazonS3ConfigKey::SecretAccessKey),
            ("AWS_SESSION_TOKEN", object_store::aws::AmazonS3ConfigKey::Token),
        ] {
            if let Ok(v) = std::env::var(var) {
                b = b.with_config(set, v);
            }
        }
        let s3 = b.build().map_err(|e| bad(e.to_string()))?;
        Ok(Store { inner: Arc::new(s3), prefix: Path::from(prefix), url: cfg.url.clone() })
    }

    /// A store in memory (unit tests).
    pub fn memory() -> Store {
        Store { inner: Arc::new(object_store::memory::InMemory::new()), prefix: Path::default(), url: "memory:".into() }
    }

    /// The URL as configured; never holds credentials (they are refused in it).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The full key of `name` in the store (prefix included), as reported to users.
    pub fn key(&self, name: &ObjectName) -> String {
        self.path(name).to_string()
    }

    fn path(&self, name: &ObjectName) -> Path {
        let rel = name.to_string();
        rel.split('/').fold(self.prefix.clone(), |p, part| p.join(part))
    }

    pub async fn put(&self, name: &ObjectName, body: Bytes) -> Result<(), ArchiveError> {
        self.inner
            .put(&self.path(name), PutPayload::from_bytes(body))
            .await
            .map(|_| ())
            .map_err(|e| ArchiveError::Store { object: self.key(name), source: e })
    }

    pub async fn get(&self, name: &ObjectName) -> Result<Bytes, ArchiveError> {
        let key = self.key(name);
        let r = self
            .inner
            .get(&self.path(name))
            .await
            .map_err(|e| ArchiveError::Store { object: key.clone(), source: e })?;
        r.bytes().await.map_err(|e| ArchiveError::Store { object: key, source: e })
    }

    pub async fn delete(&self, name: &ObjectName) -> Result<(), ArchiveError> {
        self.inner.delete(&self.path(name)).await.map_err(|e| ArchiveError::Store { object: self.key(name), source: e })
    }

    /// Every object of the archive, checkpoints and wal, sorted by (last seq, kind). Keys that are
    /// not archive objects are ignored.
    pub async fn list(&self) -> Result<Vec<Listed>, ArchiveError> {
        let mut out = Vec::new();
        for dir in [super::layout::WAL_DIR, super::layout::CHECKPOINT_DIR] {
            let p = self.prefix.clone().join(dir);
            let metas: Vec<_> = self
                .inner
                .list(Some(&p))
                .try_collect()
                .await
                .map_err(|e| ArchiveError::Store { object: p.to_string(), source: e })?;
            for m in metas {
                let key = m.location.as_ref();
                let rel = key.strip_prefix(self.prefix.as_ref()).unwrap_or(key).trim_start_matches('/');
                if let Some(name) = ObjectName::parse(rel) {
                    out.push(Listed { name, size: m.size });
                }
            }
        }
        out.sort_by_key(|l| match l.name {
            ObjectName::Checkpoint(c) => (c.seq, 0, c.seq),
            ObjectName::Wal(w) => (w.first, 1, w.last),
        });
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::archive::layout::{CheckpointName, WalName};

    #[test]
    fn urls_are_checked_and_keys_carry_the_prefix() {
        let mut cfg = StoreConfig::new("s3://bucket/some/prefix");
        cfg.endpoint = Some("http://127.0.0.1:8333".into());
        let s = Store::open(&cfg).unwrap();
        let c = ObjectName::Checkpoint(CheckpointName { seq: 7, epoch: 1, time_ms: 5, crc: 1 });
        assert_eq!(s.key(&c), format!("some/prefix/{c}"));
        for bad in ["http://x/y", "s3:///prefix", "file://relative/dir", "s3://key:secret@bucket/p"] {
            assert!(Store::open(&StoreConfig::new(bad)).is_err(), "{bad}");
        }
        cfg.endpoint = Some("127.0.0.1:8333".into());
        assert!(Store::open(&cfg).unwrap_err().to_string().contains("http://"));
    }

    #[tokio::test]
    async fn objects_round_trip_and_list_in_seq_order_ignoring_foreign_keys() {
        let s = Store::memory();
        let w = |first, last| ObjectName::Wal(WalName { first, last, epoch: 1, first_ms: 1, last_ms: 2, crc: 3 });
        let c = ObjectName::Checkpoint(CheckpointName { seq: 10, epoch: 1, time_ms: 2, crc: 4 });
        for n in [w(11, 20), c, w(1, 10)] {
            s.put(&n, Bytes::from(n.to_string())).await.unwrap();
        }
        s.inner.put(&Path::from("wal/notes.txt"), PutPayload::from_static(b"x")).await.unwrap();
        let names: Vec<ObjectName> = s.list().await.unwrap().into_iter().map(|l| l.name).collect();
        assert_eq!(names, vec![w(1, 10), c, w(11, 20)]);
        assert_eq!(s.get(&c).await.unwrap(), Bytes::from(c.to_string()));
        s.delete(&c).await.unwrap();
        assert_eq!(s.list().await.unwrap().len(), 2);
    }
}
