//! The node agent's "image registry": which local program runs a container
//! of a given image. Only the repository part counts (tags and digests are
//! ignored); an image not listed here fails like an image that cannot be
//! pulled.
//!
//! | image | program |
//! | --- | --- |
//! | `sluice.dev/echo`, `…/echo-basic`, `…/agnhost` | `sluice-testpod http-echo` on every TCP container port (8080 if none): answers every request with JSON naming pod, namespace, path, method, host, protocol and headers (the fields of Gateway API's echo-basic) |
//! | `sluice.dev/tcp-echo` | `sluice-testpod echo`: a line echo on every TCP port and a datagram echo on every UDP port, each answer prefixed with the pod's name and the peer address |
//! | `busybox`, `…/busybox` | the host's busybox, running the container's command and args (e.g. `httpd -f -p 8080`) in a scratch directory holding `index.html` |

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Container;

/// How to run one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Launch {
    /// Program and arguments.
    pub argv: Vec<String>,
    /// Extra environment (the container's literal `env` values).
    pub env: Vec<(String, String)>,
}

/// Why an image cannot be run (reported as the container's waiting reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// No local program for this image.
    #[error("image {0:?} is not in the node agent's registry")]
    Unknown(String),
    /// The image needs a command and has none.
    #[error("image {0:?} needs a command")]
    NoCommand(String),
}

/// The image's repository: without registry-port confusion, tag or digest.
pub fn repository(image: &str) -> &str {
    let image = image.split('@').next().unwrap_or(image);
    match image.rfind(':') {
        Some(i) if !image[i..].contains('/') => &image[..i],
        _ => image,
    }
}

/// Resolves a container to a program. `testpod` is the `sluice-testpod`
/// binary; `busybox` the host's busybox.
pub fn resolve(c: &Container, testpod: &Path, busybox: &Path) -> Result<Launch, ImageError> {
    let image = c.image.clone().unwrap_or_default();
    let repo = repository(&image);
    let last = repo.rsplit('/').next().unwrap_or(repo);
    let ports = |proto: &str| -> Vec<i32> {
        c.ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == proto)
            .map(|p| p.container_port)
            .collect()
    };
    let env = c
        .env
        .iter()
        .flatten()
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    let argv = match (repo, last) {
        ("sluice.dev/echo", _) | (_, "echo-basic") | (_, "agnhost") => {
            let mut tcp = ports("TCP");
            if tcp.is_empty() {
                tcp.push(8080);
            }
            let mut argv = vec![path(testpod), "http-echo".into()];
            for p in tcp {
                argv.extend(["--listen".into(), p.to_string()]);
            }
            argv
        }
        ("sluice.dev/tcp-echo", _) => {
            let mut argv = vec![path(testpod), "echo".into()];
            for p in ports("TCP") {
                argv.extend(["--tcp".into(), p.to_string()]);
            }
            for p in ports("UDP") {
                argv.extend(["--udp".into(), p.to_string()]);
            }
            argv
        }
        (_, "busybox") => {
            let words: Vec<String> = c
                .command
                .iter()
                .flatten()
                .chain(c.args.iter().flatten())
                .cloned()
                .collect();
            if words.is_empty() {
                return Err(ImageError::NoCommand(image));
            }
            std::iter::once(path(busybox)).chain(words).collect()
        }
        _ => return Err(ImageError::Unknown(image)),
    };
    Ok(Launch { argv, env })
}

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// The `sluice-testpod` binary cargo built beside this test binary
/// (`target/<profile>/sluice-testpod`), or `SLUICE_TESTPOD` if set.
pub fn testpod_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("SLUICE_TESTPOD").filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    // target/<profile>/deps/<test binary> → target/<profile>/sluice-testpod
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|d| d.join("sluice-testpod"))
        .collect::<Vec<_>>();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or_else(|| {
            format!(
                "sluice-testpod not found beside {} (build it: cargo build -p sluice-tests --bins)",
                exe.display()
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_drops_tags_and_digests_but_not_registry_ports() {
        assert_eq!(repository("busybox:1.36"), "busybox");
        assert_eq!(
            repository("reg:5000/x/echo-basic:v1"),
            "reg:5000/x/echo-basic"
        );
        assert_eq!(repository("reg:5000/x/echo"), "reg:5000/x/echo");
        assert_eq!(repository("a/b@sha256:abc"), "a/b");
    }

    #[test]
    fn unknown_images_do_not_run() {
        let c = Container {
            image: Some("nginx:1.27".into()),
            ..Default::default()
        };
        assert!(matches!(
            resolve(&c, Path::new("/t"), Path::new("/b")),
            Err(ImageError::Unknown(_))
        ));
    }
}
