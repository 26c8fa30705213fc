//! Single sign-on: users sign in at an OpenID Connect provider (Google, Gitea/Forgejo, GitLab,
//! Keycloak, any issuer with discovery) or through a GitHub OAuth app, and come back as the Baton
//! user the provider names (`server.auth`).
//!
//! The flow is the authorization code flow with PKCE (S256). `GET /auth/{provider}` discovers
//! the provider, keeps the flow's secrets (PKCE verifier, nonce, where to go next) here under a
//! random `state`, gives the browser the same `state` in a short-lived cookie, and redirects to
//! the provider. `GET /auth/{provider}/callback` accepts only the `state` of a flow this browser
//! started (cookie and query agree, the flow is known, unused and younger than ten minutes),
//! redeems the code at the token endpoint with the client secret and the verifier, and for OIDC
//! verifies the ID token (signature against the provider's published keys, issuer, audience,
//! expiry, nonce) before a session is made. A provider never takes over an account of another
//! origin: see `Store::sso_user`.
//!
//! The protocol work is the `openidconnect` and `oauth2` crates'; this module speaks to them
//! through a `reqwest` client that follows no redirects.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, HttpRequest, HttpResponse,
    IssuerUrl, Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope,
    TokenResponse, TokenUrl,
};
use serde::Deserialize;

use baton_core::config::{SsoKind, SsoProvider, UserClaim};
use baton_store::StoreError;

use crate::AppState;
use crate::auth::{self, same_secret};
use crate::ui::{self, https, safe_next, set_cookie};

/// The cookie that binds a sign-in flow to the browser that started it.
pub(crate) const SSO_COOKIE: &str = "baton_sso";
/// How long a started sign-in may take.
const FLOW_TTL: Duration = Duration::from_secs(600);
/// At most this many sign-ins in progress at once (a flood of starts cannot grow memory).
const MAX_FLOWS: usize = 4096;
/// Bound on every request to a provider.
const PROVIDER_TIMEOUT: Duration = Duration::from_secs(15);

pub(crate) fn routes() -> Router<AppState> {
    Router::new()
        .route("/auth/{provider}", get(start))
        .route("/auth/{provider}/callback", get(callback))
}

/// Sign-in flows in progress, by `state`, and the HTTP client for providers.
#[derive(Clone, Default)]
pub struct Sso {
    flows: Arc<Mutex<HashMap<String, Flow>>>,
    /// Made on the first sign-in: loading the system's trust roots is not a start-up cost.
    http: Arc<OnceLock<reqwest::Client>>,
}

/// One started sign-in.
struct Flow {
    provider: String,
    /// The provider's settings and (OIDC) metadata as they were at the start.
    client: FlowClient,
    verifier: PkceCodeVerifier,
    nonce: Nonce,
    next: String,
    started: Instant,
}

enum FlowClient {
    Oidc(Box<CoreProviderMetadata>, UserClaim),
    Github { api_url: String },
}

impl Sso {
    fn put(&self, state: String, flow: Flow) -> bool {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        flows.retain(|_, f| f.started.elapsed() < FLOW_TTL);
        if flows.len() >= MAX_FLOWS {
            return false;
        }
        flows.insert(state, flow);
        true
    }

    /// Takes the flow of `state` out (a state is good once).
    fn take(&self, state: &str) -> Option<Flow> {
        let mut flows = self.flows.lock().unwrap_or_else(|e| e.into_inner());
        flows
            .remove(state)
            .filter(|f| f.started.elapsed() < FLOW_TTL)
    }

    fn http(&self) -> &reqwest::Client {
        self.http.get_or_init(|| {
            // No redirects: a provider's endpoints answer directly (following them would let a
            // redirect point the client secret elsewhere).
            reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(PROVIDER_TIMEOUT)
                .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")))
                .build()
                .unwrap_or_default()
        })
    }

    /// The `openidconnect`/`oauth2` HTTP client: a request goes out through `reqwest`.
    fn client(
        &self,
    ) -> impl Fn(
        HttpRequest,
    ) -> Pin<Box<dyn Future<Output = Result<HttpResponse, reqwest::Error>> + Send>>
    + '_ {
        move |req: HttpRequest| {
            let http = self.http().clone();
            Box::pin(async move {
                let resp = http.execute(reqwest::Request::try_from(req)?).await?;
                let mut out = openidconnect::http::Response::builder().status(resp.status());
                for (k, v) in resp.headers() {
                    out = out.header(k, v);
                }
                let body = resp.bytes().await?.to_vec();
                Ok(out.body(body).unwrap_or_default())
            })
        }
    }
}

/// Why a sign-in failed: shown on the login page with the status.
struct Failure(StatusCode, String);

fn fail(code: StatusCode, message: impl Into<String>) -> Failure {
    Failure(code, message.into())
}

/// A link on the login page.
pub(crate) struct SsoLink {
    pub name: String,
    pub label: String,
}

/// The providers of the current config, for the login page.
pub(crate) async fn links(s: &AppState) -> Vec<SsoLink> {
    match s.sched.config().await {
        Ok(c) => c
            .server
            .auth
            .values()
            .map(|p| SsoLink {
                name: p.name.clone(),
                label: p.label.clone(),
            })
            .collect(),
        Err(_) => Vec::new(),
    }
}

async fn provider(s: &AppState, name: &str) -> Result<(SsoProvider, String), Failure> {
    let config = s
        .sched
        .config()
        .await
        .map_err(|e| fail(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))?;
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
    Ok((p, format!("{base}/auth/{name}/callback")))
}

fn redirect_url(uri: &str) -> Result<RedirectUrl, Failure> {
    RedirectUrl::new(uri.to_owned()).map_err(|e| {
        fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The callback address {uri:?} is not a URL ({e}); check server.public_url."),
        )
    })
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
    match begin(&s, &name, next).await {
        Ok((state, url)) => {
            let mut resp = Redirect::to(&url).into_response();
            resp.headers_mut().append(
                header::SET_COOKIE,
                set_cookie(
                    SSO_COOKIE,
                    &state,
                    FLOW_TTL.as_secs() as i64,
                    https(&headers),
                ),
            );
            resp
        }
        Err(Failure(code, message)) => login_failure(&s, &headers, code, &message).await,
    }
}

/// Builds the provider's authorization URL and records the flow; returns its state and the URL.
async fn begin(s: &AppState, name: &str, next: String) -> Result<(String, String), Failure> {
    let (p, callback) = provider(s, name).await?;
    let redirect = redirect_url(&callback)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state, nonce, client) = match &p.kind {
        SsoKind::Oidc { issuer, user_claim } => {
            let meta = discover(s, &p, issuer).await?;
            let client = CoreClient::from_provider_metadata(
                meta.clone(),
                ClientId::new(p.client_id.clone()),
                Some(ClientSecret::new(p.client_secret.clone())),
            )
            .set_redirect_uri(redirect);
            let mut req = client.authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            );
            for scope in p.scopes.iter().filter(|s| *s != "openid") {
                req = req.add_scope(Scope::new(scope.clone()));
            }
            let (url, state, nonce) = req.set_pkce_challenge(challenge).url();
            (
                url,
                state,
                nonce,
                FlowClient::Oidc(Box::new(meta), *user_claim),
            )
        }
        SsoKind::Github { url, api_url } => {
            let client = github_client(&p, url, redirect)?;
            let mut req = client.authorize_url(CsrfToken::new_random);
            for scope in &p.scopes {
                req = req.add_scope(Scope::new(scope.clone()));
            }
            let (url, state) = req.set_pkce_challenge(challenge).url();
            (
                url,
                state,
                Nonce::new(String::new()),
                FlowClient::Github {
                    api_url: api_url.clone(),
                },
            )
        }
    };
    let flow = Flow {
        provider: p.name.clone(),
        client,
        verifier,
        nonce,
        next,
        started: Instant::now(),
    };
    if !s.sso.put(state.secret().clone(), flow) {
        return Err(fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "Too many sign-ins are in progress. Try again in a few minutes.",
        ));
    }
    Ok((state.secret().clone(), url.to_string()))
}

async fn discover(
    s: &AppState,
    p: &SsoProvider,
    issuer: &str,
) -> Result<CoreProviderMetadata, Failure> {
    let issuer_url = IssuerUrl::new(issuer.to_owned()).map_err(|e| {
        fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The issuer of {} is not a URL: {e}", p.label),
        )
    })?;
    CoreProviderMetadata::discover_async(issuer_url, &s.sso.client())
        .await
        .map_err(|e| {
            fail(
                StatusCode::BAD_GATEWAY,
                format!(
                    "Could not read the OpenID configuration of {} at {issuer}/.well-known/openid-configuration: {}",
                    p.name,
                    error_chain(&e)
                ),
            )
        })
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
        fail(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The GitHub address of {} is not a URL: {e}", p.name),
        )
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
    let secure = https(&headers);
    let mut resp = match finish(&s, &name, &headers, q).await {
        Ok((user, next)) => match s
            .store
            .create_session(&user, chrono::Duration::days(ui::SESSION_DAYS))
            .await
        {
            Ok(session) => ui::signed_in(&session, &next, secure),
            Err(e) => {
                login_failure(
                    &s,
                    &headers,
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &e.to_string(),
                )
                .await
            }
        },
        Err(Failure(code, message)) => {
            tracing::info!("sign-in through {name:?} refused: {message}");
            login_failure(&s, &headers, code, &message).await
        }
    };
    // The flow is over either way.
    resp.headers_mut()
        .append(header::SET_COOKIE, set_cookie(SSO_COOKIE, "", 0, secure));
    resp
}

/// Checks the callback and returns the signed-in user's name and where to go.
async fn finish(
    s: &AppState,
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
    let cookie = auth::cookie(headers, SSO_COOKIE).unwrap_or("");
    if state.is_empty() || !same_secret(state, cookie) {
        return Err(expired());
    }
    let flow = s.sso.take(state).ok_or_else(expired)?;
    if flow.provider != name {
        return Err(expired());
    }
    let (p, callback) = provider(s, name).await?;
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
    let redirect = redirect_url(&callback)?;
    let unverified = |e: String| {
        fail(
            StatusCode::UNAUTHORIZED,
            format!("The answer of {} could not be verified: {e}", p.label),
        )
    };
    let http = s.sso.client();
    let user = match flow.client {
        FlowClient::Oidc(meta, claim) => {
            let client = CoreClient::from_provider_metadata(
                *meta,
                ClientId::new(p.client_id.clone()),
                Some(ClientSecret::new(p.client_secret.clone())),
            )
            .set_redirect_uri(redirect);
            let token = client
                .exchange_code(code)
                .map_err(|e| unverified(e.to_string()))?
                .set_pkce_verifier(flow.verifier)
                .request_async(&http)
                .await
                .map_err(|e| token_error(&p, &e))?;
            let id_token = token
                .id_token()
                .ok_or_else(|| unverified("the token response has no id_token".into()))?;
            let claims = id_token
                .claims(&client.id_token_verifier(), &flow.nonce)
                .map_err(|e| unverified(format!("ID token: {e}")))?;
            match claim {
                UserClaim::Email => {
                    let email = claims.email().ok_or_else(|| {
                        unverified("the ID token has no email (ask for the `email` scope)".into())
                    })?;
                    if claims.email_verified() != Some(true) {
                        return Err(unverified(format!(
                            "the e-mail address {} is not verified at the provider",
                            email.as_str()
                        )));
                    }
                    email.as_str().to_owned()
                }
                UserClaim::PreferredUsername => claims
                    .preferred_username()
                    .ok_or_else(|| unverified("the ID token has no preferred_username".into()))?
                    .as_str()
                    .to_owned(),
                UserClaim::Sub => claims.subject().as_str().to_owned(),
            }
        }
        FlowClient::Github { api_url } => {
            let SsoKind::Github { url, .. } = &p.kind else {
                return Err(expired());
            };
            let client = github_client(&p, url, redirect)?;
            let token = client
                .exchange_code(code)
                .set_pkce_verifier(flow.verifier)
                .request_async(&http)
                .await
                .map_err(|e| token_error(&p, &e))?;
            github_login(s, &p, &api_url, token.access_token().secret()).await?
        }
    };
    match s.store.sso_user(&user, &p.name).await {
        Ok(()) => Ok((user, flow.next)),
        Err(e @ StoreError::IdentityConflict { .. }) => {
            Err(fail(StatusCode::CONFLICT, e.to_string()))
        }
        Err(StoreError::Password(m)) => Err(fail(StatusCode::FORBIDDEN, m)),
        Err(e) => Err(fail(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// A failed token request: the provider's refusal (401) or no usable answer (502).
fn token_error<RE, T>(p: &SsoProvider, e: &openidconnect::RequestTokenError<RE, T>) -> Failure
where
    RE: std::error::Error + 'static,
    T: openidconnect::ErrorResponse + 'static,
{
    use openidconnect::RequestTokenError as E;
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

/// `GET <api_url>/user` with the access token: the GitHub login.
async fn github_login(
    s: &AppState,
    p: &SsoProvider,
    api_url: &str,
    token: &str,
) -> Result<String, Failure> {
    #[derive(Deserialize)]
    struct GithubUser {
        login: String,
    }
    let bad = |e: String| {
        fail(
            StatusCode::BAD_GATEWAY,
            format!(
                "Could not read the user from {} ({api_url}/user): {e}",
                p.label
            ),
        )
    };
    let resp = s
        .sso
        .http()
        .get(format!("{api_url}/user"))
        .bearer_auth(token)
        .header(header::ACCEPT, "application/vnd.github+json")
        .header("X-GitHub-Api-Version", "2022-11-28")
        .send()
        .await
        .map_err(|e| bad(error_chain(&e)))?;
    if !resp.status().is_success() {
        return Err(bad(format!("HTTP {}", resp.status())));
    }
    let user: GithubUser = resp.json().await.map_err(|e| bad(error_chain(&e)))?;
    Ok(user.login)
}

/// An error with its causes, `a: b: c`.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let s = c.to_string();
        if !out.contains(&s) {
            out.push_str(": ");
            out.push_str(&s);
        }
        cur = c.source();
    }
    out
}

async fn login_failure(
    s: &AppState,
    headers: &HeaderMap,
    code: StatusCode,
    message: &str,
) -> Response {
    ui::login_form(headers, "/", message, code, links(s).await)
}
