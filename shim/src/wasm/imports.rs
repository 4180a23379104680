//! What guests may import, and a plain account of an import the shim cannot
//! satisfy (Wasmtime's own error is a type-checker trace).

use wasmtime::component::{Component, InstancePre, Linker};

/// The newest WASI 0.2 release Wasmtime implements; imports of any earlier
/// 0.2.x version link against it too.
pub const WASI_P2_VERSION: &str = "0.2.12";

/// WASI 0.2 packages linked for every component, commands and proxies alike.
pub const P2_PACKAGES: &[&str] = &["wasi:cli", "wasi:clocks", "wasi:filesystem", "wasi:io", "wasi:random", "wasi:sockets", "wasi:http"];

/// Resolves a component's imports, or says in words which one is missing.
pub fn link_component<T>(linker: &Linker<T>, component: &Component) -> anyhow::Result<InstancePre<T>> {
    linker.instantiate_pre(component).map_err(|e| unsatisfied_component_import(&anyhow::Error::from(e)))
}

fn unsatisfied_component_import(e: &anyhow::Error) -> anyhow::Error {
    // Wasmtime's outermost message names the import: "component imports
    // instance `NAME`, but a matching implementation was not found ...";
    // the causes below it are the type checker's.
    let Some(name) = between_backticks(&e.to_string()) else {
        return anyhow::anyhow!("link component: {e:#}");
    };
    let (package, version) = match name.split_once('/') {
        Some((package, rest)) => (package, rest.split_once('@').map(|(_, v)| v)),
        None => (name.split_once('@').map_or(name.as_str(), |(p, _)| p), None),
    };
    let provided = P2_PACKAGES.join(", ");
    let why = if P2_PACKAGES.contains(&package) && version.is_some_and(|v| v.starts_with("0.2.")) {
        let cause = e.root_cause();
        format!(
            "it is WASI 0.2, but not as Wasmtime implements it (up to {WASI_P2_VERSION}): {cause}; \
             rebuild the component against a released WASI 0.2"
        )
    } else if package.starts_with("wasi:") {
        format!("this shim provides WASI 0.2 ({provided}), not {}", version.map_or(package.to_string(), |v| format!("{package}@{v}")))
    } else {
        format!("it is not a WASI interface; this shim provides only WASI 0.2 ({provided}): compose the component with an implementation of it first")
    };
    anyhow::anyhow!("the component imports `{name}`, which cannot be linked: {why}")
}

/// Explains a core module that imports what WASI preview 1 does not define.
pub fn unsatisfied_module_import(e: wasmtime::Error) -> anyhow::Error {
    let e = anyhow::Error::from(e);
    match between_backticks(&e.to_string()) {
        Some(name) => anyhow::anyhow!(
            "the module imports `{name}`, which cannot be linked: this shim provides only WASI preview 1 (`wasi_snapshot_preview1`)"
        ),
        None => anyhow::anyhow!("link module: {e:#}"),
    }
}

fn between_backticks(text: &str) -> Option<String> {
    let (_, rest) = text.split_once('`')?;
    let (name, _) = rest.split_once('`')?;
    Some(name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn explain(outer: &str, cause: &str) -> String {
        unsatisfied_component_import(&anyhow::anyhow!("{cause}").context(outer.to_string())).to_string()
    }

    #[test]
    fn names_the_missing_import_in_words() {
        let e = explain("component imports instance `acme:kv/store@1.0.0`, but a matching implementation was not found in the linker", "instance `acme:kv/store@1.0.0` not defined");
        assert!(e.starts_with("the component imports `acme:kv/store@1.0.0`"), "{e}");
        assert!(e.contains("not a WASI interface") && e.contains("wasi:http"), "{e}");
        assert!(!e.contains("not defined"), "no type-checker trace: {e}");

        let e = explain("component imports instance `wasi:http/types@0.2.99`, but a matching implementation was not found in the linker", "instance export `fields` has the wrong type");
        assert!(e.contains("up to 0.2.12") && e.contains("`fields` has the wrong type"), "{e}");

        let e = explain("component imports instance `wasi:keyvalue/store@0.2.0-draft`, but a matching implementation was not found in the linker", "x");
        assert!(e.contains("not wasi:keyvalue@0.2.0-draft"), "{e}");

        let e = explain("component imports instance `wasi:cli/environment@0.3.0`, but a matching implementation was not found in the linker", "x");
        assert!(e.contains("provides WASI 0.2") && e.contains("wasi:cli@0.3.0"), "{e}");
    }

    #[test]
    fn unparsable_errors_keep_their_chain() {
        let e = unsatisfied_component_import(&anyhow::anyhow!("inner").context("outer without names"));
        assert_eq!(e.to_string(), "link component: outer without names: inner");
    }
}
