//! The `[console]` section: the web console served at `/ui` beside the API.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use task_console::{Console, ConsoleOptions};
use task_core::store::Store;
use task_http::ServiceConfig;

use crate::error::TaskdError;

/// Where the console is served.
pub const CONSOLE_PATH: &str = "/ui";

/// The console's settings, every field optional.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleEntry {
    /// Whether `/ui` serves the console (default true).
    pub enabled: Option<bool>,
    /// The secret that signs session cookies, at least 32 characters (default: a random one
    /// per process, so sessions end at a restart). Nodes behind one load balancer must share
    /// it.
    pub session_secret: Option<String>,
    /// Hours a session lasts (default 12).
    pub session_hours: Option<u64>,
}

impl ConsoleEntry {
    /// The console over `store` for the API's `config`, or None when disabled.
    pub fn build(
        &self,
        store: Arc<dyn Store>,
        config: ServiceConfig,
    ) -> Result<Option<Console>, TaskdError> {
        if !self.enabled.unwrap_or(true) {
            return Ok(None);
        }
        let hours = self.session_hours.unwrap_or(12);
        if hours == 0 {
            return Err(TaskdError::Setting {
                field: "console.session_hours".into(),
                reason: "must be at least 1".into(),
            });
        }
        let options = ConsoleOptions {
            base_path: CONSOLE_PATH.to_owned(),
            session_secret: self.session_secret.as_ref().map(|s| s.as_bytes().to_vec()),
            session_lifetime: Duration::from_secs(hours.saturating_mul(3600)),
        };
        Console::new(store, config, options)
            .map(Some)
            .map_err(|e| TaskdError::Setting {
                field: "console.session_secret".into(),
                reason: e.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::config::FileConfig;

    fn build(toml: &str) -> Result<Option<Console>, TaskdError> {
        let file = FileConfig::parse(toml).unwrap();
        let store: Arc<dyn Store> = Arc::new(task_core::memory::MemoryStore::default());
        file.console.build(store, ServiceConfig::new())
    }

    #[test]
    fn the_console_is_on_by_default_and_its_settings_are_checked() {
        assert!(build("").unwrap().is_some());
        assert!(build("[console]\nenabled = false").unwrap().is_none());
        let secret = format!("[console]\nsession_secret = \"{}\"", "s".repeat(32));
        assert!(build(&secret).unwrap().is_some());
        let short = build("[console]\nsession_secret = \"too-short\"").unwrap_err();
        assert!(short.to_string().contains("at least 32"), "{short}");
        let zero = build("[console]\nsession_hours = 0").unwrap_err();
        assert!(zero.to_string().contains("session_hours"), "{zero}");
        assert!(FileConfig::parse("[console]\nsecret = \"x\"").is_err());
    }
}
