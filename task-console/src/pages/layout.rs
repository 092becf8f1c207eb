//! The frame of every page and the small formatting helpers the pages share.

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, html};
use task_core::time::Timestamp;

use crate::session::Session;
use crate::state::ConsoleState;

/// Which navigation entry is current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Nav {
    Overview,
    Tasks,
    None,
}

/// A whole page: the header with the navigation and the tenant, `body` as the main content.
pub(crate) fn page(
    state: &ConsoleState,
    session: Option<&Session>,
    nav: Nav,
    title: &str,
    body: Markup,
) -> Markup {
    let current = |entry: Nav| if entry == nav { Some("page") } else { None };
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · taskd console" }
                link rel="stylesheet" href=(state.at("/static/console.css"));
                script src=(state.at("/static/console.js")) defer {}
            }
            body {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href=(state.at("")) { "taskd console" }
                    @if let Some(session) = session {
                        nav aria-label="Console" {
                            ul {
                                li { a href=(state.at("")) aria-current=[current(Nav::Overview)] { "Overview" } }
                                li { a href=(state.at("/tasks")) aria-current=[current(Nav::Tasks)] { "Tasks" } }
                            }
                        }
                        div.who {
                            span { "Tenant " strong { (session.tenant) } }
                            form method="post" action=(state.at("/sign-out")) {
                                (token_field(state, session))
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main id="main" tabindex="-1" { (body) }
            }
        }
    }
}

/// The hidden anti-forgery field of a form.
pub(crate) fn token_field(state: &ConsoleState, session: &Session) -> Markup {
    html! { input type="hidden" name="csrf" value=(state.sessions.csrf_token(session)); }
}

/// A page that only says what went wrong (errors, refusals).
pub(crate) fn message_page(state: &ConsoleState, status: StatusCode, message: &str) -> Markup {
    let reason = status.canonical_reason().unwrap_or("Error");
    let hint = match status.as_u16() {
        404 => "It does not exist, or it belongs to another tenant.",
        403 => "The request was refused. Go back, reload the page and try again.",
        503 => "The store cannot answer right now. Try again in a moment.",
        _ => "",
    };
    page(
        state,
        None,
        Nav::None,
        reason,
        html! {
            section.error role="alert" {
                h1 { (status.as_u16()) " " (reason) }
                p { (message) }
                @if !hint.is_empty() { p { (hint) } }
                p { a href=(state.at("")) { "Back to the overview" } }
            }
        },
    )
}

/// A time as RFC 3339 in UTC, to the second.
pub(crate) fn when(at: Timestamp) -> String {
    humantime::format_rfc3339_seconds(at.to_system_time()).to_string()
}

/// A `<time>` element for `at`.
pub(crate) fn time(at: Timestamp) -> Markup {
    let text = when(at);
    html! { time datetime=(text) { (text.replace('T', " ")) } }
}

/// A duration in milliseconds, readably.
pub(crate) fn duration_ms(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1_000.0),
        _ => format!("{:.1} min", ms as f64 / 60_000.0),
    }
}

/// A status badge; the class gives its colour, the text says it.
pub(crate) fn status_badge(status: &str) -> Markup {
    html! { span.badge data-status=(status) data-field="status" { (status) } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_in_their_unit() {
        assert_eq!(duration_ms(350), "350 ms");
        assert_eq!(duration_ms(1_500), "1.5 s");
        assert_eq!(duration_ms(90_000), "1.5 min");
        assert_eq!(when(Timestamp::from_millis(1_500)), "1970-01-01T00:00:01Z");
    }
}
