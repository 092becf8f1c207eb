//! Signing in (a key, POSTed, exchanged for the session cookie) and out.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;

use crate::pages::layout::{Nav, page};
use crate::session::{COOKIE, Session};
use crate::state::{ConsoleState, Posted, WithToken, now_ms};

/// The sign-in form's fields. Its `Debug` never shows the key.
#[derive(Deserialize)]
pub(crate) struct SignInForm {
    key: String,
}

/// The sign-out form.
#[derive(Deserialize)]
pub(crate) struct SignOutForm {
    csrf: String,
}

impl WithToken for SignOutForm {
    fn token(&self) -> &str {
        &self.csrf
    }
}

fn form(state: &ConsoleState, refused: bool) -> Markup {
    page(
        state,
        None,
        Nav::None,
        "Sign in",
        html! {
            section.narrow {
                h1 { "Sign in" }
                p { "Use one of the API keys of your tenant. The console shows only that tenant's tasks, items and results." }
                @if refused {
                    p.error role="alert" id="sign-in-error" { "That key is not valid. Check it and try again." }
                }
                form method="post" action=(state.at("/sign-in")) {
                    label for="key" { "API key" }
                    input id="key" name="key" type="password" autocomplete="current-password"
                        required autofocus aria-describedby=[refused.then_some("sign-in-error")];
                    button type="submit" { "Sign in" }
                }
            }
        },
    )
}

/// `GET /sign-in`.
pub(crate) async fn show(State(state): State<ConsoleState>) -> Markup {
    form(&state, false)
}

/// Whether the request arrived over HTTPS (directly, or through a proxy that says so).
fn over_https(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"))
}

fn cookie(state: &ConsoleState, value: &str, max_age: u64, secure: bool) -> Option<HeaderValue> {
    let secure = if secure { "; Secure" } else { "" };
    let path = if state.base.is_empty() {
        "/"
    } else {
        &state.base
    };
    HeaderValue::from_str(&format!(
        "{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; SameSite=Strict{secure}"
    ))
    .ok()
}

/// `POST /sign-in`: a valid key gets a session cookie and goes to the overview.
pub(crate) async fn sign_in(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    axum::Form(input): axum::Form<SignInForm>,
) -> Response {
    let Some(key) = task_http::find_key(&state.config.api_keys, &input.key) else {
        tracing::info!("console sign-in refused: unknown key");
        return (StatusCode::UNAUTHORIZED, form(&state, true)).into_response();
    };
    let (session, value) = state.sessions.issue(&key.tenant, &key.key, now_ms());
    tracing::info!(tenant = %session.tenant, "console sign-in");
    let lifetime = state.sessions.lifetime_secs();
    let mut response = Redirect::to(&state.at("")).into_response();
    if let Some(cookie) = cookie(&state, &value, lifetime, over_https(&headers)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}

/// `POST /sign-out`: the cookie is cleared.
pub(crate) async fn sign_out(
    State(state): State<ConsoleState>,
    headers: HeaderMap,
    posted: Posted<SignOutForm>,
) -> Response {
    let Posted::<SignOutForm> { session, .. } = posted;
    let Session { tenant, .. } = session;
    tracing::info!(%tenant, "console sign-out");
    let mut response = Redirect::to(&state.at("/sign-in")).into_response();
    if let Some(cookie) = cookie(&state, "", 0, over_https(&headers)) {
        response.headers_mut().insert(header::SET_COOKIE, cookie);
    }
    response
}
