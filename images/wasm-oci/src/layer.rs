//! The image's single layer: the Wasm module plus optional extra files, as a
//! reproducible uncompressed tar.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{bail, ensure, Context, Result};

use crate::tar::TarWriter;

/// Mode of the module file and of every directory.
pub const EXEC_MODE: u32 = 0o755;
/// Mode of every other file.
pub const FILE_MODE: u32 = 0o644;

/// Deepest directory nesting followed under an `--add` source; guards
/// against symlink loops.
const MAX_DEPTH: usize = 64;

#[derive(Debug)]
enum Node {
    Dir,
    File { mode: u32, data: Vec<u8> },
}

/// The layer's file tree, keyed by normalized path (no leading `/`).
/// A `BTreeMap` keeps entries sorted, and every directory sorts before its
/// contents because it is a prefix of their paths.
#[derive(Debug, Default)]
pub struct LayerTree {
    nodes: BTreeMap<String, Node>,
}

impl LayerTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a file (and its parent directories) at image path `path`.
    pub fn add_file(&mut self, path: &str, mode: u32, data: Vec<u8>) -> Result<()> {
        let path = normalize_image_path(path)?;
        ensure!(
            !path.is_empty(),
            "a file cannot be placed at the image root '/'"
        );
        self.add_parents(&path)?;
        if self.nodes.contains_key(&path) {
            bail!("/{path} is added to the image more than once");
        }
        self.nodes.insert(path, Node::File { mode, data });
        Ok(())
    }

    /// Adds a directory (and its parents); adding an existing directory is a no-op.
    pub fn add_dir(&mut self, path: &str) -> Result<()> {
        let path = normalize_image_path(path)?;
        if path.is_empty() {
            return Ok(());
        }
        self.add_parents(&path)?;
        self.insert_dir(path)
    }

    /// Copies host file or directory `src` to image path `dest`, recursively.
    /// Directories get [`EXEC_MODE`], files [`FILE_MODE`]; symlinks are followed.
    pub fn add_host_path(&mut self, src: &Path, dest: &str) -> Result<()> {
        self.add_host_path_at(src, dest, 0)
    }

    fn add_host_path_at(&mut self, src: &Path, dest: &str, depth: usize) -> Result<()> {
        ensure!(
            depth <= MAX_DEPTH,
            "{} is nested too deeply (symlink loop?)",
            src.display()
        );
        let meta = fs::metadata(src).with_context(|| format!("cannot read {}", src.display()))?;
        if meta.is_file() {
            let data = fs::read(src).with_context(|| format!("cannot read {}", src.display()))?;
            return self.add_file(dest, FILE_MODE, data);
        }
        ensure!(
            meta.is_dir(),
            "{} is neither a regular file nor a directory",
            src.display()
        );
        self.add_dir(dest)?;
        for name in sorted_dir_names(src)? {
            let child_dest = format!("{}/{}", dest.trim_end_matches('/'), name);
            self.add_host_path_at(&src.join(&name), &child_dest, depth + 1)?;
        }
        Ok(())
    }

    fn add_parents(&mut self, path: &str) -> Result<()> {
        let mut end = 0;
        while let Some(i) = path[end..].find('/') {
            end += i;
            self.insert_dir(path[..end].to_string())?;
            end += 1;
        }
        Ok(())
    }

    fn insert_dir(&mut self, path: String) -> Result<()> {
        match self.nodes.get(&path) {
            Some(Node::File { .. }) => bail!("/{path} is added both as a file and as a directory"),
            Some(Node::Dir) => Ok(()),
            None => {
                self.nodes.insert(path, Node::Dir);
                Ok(())
            }
        }
    }

    /// Paths of all entries, sorted, without leading `/`.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.nodes.keys().map(String::as_str)
    }

    /// Serializes the tree as a reproducible tar.
    pub fn to_tar(&self) -> Result<Vec<u8>> {
        let mut tar = TarWriter::new();
        for (path, node) in &self.nodes {
            match node {
                Node::Dir => tar.append_dir(path, EXEC_MODE)?,
                Node::File { mode, data } => tar.append_file(path, *mode, data)?,
            }
        }
        Ok(tar.finish())
    }
}

/// Directory entry names of `dir`, sorted; non-UTF-8 names are rejected.
fn sorted_dir_names(dir: &Path) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name();
        let name = name
            .to_str()
            .with_context(|| format!("file name {name:?} in {} is not UTF-8", dir.display()))?;
        names.push(name.to_string());
    }
    names.sort();
    Ok(names)
}

/// Normalizes an absolute or relative image path to `a/b/c` form: drops
/// leading `/`, empty and `.` components; rejects `..`. The root is `""`.
pub fn normalize_image_path(path: &str) -> Result<String> {
    ensure!(
        !path.contains('\0'),
        "image path {path:?} contains a NUL byte"
    );
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => bail!("image path {path:?} must not contain '..'"),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tar::{read_entries, Kind};
    use crate::test_util::TempDir;

    #[test]
    fn normalizes_paths() {
        assert_eq!(normalize_image_path("/app.wasm").unwrap(), "app.wasm");
        assert_eq!(normalize_image_path("./a//b/./c/").unwrap(), "a/b/c");
        assert_eq!(normalize_image_path("/").unwrap(), "");
        assert!(normalize_image_path("/a/../etc").is_err());
    }

    #[test]
    fn parents_are_created_and_sorted() {
        let mut tree = LayerTree::new();
        tree.add_file("/srv/www/index.html", FILE_MODE, b"hi".to_vec())
            .unwrap();
        tree.add_file("/app.wasm", EXEC_MODE, b"\0asm".to_vec())
            .unwrap();
        tree.add_file("/srv-b", FILE_MODE, Vec::new()).unwrap();
        let paths: Vec<_> = tree.paths().collect();
        assert_eq!(
            paths,
            ["app.wasm", "srv", "srv-b", "srv/www", "srv/www/index.html"]
        );

        let entries = read_entries(&tree.to_tar().unwrap()).unwrap();
        let modes: Vec<_> = entries.iter().map(|e| (e.kind, e.mode)).collect();
        assert_eq!(
            modes,
            [
                (Kind::File, EXEC_MODE),
                (Kind::Dir, EXEC_MODE),
                (Kind::File, FILE_MODE),
                (Kind::Dir, EXEC_MODE),
                (Kind::File, FILE_MODE)
            ]
        );
    }

    #[test]
    fn rejects_conflicts() {
        let mut tree = LayerTree::new();
        tree.add_file("/a", FILE_MODE, Vec::new()).unwrap();
        assert!(tree.add_file("a", FILE_MODE, Vec::new()).is_err());
        assert!(tree.add_file("/a/b", FILE_MODE, Vec::new()).is_err());
        assert!(tree.add_file("/", FILE_MODE, Vec::new()).is_err());
    }

    #[test]
    fn adds_host_directories_recursively() {
        let tmp = TempDir::new("layer");
        tmp.write("static/index.html", b"<h1>hi</h1>");
        tmp.write("static/css/site.css", b"body{}");
        tmp.write("static/b.txt", b"b");

        let mut tree = LayerTree::new();
        tree.add_host_path(&tmp.path().join("static"), "/www")
            .unwrap();
        let paths: Vec<_> = tree.paths().collect();
        assert_eq!(
            paths,
            [
                "www",
                "www/b.txt",
                "www/css",
                "www/css/site.css",
                "www/index.html"
            ]
        );

        let mut root = LayerTree::new();
        root.add_host_path(&tmp.path().join("static"), "/").unwrap();
        assert_eq!(root.paths().next(), Some("b.txt"));

        let missing = tree
            .add_host_path(&tmp.path().join("nope"), "/x")
            .unwrap_err();
        assert!(format!("{missing:#}").contains("nope"), "{missing:#}");
    }
}
