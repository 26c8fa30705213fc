//! Single sign-on: users sign in at an OpenID Connect provider (Google, Gitea/Forgejo, GitLab,
//! Keycloak, any issuer with discovery) or through a GitHub OAuth app, and come back as the Baton
//! user the provider names (`server.auth`).
//!
//! The flow is the authorization code flow with PKCE (S256). `GET /auth/{provider}` discovers
//! the provider (cached for a few minutes; every endpoint it names must be https unless on
//! localhost), keeps the flow's secrets (PKCE verifier, nonce, the provider's settings, where to
//! go next) here under a random `state`, gives the browser the same `state` in a short-lived
//! cookie, and redirects to the provider. `GET /auth/{provider}/callback` accepts only the
//! `state` of a flow this browser started (cookie and query agree, the flow is known, unused
//! and younger than ten minutes), redeems the code at the token endpoint with the client secret
//! and the verifier, and for OIDC verifies the ID token (signature by an asymmetric algorithm
//! against the provider's published keys, issuer, audience, expiry, nonce).
//!
//! Who may come in: a first sign-in needs the config to name the user (administrators,
//! `authorized_users`) or the provider's `allowed_users` / `allowed_domains` to admit them
//! (`baton_core::access::may_sign_in`). The name is then bound to the provider's stable id of
//! the account (`sub`, GitHub's numeric id): see `Store::sso_user`.
//!
//! The protocol work is the `openidconnect` and `oauth2` crates'; this module speaks to them
//! through a `reqwest` client that follows no redirects and reads at most 1 MiB an answer.

use crate::error::error_chain;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreJsonWebKeySet, CoreJwsSigningAlgorithm,
    CoreProviderMetadata,
};
use openidconnect::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse, TokenUrl,
};
use serde::Deserialize;

use baton_core::access::may_sign_in;
use baton_core::config::{Config, SsoKind, SsoProvider, UserClaim, check_base_url};
use baton_store::StoreError;

use crate::AppState;
use crate::auth::same_secret;
use crate::login::{links, login_form};
use crate::session::{SESSION_DAYS, cookie, safe_next, secure_cookies, set_cookie, signed_in};

/// The cookie that binds a sign-in flow to the browser that started it.
pub(crate) const SSO_COOKIE: &str = "baton_sso";
/// How long a started sign-in may take.
const FLOW_TTL: Duration = Duration::from_secs(600);
/// At most this many sign-ins in progress at once; a new one pushes out the oldest.
const MAX_FLOWS: usize = 4096;
/// How long a provider's discovery document and keys are reused.
const DISCOVERY_TTL: Duration = Duration::from_secs(300);
/// Bound on every request to a provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on every answer from a provider.
const MAX_ANSWER: usize = 1024 * 1024;

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/{provider}", get(start))
        .route("/auth/{provider}/callback", get(callback))
}

/// Sign-in flows in progress, by `state`; discovered providers; the HTTP client for providers.
#[derive(Clone, Default)]
pub struct Sso {
    flows: Arc<Mutex<HashMap<String, Flow>>>,
    /// By provider name: the issuer it was discovered at, when, and what was found.
    discovered: Arc<Mutex<HashMap<String, Discovered>>>,
    /// Made on the first sign-in: loading the system's trust roots is not a start-up cost.
    http: Arc<OnceLock<Result<reqwest::Client, String>>>,
}

/// A provider's discovery: its issuer, when, and the metadata with its keys.
type Discovered = (String, Instant, CoreProviderMetadata);

/// One started sign-in.
struct Flow {
    /// The provider's settings as they were at the start (a reload in between changes nothing).
    provider: SsoProvider,
    callback: String,
    /// OIDC: the provider's metadata and keys as they were at the start.
    meta: Option<Box<CoreProviderMetadata>>,
    verifier: PkceCodeVerifier,
    nonce: Nonce,
    next: String,
    started: Instant,
}

/// A provider's answer that could not be had.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct HttpError(String);

type HttpFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

impl Sso {
    fn put(&self, state: String, flow: Flow) {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        flows.retain(|_, f| f.started.elapsed() < FLOW_TTL);
        if flows.len() >= MAX_FLOWS
            && let Some(oldest) = flows
                .iter()
                .min_by_key(|(_, f)| f.started)
                .map(|(k, _)| k.clone())
        {
            flows.remove(&oldest);
        }
        flows.insert(state, flow);
    }

    /// Takes the flow of `state` out (a state is good once).
    fn take(&self, state: &str) -> Option<Flow> {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        flows
            .remove(state)
            .filter(|f| f.started.elapsed() < FLOW_TTL)
    }

    fn http(&self) -> Result<&reqwest::Client, Failure> {
        self.http
            .get_or_init(|| {
                // No redirects: a provider's endpoints answer directly (following them would let
                // a redirect point the client secret elsewhere).
                reqwest::Client::builder()
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(PROVIDER_TIMEOUT)
                    .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
                    .build()
                    .map_err(|e| error_chain(&e))
            })
            .as_ref()
            .map_err(|e| {
                tracing::error!("cannot make the HTTP client for sign-in providers: {e}");
                fail(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "Sign-in through providers is unavailable (see the server's log).",
                )
            })
    }

    /// The `openidconnect`/`oauth2` HTTP client: a request goes out through `reqwest`.
    fn client(&self) -> Result<impl Fn(HttpRequest) -> HttpFuture + '_, Failure> {
        let http = self.http()?.clone();
        Ok(move |req: HttpRequest| -> HttpFuture {
            let http = http.clone();
            Box::pin(async move {
                let req =
                    reqwest::Request::try_from(req).map_err(|e| HttpError(error_chain(&e)))?;
                let url = req.url().to_string();
                let resp = http
                    .execute(req)
                    .await
                    .map_err(|e| HttpError(error_chain(&e)))?;
                let mut out = openidconnect::http::Response::builder().status(resp.status());
                for (k, v) in resp.headers() {
                    out = out.header(k, v);
                }
                let body = read_capped(resp, &url).await?;
                out.body(body).map_err(|e| HttpError(e.to_string()))
            })
        })
    }

    /// The provider's metadata and keys: from the cache while fresh, else discovered. Every
    /// endpoint it names is checked like the issuer (https unless on localhost).
    async fn discover(
        &self,
        p: &SsoProvider,
        issuer: &str,
    ) -> Result<CoreProviderMetadata, Failure> {
        {
            let cache = self.discovered.lock().unwrap_or_else(|e| e.into_inner());
            if let Some((iss, at, meta)) = cache.get(&p.name)
                && iss == issuer
                && at.elapsed() < DISCOVERY_TTL
            {
                return Ok(meta.clone());
            }
        }
        let bad = |what: String| {
            fail(
                StatusCode::BAD_GATEWAY,
                format!(
                    "Could not use the OpenID configuration of {} at {issuer}: {what}",
                    p.name
                ),
            )
        };
        let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(|e| bad(e.to_string()))?;
        let url = issuer_url
            .join(".well-known/openid-configuration")
            .map_err(|e| bad(e.to_string()))?;
        let resp = self
            .http()?
            .get(url.as_str())
            .header(header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| bad(error_chain(&e)))?;
        if resp.status() != reqwest::StatusCode::OK {
            return Err(bad(format!("HTTP {} from {url}", resp.status())));
        }
        let body = read_capped(resp, url.as_str())
            .await
            .map_err(|e| bad(e.0))?;
        let meta: CoreProviderMetadata = serde_json::from_slice(&body)
            .map_err(|e| bad(format!("not a discovery document: {e}")))?;
        if meta.issuer() != &issuer_url {
            return Err(bad(format!(
                "it names the issuer {:?}: server.auth.{}.issuer must be exactly that",
                meta.issuer().as_str(),
                p.name
            )));
        }
        let token = meta
            .token_endpoint()
            .ok_or_else(|| bad("it names no token_endpoint".into()))?;
        for (what, u) in [
            (
                "authorization_endpoint",
                meta.authorization_endpoint().as_str(),
            ),
            ("token_endpoint", token.as_str()),
            ("jwks_uri", meta.jwks_uri().url().as_str()),
        ] {
            check_base_url(u, true).map_err(|e| bad(format!("{what} {u:?}: {e}")))?;
        }
        let jwks = CoreJsonWebKeySet::fetch_async(meta.jwks_uri(), &self.client()?)
            .await
            .map_err(|e| bad(format!("its keys: {}", error_chain(&e))))?;
        let meta = meta.set_jwks(jwks);
        self.discovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                p.name.clone(),
                (issuer.to_owned(), Instant::now(), meta.clone()),
            );
        Ok(meta)
    }
}

/// The body of `resp`, refused past [`MAX_ANSWER`].
async fn read_capped(mut resp: reqwest::Response, url: &str) -> Result<Vec<u8>, HttpError> {
    let too_big = || {
        HttpError(format!(
            "the answer of {url} is larger than {MAX_ANSWER} bytes"
        ))
    };
    if resp.content_length().is_some_and(|n| n > MAX_ANSWER as u64) {
        return Err(too_big());
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| HttpError(error_chain(&e)))? {
        if body.len() + chunk.len() > MAX_ANSWER {
            return Err(too_big());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Why a sign-in failed: shown on the login page with the status.
struct Failure(StatusCode, String);

fn fail(code: StatusCode, message: impl Into<String>) -> Failure {
    Failure(code, message.into())
}

/// A failure whose details are for the server's log, not for whoever is signing in.
fn internal(e: impl std::fmt::Display) -> Failure {
    tracing::error!("sign-in failed: {e}");
    fail(
        StatusCode::INTERNAL_SERVER_ERROR,
        "Sign-in failed on the server (see its log). Try again later.",
    )
}

#[derive(Deserialize)]
struct StartQuery {
    next: Option<String>,
}

/// `GET /auth/{provider}`: start a sign-in and send the browser to the provider.
async fn start(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(q): Query<StartQuery>,
) -> Response {
    let next = safe_next(q.next.as_deref().unwrap_or("/")).to_owned();
    let config = s.sched.config().await.unwrap_or_default();
    match begin(&s, &config, &name, next).await {
        Ok((state, url)) => {
            let mut resp = Redirect::to(&url).into_response();
            resp.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(
                    SSO_COOKIE,
                    &state,
                    FLOW_TTL.as_secs() as i64,
                    secure_cookies(&config, &headers),
                ),
            );
            resp
        }
        Err(Failure(code, message)) => login_failure(&s, &config, &headers, code, &message),
    }
}

/// Builds the provider's authorization URL and records the flow; returns its state and the URL.
async fn begin(
    s: &AppState,
    config: &Config,
    name: &str,
    next: String,
) -> Result<(String, String), Failure> {
    let p = config.server.auth.get(name).cloned().ok_or_else(|| {
        fail(
            StatusCode::NOT_FOUND,
            format!("There is no sign-in provider named {name:?}."),
        )
    })?;
    let base = config
        .server
        .public_url
        .clone()
        .unwrap_or_else(|| s.public_url.clone());
    let callback = format!("{base}/auth/{name}/callback");
    let redirect = redirect_url(&callback)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce, meta) = match &p.kind {
        SsoKind::Oidc { issuer, .. } => {
            let meta = s.sso.discover(&p, issuer).await?;
            let client = oidc_client(&p, meta.clone(), redirect);
            let mut req = client.authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            );
            for scope in p.scopes.iter().filter(|s| *s != "openid") {
                req = req.add_scope(Scope::new(scope.clone()));
            }
            let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
            (url, state, nonce, Some(Box::new(meta)))
        }
        SsoKind::Github { url, .. } => {
            let client = github_client(&p, url, redirect)?;
            let mut req = client.authorize_url(CsrfToken::new_random);
            for scope in &p.scopes {
                req = req.add_scope(Scope::new(scope.clone()));
            }
            let (url, state) = req.set_pkce_challenge(challenge).url();
            (url, state, Nonce::new(String::new()), None)
        }
    };
    let flow = Flow {
        provider: p,
        callback,
        meta,
        verifier,
        nonce,
        next,
        started: Instant::now(),
    };
    s.sso.put(state.secret().clone(), flow);
    Ok((state.secret().clone(), url.to_string()))
}

fn redirect_url(uri: &str) -> Result<RedirectUrl, Failure> {
    RedirectUrl::new(uri.to_owned()).map_err(|e| {
        internal(format!(
            "the callback address {uri:?} is not a URL ({e}); check server.public_url"
        ))
    })
}

fn oidc_client(
    p: &SsoProvider,
    meta: CoreProviderMetadata,
    redirect: RedirectUrl,
) -> CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
> {
    CoreClient::from_provider_metadata(
        meta,
        ClientId::new(p.client_id.clone()),
        Some(ClientSecret::new(p.client_secret.clone())),
    )
    .set_redirect_uri(redirect)
}

type GithubClient = oauth2::basic::BasicClient<
    oauth2::EndpointSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointNotSet,
    oauth2::EndpointSet,
>;

/// GitHub is not an OpenID provider: plain OAuth 2.0 endpoints, then its user API. The client
/// authenticates at the token endpoint with the secret in the form, as GitHub documents.
fn github_client(
    p: &SsoProvider,
    url: &str,
    redirect: RedirectUrl,
) -> Result<GithubClient, Failure> {
    let bad = |e: openidconnect::url::ParseError| {
        internal(format!(
            "the GitHub address of {} is not a URL: {e}",
            p.name
        ))
    };
    Ok(
        oauth2::basic::BasicClient::new(ClientId::new(p.client_id.clone()))
            .set_client_secret(ClientSecret::new(p.client_secret.clone()))
            .set_auth_type(oauth2::AuthType::RequestBody)
            .set_auth_uri(AuthUrl::new(format!("{url}/login/oauth/authorize")).map_err(bad)?)
            .set_token_uri(TokenUrl::new(format!("{url}/login/oauth/access_token")).map_err(bad)?)
            .set_redirect_uri(redirect),
    )
}

#[derive(Deserialize)]
struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// `GET /auth/{provider}/callback`: the provider sends the browser back here.
async fn callback(
    State(s): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    Query(q): Query<CallbackQuery>,
) -> Response {
    let config = s.sched.config().await.unwrap_or_default();
    let secure = secure_cookies(&config, &headers);
    let mut resp = match finish(&s, &config, &name, &headers, q).await {
        Ok((user, next)) => match s
            .store
            .create_session(&user, chrono::Duration::days(SESSION_DAYS))
            .await
        {
            Ok(session) => signed_in(&session, &next, secure),
            Err(e) => {
                let Failure(code, message) = internal(e);
                login_failure(&s, &config, &headers, code, &message)
            }
        },
        Err(Failure(code, message)) => {
            tracing::info!("sign-in through {name:?} refused: {message}");
            login_failure(&s, &config, &headers, code, &message)
        }
    };
    let h = resp.headers_mut();
    // The flow is over either way.
    h.append(header::SET_COOKIE, set_cookie(SSO_COOKIE, "", 0, secure));
    // This URL carries the code: never pass it on.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// Checks the callback and returns the signed-in user's name and where to go.
async fn finish(
    s: &AppState,
    config: &Config,
    name: &str,
    headers: &HeaderMap,
    q: CallbackQuery,
) -> Result<(String, String), Failure> {
    let expired = || {
        fail(
            StatusCode::BAD_REQUEST,
            "The sign-in expired or did not start in this browser. Try again.",
        )
    };
    let state = q.state.as_deref().unwrap_or("");
    let cookie = cookie(headers, SSO_COOKIE).unwrap_or("");
    if state.is_empty() || !same_secret(state, cookie) {
        return Err(expired());
    }
    let flow = s.sso.take(state).ok_or_else(expired)?;
    let p = &flow.provider;
    if p.name != name {
        return Err(expired());
    }
    if let Some(error) = q.error {
        let detail = q
            .error_description
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        return Err(fail(
            StatusCode::UNAUTHORIZED,
            format!("{} refused the sign-in: {error}{detail}", p.label),
        ));
    }
    let code = AuthorizationCode::new(q.code.filter(|c| !c.is_empty()).ok_or_else(|| {
        fail(
            StatusCode::BAD_REQUEST,
            format!("{} sent no authorization code back.", p.label),
        )
    })?);
    let redirect = redirect_url(&flow.callback)?;
    let unverified = |e: String| {
        fail(
            StatusCode::UNAUTHORIZED,
            format!("The answer of {} could not be verified: {e}", p.label),
        )
    };
    let http = s.sso.client()?;
    let (user, subject) = match (&p.kind, flow.meta) {
        (SsoKind::Oidc { user_claim, .. }, Some(meta)) => {
            let client = oidc_client(p, *meta, redirect);
            let token = client
                .exchange_code(code)
                .map_err(|e| unverified(e.to_string()))?
                .set_pkce_verifier(flow.verifier)
                .request_async(&http)
                .await
                .map_err(|e| token_error(p, &e))?;
            let id_token = token
                .id_token()
                .ok_or_else(|| unverified("the token response has no id_token".into()))?;
            // Asymmetric signatures only: with HS256 the client secret would be the key.
            let verifier = client.id_token_verifier().set_allowed_algs([
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
                CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
                CoreJwsSigningAlgorithm::RsaSsaPssSha256,
                CoreJwsSigningAlgorithm::RsaSsaPssSha384,
                CoreJwsSigningAlgorithm::RsaSsaPssSha512,
                CoreJwsSigningAlgorithm::EcdsaP256Sha256,
                CoreJwsSigningAlgorithm::EcdsaP384Sha384,
                CoreJwsSigningAlgorithm::EdDsa,
            ]);
            let claims = id_token
                .claims(&verifier, &flow.nonce)
                .map_err(|e| unverified(format!("ID token: {e}")))?;
            let user = user_of(claims, user_claim).map_err(unverified)?;
            let subject = format!("{}|{}", claims.issuer().as_str(), claims.subject().as_str());
            (user, subject)
        }
        (SsoKind::Github { url, api_url }, None) => {
            let client = github_client(p, url, redirect)?;
            let token = client
                .exchange_code(code)
                .set_pkce_verifier(flow.verifier)
                .request_async(&http)
                .await
                .map_err(|e| token_error(p, &e))?;
            let (login, id) = github_user(s, p, api_url, token.access_token().secret()).await?;
            (login, format!("{url}|{id}"))
        }
        _ => return Err(expired()),
    };
    admit(s, config, p, &user, &subject).await?;
    Ok((user, flow.next))
}

/// The Baton user name an ID token names, by the provider's `user_claim`; `Err` says what is
/// missing or unverified.
fn user_of(
    claims: &openidconnect::core::CoreIdTokenClaims,
    user_claim: &UserClaim,
) -> Result<String, String> {
    Ok(match user_claim {
        UserClaim::Email => {
            let email = claims
                .email()
                .ok_or("the ID token has no email (ask for the `email` scope)")?;
            if claims.email_verified() != Some(true) {
                return Err(format!(
                    "the e-mail address {} is not verified at the provider",
                    email.as_str()
                ));
            }
            email.as_str().to_ascii_lowercase()
        }
        UserClaim::PreferredUsername => claims
            .preferred_username()
            .ok_or("the ID token has no preferred_username")?
            .as_str()
            .to_owned(),
        UserClaim::Sub => claims.subject().as_str().to_owned(),
    })
}

/// Lets `user` in when they are known or the config admits them, and records the provider's
/// `subject` for them (one identity per user and provider).
async fn admit(
    s: &AppState,
    config: &Config,
    p: &SsoProvider,
    user: &str,
    subject: &str,
) -> Result<(), Failure> {
    let known = s.store.find_user(user).await.map_err(internal)?.is_some();
    if !known && !may_sign_in(config, p, user) {
        return Err(fail(
            StatusCode::FORBIDDEN,
            format!(
                "{user} may not sign in here (hint: an administrator names them in authorized_users or administrators, or admits them with server.auth.{}.allowed_users or allowed_domains)",
                p.name
            ),
        ));
    }
    match s.store.sso_user(user, &p.name, subject).await {
        Ok(()) => Ok(()),
        Err(e @ StoreError::IdentityConflict { .. }) => {
            Err(fail(StatusCode::CONFLICT, e.to_string()))
        }
        Err(StoreError::Password(m)) => Err(fail(StatusCode::FORBIDDEN, m)),
        Err(e) => Err(internal(e)),
    }
}

/// A failed token request: the provider's refusal (401) or no usable answer (502).
fn token_error<RE, T>(p: &SsoProvider, e: &openidconnect::RequestTokenError<RE, T>) -> Failure
where
    RE: std::error::Error + 'static,
    T: openidconnect::ErrorResponse + 'static,
{
    use openidconnect::RequestTokenError as E;
    // GitHub answers a bad or expired code with HTTP 200 and an OAuth error body, which the
    // token response parser cannot take: it is a refusal all the same.
    if let E::Parse(_, body) = e
        && let Ok(v) = serde_json::from_slice::<serde_json::Value>(body)
        && let Some(error) = v["error"].as_str()
    {
        let detail = v["error_description"]
            .as_str()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        return fail(
            StatusCode::UNAUTHORIZED,
            format!(
                "{} did not accept the sign-in code: {error}{detail}",
                p.label
            ),
        );
    }
    let code = match e {
        E::ServerResponse(_) => StatusCode::UNAUTHORIZED,
        E::Request(_) | E::Parse(..) | E::Other(_) => StatusCode::BAD_GATEWAY,
    };
    fail(
        code,
        format!(
            "{} did not accept the sign-in code: {}",
            p.label,
            error_chain(e)
        ),
    )
}

/// `GET <api_url>/user` with the access token: the GitHub login and numeric id.
async fn github_user(
    s: &AppState,
    p: &SsoProvider,
    api_url: &str,
    token: &str,
) -> Result<(String, u64), Failure> {
    #[derive(Deserialize)]
    struct GithubUser {
        login: String,
        id: u64,
    }
    let url = format!("{api_url}/user");
    let bad = |e: String| {
        fail(
            StatusCode::BAD_GATEWAY,
            format!("Could not read the user from {} ({url}): {e}", p.label),
        )
    };
    let resp = s
        .sso
        .http()?
        .get(&url)
        .bearer_auth(token)
        .header(header::ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .send()
        .await
        .map_err(|e| bad(error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(bad(format!("HTTP {}", resp.status())));
    }
    let body = read_capped(resp, &url).await.map_err(|e| bad(e.0))?;
    let user: GithubUser = serde_json::from_slice(&body).map_err(|e| bad(e.to_string()))?;
    Ok((user.login, user.id))
}

fn login_failure(
    s: &AppState,
    config: &Config,
    headers: &HeaderMap,
    code: StatusCode,
    message: &str,
) -> Response {
    login_form(&s.login, headers, "/", message, code, links(config))
}
