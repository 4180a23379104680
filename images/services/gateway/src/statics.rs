//! The web UI's static files, loaded into memory at start from `STATIC_DIR`.
//!
//! Serving from a map built by walking the directory means a request path is
//! only ever compared with names that exist: `..`, encoded slashes, symlinks
//! out of the tree and the like cannot reach any other file. The UI is a few
//! hundred KiB and the image's rootfs is immutable, so nothing is lost by
//! reading it once.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use common::http::percent_decode;
use http_body_util::Full;
use hyper::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, ETAG, IF_NONE_MATCH};
use hyper::{HeaderMap, Method, StatusCode};

use common::Response;

const MAX_FILES: usize = 10_000;
const MAX_TOTAL_BYTES: u64 = 64 * 1024 * 1024;

struct File {
    body: Bytes,
    content_type: &'static str,
    etag: HeaderValue,
}

#[derive(Default)]
pub struct StaticFiles {
    files: HashMap<String, File>,
}

impl StaticFiles {
    /// Loads every regular file under `dir`, keyed `/relative/path`.
    pub fn load(dir: &Path) -> Result<Self> {
        let mut files = HashMap::new();
        let mut total = 0u64;
        let mut pending = vec![dir.to_path_buf()];
        while let Some(current) = pending.pop() {
            let entries = std::fs::read_dir(&current).with_context(|| format!("reading {}", current.display()))?;
            for entry in entries {
                let entry = entry.with_context(|| format!("reading {}", current.display()))?;
                let path = entry.path();
                // Not following symlinks: only what is really in the tree.
                let meta = std::fs::symlink_metadata(&path).with_context(|| format!("stat {}", path.display()))?;
                if meta.is_dir() {
                    pending.push(path);
                    continue;
                }
                if !meta.is_file() {
                    continue;
                }
                total += meta.len();
                if files.len() >= MAX_FILES || total > MAX_TOTAL_BYTES {
                    bail!("{} holds more than {MAX_FILES} files or {MAX_TOTAL_BYTES} bytes", dir.display());
                }
                let Some(key) = key_for(dir, &path) else { continue };
                let body = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
                let etag = HeaderValue::from_str(&format!("\"{:016x}\"", fnv1a(&body))).context("etag")?;
                files.insert(key, File { body: Bytes::from(body), content_type: content_type(&path), etag });
            }
        }
        Ok(Self { files })
    }

    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Serves `path` (GET or HEAD): `/` and directories map to their
    /// `index.html`.
    pub fn serve(&self, method: &Method, path: &str, headers: &HeaderMap) -> Response {
        if method != Method::GET && method != Method::HEAD {
            let mut resp = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
            resp.headers_mut().insert(hyper::header::ALLOW, HeaderValue::from_static("GET, HEAD"));
            return resp;
        }
        let Some((key, file)) = self.lookup(path) else {
            return text(StatusCode::NOT_FOUND, "not found\n");
        };
        let not_modified = headers
            .get_all(IF_NONE_MATCH)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|tag| tag.trim() == file.etag || tag.trim() == "*");
        let mut resp = if not_modified {
            empty(StatusCode::NOT_MODIFIED)
        } else if method == Method::HEAD {
            // hyper sets Content-Length from the body; HEAD must report the
            // GET length, so it is set explicitly on an empty body.
            let mut r = empty(StatusCode::OK);
            r.headers_mut().insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(file.body.len()));
            r
        } else {
            hyper::Response::new(Full::new(file.body.clone()))
        };
        let h = resp.headers_mut();
        h.insert(CONTENT_TYPE, HeaderValue::from_static(file.content_type));
        h.insert(ETAG, file.etag.clone());
        // Vite puts content-hashed names under /assets/: those never change.
        let cache = if key.starts_with("/assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
        h.insert(CACHE_CONTROL, HeaderValue::from_static(cache));
        resp
    }

    fn lookup(&self, path: &str) -> Option<(&str, &File)> {
        let decoded = percent_decode_path(path);
        let candidates = if decoded.ends_with('/') {
            vec![format!("{decoded}index.html")]
        } else {
            vec![decoded.clone(), format!("{decoded}/index.html")]
        };
        candidates.into_iter().find_map(|c| self.files.get_key_value(&c).map(|(k, f)| (k.as_str(), f)))
    }
}

/// Percent-decoding for paths: like query decoding but `+` stays `+`.
fn percent_decode_path(path: &str) -> String {
    path.split('+').map(percent_decode).collect::<Vec<_>>().join("+")
}

/// `/a/b.js` for `dir/a/b.js`; `None` for names that are not UTF-8.
fn key_for(dir: &Path, path: &Path) -> Option<String> {
    let rel = path.strip_prefix(dir).ok()?;
    let mut key = String::new();
    for part in rel.components() {
        key.push('/');
        key.push_str(part.as_os_str().to_str()?);
    }
    Some(key)
}

fn content_type(path: &Path) -> &'static str {
    let ext = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase);
    match ext.as_deref() {
        Some("html" | "htm") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("json" | "map") => "application/json",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("woff") => "font/woff",
        Some("txt") => "text/plain; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("webmanifest") => "application/manifest+json",
        _ => "application/octet-stream",
    }
}

/// FNV-1a, 64 bits: a strong-enough ETag for files that change only with a
/// new image.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn empty(status: StatusCode) -> Response {
    let mut r = hyper::Response::new(Full::new(Bytes::new()));
    *r.status_mut() = status;
    r
}

fn text(status: StatusCode, body: &'static str) -> Response {
    let mut r = hyper::Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn fixture() -> (tempdir::Dir, StaticFiles) {
        let dir = tempdir::Dir::new();
        std::fs::create_dir_all(dir.0.join("assets")).unwrap();
        std::fs::create_dir_all(dir.0.join("docs")).unwrap();
        std::fs::write(dir.0.join("index.html"), "<h1>chat</h1>").unwrap();
        std::fs::write(dir.0.join("assets/app-1234.js"), "console.log(1)").unwrap();
        std::fs::write(dir.0.join("docs/index.html"), "docs").unwrap();
        std::fs::write(dir.0.join("a b.txt"), "spaced").unwrap();
        let files = StaticFiles::load(&dir.0).unwrap();
        (dir, files)
    }

    async fn body(r: Response) -> String {
        String::from_utf8(r.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[tokio::test(flavor = "current_thread")]
    async fn serves_files_with_types_and_index() {
        let (_d, files) = fixture();
        assert_eq!(files.len(), 4);
        let h = HeaderMap::new();
        let r = files.serve(&Method::GET, "/", &h);
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/html; charset=utf-8");
        assert_eq!(r.headers()[CACHE_CONTROL], "no-cache");
        assert_eq!(body(r).await, "<h1>chat</h1>");
        let r = files.serve(&Method::GET, "/assets/app-1234.js", &h);
        assert_eq!(r.headers()[CONTENT_TYPE], "text/javascript; charset=utf-8");
        assert!(r.headers()[CACHE_CONTROL].to_str().unwrap().contains("immutable"));
        assert_eq!(body(files.serve(&Method::GET, "/docs", &h)).await, "docs");
        assert_eq!(body(files.serve(&Method::GET, "/docs/", &h)).await, "docs");
        assert_eq!(body(files.serve(&Method::GET, "/a%20b.txt", &h)).await, "spaced");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn refuses_traversal_and_other_methods() {
        let (_d, files) = fixture();
        let h = HeaderMap::new();
        for path in [
            "/../index.html",
            "/assets/../../etc/passwd",
            "/%2e%2e/index.html",
            "/assets%2f..%2findex.html",
            "/nope",
            "//index.html",
        ] {
            assert_eq!(files.serve(&Method::GET, path, &h).status(), 404, "{path}");
        }
        assert_eq!(files.serve(&Method::POST, "/", &h).status(), 405);
    }

    #[tokio::test(flavor = "current_thread")]
    async fn head_and_etags() {
        let (_d, files) = fixture();
        let r = files.serve(&Method::HEAD, "/index.html", &HeaderMap::new());
        assert_eq!(r.headers()[hyper::header::CONTENT_LENGTH], "13");
        let etag = r.headers()[ETAG].clone();
        assert_eq!(body(r).await, "");
        let mut h = HeaderMap::new();
        h.insert(IF_NONE_MATCH, etag);
        assert_eq!(files.serve(&Method::GET, "/", &h).status(), 304);
    }

    /// A temporary directory removed on drop (no extra dependency).
    mod tempdir {
        pub struct Dir(pub std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let name = format!("gateway-static-{}", common::ulid::generate().unwrap());
                let p = std::env::temp_dir().join(name);
                std::fs::create_dir_all(&p).unwrap();
                Self(p)
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }
}
