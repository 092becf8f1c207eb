//! A real `taskd` on a free port with a config of the test's own.
#![allow(dead_code, clippy::unwrap_used)]

pub mod cluster;
pub mod pg;
pub mod receiver;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_taskd");

/// A running daemon, killed when dropped.
pub struct Daemon {
    pub child: Child,
    /// `host:port`.
    pub addr: String,
    /// The directory of its config, data and media, unless the test owns it.
    pub dir: Option<tempfile::TempDir>,
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
        let mut daemon = Self::start_in(config, dir.path());
        daemon.dir = Some(dir);
        daemon
    }

    /// Starts `taskd serve` on the config, data and media under `root`, which outlives the
    /// daemon so that a test can restart it on the same data.
    pub fn start_in(config: &str, root: &Path) -> Self {
        std::fs::write(root.join("taskd.toml"), config).unwrap();
        std::fs::create_dir_all(root.join("media")).unwrap();
        let config = root.join("taskd.toml");
        let (data, media) = (root.join("data"), root.join("media"));
        let args: [&OsStr; 9] = [
            "serve".as_ref(),
            "--listen".as_ref(),
            "127.0.0.1:0".as_ref(),
            "--config".as_ref(),
            config.as_ref(),
            "--data-dir".as_ref(),
            data.as_ref(),
            "--media-root".as_ref(),
            media.as_ref(),
        ];
        Self::launch(args)
    }

    /// Starts `taskd serve` with `config` (and the `[postgres]` table of `backend`) on
    /// `backend`, its config and media under a temporary directory (the media root is
    /// `DIR/media`).
    pub fn start_on(config: &str, backend: &pg::Backend) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("media")).unwrap();
        let config_file = root.join("taskd.toml");
        std::fs::write(&config_file, format!("{config}{}", backend.toml())).unwrap();
        let mut args: Vec<std::ffi::OsString> = ["serve", "--listen", "127.0.0.1:0", "--config"]
            .map(Into::into)
            .to_vec();
        args.push(config_file.into());
        args.extend(backend.args(root));
        args.extend(["--media-root".into(), root.join("media").into()]);
        let mut daemon = Self::launch(args);
        daemon.dir = Some(dir);
        daemon
    }

    /// Starts `taskd ARGS` (a node subcommand and its flags) and waits for the line that
    /// says where it listens.
    pub fn launch<I, S>(args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut child = Command::new(BIN)
            .args(args)
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
        Daemon {
            child,
            addr,
            dir: None,
        }
    }

    /// Waits for the daemon to exit (after a signal the test sent): its exit status and the
    /// rest of its stdout, as one text.
    pub fn into_output(self) -> String {
        let (status, stdout) = self.wait();
        format!("{status}\n{stdout}")
    }

    /// Waits for the daemon to exit: its exit status and the rest of its stdout.
    pub fn wait(mut self) -> (std::process::ExitStatus, String) {
        let child = std::mem::replace(&mut self.child, Command::new("true").spawn().unwrap());
        let output = child.wait_with_output().unwrap();
        (
            output.status,
            String::from_utf8_lossy(&output.stdout).into_owned(),
        )
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success(), "kill -TERM {pid}: {sent}");
    }

    /// The directory the daemon's files are in, when it owns one.
    pub fn root(&self) -> &Path {
        self.dir.as_ref().map(|d| d.path()).unwrap()
    }

    /// `http://host:port` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

/// Makes a small H.264 + AAC MP4 of `seconds` at `out` with ffmpeg (a test pattern and a tone).
pub fn encode(out: &Path, seconds: u32) {
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-y", "-f", "lavfi", "-i"])
        .arg(format!("testsrc=size=64x36:rate=2:duration={seconds}"))
        .args(["-f", "lavfi", "-i"])
        .arg(format!(
            "sine=frequency=440:sample_rate=8000:duration={seconds}"
        ))
        .args(["-c:v", "libx264", "-preset", "ultrafast", "-c:a", "aac"])
        .args(["-ac", "1", "-movflags", "+faststart"])
        .arg(out)
        .status()
        .expect("ffmpeg is needed (scripts/install-test-deps.sh installs it)");
    assert!(status.success(), "ffmpeg could not make {}", out.display());
}
