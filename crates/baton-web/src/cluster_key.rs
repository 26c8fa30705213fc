//! The client's address through a standby. A standby forwards each request to the active
//! server, so the active server's peer is the standby; the standby names the client's own
//! address in `X-Baton-Forwarded-For`, authenticated with the cluster key, and the active server
//! takes that address (for the sign-in backoff per address) only when the HMAC checks. A
//! header that does not check — sent by a client directly, or to a standby, which replaces it
//! — is ignored.
//!
//! The key is 32 random bytes in `<data>/cluster.key` (mode 0600, hex), in the data directory
//! every server of a cluster shares: whichever server starts first makes it, writing a
//! temporary file in full and then linking it into place, so that two servers starting at once
//! agree on one key and none ever reads a partial one. The header is
//! `IP SECONDS HMAC` (HMAC-SHA256 over the address and the Unix time it was signed at); it is
//! good for [`CLIENT_HEADER_SECS`] either way of the active server's clock, which bounds the
//! replay of a header seen on the network between servers.

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::Next;
use axum::response::Response;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header a standby names the client's address in.
pub const CLIENT_HEADER: HeaderName = HeaderName::from_static("x-baton-forwarded-for");

/// How far (seconds) a signed address's time may be from the active server's clock.
pub const CLIENT_HEADER_SECS: u64 = 60;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "cluster.key";

#[derive(Debug, thiserror::Error)]
pub enum ClusterKeyError {
    #[error("cannot {what} the cluster key {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the cluster key {} is not 64 hex digits (hint: stop every server that shares this data \
         directory, remove the file, and start them again: the first makes a new key)",
        path.display()
    )]
    Malformed { path: PathBuf },
    #[error(
        "the cluster key {} has mode {mode:o}: others than its owner may read it (hint: chmod \
         600 it)",
        path.display()
    )]
    Exposed { path: PathBuf, mode: u32 },
}

/// The key the servers of one data directory share.
pub struct ClusterKey {
    key: [u8; 32],
}

impl ClusterKey {
    /// Reads `<data>/cluster.key`, or makes it if no server has yet.
    pub fn load_or_create(data: &Path) -> Result<ClusterKey, ClusterKeyError> {
        let path = data.join(KEY_FILE);
        match ClusterKey::read(&path) {
            Err(ClusterKeyError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound => {}
            other => return other,
        }
        let io = |what, path: &Path| {
            let path = path.to_path_buf();
            move |source| ClusterKeyError::Io { what, path, source }
        };
        let key: [u8; 32] = rand::random();
        let tmp = data.join(format!(
            ".{KEY_FILE}.{}.{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io("create", &tmp))?;
        let written = f
            .write_all(format!("{}\n", hex::encode(key)).as_bytes())
            .and_then(|()| f.sync_all());
        drop(f);
        if let Err(e) = written {
            let _ = std::fs::remove_file(&tmp);
            return Err(io("write", &tmp)(e));
        }
        // A link never replaces: if another server linked its key first, that one is the key.
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                if let Ok(dir) = std::fs::File::open(data) {
                    let _ = dir.sync_all();
                }
                Ok(ClusterKey { key })
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => ClusterKey::read(&path),
            Err(e) => Err(io("create", &path)(e)),
        }
    }

    fn read(path: &Path) -> Result<ClusterKey, ClusterKeyError> {
        let io = |what| {
            let path = path.to_path_buf();
            move |source| ClusterKeyError::Io { what, path, source }
        };
        let meta = std::fs::metadata(path).map_err(io("read"))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(ClusterKeyError::Exposed {
                path: path.to_path_buf(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io("read"))?;
        let malformed = || ClusterKeyError::Malformed {
            path: path.to_path_buf(),
        };
        let bytes = hex::decode(text.trim()).map_err(|_| malformed())?;
        let key = <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| malformed())?;
        Ok(ClusterKey { key })
    }

    #[cfg(test)]
    fn from_bytes(key: [u8; 32]) -> ClusterKey {
        ClusterKey { key }
    }

    fn mac(&self, ip: &str, secs: u64) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        m.update(b"baton-client-addr\0");
        m.update(ip.as_bytes());
        m.update(b"\0");
        m.update(secs.to_string().as_bytes());
        m
    }

    /// The header value that names `ip` as the client, signed at `now_secs`.
    pub fn sign(&self, ip: IpAddr, now_secs: u64) -> HeaderValue {
        let ip = ip.to_string();
        let tag = hex::encode(self.mac(&ip, now_secs).finalize().into_bytes());
        HeaderValue::from_str(&format!("{ip} {now_secs} {tag}"))
            .expect("an address, digits and hex are a valid header value")
    }

    /// The client's address a header names, if this key signed it within the window.
    pub fn verify(&self, value: &HeaderValue, now_secs: u64) -> Option<IpAddr> {
        let mut parts = value.to_str().ok()?.split(' ');
        let (ip_text, secs, tag) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let ip: IpAddr = ip_text.parse().ok()?;
        let secs: u64 = secs.parse().ok()?;
        if secs.abs_diff(now_secs) > CLIENT_HEADER_SECS {
            return None;
        }
        let tag = hex::decode(tag).ok()?;
        self.mac(ip_text, secs).verify_slice(&tag).ok()?;
        Some(ip)
    }
}

pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The address of the client a request came from: the connection's peer, or the address a
/// standby vouched for with the cluster key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ClientAddr(pub IpAddr);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        if let Some(c) = parts.extensions.get::<ClientAddr>() {
            return Ok(*c);
        }
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        Ok(ClientAddr(peer))
    }
}

/// The active server's layer: takes the client's address from a standby's signed header when
/// it checks, else the peer's; the header goes no further either way.
pub(crate) async fn client_addr(
    State(s): State<crate::AppState>,
    mut req: Request,
    next: Next,
) -> Response {
    let vouched = req
        .headers()
        .get(&CLIENT_HEADER)
        .and_then(|v| s.cluster_key.verify(v, now_secs()));
    if vouched.is_none() && req.headers().contains_key(&CLIENT_HEADER) {
        tracing::debug!("ignored an X-Baton-Forwarded-For header that does not check");
    }
    req.headers_mut().remove(&CLIENT_HEADER);
    if let Some(ip) = vouched {
        req.extensions_mut().insert(ClientAddr(ip));
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_address_checks_only_with_the_key_and_in_time() {
        let k = ClusterKey::from_bytes([7; 32]);
        let ip: IpAddr = "127.0.0.2".parse().unwrap();
        let h = k.sign(ip, 1000);
        assert_eq!(k.verify(&h, 1000), Some(ip));
        assert_eq!(k.verify(&h, 1000 + CLIENT_HEADER_SECS), Some(ip));
        assert_eq!(k.verify(&h, 1001 + CLIENT_HEADER_SECS), None, "too old");
        assert_eq!(
            k.verify(&h, 999 - CLIENT_HEADER_SECS),
            None,
            "from the future"
        );
        assert_eq!(ClusterKey::from_bytes([8; 32]).verify(&h, 1000), None);
        // Another address under the same tag does not check.
        let forged = h.to_str().unwrap().replace("127.0.0.2", "127.0.0.3");
        assert_eq!(
            k.verify(&HeaderValue::from_str(&forged).unwrap(), 1000),
            None
        );
        for bad in [
            "",
            "127.0.0.2",
            "127.0.0.2 1000",
            "x 1000 00",
            "127.0.0.2 1000 zz",
        ] {
            assert_eq!(
                k.verify(&HeaderValue::from_static(bad), 1000),
                None,
                "{bad}"
            );
        }
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(k.verify(&k.sign(v6, 5), 5), Some(v6));
    }

    #[test]
    fn the_first_server_makes_the_key_and_the_others_read_it() {
        let dir = tempfile::tempdir().unwrap();
        let a = ClusterKey::load_or_create(dir.path()).unwrap();
        let b = ClusterKey::load_or_create(dir.path()).unwrap();
        assert_eq!(a.key, b.key);
        let path = dir.path().join(KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        // Nothing else is left in the folder.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            ClusterKey::load_or_create(dir.path()),
            Err(ClusterKeyError::Exposed { .. })
        ));
        std::fs::write(&path, "not hex\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            ClusterKey::load_or_create(dir.path()),
            Err(ClusterKeyError::Malformed { .. })
        ));
    }

    #[test]
    fn servers_starting_at_once_agree_on_one_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..8)
                .map(|_| s.spawn(|| ClusterKey::load_or_create(dir.path()).unwrap().key))
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
