//! Reading an OCI image-layout tar (`oci-layout`, `index.json`,
//! `blobs/sha256/*`) back into memory, with every blob checked against the
//! descriptor that names it.

use std::collections::BTreeMap;

use anyhow::{ensure, Context, Result};
use serde::de::DeserializeOwned;

use crate::image::{sha256_digest, Descriptor, Index};
use crate::tar::{read_entries, Kind};

/// Files of an image-layout tar, by normalized path.
pub struct Layout {
    files: BTreeMap<String, Vec<u8>>,
}

impl Layout {
    pub fn parse(tar: &[u8]) -> Result<Self> {
        let files = read_entries(tar)?
            .into_iter()
            .filter(|e| e.kind == Kind::File)
            .map(|e| (e.path.trim_start_matches("./").to_string(), e.data))
            .collect();
        Ok(Self { files })
    }

    pub fn file(&self, path: &str) -> Result<&[u8]> {
        self.files
            .get(path)
            .map(Vec::as_slice)
            .with_context(|| format!("image layout has no {path}"))
    }

    /// `index.json`, raw and parsed; it must list at least one manifest.
    pub fn index(&self) -> Result<(&[u8], Index)> {
        let bytes = self.file("index.json")?;
        let index: Index = parse_json(bytes).context("parsing index.json")?;
        ensure!(!index.manifests.is_empty(), "index.json lists no manifests");
        Ok((bytes, index))
    }

    /// Returns the blob for `desc` after checking its digest and size.
    pub fn blob(&self, desc: &Descriptor) -> Result<&[u8]> {
        let hex = desc
            .digest
            .strip_prefix("sha256:")
            .with_context(|| format!("unsupported digest {}", desc.digest))?;
        let bytes = self.file(&format!("blobs/sha256/{hex}"))?;
        ensure!(
            bytes.len() as u64 == desc.size,
            "blob {} is {} bytes, descriptor says {}",
            desc.digest,
            bytes.len(),
            desc.size
        );
        let actual = sha256_digest(bytes);
        ensure!(
            actual == desc.digest,
            "blob {} has digest {actual}",
            desc.digest
        );
        Ok(bytes)
    }

    /// The blob for `desc`, parsed as JSON both into `T` and as a generic value.
    pub fn json_blob<T: DeserializeOwned>(
        &self,
        desc: &Descriptor,
    ) -> Result<(T, serde_json::Value)> {
        let bytes = self.blob(desc)?;
        Ok((parse_json(bytes)?, parse_json(bytes)?))
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    Ok(serde_json::from_slice(bytes)?)
}
