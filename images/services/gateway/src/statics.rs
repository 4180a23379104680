//! The web UI's static files, read from `STATIC_DIR` per request.
//!
//! A request path is decoded, then refused unless every segment is a plain
//! name (no empty, `.` or `..` segment, no backslash or NUL), and no
//! component on the way may be a symbolic link: nothing outside the
//! directory's own tree can be reached. The host grants the container's
//! rootfs only, so even a mistake here could not leave the image.

use std::fs::Metadata;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::respond::Header;

/// Larger files are not served (the UI is a few hundred KiB).
const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// A response for a static request.
#[derive(Debug, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<Header>,
    /// `None`: no body and no length (304). A HEAD reply carries the GET
    /// body: wasi:http checks the bytes written against Content-Length, and
    /// the host's HTTP server sends a HEAD response's head only.
    pub body: Option<Vec<u8>>,
}

/// Serves `path` (GET or HEAD) from `dir`: `/` and directories map to
/// their `index.html`.
pub fn serve(dir: &str, method: &str, path: &str, if_none_match: &[Vec<u8>]) -> Reply {
    if method != "GET" && method != "HEAD" {
        let mut reply = text(405, "method not allowed\n");
        reply.headers.push(("allow".into(), b"GET, HEAD".to_vec()));
        return reply;
    }
    let Some((rel, file, meta)) = candidates(path).into_iter().find_map(|rel| locate(Path::new(dir), rel)) else {
        return text(404, "not found\n");
    };
    // Length and modification time: files change only with a new image, and
    // a revalidation (every load of index.html) then reads no content. An
    // mtime of 0 says nothing: wasm-oci writes every layer entry with it, and
    // a rebuilt index.html keeps its length (Vite's hashes are fixed-size),
    // so those files are tagged by content.
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(UNIX_EPOCH).ok()).filter(|d| !d.is_zero());
    let (etag, content) = match mtime {
        Some(mtime) => (format!("\"{:x}-{:x}\"", meta.len(), mtime.as_nanos()), None),
        None => match std::fs::read(&file) {
            Ok(body) => (format!("\"{:016x}\"", fnv1a(&body)), Some(body)),
            Err(_) => return text(404, "not found\n"),
        },
    };
    // Vite puts content-hashed names under /assets/: those never change.
    let cache = if rel.starts_with("assets/") { "public, max-age=31536000, immutable" } else { "no-cache" };
    let headers = vec![
        ("content-type".into(), content_type(&rel).as_bytes().to_vec()),
        ("etag".into(), etag.as_bytes().to_vec()),
        ("cache-control".into(), cache.as_bytes().to_vec()),
    ];
    if matches_etag(if_none_match, &etag) {
        return Reply { status: 304, headers, body: None };
    }
    let body = match content.map_or_else(|| std::fs::read(&file), Ok) {
        Ok(body) => body,
        Err(_) => return text(404, "not found\n"),
    };
    Reply { status: 200, headers, body: Some(body) }
}

/// Whether an `If-None-Match` value names `etag` (or is `*`).
fn matches_etag(if_none_match: &[Vec<u8>], etag: &str) -> bool {
    if_none_match
        .iter()
        .filter_map(|v| std::str::from_utf8(v).ok())
        .flat_map(|v| v.split(','))
        .any(|tag| tag.trim() == etag || tag.trim() == "*")
}

/// Relative file names a request path may mean, or none if it is not a
/// plain path.
fn candidates(path: &str) -> Vec<String> {
    let Some(decoded) = percent_decode(path) else { return Vec::new() };
    let Some(rest) = decoded.strip_prefix('/') else { return Vec::new() };
    if rest.contains(['\\', '\0']) {
        return Vec::new();
    }
    let (rest, directory) = match rest.strip_suffix('/') {
        Some(dir) => (dir, true),
        None => (rest, rest.is_empty()),
    };
    if rest.is_empty() {
        return vec!["index.html".into()];
    }
    if rest.split('/').any(|s| s.is_empty() || s == "." || s == "..") {
        return Vec::new();
    }
    if directory {
        vec![format!("{rest}/index.html")]
    } else {
        vec![rest.to_string(), format!("{rest}/index.html")]
    }
}

/// The regular file `rel` under `dir`, if no component on the way is a
/// symbolic link: (name, path, metadata).
fn locate(dir: &Path, rel: String) -> Option<(String, PathBuf, Metadata)> {
    let mut path = PathBuf::from(dir);
    let mut meta = None;
    for part in rel.split('/') {
        path.push(part);
        let m = std::fs::symlink_metadata(&path).ok()?;
        if m.file_type().is_symlink() {
            return None;
        }
        meta = Some(m);
    }
    let meta = meta?;
    if !meta.is_file() || meta.len() > MAX_FILE_BYTES {
        return None;
    }
    Some((rel, path, meta))
}

/// Percent-decoding for paths (`+` stays `+`); `None` if the result is not
/// UTF-8.
fn percent_decode(path: &str) -> Option<String> {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push(h << 4 | l);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).ok()
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
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

/// FNV-1a, 64 bits: an ETag when the file system gives no modification time.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn text(status: u16, body: &str) -> Reply {
    let headers = vec![("content-type".into(), b"text/plain; charset=utf-8".to_vec())];
    Reply { status, headers, body: Some(body.as_bytes().to_vec()) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A temporary UI tree, removed on drop.
    struct Tree(PathBuf);

    impl Tree {
        fn new() -> Self {
            let nanos = std::time::SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
            let dir = std::env::temp_dir().join(format!("gateway-static-{}-{nanos}", std::process::id()));
            std::fs::create_dir_all(dir.join("assets")).unwrap();
            std::fs::create_dir_all(dir.join("docs")).unwrap();
            std::fs::write(dir.join("index.html"), "<h1>chat</h1>").unwrap();
            std::fs::write(dir.join("assets/app-1234.js"), "console.log(1)").unwrap();
            std::fs::write(dir.join("docs/index.html"), "docs").unwrap();
            std::fs::write(dir.join("a b+c.txt"), "spaced").unwrap();
            std::os::unix::fs::symlink("/etc/hostname", dir.join("escape.txt")).unwrap();
            std::os::unix::fs::symlink("/etc", dir.join("etc")).unwrap();
            Self(dir)
        }
        fn get(&self, path: &str) -> Reply {
            serve(self.0.to_str().unwrap(), "GET", path, &[])
        }
    }

    impl Drop for Tree {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn header<'a>(r: &'a Reply, name: &str) -> &'a str {
        r.headers.iter().find(|(n, _)| n == name).map(|(_, v)| std::str::from_utf8(v).unwrap()).unwrap_or("")
    }

    #[test]
    fn serves_files_with_types_and_index() {
        let tree = Tree::new();
        let r = tree.get("/");
        assert_eq!((r.status, r.body.as_deref()), (200, Some(&b"<h1>chat</h1>"[..])));
        assert_eq!(header(&r, "content-type"), "text/html; charset=utf-8");
        assert_eq!(header(&r, "cache-control"), "no-cache");
        let r = tree.get("/assets/app-1234.js");
        assert_eq!(header(&r, "content-type"), "text/javascript; charset=utf-8");
        assert!(header(&r, "cache-control").contains("immutable"));
        assert_eq!(tree.get("/docs").body.as_deref(), Some(&b"docs"[..]));
        assert_eq!(tree.get("/docs/").body.as_deref(), Some(&b"docs"[..]));
        assert_eq!(tree.get("/a%20b+c.txt").body.as_deref(), Some(&b"spaced"[..]));
    }

    #[test]
    fn refuses_traversal_links_and_other_methods() {
        let tree = Tree::new();
        for path in [
            "/../index.html",
            "/assets/../../etc/passwd",
            "/%2e%2e/index.html",
            "/assets%2f..%2findex.html",
            "/./index.html",
            "//index.html",
            "/nope",
            "/escape.txt",
            "/etc/hostname",
            "/assets\\app-1234.js",
            "/index.html%00",
            "/%ff",
            "index.html",
        ] {
            assert_eq!(tree.get(path).status, 404, "{path}");
        }
        let r = serve(tree.0.to_str().unwrap(), "POST", "/", &[]);
        assert_eq!((r.status, header(&r, "allow")), (405, "GET, HEAD"));
    }

    #[test]
    fn head_and_etags() {
        let tree = Tree::new();
        let dir = tree.0.to_str().unwrap();
        // HEAD: the GET body, so that Content-Length is the GET one (the
        // host sends no body for HEAD).
        let r = serve(dir, "HEAD", "/index.html", &[]);
        assert_eq!((r.status, r.body.as_deref()), (200, Some(&b"<h1>chat</h1>"[..])));
        let etag = header(&r, "etag").as_bytes().to_vec();
        assert!(etag.starts_with(b"\"d-"), "{}", String::from_utf8_lossy(&etag));
        assert_eq!(serve(dir, "GET", "/", std::slice::from_ref(&etag)).status, 304);
        assert_eq!(serve(dir, "GET", "/", &[b"\"other\", ".iter().chain(&etag).copied().collect()]).status, 304);
        assert_eq!(serve(dir, "GET", "/", &[b"\"other\"".to_vec()]).status, 200);
        let r = serve(dir, "GET", "/", &[b"*".to_vec()]);
        assert_eq!((r.status, r.body.as_deref(), header(&r, "etag").as_bytes()), (304, None, &etag[..]));
        // Another length, another tag.
        assert_ne!(header(&tree.get("/docs/"), "etag"), header(&tree.get("/"), "etag"));
    }

    #[test]
    fn files_with_mtime_zero_are_tagged_by_content() {
        let tree = Tree::new();
        let file = std::fs::File::options().write(true).open(tree.0.join("index.html")).unwrap();
        file.set_modified(UNIX_EPOCH).unwrap();
        let before = header(&tree.get("/"), "etag").to_string();
        assert_eq!(before, format!("\"{:016x}\"", fnv1a(b"<h1>chat</h1>")));
        // Same length, same mtime, other content (as a rebuilt UI in an image).
        std::fs::write(tree.0.join("index.html"), "<h1>talk</h1>").unwrap();
        file.set_modified(UNIX_EPOCH).unwrap();
        assert_ne!(header(&tree.get("/"), "etag"), before);
        assert_eq!(serve(tree.0.to_str().unwrap(), "GET", "/", &[before.into_bytes()]).status, 200);
    }

    #[test]
    fn decodes_paths_and_names_types() {
        assert_eq!(percent_decode("/a%20b+c%2F%zz%4").as_deref(), Some("/a b+c/%zz%4"));
        assert_eq!(percent_decode("/%C3%A9").as_deref(), Some("/é"));
        assert_eq!(percent_decode("/%ff"), None);
        assert_eq!(candidates("/"), vec!["index.html"]);
        assert_eq!(candidates("/docs"), vec!["docs", "docs/index.html"]);
        assert_eq!(candidates("/docs/"), vec!["docs/index.html"]);
        assert!(candidates("/a/%2e%2e/b").is_empty() && candidates("/a//b").is_empty());
        assert_eq!(content_type("assets/App.JS"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("LICENSE"), "application/octet-stream");
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
