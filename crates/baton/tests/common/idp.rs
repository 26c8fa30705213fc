//! In-process stand-ins for the identity providers single sign-on talks to: an OpenID Connect
//! provider ([`Oidc`]) and GitHub's OAuth App flow ([`Github`]).
//!
//! Each serves on 127.0.0.1 (a free port) from its own thread and tokio runtime, so it answers
//! while the test thread blocks (e.g. in `Server::start`). Every request is checked against the
//! documented shape of the protocol; whatever does not fit is answered like the real thing
//! would (400/401) **and** recorded in `violations`, which tests assert is empty. Requests are
//! counted per endpoint and logged, for assertions such as "a refused callback never reached
//! the token endpoint" and for failure messages.
//!
//! References: OpenID Connect Core 1.0 §3.1 (authorization code flow), OpenID Connect
//! Discovery 1.0 §3-4, RFC 6749 §2.3.1, §4.1, §5 (OAuth 2.0), RFC 7636 (PKCE), RFC 7517/7518
//! (JWK), and <https://docs.github.com/en/apps/oauth-apps/building-oauth-apps/authorizing-oauth-apps>.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::process::Command;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::WAIT;

// ---------------------------------------------------------------------------------------------
// Shared helpers

/// `n` random bytes as lowercase hex.
pub fn random_hex(n: usize) -> String {
    let mut buf = vec![0u8; n];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    hex::encode(buf)
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs() as i64
}

/// Decodes `application/x-www-form-urlencoded` text (a query string or a form body) into its
/// pairs, in order, duplicates kept.
pub fn form_pairs(s: &str) -> Vec<(String, String)> {
    let mut u = reqwest::Url::parse("http://form.invalid/").unwrap();
    u.set_query(Some(s));
    u.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// Decodes one `application/x-www-form-urlencoded` value (`+` is a space, `%XX` a byte).
pub fn form_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex_byte = if b[i] == b'%' && i + 2 < b.len() {
            let h = &b[i + 1..i + 3];
            h.iter()
                .all(u8::is_ascii_hexdigit)
                .then(|| u8::from_str_radix(std::str::from_utf8(h).unwrap(), 16).unwrap())
        } else {
            None
        };
        match (b[i], hex_byte) {
            (_, Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (c, None) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `application/x-www-form-urlencoded` encoding of one value (RFC 6749 Appendix B).
pub fn form_urlencode(s: &str) -> String {
    let mut u = reqwest::Url::parse("http://form.invalid/").unwrap();
    u.query_pairs_mut().append_pair("v", s);
    u.query().unwrap()["v=".len()..].to_owned()
}

/// `url` with `pairs` appended to its query, each form-urlencoded.
fn with_query(url: &str, pairs: &[(&str, &str)]) -> String {
    let mut u = reqwest::Url::parse(url).unwrap_or_else(|e| panic!("bad url {url:?}: {e}"));
    {
        let mut q = u.query_pairs_mut();
        for (k, v) in pairs {
            q.append_pair(k, v);
        }
    }
    u.to_string()
}

/// BASE64URL(SHA256(ASCII(verifier))) — the S256 code challenge of RFC 7636 §4.2.
pub fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Request parameters, checked as they are read; the problems collect in `bad`.
struct Params {
    pairs: Vec<(String, String)>,
    bad: Vec<String>,
}

impl Params {
    fn new(raw: &str) -> Params {
        let pairs = form_pairs(raw);
        let mut bad = Vec::new();
        // RFC 6749 §3.1, §3.2: "Request and response parameters MUST NOT be included more
        // than once."
        let mut seen = BTreeMap::<&str, usize>::new();
        for (k, _) in &pairs {
            *seen.entry(k.as_str()).or_default() += 1;
        }
        for (k, n) in seen {
            if n > 1 {
                bad.push(format!("parameter {k:?} sent {n} times"));
            }
        }
        Params { pairs, bad }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// A parameter that must be present and non-empty.
    fn required(&mut self, name: &str) -> String {
        match self.get(name) {
            Some(v) if !v.is_empty() => v.to_owned(),
            Some(_) => {
                self.bad.push(format!("parameter {name:?} is empty"));
                String::new()
            }
            None => {
                self.bad.push(format!("parameter {name:?} is missing"));
                String::new()
            }
        }
    }

    /// A parameter that, when present, must equal `want`.
    fn expect(&mut self, name: &str, want: &str) {
        match self.get(name) {
            Some(v) if v == want => {}
            Some(v) => {
                let msg = format!("parameter {name:?} is {v:?}, expected {want:?}");
                self.bad.push(msg)
            }
            None => self
                .bad
                .push(format!("parameter {name:?} is missing (expected {want:?})")),
        }
    }
}

/// A PKCE code verifier's syntax (RFC 7636 §4.1): 43-128 of `[A-Za-z0-9-._~]`.
fn check_verifier(v: &str, bad: &mut Vec<String>) {
    if !(43..=128).contains(&v.len())
        || !v
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
    {
        bad.push(format!(
            "code_verifier {v:?} is not 43-128 characters of [A-Za-z0-9-._~] (RFC 7636 §4.1)"
        ));
    }
}

/// Client credentials from `Authorization: Basic` (RFC 6749 §2.3.1: base64 of
/// `urlencode(id):urlencode(secret)`) and/or the form. Returns (id, secret, how).
fn client_credentials(
    headers: &HeaderMap,
    p: &Params,
    bad: &mut Vec<String>,
) -> Option<(String, String, &'static str)> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.split_once(' ')?;
            scheme.eq_ignore_ascii_case("basic").then(|| rest.trim())
        });
    let basic = match basic {
        None => None,
        Some(b64) => {
            let decoded = STANDARD
                .decode(b64)
                .ok()
                .and_then(|b| String::from_utf8(b).ok());
            match decoded.as_deref().and_then(|d| d.split_once(':')) {
                Some((id, secret)) => Some((form_decode(id), form_decode(secret))),
                None => {
                    bad.push(format!(
                        "Authorization: Basic {b64:?} is not base64 of `id:secret`"
                    ));
                    return None;
                }
            }
        }
    };
    let form_id = p.get("client_id").map(str::to_owned);
    let form_secret = p.get("client_secret").map(str::to_owned);
    match (basic, form_id, form_secret) {
        (Some(_), _, Some(_)) => {
            // RFC 6749 §2.3: "The client MUST NOT use more than one authentication method in
            // each request."
            bad.push(
                "client authenticated both with HTTP Basic and a client_secret form field".into(),
            );
            None
        }
        (Some((id, secret)), form_id, None) => {
            if let Some(f) = form_id
                && f != id
            {
                bad.push(format!(
                    "form client_id {f:?} differs from the HTTP Basic one {id:?}"
                ));
            }
            Some((id, secret, "client_secret_basic"))
        }
        (None, Some(id), Some(secret)) => Some((id, secret, "client_secret_post")),
        (None, _, _) => {
            bad.push("no client authentication (neither HTTP Basic nor client_id + client_secret in the form)".into());
            None
        }
    }
}

fn content_type_is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| {
            v.split(';')
                .next()
                .unwrap()
                .trim()
                .eq_ignore_ascii_case("application/x-www-form-urlencoded")
        })
        .unwrap_or(false)
}

fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

fn redirect(location: &str) -> Response {
    (StatusCode::FOUND, [(header::LOCATION, location.to_owned())]).into_response()
}

/// What every stand-in records.
#[derive(Default)]
pub struct Record {
    violations: Vec<String>,
    counts: BTreeMap<&'static str, usize>,
    log: Vec<String>,
}

impl Record {
    fn hit(&mut self, endpoint: &'static str, line: String) {
        *self.counts.entry(endpoint).or_default() += 1;
        self.log.push(line);
    }

    fn violate(&mut self, endpoint: &str, bad: &[String]) {
        for b in bad {
            self.violations.push(format!("{endpoint}: {b}"));
        }
    }

    fn report(&self, name: &str) -> String {
        format!(
            "{name} stand-in: violations {:#?}\nrequests:\n  {}",
            self.violations,
            self.log.join("\n  ")
        )
    }
}

/// One stand-in's listening thread: its own runtime, dropped (connections and all) on stop.
struct Listener {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Listener {
    /// Binds 127.0.0.1:0; `app` gets the port to build the router (issuers name their port).
    fn start(what: &str, app: impl FnOnce(u16) -> Router) -> (u16, Listener) {
        let std_listener =
            std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind a stand-in port");
        std_listener.set_nonblocking(true).unwrap();
        let port = std_listener.local_addr().unwrap().port();
        let router = app(port);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("{what}-stand-in"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("stand-in runtime");
                rt.block_on(async move {
                    let l = tokio::net::TcpListener::from_std(std_listener).unwrap();
                    tokio::select! {
                        r = axum::serve(l, router) => r.expect("stand-in serve"),
                        _ = rx => {}
                    }
                });
                // Dropping the runtime closes the listener and every open connection.
                rt.shutdown_timeout(Duration::from_secs(5));
            })
            .expect("spawn stand-in thread");
        (
            port,
            Listener {
                stop: Some(tx),
                thread: Some(thread),
            },
        )
    }

    /// Stops serving; returns once the port is closed (bounded by [`WAIT`]).
    fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let deadline = Instant::now() + WAIT;
            while !t.is_finished() {
                assert!(
                    Instant::now() < deadline,
                    "stand-in did not stop within {WAIT:?}"
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        // No waiting here: the thread ends on its own once told to.
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A stand-in's state: what it records and the redirect URI it insists on.
pub trait Shared: Send + 'static {
    /// The stand-in's name in reports.
    const NAME: &'static str;
    fn rec(&self) -> &Record;
    fn redirect_uri(&mut self) -> &mut Option<String>;
}

/// What the stand-ins share: their state behind a lock and their listener.
pub struct StandIn<S> {
    state: Arc<Mutex<S>>,
    listener: Listener,
}

impl<S: Shared> StandIn<S> {
    fn lock(&self) -> MutexGuard<'_, S> {
        self.state.lock().unwrap()
    }

    /// The one redirect URI the relying party must use (`<baton>/auth/<provider>/callback`).
    pub fn expect_redirect_uri(&self, uri: &str) {
        *self.lock().redirect_uri() = Some(uri.to_owned());
    }

    pub fn violations(&self) -> Vec<String> {
        self.lock().rec().violations.clone()
    }

    /// Requests seen by `endpoint` (OIDC: discovery, jwks, authorize, token, userinfo, other;
    /// GitHub: authorize, access_token, user, other).
    pub fn count(&self, endpoint: &str) -> usize {
        self.lock().rec().counts.get(endpoint).copied().unwrap_or(0)
    }

    /// Violations and the request log, for failure messages.
    pub fn report(&self) -> String {
        self.lock().rec().report(S::NAME)
    }

    /// Stops answering (the port is closed when this returns).
    pub fn stop(&mut self) {
        self.listener.stop();
    }
}

// ---------------------------------------------------------------------------------------------
// RSA keys

/// An RSA signing key: PKCS#1 DER for `jsonwebtoken`, the public modulus for the JWKS.
pub struct RsaKey {
    pub der: Vec<u8>,
    /// base64url (no padding) of the big-endian modulus.
    pub n: String,
}

/// Makes a 2048-bit key with the `openssl` CLI.
fn make_key(dir: &std::path::Path, name: &str) -> RsaKey {
    let pem = dir.join(format!("{name}.pem"));
    let der = dir.join(format!("{name}.der"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("run openssl (needed to make the stand-in IdP's RSA keys)");
        assert!(
            out.status.success(),
            "openssl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let pem_s = pem.to_str().unwrap();
    run(&["genrsa", "-out", pem_s, "2048"]);
    // jsonwebtoken (without its `use_pem` feature) takes PKCS#1 DER.
    run(&[
        "rsa",
        "-in",
        pem_s,
        "-traditional",
        "-outform",
        "DER",
        "-out",
        der.to_str().unwrap(),
    ]);
    let modulus = run(&["rsa", "-in", pem_s, "-noout", "-modulus"]);
    let hex_n = modulus
        .trim()
        .strip_prefix("Modulus=")
        .unwrap_or_else(|| panic!("unexpected openssl -modulus output {modulus:?}"));
    let n = hex::decode(hex_n).expect("hex modulus");
    assert_eq!(n.len(), 256, "a 2048-bit modulus");
    RsaKey {
        der: std::fs::read(&der).unwrap(),
        n: URL_SAFE_NO_PAD.encode(n),
    }
}

struct Keys {
    /// The key published in the JWKS.
    published: RsaKey,
    /// A key nobody published (for bad signatures).
    other: RsaKey,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        Keys {
            published: make_key(dir.path(), "published"),
            other: make_key(dir.path(), "other"),
        }
    })
}

const KID: &str = "stand-in-key-1";

// ---------------------------------------------------------------------------------------------
// OpenID Connect provider

/// The identity the provider signs in as.
#[derive(Clone, Debug)]
pub struct OidcUser {
    pub sub: String,
    pub email: String,
    pub email_verified: bool,
    pub preferred_username: String,
}

impl OidcUser {
    pub fn new(sub: &str, email: &str, preferred_username: &str) -> OidcUser {
        OidcUser {
            sub: sub.into(),
            email: email.into(),
            email_verified: true,
            preferred_username: preferred_username.into(),
        }
    }
}

/// How the provider misbehaves (on purpose, for the relying party to catch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OidcMode {
    Normal,
    /// The authorization endpoint redirects back with `error=access_denied`.
    Deny,
    /// The ID token is signed with a key the JWKS does not publish (same `kid`).
    BadSignature,
    /// The ID token carries a nonce other than the one sent to /authorize.
    WrongNonce,
    /// The ID token's `aud` is another client.
    WrongAudience,
    /// The ID token expired 10 minutes ago.
    Expired,
    /// `email_verified: false` (in the ID token and userinfo).
    EmailUnverified,
    /// The ID token is signed HS256 with the client secret as the key (discovery lists HS256
    /// too): valid by the letter of OIDC Core §10.1, refused by a relying party that pins
    /// asymmetric algorithms.
    Hs256,
    /// Discovery names a token endpoint on plain http at a host that is not loopback.
    InsecureTokenEndpoint,
}

struct OidcGrant {
    redirect_uri: String,
    nonce: String,
    code_challenge: String,
    user: OidcUser,
    used: bool,
}

pub struct OidcState {
    issuer: String,
    client_id: String,
    client_secret: String,
    redirect_uri: Option<String>,
    user: OidcUser,
    mode: OidcMode,
    codes: HashMap<String, OidcGrant>,
    access_tokens: HashMap<String, (OidcUser, OidcMode)>,
    rec: Record,
}

type OidcShared = Arc<Mutex<OidcState>>;

impl Shared for OidcState {
    const NAME: &'static str = "OIDC";
    fn rec(&self) -> &Record {
        &self.rec
    }
    fn redirect_uri(&mut self) -> &mut Option<String> {
        &mut self.redirect_uri
    }
}

/// A stand-in OpenID Connect provider; the issuer is `http://127.0.0.1:PORT`.
pub struct Oidc {
    pub issuer: String,
    pub port: u16,
    inner: StandIn<OidcState>,
}

impl std::ops::Deref for Oidc {
    type Target = StandIn<OidcState>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl std::ops::DerefMut for Oidc {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.inner
    }
}

impl Oidc {
    pub fn start(client_id: &str, client_secret: &str, user: OidcUser) -> Oidc {
        keys();
        let mut shared: Option<OidcShared> = None;
        let (port, listener) = Listener::start("oidc", |port| {
            let st = Arc::new(Mutex::new(OidcState {
                issuer: format!("http://127.0.0.1:{port}"),
                client_id: client_id.into(),
                client_secret: client_secret.into(),
                redirect_uri: None,
                user,
                mode: OidcMode::Normal,
                codes: HashMap::new(),
                access_tokens: HashMap::new(),
                rec: Record::default(),
            }));
            shared = Some(st.clone());
            Router::new()
                .route("/.well-known/openid-configuration", get(oidc_discovery))
                .route("/jwks", get(oidc_jwks))
                .route("/authorize", get(oidc_authorize))
                .route("/token", post(oidc_token))
                .route("/userinfo", get(oidc_userinfo))
                .fallback(oidc_fallback)
                .with_state(st)
        });
        Oidc {
            issuer: format!("http://127.0.0.1:{port}"),
            port,
            inner: StandIn {
                state: shared.expect("router built"),
                listener,
            },
        }
    }

    pub fn set_mode(&self, mode: OidcMode) {
        self.lock().mode = mode;
    }

    pub fn set_user(&self, user: OidcUser) {
        self.lock().user = user;
    }
}

async fn oidc_discovery(State(st): State<OidcShared>) -> Response {
    let mut g = st.lock().unwrap();
    g.rec
        .hit("discovery", "GET /.well-known/openid-configuration".into());
    let iss = g.issuer.clone();
    let token_endpoint = match g.mode {
        OidcMode::InsecureTokenEndpoint => "http://idp.example.com/token".to_string(),
        _ => format!("{iss}/token"),
    };
    let algs = match g.mode {
        OidcMode::Hs256 => json!(["RS256", "HS256"]),
        _ => json!(["RS256"]),
    };
    axum::Json(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": token_endpoint,
        "jwks_uri": format!("{iss}/jwks"),
        "userinfo_endpoint": format!("{iss}/userinfo"),
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "scopes_supported": ["openid", "email", "profile"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": [
            "iss", "sub", "aud", "exp", "iat", "nonce",
            "email", "email_verified", "preferred_username"
        ],
    }))
    .into_response()
}

async fn oidc_jwks(State(st): State<OidcShared>) -> Response {
    st.lock().unwrap().rec.hit("jwks", "GET /jwks".into());
    axum::Json(json!({
        "keys": [{
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": KID,
            "n": keys().published.n,
            "e": "AQAB",
        }]
    }))
    .into_response()
}

async fn oidc_authorize(State(st): State<OidcShared>, RawQuery(q): RawQuery) -> Response {
    let mut g = st.lock().unwrap();
    let q = q.unwrap_or_default();
    g.rec.hit("authorize", format!("GET /authorize?{q}"));
    let mut p = Params::new(&q);
    p.expect("response_type", "code");
    let client_id = g.client_id.clone();
    p.expect("client_id", &client_id);
    let redirect_uri = p.required("redirect_uri");
    match g.redirect_uri.clone() {
        None => p
            .bad
            .push("the test did not tell the stand-in which redirect_uri to expect".into()),
        Some(want) if want != redirect_uri => p.bad.push(format!(
            "redirect_uri {redirect_uri:?} is not the registered {want:?}"
        )),
        Some(_) => {}
    }
    let scope = p.required("scope");
    if !scope.split(' ').any(|s| s == "openid") {
        p.bad
            .push(format!("scope {scope:?} does not contain \"openid\""));
    }
    let state = p.required("state");
    let nonce = p.required("nonce");
    let challenge = p.required("code_challenge");
    if !challenge.is_empty()
        && (challenge.len() != 43
            || !challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        p.bad.push(format!(
            "code_challenge {challenge:?} is not base64url of a SHA-256 digest (43 characters)"
        ));
    }
    p.expect("code_challenge_method", "S256");
    if !p.bad.is_empty() {
        // RFC 6749 §4.1.2.1: with a bad client_id or redirect_uri the user is not redirected.
        g.rec.violate("/authorize", &p.bad);
        let text = format!("invalid authorization request:\n{}\n", p.bad.join("\n"));
        return (StatusCode::BAD_REQUEST, text).into_response();
    }
    if g.mode == OidcMode::Deny {
        return redirect(&with_query(
            &redirect_uri,
            &[
                ("error", "access_denied"),
                ("error_description", "The user refused to sign in."),
                ("state", &state),
            ],
        ));
    }
    let code = random_hex(16);
    let user = g.user.clone();
    g.codes.insert(
        code.clone(),
        OidcGrant {
            redirect_uri: redirect_uri.clone(),
            nonce,
            code_challenge: challenge,
            user,
            used: false,
        },
    );
    redirect(&with_query(
        &redirect_uri,
        &[("code", &code), ("state", &state)],
    ))
}

fn oauth_error(status: StatusCode, error: &str, bad: &[String]) -> Response {
    let mut resp = (
        status,
        axum::Json(json!({"error": error, "error_description": bad.join("; ")})),
    )
        .into_response();
    if status == StatusCode::UNAUTHORIZED {
        resp.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            "Basic realm=\"stand-in\"".parse().unwrap(),
        );
    }
    resp
}

async fn oidc_token(State(st): State<OidcShared>, headers: HeaderMap, body: String) -> Response {
    let mut g = st.lock().unwrap();
    g.rec.hit(
        "token",
        format!(
            "POST /token (authorization: {}) {body}",
            if headers.contains_key(header::AUTHORIZATION) {
                "yes"
            } else {
                "no"
            }
        ),
    );
    let mut p = Params::new(&body);
    if !content_type_is_form(&headers) {
        p.bad.push(format!(
            "Content-Type {:?} is not application/x-www-form-urlencoded",
            header_str(&headers, "content-type")
        ));
    }
    p.expect("grant_type", "authorization_code");
    let mut bad = std::mem::take(&mut p.bad);
    let creds = client_credentials(&headers, &p, &mut bad);
    if let Some((id, secret, _)) = &creds
        && (*id != g.client_id || *secret != g.client_secret)
    {
        bad.push(format!(
            "wrong client credentials {id:?} / {secret:?} (RFC 6749 §2.3.1: form-urlencode both before base64 in HTTP Basic)"
        ));
        g.rec.violate("/token", &bad);
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &bad);
    }
    if creds.is_none() {
        g.rec.violate("/token", &bad);
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", &bad);
    }
    let code = p.required("code");
    let redirect_uri = p.required("redirect_uri");
    let verifier = p.required("code_verifier");
    bad.append(&mut p.bad);
    let (user, nonce) = match g.codes.get_mut(&code) {
        None => {
            bad.push(format!("unknown code {code:?}"));
            g.rec.violate("/token", &bad);
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &bad);
        }
        Some(grant) if grant.used => {
            bad.push(format!("code {code:?} was already redeemed"));
            g.rec.violate("/token", &bad);
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &bad);
        }
        Some(grant) => {
            grant.used = true;
            if redirect_uri != grant.redirect_uri {
                bad.push(format!(
                    "redirect_uri {redirect_uri:?} is not the one sent to /authorize ({:?})",
                    grant.redirect_uri
                ));
            }
            if !verifier.is_empty() {
                check_verifier(&verifier, &mut bad);
                if s256(&verifier) != grant.code_challenge {
                    bad.push(format!(
                        "BASE64URL(SHA256(code_verifier)) = {:?} is not the code_challenge {:?} (RFC 7636 §4.6)",
                        s256(&verifier),
                        grant.code_challenge
                    ));
                }
            }
            (grant.user.clone(), grant.nonce.clone())
        }
    };
    if !bad.is_empty() {
        g.rec.violate("/token", &bad);
        return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &bad);
    }
    let t = now();
    let mut claims = json!({
        "iss": g.issuer,
        "sub": user.sub,
        "aud": g.client_id,
        "exp": t + 300,
        "iat": t,
        "auth_time": t,
        "nonce": nonce,
        "email": user.email,
        "email_verified": user.email_verified,
        "preferred_username": user.preferred_username,
    });
    let mut key = &keys().published;
    match g.mode {
        OidcMode::Normal | OidcMode::Deny | OidcMode::InsecureTokenEndpoint => {}
        OidcMode::Hs256 => {}
        OidcMode::BadSignature => key = &keys().other,
        OidcMode::WrongNonce => claims["nonce"] = json!(format!("other-{}", random_hex(8))),
        OidcMode::WrongAudience => claims["aud"] = json!("some-other-client"),
        OidcMode::Expired => {
            claims["exp"] = json!(t - 600);
            claims["iat"] = json!(t - 900);
            claims["auth_time"] = json!(t - 900);
        }
        OidcMode::EmailUnverified => claims["email_verified"] = json!(false),
    }
    let id_token = if g.mode == OidcMode::Hs256 {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(g.client_secret.as_bytes()),
        )
    } else {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        h.kid = Some(KID.into());
        jsonwebtoken::encode(
            &h,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_der(&key.der),
        )
    }
    .expect("sign the ID token");
    let access_token = random_hex(16);
    let mode = g.mode;
    g.access_tokens.insert(access_token.clone(), (user, mode));
    (
        [
            (header::CACHE_CONTROL, "no-store"),
            (header::PRAGMA, "no-cache"),
        ],
        axum::Json(json!({
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 3600,
            "id_token": id_token,
        })),
    )
        .into_response()
}

fn bearer(headers: &HeaderMap, schemes: &[&str]) -> Option<String> {
    let v = header_str(headers, "authorization")?;
    let (scheme, rest) = v.split_once(' ')?;
    schemes
        .iter()
        .any(|s| scheme.eq_ignore_ascii_case(s))
        .then(|| rest.trim().to_owned())
}

async fn oidc_userinfo(State(st): State<OidcShared>, headers: HeaderMap) -> Response {
    let mut g = st.lock().unwrap();
    g.rec.hit("userinfo", "GET /userinfo".into());
    let found = bearer(&headers, &["bearer"]).and_then(|t| g.access_tokens.get(&t).cloned());
    let Some((user, mode)) = found else {
        g.rec.violate(
            "/userinfo",
            &["no `Authorization: Bearer` with an access token this provider issued".into()],
        );
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")],
        )
            .into_response();
    };
    axum::Json(json!({
        "sub": user.sub,
        "email": user.email,
        "email_verified": user.email_verified && mode != OidcMode::EmailUnverified,
        "preferred_username": user.preferred_username,
    }))
    .into_response()
}

async fn oidc_fallback(State(st): State<OidcShared>, uri: axum::http::Uri) -> Response {
    let mut g = st.lock().unwrap();
    g.rec.hit("other", format!("{uri}"));
    g.rec
        .violate(&uri.to_string(), &["request to an unknown path".into()]);
    StatusCode::NOT_FOUND.into_response()
}

// ---------------------------------------------------------------------------------------------
// GitHub OAuth App

#[derive(Clone, Debug)]
pub struct GithubUser {
    pub login: String,
    pub id: u64,
    pub name: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GithubMode {
    Normal,
    /// The user clicks "Cancel": back with `error=access_denied`.
    Deny,
    /// The code expired before it was redeemed: GitHub's documented answer, HTTP 200 with
    /// `error=bad_verification_code`.
    ExpiredCode,
}

struct GithubGrant {
    redirect_uri: String,
    scope: String,
    code_challenge: Option<String>,
    user: GithubUser,
    used: bool,
}

pub struct GithubState {
    client_id: String,
    client_secret: String,
    redirect_uri: Option<String>,
    user: GithubUser,
    mode: GithubMode,
    codes: HashMap<String, GithubGrant>,
    access_tokens: HashMap<String, GithubUser>,
    rec: Record,
}

type GithubShared = Arc<Mutex<GithubState>>;

impl Shared for GithubState {
    const NAME: &'static str = "GitHub";
    fn rec(&self) -> &Record {
        &self.rec
    }
    fn redirect_uri(&mut self) -> &mut Option<String> {
        &mut self.redirect_uri
    }
}

/// A stand-in for github.com (`url`) and its API (`api_url` = `url` + `/api`).
pub struct Github {
    pub url: String,
    pub api_url: String,
    inner: StandIn<GithubState>,
}

impl std::ops::Deref for Github {
    type Target = StandIn<GithubState>;
    fn deref(&self) -> &Self::Target {
        &self.inner
    }
}

impl Github {
    pub fn start(client_id: &str, client_secret: &str, user: GithubUser) -> Github {
        let st = Arc::new(Mutex::new(GithubState {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            redirect_uri: None,
            user,
            mode: GithubMode::Normal,
            codes: HashMap::new(),
            access_tokens: HashMap::new(),
            rec: Record::default(),
        }));
        let router = Router::new()
            .route("/login/oauth/authorize", get(gh_authorize))
            .route("/login/oauth/access_token", post(gh_access_token))
            .route("/api/user", get(gh_user))
            .fallback(gh_fallback)
            .with_state(st.clone());
        let (port, listener) = Listener::start("github", |_| router);
        let url = format!("http://127.0.0.1:{port}");
        Github {
            api_url: format!("{url}/api"),
            url,
            inner: StandIn {
                state: st,
                listener,
            },
        }
    }

    pub fn set_mode(&self, mode: GithubMode) {
        self.lock().mode = mode;
    }
}

async fn gh_authorize(State(st): State<GithubShared>, RawQuery(q): RawQuery) -> Response {
    let mut g = st.lock().unwrap();
    let q = q.unwrap_or_default();
    g.rec
        .hit("authorize", format!("GET /login/oauth/authorize?{q}"));
    let mut p = Params::new(&q);
    let client_id = g.client_id.clone();
    p.expect("client_id", &client_id);
    // GitHub falls back to the app's registered callback URL without one; Baton has to name
    // its own (it may serve several providers), so it is required here.
    let redirect_uri = p.required("redirect_uri");
    match g.redirect_uri.clone() {
        None => p
            .bad
            .push("the test did not tell the stand-in which redirect_uri to expect".into()),
        Some(want) if want != redirect_uri => p.bad.push(format!(
            "redirect_uri {redirect_uri:?} is not the registered callback {want:?}"
        )),
        Some(_) => {}
    }
    let state = p.required("state");
    let scope = p.get("scope").unwrap_or("").to_owned();
    let challenge = p.get("code_challenge").map(str::to_owned);
    match (&challenge, p.get("code_challenge_method")) {
        (Some(_), Some("S256")) | (None, None) => {}
        (Some(_), m) => p.bad.push(format!(
            "code_challenge_method {m:?}: GitHub supports only S256"
        )),
        (None, Some(m)) => p.bad.push(format!(
            "code_challenge_method {m:?} without a code_challenge"
        )),
    }
    if !p.bad.is_empty() {
        g.rec.violate("/login/oauth/authorize", &p.bad);
        let text = format!("invalid authorization request:\n{}\n", p.bad.join("\n"));
        return (StatusCode::BAD_REQUEST, text).into_response();
    }
    if g.mode == GithubMode::Deny {
        return redirect(&with_query(
            &redirect_uri,
            &[
                ("error", "access_denied"),
                (
                    "error_description",
                    "The user has denied your application access.",
                ),
                (
                    "error_uri",
                    "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-authorization-request-errors/#access-denied",
                ),
                ("state", &state),
            ],
        ));
    }
    let code = random_hex(10);
    let user = g.user.clone();
    g.codes.insert(
        code.clone(),
        GithubGrant {
            redirect_uri: redirect_uri.clone(),
            scope,
            code_challenge: challenge,
            user,
            used: false,
        },
    );
    redirect(&with_query(
        &redirect_uri,
        &[("code", &code), ("state", &state)],
    ))
}

/// GitHub answers token errors with 200 and an `error` field.
fn gh_token_error(error: &str, bad: &[String]) -> Response {
    axum::Json(json!({
        "error": error,
        "error_description": bad.join("; "),
        "error_uri": "https://docs.github.com/apps/managing-oauth-apps/troubleshooting-oauth-app-access-token-request-errors",
    }))
    .into_response()
}

async fn gh_access_token(
    State(st): State<GithubShared>,
    headers: HeaderMap,
    body: String,
) -> Response {
    let mut g = st.lock().unwrap();
    g.rec.hit(
        "access_token",
        format!(
            "POST /login/oauth/access_token (accept: {:?}) {body}",
            header_str(&headers, "accept")
        ),
    );
    let mut bad = Vec::new();
    let wants_json = header_str(&headers, "accept")
        .map(|a| {
            a.split(',')
                .any(|m| m.split(';').next().unwrap().trim() == "application/json")
        })
        .unwrap_or(false);
    if !wants_json {
        // Without it GitHub answers application/x-www-form-urlencoded.
        bad.push(format!(
            "Accept {:?} does not ask for application/json",
            header_str(&headers, "accept")
        ));
    }
    if !content_type_is_form(&headers) {
        bad.push(format!(
            "Content-Type {:?} is not application/x-www-form-urlencoded",
            header_str(&headers, "content-type")
        ));
    }
    let mut p = Params::new(&body);
    let creds = client_credentials(&headers, &p, &mut bad);
    match &creds {
        Some((id, secret, _)) if *id == g.client_id && *secret == g.client_secret => {}
        Some((id, secret, _)) => bad.push(format!("wrong client credentials {id:?} / {secret:?}")),
        None => {}
    }
    if creds.is_none() || !bad.is_empty() {
        g.rec.violate("/login/oauth/access_token", &bad);
        if !wants_json {
            return (
                [(header::CONTENT_TYPE, "application/x-www-form-urlencoded")],
                "error=incorrect_client_credentials",
            )
                .into_response();
        }
        return gh_token_error("incorrect_client_credentials", &bad);
    }
    let code = p.required("code");
    let redirect_uri = p.get("redirect_uri").map(str::to_owned);
    let verifier = p.get("code_verifier").map(str::to_owned);
    bad.append(&mut p.bad);
    if g.mode == GithubMode::ExpiredCode && bad.is_empty() {
        return gh_token_error(
            "bad_verification_code",
            &["The code passed is incorrect or expired.".to_string()],
        );
    }
    let (user, scope) = match g.codes.get_mut(&code) {
        None => {
            bad.push(format!("unknown code {code:?}"));
            g.rec.violate("/login/oauth/access_token", &bad);
            return gh_token_error("bad_verification_code", &bad);
        }
        Some(grant) if grant.used => {
            bad.push(format!("code {code:?} was already redeemed"));
            g.rec.violate("/login/oauth/access_token", &bad);
            return gh_token_error("bad_verification_code", &bad);
        }
        Some(grant) => {
            grant.used = true;
            if let Some(r) = &redirect_uri
                && *r != grant.redirect_uri
            {
                bad.push(format!(
                    "redirect_uri {r:?} is not the one sent to /login/oauth/authorize ({:?})",
                    grant.redirect_uri
                ));
            }
            match (&grant.code_challenge, &verifier) {
                (None, None) => {}
                (None, Some(_)) => {
                    bad.push("code_verifier without a code_challenge at authorization".into())
                }
                (Some(_), None) => bad.push(
                    "no code_verifier although /login/oauth/authorize had a code_challenge".into(),
                ),
                (Some(c), Some(v)) => {
                    check_verifier(v, &mut bad);
                    if s256(v) != *c {
                        bad.push(format!(
                            "BASE64URL(SHA256(code_verifier)) = {:?} is not the code_challenge {c:?}",
                            s256(v)
                        ));
                    }
                }
            }
            (grant.user.clone(), grant.scope.clone())
        }
    };
    if !bad.is_empty() {
        g.rec.violate("/login/oauth/access_token", &bad);
        return gh_token_error("bad_verification_code", &bad);
    }
    let token = format!("gho_{}", random_hex(16));
    g.access_tokens.insert(token.clone(), user);
    // GitHub lists granted scopes comma-separated.
    let scope = scope
        .split([' ', ','])
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    axum::Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "scope": scope,
    }))
    .into_response()
}

async fn gh_user(State(st): State<GithubShared>, headers: HeaderMap) -> Response {
    let mut g = st.lock().unwrap();
    g.rec.hit(
        "user",
        format!(
            "GET /api/user (user-agent: {:?})",
            header_str(&headers, "user-agent")
        ),
    );
    if header_str(&headers, "user-agent").is_none_or(|u| u.trim().is_empty()) {
        g.rec.violate(
            "/api/user",
            &["no User-Agent header (GitHub requires one)".into()],
        );
        return (
            StatusCode::FORBIDDEN,
            "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required).\n",
        )
            .into_response();
    }
    let found =
        bearer(&headers, &["bearer", "token"]).and_then(|t| g.access_tokens.get(&t).cloned());
    let Some(user) = found else {
        g.rec.violate(
            "/api/user",
            &["no `Authorization: Bearer|token` with a token this stand-in issued".into()],
        );
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json(json!({
                "message": "Bad credentials",
                "documentation_url": "https://docs.github.com/rest",
                "status": "401",
            })),
        )
            .into_response();
    };
    let login = user.login.clone();
    axum::Json(json!({
        "login": login,
        "id": user.id,
        "node_id": format!("MDQ6VXNlcj{}", user.id),
        "avatar_url": format!("https://avatars.githubusercontent.com/u/{}?v=4", user.id),
        "html_url": format!("https://github.com/{login}"),
        "type": "User",
        "site_admin": false,
        "name": user.name,
        "email": Value::Null,
    }))
    .into_response()
}

async fn gh_fallback(State(st): State<GithubShared>, uri: axum::http::Uri) -> Response {
    let mut g = st.lock().unwrap();
    g.rec.hit("other", format!("{uri}"));
    g.rec
        .violate(&uri.to_string(), &["request to an unknown path".into()]);
    StatusCode::NOT_FOUND.into_response()
}
