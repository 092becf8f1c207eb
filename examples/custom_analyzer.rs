//! A product with an analyzer of your own, registered beside adbreaks in an embedded engine.
//!
//! `loudness` measures an asset's audio with ffmpeg's `ebur128` filter (EBU R128 / ITU-R
//! BS.1770): integrated loudness (LUFS), loudness range (LU) and true peak (dBTP). Its
//! analyzer implements `task_media::analyze::Analyzer`, so the engine's own steps check the
//! asset exists, probe it and apply the length gate before it runs, and store what it
//! returns as the product's result. The example makes two clips with ffmpeg (1 kHz tones that
//! measure -23 and -13 LUFS), runs loudness on both and adbreaks on one, and reads the results
//! back through the Task API. Needs ffmpeg.
//!
//! `cargo run --example custom_analyzer`

mod support;

use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use media_task_engine::core::error::TaskError;
use media_task_engine::media::analyze::Analyzer;
use media_task_engine::media::media::LocalMedia;
use media_task_engine::media::probe::ProbeOutput;
use media_task_engine::runner::step::StepContext;
use serde_json::json;
use support::{Engine, Error, Product, make_clip};
use task_api::bodies::{ItemBody, NewTaskBody};
use task_client::ResultQuery;
use task_webhooks::UrlPolicy;

/// What the loudness product stores for an asset.
#[derive(Debug, Clone, PartialEq)]
pub struct Loudness {
    /// Integrated loudness, LUFS.
    pub integrated_lufs: f64,
    /// Loudness range, LU.
    pub range_lu: f64,
    /// True peak, dBTP (None when the audio is digital silence).
    pub true_peak_dbtp: Option<f64>,
}

/// The loudness analyzer: ffmpeg's `ebur128` on the first audio stream.
#[derive(Debug, Clone)]
pub struct LoudnessAnalyzer {
    /// The ffmpeg executable.
    pub program: String,
}

impl LoudnessAnalyzer {
    /// Measures the file at `path`.
    pub async fn measure(&self, path: &Path) -> Result<Loudness, TaskError> {
        let failed = |message: String| TaskError::AnalysisFailed { message };
        // kill_on_drop: a cancelled task (its future dropped) stops ffmpeg with it.
        let output = tokio::process::Command::new(&self.program)
            .args(["-hide_banner", "-nostats", "-i"])
            .arg(path)
            .args(["-map", "0:a:0", "-af", "ebur128=peak=true:framelog=verbose"])
            .args(["-f", "null", "-"])
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| TaskError::Transient {
                step: media_task_engine::core::task::Step::Analyze,
                message: format!("{} could not start: {e}", self.program),
            })?;
        let log = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            let last = log.lines().last().unwrap_or("no message");
            return Err(failed(format!("ffmpeg ebur128 failed: {last}")));
        }
        parse_summary(&log).ok_or_else(|| failed("ffmpeg printed no ebur128 summary".into()))
    }
}

/// The numbers of the summary ffmpeg's `ebur128` prints at the end.
fn parse_summary(log: &str) -> Option<Loudness> {
    let summary = &log[log.rfind("Summary:")?..];
    let value = |label: &str| -> Option<f64> {
        let line = summary
            .lines()
            .find(|l| l.trim_start().starts_with(label))?;
        let number = line.trim_start()[label.len()..].split_whitespace().next()?;
        number.parse().ok()
    };
    Some(Loudness {
        integrated_lufs: value("I:")?,
        range_lu: value("LRA:")?,
        true_peak_dbtp: value("Peak:").filter(|p| p.is_finite()),
    })
}

#[async_trait]
impl Analyzer for LoudnessAnalyzer {
    async fn analyze(
        &self,
        _ctx: &StepContext,
        probe: &ProbeOutput,
        media: &LocalMedia,
    ) -> Result<serde_json::Value, TaskError> {
        let loudness = self.measure(media.path()).await?;
        Ok(json!({
            "duration_secs": probe.duration_secs,
            "integrated_lufs": loudness.integrated_lufs,
            "range_lu": loudness.range_lu,
            "true_peak_dbtp": loudness.true_peak_dbtp,
        }))
    }
}

/// Runs the example; the integrated loudness measured for each clip, by inventory id.
async fn run() -> Result<Vec<(String, f64)>, Error> {
    let loudness = Arc::new(LoudnessAnalyzer {
        program: "ffmpeg".into(),
    });
    let products = vec![
        Product::adbreaks(1)?,
        Product::new("loudness", loudness, 1)?,
    ];
    let engine = Engine::start(products, UrlPolicy::default()).await?;
    let client = &engine.client;

    let clips = [("quiet-tone", -20.0), ("loud-tone", -10.0)];
    for (id, peak_dbfs) in clips {
        let file = format!("{id}.mp4");
        make_clip(&engine.media.join(&file), 6.0, peak_dbfs)?;
        let item = ItemBody::new(id, "standalone", id, &engine.file_url(&file));
        client.put_item(&item).await?;
    }
    let mut tasks = vec![NewTaskBody::new("quiet-tone", "adbreaks", "1.0")];
    tasks.extend(clips.map(|(id, _)| NewTaskBody::new(id, "loudness", "1.0")));
    for body in &tasks {
        let (task, _) = client.create_task(body).await?;
        let task = client
            .wait_until_finished(&task.task_id, Duration::from_secs(120))
            .await?;
        println!(
            "{} {} on {}: {}",
            task.product,
            task.version,
            task.inventory_id,
            task.error.as_deref().unwrap_or(&task.status)
        );
        if task.status != "done" {
            return Err(format!("{} {}: {}", task.product, task.inventory_id, task.status).into());
        }
    }

    let mut measured = Vec::new();
    for (id, peak_dbfs) in clips {
        let result = client
            .results("loudness", id, &ResultQuery::default())
            .await?;
        println!(
            "loudness of {id} (a 1 kHz tone peaking at {peak_dbfs} dBFS): {}",
            result.data
        );
        let lufs = result.data["integrated_lufs"]
            .as_f64()
            .ok_or("the result has no integrated_lufs")?;
        measured.push((id.to_owned(), lufs));
    }
    let adbreaks = client
        .results("adbreaks", "quiet-tone", &ResultQuery::default())
        .await?;
    println!(
        "adbreaks of quiet-tone (no black, no silence): {}",
        adbreaks.data
    );
    engine.stop().await?;
    Ok(measured)
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    run().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_tones_measure_what_bs1770_says() {
        let measured = run()
            .await
            .unwrap_or_else(|err| panic!("custom_analyzer failed: {err}"));
        // A 1 kHz sine peaking at P dBFS is P - 3.01 LUFS.
        let expected = [("quiet-tone", -23.01), ("loud-tone", -13.01)];
        assert_eq!(measured.len(), expected.len());
        for ((id, lufs), (want_id, want)) in measured.iter().zip(expected) {
            assert_eq!(id, want_id);
            assert!((lufs - want).abs() <= 1.0, "{id}: {lufs} LUFS, want {want}");
        }
    }

    #[test]
    fn the_summary_is_parsed() {
        let log = "[Parsed_ebur128_0 @ 0x1] Summary:\n\n  Integrated loudness:\n    I:         -23.1 LUFS\n    Threshold: -33.1 LUFS\n\n  Loudness range:\n    LRA:         0.0 LU\n\n  True peak:\n    Peak:       -inf dBFS\n";
        assert_eq!(
            parse_summary(log),
            Some(Loudness {
                integrated_lufs: -23.1,
                range_lu: 0.0,
                true_peak_dbtp: None,
            })
        );
    }
}
