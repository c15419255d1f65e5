//! Text classification with adapters, end to end: data, model, training through
//! burn-train, per-rank evaluation, report. What `mlora train` / `compare` run.

use crate::adapter::MatryoshkaConfig;
use crate::aurac::aurac_both;
use crate::backend::BackendKind;
use crate::bert::{BertEncoder, LoadError};
use crate::classifier::SequenceClassifier;
use crate::data::{
    CsvSpec, DataError, SplitRule, TextBatcher, TextClassificationData, TextTokenizer,
    TokenizedExample,
};
use crate::error::AdapterError;
use crate::inject::Targets;
use crate::report::{Report, RunConfig, peak_rss_mb, reset_peak_rss};
use crate::scaling::Scaling;
use crate::train::{
    FitError, FitOptions, HeadMode, ProgressRenderer, QuietRenderer, StepPlan, TrainMethod, fit,
    rank_accuracy_name, rank_loss_name,
};
use burn::data::dataloader::DataLoaderBuilder;
use burn::data::dataset::InMemDataset;
use burn::module::{Module, ParamGroup};
use burn::prelude::*;
use burn::train::renderer::MetricsRenderer;
use std::path::{Path, PathBuf};
use std::time::Instant;
use thiserror::Error;

/// Why a run failed.
#[derive(Debug, Error)]
pub enum RunError {
    /// Bad adapter settings.
    #[error(transparent)]
    Adapter(#[from] AdapterError),
    /// The model or tokenizer could not be loaded.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The data could not be read.
    #[error(transparent)]
    Data(#[from] DataError),
    /// Training failed.
    #[error(transparent)]
    Fit(#[from] FitError),
    /// A setting is invalid.
    #[error("{0}")]
    Invalid(String),
    /// Writing results failed.
    #[error("cannot write {path}: {reason}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
}

/// Data tokenized once, shared by every method of a comparison.
pub struct PreparedData {
    /// Training examples.
    pub train: Vec<TokenizedExample>,
    /// Test examples.
    pub test: Vec<TokenizedExample>,
    /// Label names.
    pub labels: Vec<String>,
}

impl RunConfig {
    /// The RT protocol of PROTOCOL.md with the assets in `assets`.
    pub fn rt_protocol(assets: &Path) -> Self {
        Self {
            model: assets.display().to_string(),
            data: assets
                .join("rotten_tomatoes_corpus_full.csv.bz2")
                .display()
                .to_string(),
            test_data: None,
            text_col: "text".into(),
            label_col: "category".into(),
            labels: Some(vec!["rotten".into(), "fresh".into()]),
            test_every: 5,
            train_n: Some(4000),
            test_n: Some(1000),
            max_len: 48,
            layers: None,
            targets: crate::bert::DEFAULT_TARGETS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            method: "matryoshka".into(),
            head_mode: "joint".into(),
            rank: 32,
            ranks: vec![1, 2, 4, 8, 16, 32],
            scaling: "sqrt".into(),
            lr: 1e-3,
            weight_decay: 0.0,
            warmup_steps: 0,
            grad_clip: Some(1.0),
            batch: 32,
            eval_batch: 128,
            epochs: 1,
            seed: 42,
            backend: "flex".into(),
        }
    }

    /// Parsed method.
    pub fn train_method(&self) -> Result<TrainMethod, RunError> {
        self.method
            .parse()
            .map_err(|e: crate::train::ParseError| RunError::Invalid(e.to_string()))
    }

    /// Parsed head mode.
    pub fn head(&self) -> Result<HeadMode, RunError> {
        self.head_mode
            .parse()
            .map_err(|e: crate::train::ParseError| RunError::Invalid(e.to_string()))
    }

    /// The adapter configuration.
    pub fn adapter_config(&self) -> Result<MatryoshkaConfig, RunError> {
        let scaling: Scaling = self
            .scaling
            .parse()
            .map_err(|e: crate::scaling::ParseScalingError| RunError::Invalid(e.to_string()))?;
        let config = MatryoshkaConfig::new()
            .with_max_rank(self.rank)
            .with_ranks(Some(self.ranks.clone()))
            .with_scaling(scaling)
            .with_method(self.train_method()?.adapter_method());
        config.train_p()?;
        Ok(config)
    }

    /// Checks everything that can be checked without reading files.
    pub fn validate(&self) -> Result<(), RunError> {
        self.adapter_config()?;
        self.head()?;
        self.backend.parse::<BackendKind>()?;
        let positive = [
            ("--batch", self.batch),
            ("--epochs", self.epochs),
            ("--eval-batch", self.eval_batch),
        ];
        for (flag, v) in positive {
            if v == 0 {
                return Err(RunError::Invalid(format!("{flag} must be at least 1")));
            }
        }
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 1.0) {
            return Err(RunError::Invalid(format!(
                "--lr must be in (0, 1], got {}",
                self.lr
            )));
        }
        if self.max_len < 2 {
            return Err(RunError::Invalid(format!(
                "--max-len must be at least 2, got {}",
                self.max_len
            )));
        }
        if !Path::new(&self.model).is_dir() {
            return Err(LoadError::MissingDir(PathBuf::from(&self.model)).into());
        }
        if self.targets.is_empty() {
            return Err(RunError::Invalid(
                "--targets must name at least one layer".into(),
            ));
        }
        Ok(())
    }

    fn split_rule(&self) -> SplitRule {
        match &self.test_data {
            Some(test) => SplitRule::TestFile(PathBuf::from(test)),
            None => SplitRule::Every(self.test_every),
        }
    }
}

/// Reads, splits, truncates and tokenizes the data of `config`.
pub fn prepare_data(config: &RunConfig) -> Result<PreparedData, RunError> {
    let spec = CsvSpec {
        text_col: config.text_col.clone(),
        label_col: config.label_col.clone(),
        labels: config.labels.clone(),
    };
    let data =
        TextClassificationData::from_csv(Path::new(&config.data), &spec, &config.split_rule())?
            .truncate(config.train_n, config.test_n)?;
    let tokenizer = TextTokenizer::from_file(
        &Path::new(&config.model).join("tokenizer.json"),
        config.max_len,
    )?;
    let tokenize = |rows: &[crate::data::TextExample]| -> Result<Vec<TokenizedExample>, RunError> {
        let texts: Vec<&str> = rows.iter().map(|r| r.text.as_str()).collect();
        let ids = tokenizer.encode_batch(&texts)?;
        Ok(ids
            .into_iter()
            .zip(rows)
            .map(|(ids, r)| TokenizedExample {
                ids,
                label: r.label,
            })
            .collect())
    };
    Ok(PreparedData {
        train: tokenize(&data.train)?,
        test: tokenize(&data.test)?,
        labels: data.labels,
    })
}

/// The adapted classifier of `config` on `device` (seeded by `config.seed`).
pub fn build_classifier(
    config: &RunConfig,
    n_classes: usize,
    device: &Device,
) -> Result<SequenceClassifier, RunError> {
    device.seed(config.seed);
    let (encoder, bert) =
        BertEncoder::from_pretrained_layers(Path::new(&config.model), config.layers, device)?;
    let targets = Targets::names(config.targets.iter().cloned());
    let (encoder, _) = encoder.with_adapters(&config.adapter_config()?, &targets)?;
    Ok(SequenceClassifier::new(
        encoder,
        bert.hidden_size,
        n_classes,
        device,
    ))
}

/// A run's outcome.
pub struct RunOutcome {
    /// The report.
    pub report: Report,
    /// The trained classifier.
    pub model: SequenceClassifier,
    /// Wall times of the main training run's splits and steps.
    pub times: crate::train::SplitTimes,
}

fn renderer(quiet: bool, label: &str, batch: usize) -> Box<dyn MetricsRenderer> {
    if quiet {
        Box::new(QuietRenderer)
    } else {
        Box::new(ProgressRenderer::new(label, batch))
    }
}

/// Removes burn-train's scratch directory when a run ends, however it ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Trains and evaluates one method on prepared data.
pub fn run(config: &RunConfig, data: &PreparedData, quiet: bool) -> Result<RunOutcome, RunError> {
    config.validate()?;
    reset_peak_rss();
    let method = config.train_method()?;
    let backend: BackendKind = config.backend.parse()?;
    let device = backend.device()?.autodiff();
    let mut task = build_classifier(config, data.labels.len(), &device)?;
    let artifact_dir = std::env::temp_dir().join(format!("mlora-learner-{}", std::process::id()));
    let _cleanup = RemoveOnDrop(artifact_dir.clone());
    let train_loader = |seed: u64| {
        DataLoaderBuilder::new(TextBatcher::default())
            .batch_size(config.batch)
            .shuffle(seed)
            .set_device(device.clone())
            .build(InMemDataset::new(data.train.clone()))
    };
    let valid_loader = DataLoaderBuilder::new(TextBatcher::default())
        .batch_size(config.eval_batch)
        .set_device(device.clone())
        .build(InMemDataset::new(data.test.clone()));
    let steps_per_epoch = data.train.len().div_ceil(config.batch);
    let rank_set = config.adapter_config()?.rank_set()?;

    if config.head()? == HeadMode::Probe {
        // One linear-probe epoch: only the head trains, adapters (B = 0) frozen.
        let head = ParamGroup::from_predicate("head.");
        let probe = task.freeze().unfreeze_group(head.clone());
        let plan = StepPlan::new(
            TrainMethod::Lora,
            &crate::RankSet::single(config.rank)?,
            config.seed,
        );
        let options = FitOptions {
            lr: config.lr,
            grad_clip: None,
            steps_per_epoch,
            epochs: 1,
            constant_lr: true,
            artifact_dir: artifact_dir.join("probe"),
            ..FitOptions::default()
        };
        let trained = fit(
            probe,
            plan,
            // the probe epoch shuffles with its own stream
            train_loader(config.seed.wrapping_add(0x9e37_79b9)),
            valid_loader.clone(),
            &options,
            renderer(quiet, "probe", config.batch),
        )?;
        // burn-train hands back the validation (non-autodiff) module: `train()`
        // re-enables autodiff with the new gradient settings.
        task = trained
            .task
            .freeze_group(head)
            .unfreeze_group(ParamGroup::from_any_predicates(vec!["lora_a", "lora_b"]))
            .train();
    }

    let plan = StepPlan::new(method, &rank_set, config.seed);
    let options = FitOptions {
        lr: config.lr,
        weight_decay: config.weight_decay,
        warmup_steps: config.warmup_steps,
        grad_clip: config.grad_clip,
        epochs: config.epochs,
        steps_per_epoch,
        artifact_dir,
        ..FitOptions::default()
    };
    let started = Instant::now();
    let result = fit(
        task,
        plan,
        train_loader(config.seed),
        valid_loader,
        &options,
        renderer(quiet, method.name(), config.batch),
    )?;
    let wall = started.elapsed().as_secs_f64();
    let epoch = result.log.last_epoch();
    let read = |name: String| result.log.value(&name, "valid", epoch).unwrap_or(f64::NAN);
    let accuracy: Vec<f64> = config
        .ranks
        .iter()
        .map(|&k| read(rank_accuracy_name(k)))
        .collect();
    let loss: Vec<f64> = config
        .ranks
        .iter()
        .map(|&k| read(rank_loss_name(k)))
        .collect();
    let (aurac_log2, aurac_linear) = aurac_both(&config.ranks, &accuracy)?;
    let train_seconds = result.times.seconds("train");
    let train_steps = steps_per_epoch * config.epochs;
    let report = Report {
        method: method.name().into(),
        head_mode: config.head_mode.clone(),
        max_rank: config.rank,
        ranks: config.ranks.clone(),
        accuracy,
        loss,
        aurac_log2,
        aurac_linear,
        scaling: config.scaling.clone(),
        seed: config.seed,
        train_steps,
        ms_per_step: if train_seconds > 0.0 {
            1000.0 * train_seconds / train_steps.max(1) as f64
        } else {
            1000.0 * wall / train_steps.max(1) as f64
        },
        eval_seconds: result.times.last_seconds("valid"),
        peak_rss_mb: peak_rss_mb(),
        config: config.clone(),
    };
    Ok(RunOutcome {
        report,
        model: result.task,
        times: result.times,
    })
}

/// Accuracy (%) and mean loss at each rank of `ranks` over `examples`, without
/// training or reloading anything (the rank switch only changes `p`).
pub fn evaluate_ranks(
    model: &SequenceClassifier,
    ranks: &[usize],
    examples: &[TokenizedExample],
    batch_size: usize,
    device: &Device,
) -> Result<(Vec<f64>, Vec<f64>), RunError> {
    let max_rank = ranks.iter().copied().max().unwrap_or(0);
    let plan = StepPlan::new(
        TrainMethod::Matryoshka,
        &crate::RankSet::new(max_rank, ranks.to_vec())?,
        0,
    );
    let wrapped = crate::train::RankedLearnerModel::new(model.clone(), plan)?;
    let batcher = TextBatcher::default();
    let mut scores = vec![0.0; ranks.len()];
    let mut losses = vec![0.0; ranks.len()];
    let mut n = 0usize;
    for chunk in examples.chunks(batch_size.max(1)) {
        let out = wrapped.evaluate(&batcher.make(chunk, device));
        for (i, o) in out.outputs.into_iter().enumerate() {
            scores[i] += o.score.into_scalar::<f64>();
            losses[i] += o.loss.into_scalar::<f64>() * o.count as f64;
        }
        n += chunk.len();
    }
    let n = n.max(1) as f64;
    Ok((
        scores.iter().map(|s| 100.0 * s / n).collect(),
        losses.iter().map(|l| l / n).collect(),
    ))
}

/// Writes `report.json`, the adapter checkpoint and the plot (PNG and SVG) into
/// `dir`, each file atomically. Creates `dir` if needed.
pub fn save_outputs(
    dir: &Path,
    report: &Report,
    model: Option<SequenceClassifier>,
) -> Result<(), RunError> {
    let err = |path: &Path, e: &dyn std::fmt::Display| RunError::Write {
        path: path.to_path_buf(),
        reason: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| err(dir, &e))?;
    if let Some(model) = model {
        let path = dir.join(crate::checkpoint::ADAPTER_FILE);
        crate::checkpoint::save_adapter(model, &path).map_err(|e| err(&path, &e))?;
    }
    let json = serde_json::to_vec_pretty(report).map_err(|e| err(dir, &e))?;
    let path = dir.join("report.json");
    crate::checkpoint::write_atomic(&path, &json).map_err(|e| err(&path, &e))?;
    save_plots(dir, std::slice::from_ref(report))
}

/// `curve.png` and `curve.svg` of `reports` in `dir`, each written atomically.
pub fn save_plots(dir: &Path, reports: &[Report]) -> Result<(), RunError> {
    for ext in ["png", "svg"] {
        let path = dir.join(format!("curve.{ext}"));
        let tmp = dir.join(format!(".curve.tmp-{}.{ext}", std::process::id()));
        crate::plot::plot_reports(reports, &tmp).map_err(|e| RunError::Write {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        std::fs::rename(&tmp, &path).map_err(|e| RunError::Write {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    }
    Ok(())
}
