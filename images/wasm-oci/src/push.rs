//! The `push` command: uploads what an image-layout tar's `index.json` names
//! — one image manifest, or an index and the manifests it lists — to a
//! registry over the OCI distribution API (crate `oci-client`). Blobs go
//! first, then manifests exactly as stored, so every digest is kept.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference, RegistryOperation};

use crate::cli::{parse_platform, Command, UsageError};
use crate::image::Platform;
use crate::layout::Layout;
use crate::plan::{plan, Step};

pub const ENV_USERNAME: &str = "WASM_OCI_USERNAME";
pub const ENV_PASSWORD: &str = "WASM_OCI_PASSWORD";

/// Validated options of `wasm-oci push`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushOptions {
    pub tar: PathBuf,
    /// Where to push, e.g. `127.0.0.1:5000/test/hello:latest`.
    pub reference: String,
    /// Talk plain HTTP to the registry instead of HTTPS.
    pub plain_http: bool,
    /// Basic auth `(username, password)`; `None` is anonymous.
    pub credentials: Option<(String, String)>,
    /// Which manifest to push when index.json lists several.
    pub platform: Option<Platform>,
}

/// Basic-auth credentials from flags, falling back to `WASM_OCI_USERNAME` and
/// `WASM_OCI_PASSWORD` (read through `env`); both or neither must be set.
pub fn credentials(
    username: Option<String>,
    password: Option<String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<(String, String)>, UsageError> {
    let username = username
        .or_else(|| env(ENV_USERNAME))
        .filter(|u| !u.is_empty());
    let password = password
        .or_else(|| env(ENV_PASSWORD))
        .filter(|p| !p.is_empty());
    match (username, password) {
        (Some(u), Some(p)) => Ok(Some((u, p))),
        (None, None) => Ok(None),
        (Some(_), None) => Err(UsageError(format!(
            "push: a username needs a password (--password or {ENV_PASSWORD})"
        ))),
        (None, Some(_)) => Err(UsageError(format!(
            "push: a password needs a username (--username or {ENV_USERNAME})"
        ))),
    }
}

/// Parses `push <TAR> <REF> [options]`; `env` supplies the credential
/// variables (a parameter so tests need not touch the process environment).
pub fn parse_args(
    mut args: impl Iterator<Item = String>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Command, UsageError> {
    let mut positional = Vec::new();
    let (mut plain_http, mut username, mut password, mut platform) = (false, None, None, None);
    while let Some(arg) = args.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((flag, value)) if flag.starts_with("--") => {
                (flag.to_string(), Some(value.to_string()))
            }
            _ => (arg, None),
        };
        let slot = match flag.as_str() {
            "--help" | "-h" => return Ok(Command::Help),
            "--plain-http" if inline.is_none() => {
                plain_http = true;
                continue;
            }
            "--username" | "-u" => &mut username,
            "--password" | "-p" => &mut password,
            "--platform" => &mut platform,
            f if f.starts_with('-') => {
                return Err(UsageError(format!("push: unknown option {f:?}")))
            }
            _ => {
                positional.push(flag);
                continue;
            }
        };
        let Some(value) = inline.or_else(|| args.next()) else {
            return Err(UsageError(format!("push: {flag} needs a value")));
        };
        if slot.replace(value).is_some() {
            return Err(UsageError(format!("push: {flag} given more than once")));
        }
    }
    let [tar, reference]: [String; 2] = positional
        .try_into()
        .map_err(|_| UsageError("push takes exactly two arguments, <IMAGE.tar> <REF>".into()))?;
    Ok(Command::Push(PushOptions {
        tar: PathBuf::from(tar),
        reference,
        plain_http,
        credentials: credentials(username, password, env)?,
        platform: platform.map(|p| parse_platform("push", &p)).transpose()?,
    }))
}

/// What a push did, for the summary.
#[derive(Debug)]
pub struct PushReport {
    pub reference: String,
    pub manifest_digest: String,
    /// `(what, digest, uploaded)`; `uploaded` is false if the registry had it.
    pub blobs: Vec<(String, String, bool)>,
}

/// Reads the tar and pushes it; errors name the registry, the reference and
/// the step that failed.
pub fn push(opts: &PushOptions) -> Result<PushReport> {
    let reference: Reference = opts
        .reference
        .parse()
        .map_err(|e| UsageError(format!("push: reference {:?}: {e}", opts.reference)))?;
    if reference.digest().is_some() {
        let message = format!(
            "push: reference {}: give a tag, not a digest",
            opts.reference
        );
        return Err(UsageError(message).into());
    }
    let tar =
        std::fs::read(&opts.tar).with_context(|| format!("cannot read {}", opts.tar.display()))?;
    let layout = Layout::parse(&tar)
        .with_context(|| format!("reading image layout {}", opts.tar.display()))?;
    drop(tar);
    let steps = plan(&layout, opts.platform.as_ref())
        .with_context(|| format!("image layout {}", opts.tar.display()))?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let registry = reference.resolve_registry().to_string();
    runtime
        .block_on(upload(opts, &reference, &steps))
        .with_context(|| format!("pushing {} to registry {registry}", reference.whole()))
}

async fn upload(
    opts: &PushOptions,
    reference: &Reference,
    steps: &[Step<'_>],
) -> Result<PushReport> {
    let client = Client::new(ClientConfig {
        protocol: if opts.plain_http {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        },
        // One PUT per blob: fewer round trips than chunked PATCHes.
        use_monolithic_push: true,
        connect_timeout: Some(Duration::from_secs(10)),
        read_timeout: Some(Duration::from_secs(120)),
        ..Default::default()
    });
    let auth = match &opts.credentials {
        Some((u, p)) => RegistryAuth::Basic(u.clone(), p.clone()),
        None => RegistryAuth::Anonymous,
    };
    let registry = reference.resolve_registry();
    let contacting = if opts.plain_http {
        format!("contacting http://{registry}/v2/ and authenticating")
    } else {
        format!("contacting https://{registry}/v2/ and authenticating (a plain-HTTP registry needs --plain-http)")
    };
    client
        .auth(reference, &auth, RegistryOperation::Push)
        .await
        .context(contacting)?;
    let mut report = PushReport {
        reference: reference.whole(),
        manifest_digest: String::new(),
        blobs: Vec::new(),
    };
    for step in steps {
        match step {
            Step::Blob { desc, what, bytes } => {
                let exists = client
                    .blob_exists(reference, &desc.digest)
                    .await
                    .with_context(|| format!("checking whether {what} {} exists", desc.digest))?;
                if !exists {
                    client
                        .push_blob(reference, bytes.to_vec(), &desc.digest)
                        .await
                        .with_context(|| {
                            format!("uploading {what} {} ({} bytes)", desc.digest, desc.size)
                        })?;
                }
                report
                    .blobs
                    .push((what.clone(), desc.digest.clone(), !exists));
            }
            Step::Manifest {
                desc,
                bytes,
                by_digest,
            } => {
                let target = if *by_digest {
                    Reference::with_digest(
                        reference.registry().to_string(),
                        reference.repository().to_string(),
                        desc.digest.clone(),
                    )
                } else {
                    reference.clone()
                };
                let content_type = desc
                    .media_type
                    .parse()
                    .context("manifest media type is no HTTP header value")?;
                client
                    .push_manifest_raw(&target, bytes.to_vec(), content_type)
                    .await
                    .with_context(|| {
                        format!("uploading manifest {} as {}", desc.digest, target.whole())
                    })?;
                report.manifest_digest = desc.digest.clone();
            }
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Image;

    fn image() -> Image {
        crate::test_util::sample_image()
    }

    #[test]
    fn parses_push() {
        let push = |args: &[&str], env: &[(&str, &str)]| {
            let env: Vec<(String, String)> = env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            parse_args(args.iter().map(|s| s.to_string()), move |k| {
                env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
            })
        };
        let Ok(Command::Push(opts)) = push(&["x.tar", "127.0.0.1:5000/a:v1", "--plain-http"], &[])
        else {
            panic!("push not parsed")
        };
        assert_eq!(
            opts,
            PushOptions {
                tar: "x.tar".into(),
                reference: "127.0.0.1:5000/a:v1".into(),
                plain_http: true,
                credentials: None,
                platform: None,
            }
        );
        let Ok(Command::Push(opts)) = push(
            &["--username=u", "x.tar", "r", "--platform", "linux/amd64"],
            &[("WASM_OCI_PASSWORD", "pw")],
        ) else {
            panic!("push with auth not parsed")
        };
        assert_eq!(opts.credentials, Some(("u".into(), "pw".into())));
        assert_eq!(opts.platform.unwrap().architecture, "amd64");
        let cases: &[(&[&str], &str)] = &[
            (&["x.tar"], "exactly two"),
            (&["x.tar", "r", "extra"], "exactly two"),
            (&["x.tar", "r", "--bogus"], "unknown option"),
            (&["x.tar", "r", "--username", "u"], "needs a password"),
            (&["x.tar", "r", "--password"], "needs a value"),
            (&["x.tar", "r", "--platform", "x"], "OS/ARCH"),
            (&["x.tar", "r", "-u", "a", "-u", "b"], "more than once"),
        ];
        for (args, needle) in cases {
            let err = push(args, &[]).expect_err(&format!("{args:?} accepted"));
            assert!(err.0.contains(needle), "{args:?}: {err}");
        }
    }

    #[test]
    fn credentials_need_both_parts() {
        let none = |_: &str| None;
        let env = |k: &str| match k {
            ENV_USERNAME => Some("envuser".to_string()),
            ENV_PASSWORD => Some("envpw".to_string()),
            _ => None,
        };
        assert_eq!(credentials(None, None, none).unwrap(), None);
        assert_eq!(
            credentials(None, None, env).unwrap(),
            Some(("envuser".into(), "envpw".into()))
        );
        assert_eq!(
            credentials(Some("u".into()), None, env).unwrap(),
            Some(("u".into(), "envpw".into()))
        );
        assert!(credentials(Some("u".into()), None, none).is_err());
        assert!(credentials(None, Some("p".into()), none).is_err());
    }

    #[test]
    fn unreachable_registry_names_registry_and_step() {
        // A loopback port that was just free: nothing listens, nothing leaves the machine.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let tmp = crate::test_util::TempDir::new("push");
        let tar = tmp.path().join("x.tar");
        std::fs::write(&tar, image().to_layout_tar().unwrap()).unwrap();
        let opts = PushOptions {
            tar,
            reference: format!("127.0.0.1:{port}/test/x:v1"),
            plain_http: true,
            credentials: None,
            platform: None,
        };
        let err = format!("{:#}", push(&opts).unwrap_err());
        assert!(err.contains(&format!("registry 127.0.0.1:{port}")), "{err}");
        assert!(
            err.contains(&format!("127.0.0.1:{port}/test/x:v1")),
            "{err}"
        );
        assert!(
            err.contains(&format!("http://127.0.0.1:{port}/v2/")),
            "{err}"
        );
    }
}
