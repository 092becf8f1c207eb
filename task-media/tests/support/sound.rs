//! Sound whose content is known by construction: pseudo-random notes from a seed, played in
//! parts one after the other, with or without a test-pattern picture. Self-contained, so that
//! other crates' tests include it by path.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Two voices of pseudo-random notes (a quarter and a third of a second long, over three and
/// two octaves), chosen by a hash of the note's index and `seed`: sound that changes pitch like
/// music, different for every seed and the same for the same seed.
pub fn sound(seed: u32, seconds: f64) -> String {
    let note = |rate: f64, base: f64, octaves: u32, salt: f64| {
        format!(
            "sin(2*PI*t*{base}*pow(2,floor({semis}*mod(abs(sin(floor(t*{rate})*12.9898+{s})*43758.5453),1))/12))",
            semis = 12 * octaves,
            s = f64::from(seed) * 7.31 + salt,
        )
    };
    format!(
        "aevalsrc=exprs='0.25*{}+0.2*{}':s=22050:d={seconds}",
        note(4.0, 110.0, 3, 0.0),
        note(3.0, 220.0, 2, 3.7)
    )
}

/// An audio file of `parts` (seed, seconds) played one after the other.
pub fn audio(dir: &Path, name: &str, parts: &[(u32, f64)]) -> PathBuf {
    media(dir, name, parts, None)
}

/// A file of `parts` (seed, seconds) played one after the other, with the lavfi test
/// `pattern` (e.g. `testsrc2`, `smptebars`) as a small low-rate picture when given.
pub fn media(dir: &Path, name: &str, parts: &[(u32, f64)], pattern: Option<&str>) -> PathBuf {
    let path = dir.join(name);
    let total: f64 = parts.iter().map(|(_, seconds)| seconds).sum();
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-y"]);
    for (seed, seconds) in parts {
        command.args(["-f", "lavfi", "-i", &sound(*seed, *seconds)]);
    }
    let inputs: String = (0..parts.len()).map(|i| format!("[{i}]")).collect();
    let mut filter = format!("{inputs}concat=n={}:v=0:a=1[a]", parts.len());
    if let Some(pattern) = pattern {
        command.args([
            "-f",
            "lavfi",
            "-i",
            &format!("{pattern}=s=160x120:r=5:d={total}"),
        ]);
        filter = format!("{filter};[{}:v]null[v]", parts.len());
    }
    command.args(["-filter_complex", &filter, "-map", "[a]"]);
    if pattern.is_some() {
        command.args(["-map", "[v]", "-c:v", "libx264", "-preset", "ultrafast"]);
    }
    command.args(["-c:a", "aac", "-b:a", "128k"]);
    let output = command
        .arg(&path)
        .output()
        .expect("ffmpeg is needed (scripts/install-test-deps.sh installs it)");
    assert!(
        output.status.success(),
        "ffmpeg could not make {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    path
}
