//! Short fixtures with known black, silent and quiet stretches, made by ffmpeg from lavfi sources
//! (testsrc2 at 25 fps, a 440 Hz tone computed per sample so silence starts and ends exactly),
//! for the adbreaks analysis. Cached under target/media-fixtures/scenes-v1/.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

use super::{run, workspace_root};

/// A stretch `[start, end)` in seconds.
pub type Span = (f64, f64);

/// One generated fixture and what is drawn into it.
#[derive(Debug, Clone)]
pub struct Scene {
    /// File name (the extension picks the container).
    pub name: &'static str,
    /// Length, seconds.
    pub seconds: f64,
    /// Black picture.
    pub black: &'static [Span],
    /// Silence on the first audio track.
    pub silent: &'static [Span],
    /// The tone at this level (dBFS) instead of full volume.
    pub quiet: &'static [(f64, f64, f64)],
    /// Fades to black and silence: (centre, seconds fully black and silent, seconds of each ramp).
    pub fades: &'static [(f64, f64, f64)],
    /// A second audio track (a 660 Hz tone), silent over these spans, if any.
    pub second_track: Option<&'static [Span]>,
    /// The candidates a correct analysis finds: the middle of each black and silent gap.
    pub expected: &'static [f64],
}

const BASE: Scene = Scene {
    name: "",
    seconds: 30.0,
    black: &[],
    silent: &[],
    quiet: &[],
    fades: &[],
    second_track: None,
    expected: &[],
};

/// Every scene: gaps of 0.5, 1 and 2 s; black only and silent only; a fade; gaps in the first
/// and last second; two gaps 3 s apart; near-silence above and below the -50 dB threshold; a
/// second audio track that plays through one gap; black that straddles the edges of silences.
pub const SCENES: [Scene; 8] = [
    Scene {
        name: "gaps.mp4",
        black: &[(5.0, 5.5), (12.0, 13.0), (20.0, 22.0)],
        silent: &[(5.0, 5.5), (12.0, 13.0), (20.0, 22.0)],
        expected: &[5.25, 12.5, 21.0],
        ..BASE
    },
    Scene {
        name: "black-only-silent-only.mp4",
        black: &[(8.0, 10.0)],
        silent: &[(18.0, 20.0)],
        ..BASE
    },
    Scene {
        name: "fade.mp4",
        fades: &[(15.0, 1.0, 1.0)],
        expected: &[15.0],
        ..BASE
    },
    Scene {
        name: "edges.mp4",
        black: &[(0.0, 1.0), (29.0, 30.0)],
        silent: &[(0.0, 1.0), (29.0, 30.0)],
        expected: &[0.5, 29.5],
        ..BASE
    },
    Scene {
        name: "three-seconds-apart.mp4",
        black: &[(10.0, 11.0), (14.0, 15.0)],
        silent: &[(10.0, 11.0), (14.0, 15.0)],
        expected: &[10.5, 14.5],
        ..BASE
    },
    Scene {
        name: "near-silence.mp4",
        black: &[(8.0, 10.0), (18.0, 20.0)],
        quiet: &[(8.0, 10.0, -45.0), (18.0, 20.0, -56.0)],
        expected: &[19.0],
        ..BASE
    },
    Scene {
        name: "two-tracks.mp4",
        black: &[(8.0, 10.0), (18.0, 20.0)],
        silent: &[(8.0, 10.0), (18.0, 20.0)],
        second_track: Some(&[(18.0, 20.0)]),
        expected: &[19.0],
        ..BASE
    },
    // Black 0.6 s long from 0.3 s before a silence, and into the end of another, so that less
    // than the minimum of it lies within two frames of the silence (audio first decodes those
    // windows again, wider); 0.4 s of black from before a third silence, too short to count.
    // More than 10 s apart, so each silence has a window of its own.
    Scene {
        name: "straddling.mp4",
        seconds: 40.0,
        black: &[(3.7, 4.1), (14.7, 15.3), (30.7, 31.3)],
        silent: &[(4.0, 5.0), (15.0, 16.0), (30.0, 31.0)],
        expected: &[15.15, 30.85],
        ..BASE
    },
];

/// `gte(t,a)*lt(t,b)+...` over the spans (0 when there are none).
fn inside(spans: &[Span], var: &str) -> String {
    if spans.is_empty() {
        return "0".into();
    }
    spans
        .iter()
        .map(|(a, b)| format!("gte({var},{a})*lt({var},{b})"))
        .collect::<Vec<_>>()
        .join("+")
}

/// The fade factor (0 black and silent, 1 untouched) of `scene` at `var`.
fn fade(scene: &Scene, var: &str) -> String {
    scene
        .fades
        .iter()
        .map(|(centre, hold, ramp)| {
            format!("clip((abs({var}-{centre})-{})/{ramp},0,1)", hold / 2.0)
        })
        .chain(["1".to_owned()])
        .collect::<Vec<_>>()
        .join("*")
}

fn tone(scene: &Scene, frequency: u32, silent: &[Span], quiet: bool) -> String {
    let mut amplitude = "0.5".to_owned();
    if quiet {
        for (a, b, db) in scene.quiet {
            let level = 10f64.powf(db / 20.0);
            amplitude = format!("if(gte(t,{a})*lt(t,{b}),{level},{amplitude})");
        }
    }
    format!(
        "aevalsrc=exprs='{amplitude}*sin(2*PI*{frequency}*t)*(1-min(1,{}))*{}':s=48000:d={}",
        inside(silent, "t"),
        fade(scene, "t"),
        scene.seconds
    )
}

/// Encodes `scene` to `out`.
pub fn encode_scene(scene: &Scene, out: &std::path::Path) {
    let mut video = format!(
        "drawbox=x=0:y=0:w=iw:h=ih:color=black:t=fill:enable='{}'",
        inside(scene.black, "t")
    );
    if !scene.fades.is_empty() {
        let f = fade(scene, "T");
        video = format!(
            "geq=lum='lum(X,Y)*{f}':cb='128+(cb(X,Y)-128)*{f}':cr='128+(cr(X,Y)-128)*{f}',{video}"
        );
    }
    let mut command = Command::new("ffmpeg");
    command.args(["-v", "error", "-y", "-f", "lavfi", "-i"]);
    command.arg(format!(
        "testsrc2=size=160x90:rate=25:duration={}",
        scene.seconds
    ));
    command.args(["-f", "lavfi", "-i"]);
    command.arg(tone(scene, 440, scene.silent, true));
    let mut maps = vec!["-map", "0:v", "-map", "1:a"];
    if let Some(silent) = scene.second_track {
        command.args(["-f", "lavfi", "-i"]);
        command.arg(tone(scene, 660, silent, false));
        maps.extend(["-map", "2:a"]);
    }
    command.args(["-vf", &video]);
    command.args(maps);
    command.args([
        "-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-b:a",
        "128k",
    ]);
    command.arg(out);
    run(&mut command);
}

/// Makes every scene missing once per run (cached under target/ across runs, each file written
/// whole or not at all, so a scene added later is made too) and returns its path.
pub fn scene_path(scene: &Scene) -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    let dir = DIR.get_or_init(|| {
        let dir = workspace_root().join("target/media-fixtures/scenes-v1");
        std::fs::create_dir_all(&dir).unwrap();
        for scene in &SCENES {
            let path = dir.join(scene.name);
            if !path.exists() {
                let partial = dir.join(format!("partial-{}", scene.name));
                encode_scene(scene, &partial);
                std::fs::rename(&partial, &path).unwrap();
            }
        }
        dir
    });
    dir.join(scene.name)
}

/// A scene by name.
pub fn scene(name: &str) -> &'static Scene {
    SCENES
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scene {name}"))
}

/// A 60-second MKV with the gaps of `gaps.mp4` repeated, cut to its first half: the header
/// (at the start) still says 60 s. Returns the cut file.
pub fn truncated_mkv() -> PathBuf {
    static CUT: OnceLock<PathBuf> = OnceLock::new();
    CUT.get_or_init(|| {
        let dir = workspace_root().join("target/media-fixtures/scenes-v1");
        let cut = dir.join("truncated.mkv");
        if !cut.exists() {
            std::fs::create_dir_all(&dir).unwrap();
            let whole = dir.join("whole.mkv");
            let scene = Scene {
                name: "whole.mkv",
                seconds: 60.0,
                black: &[(12.0, 13.0), (42.0, 44.0)],
                silent: &[(12.0, 13.0), (42.0, 44.0)],
                ..BASE
            };
            encode_scene(&scene, &whole);
            let bytes = std::fs::read(&whole).unwrap();
            let partial = dir.join("truncated.mkv.partial");
            std::fs::write(&partial, &bytes[..bytes.len() / 2]).unwrap();
            std::fs::rename(&partial, &cut).unwrap();
        }
        cut
    })
    .clone()
}
