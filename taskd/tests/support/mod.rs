//! A real `taskd` on a free port with a config of the test's own.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_taskd");

/// A running daemon, killed when dropped.
pub struct Daemon {
    pub child: Child,
    /// `host:port`.
    pub addr: String,
    pub dir: tempfile::TempDir,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `taskd serve` with `config` as its TOML file, data and media under a temporary
    /// directory (the media root is `DIR/media`).
    pub fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("taskd.toml"), config).unwrap();
        std::fs::create_dir_all(dir.path().join("media")).unwrap();
        let mut child = Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--config"])
            .arg(dir.path().join("taskd.toml"))
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--media-root")
            .arg(dir.path().join("media"))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("taskd listening on http://")
            .unwrap_or_else(|| panic!("{line:?}"))
            .to_owned();
        Daemon { child, addr, dir }
    }

    /// `http://host:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}
