//! A process environment (`KEY=VALUE` strings) as pairs.

use oci_spec::runtime::Spec;

/// `process.env` of a spec as pairs.
pub fn env_pairs(spec: &Spec) -> Vec<(String, String)> {
    pairs(spec.process().as_ref().and_then(|p| p.env().as_deref()).unwrap_or_default())
}

/// `KEY=VALUE` strings as pairs (a bare `KEY` is `KEY=`).
pub fn pairs(env: &[String]) -> Vec<(String, String)> {
    env.iter()
        .map(|kv| match kv.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (kv.clone(), String::new()),
        })
        .collect()
}

/// The value of `name`; the last definition wins, as in a shell.
pub fn last<'a>(env: &'a [(String, String)], name: &str) -> Option<&'a str> {
    env.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_split_at_the_first_equals_sign() {
        let env = pairs(&["A=1".into(), "B=x=y".into(), "EMPTY".into(), "A=2".into()]);
        assert_eq!(env[1], ("B".to_string(), "x=y".to_string()));
        assert_eq!(env[2], ("EMPTY".to_string(), String::new()));
        assert_eq!(last(&env, "A"), Some("2"));
        assert_eq!(last(&env, "C"), None);
    }
}
