//! Evaluating a model at every rank and the report of a run.

use super::*;

impl<T: Task> Runner<T> {
    /// The task's own per-rank evaluation ([`Task::evaluate_at_rank`]).
    pub(super) fn evaluate_hooks(
        &self,
        model: &T::Model,
        ranks: &RankSet,
        data: &TaskData<T::Item, T::Meta>,
    ) -> Result<(Vec<RankMetrics>, Vec<serde_json::Value>), RunError> {
        let device = self.device()?;
        let mut metrics = Vec::new();
        let mut records = Vec::new();
        for &k in ranks.ranks() {
            let at_k = model
                .clone()
                .with_active_rank(ActiveRank::Rank(k))
                .map_err(|e| RunError::invalid(Setting::Ranks, e))?;
            let (m, r) = self
                .task
                .evaluate_at_rank_recorded(&at_k, k, &data.test, &device)?;
            metrics.push(m);
            records.extend(r);
        }
        Ok((metrics, records))
    }

    /// Evaluates `model` (trained, or loaded) at every rank of `S` on the
    /// task's evaluation examples, through burn-train's `Evaluator` with the
    /// same per-rank metrics as training, plus the task's own evaluation.
    /// The report's training figures (`train_steps`, `ms_per_step`) are 0.
    pub fn evaluate(
        &self,
        model: T::Model,
        data: &TaskData<T::Item, T::Meta>,
    ) -> Result<Report, RunError> {
        self.evaluate_with(self.config.clone(), model, data)
    }

    /// [`Runner::evaluate`] of a model trained with the run `config`.
    pub fn evaluate_with(
        &self,
        config: TrainConfig,
        model: T::Model,
        data: &TaskData<T::Item, T::Meta>,
    ) -> Result<Report, RunError> {
        let run = Self::run_of(self.resolved(config))?;
        reset_peak_rss();
        let device = self.device()?;
        let model = model.fork(&device);
        let scratch = Scratch::new();
        let started = Instant::now();
        let evaluation = evaluate(
            model.clone(),
            &run.ranks,
            self.loader(&data.test, run.config.eval_batch, None, &device),
            &scratch.0,
            self.renderer("eval", run.config.eval_batch),
        )?;
        let (extra, records) = self.evaluate_hooks(&model, &run.ranks, data)?;
        let eval_seconds = started.elapsed().as_secs_f64();
        self.report(
            &run,
            data,
            evaluation,
            (extra, records),
            Timing {
                train_steps: 0,
                ms_per_step: 0.0,
                eval_seconds,
            },
        )
    }

    /// Evaluates the task's base model alone, without an adapter (the
    /// number to beat): the teacher-forced loss and score over the
    /// evaluation examples and the task's own metrics, each once. (The model
    /// is built with fresh rank-1 adapters, whose `B = 0` adds exactly
    /// nothing; the runner's `R` and `S` play no part.)
    pub fn evaluate_base(&self, data: &TaskData<T::Item, T::Meta>) -> Result<BaseReport, RunError> {
        let run = Self::run_of(self.config.clone().with_max_rank(1)?)?;
        reset_peak_rss();
        let device = self.device()?;
        let model = self.build_model_for(&run, &data.meta, &device)?;
        let rank = run.config.rank;
        let single = RankSet::single(rank).map_err(|e| RunError::invalid(Setting::Rank, e))?;
        let scratch = Scratch::new();
        let started = Instant::now();
        let evaluation = evaluate(
            model.clone(),
            &single,
            self.loader(&data.test, run.config.eval_batch, None, &device),
            &scratch.0,
            self.renderer("base", run.config.eval_batch),
        )?;
        let (extra, _) = self.evaluate_hooks(&model, &single, data)?;
        let mut per_rank = BTreeMap::new();
        per_rank.insert("loss".to_string(), evaluation.loss);
        per_rank.insert(self.task.score_name().to_string(), evaluation.score);
        for (name, value) in extra.into_iter().flatten() {
            per_rank.insert(name, vec![value]);
        }
        self.task.finish_metrics(&mut per_rank);
        Ok(BaseReport {
            task: self.task.name().to_string(),
            ranks: Vec::new(),
            base: per_rank
                .into_iter()
                .filter_map(|(name, values)| Some((format!("base_{name}"), *values.first()?)))
                .collect(),
            eval_seconds: started.elapsed().as_secs_f64(),
            peak_rss_mb: peak_rss_mb(),
            examples: data.test.len(),
            config: RunConfig {
                train: run.config.clone(),
                task: self.task.settings(),
            },
        })
    }

    pub(super) fn report(
        &self,
        run: &MethodRun,
        data: &TaskData<T::Item, T::Meta>,
        evaluation: RankEvaluation,
        (extra, records): (Vec<RankMetrics>, Vec<serde_json::Value>),
        timing: Timing,
    ) -> Result<Report, RunError> {
        let config = &run.config;
        let mut per_rank = BTreeMap::new();
        per_rank.insert("loss".to_string(), evaluation.loss);
        per_rank.insert(self.task.score_name().to_string(), evaluation.score);
        for (i, metrics) in extra.into_iter().enumerate() {
            for (name, value) in metrics {
                per_rank
                    .entry(name)
                    .or_insert_with(|| vec![f64::NAN; run.ranks.ranks().len()])[i] = value;
            }
        }
        self.task.finish_metrics(&mut per_rank);
        let curve_metric = self.task.curve_metric();
        let curve = per_rank.get(&curve_metric).ok_or_else(|| {
            RunError::Failed(
                format!("the task's curve metric `{curve_metric}` was not computed").into(),
            )
        })?;
        let (aurac_log2, aurac_linear) =
            aurac_both(run.ranks.ranks(), curve).map_err(|e| RunError::Failed(e.into()))?;
        let smallest_rank_within = RankWithin::of(run.ranks.ranks(), curve, self.tolerance);
        Ok(Report {
            task: self.task.name().to_string(),
            method: config.method,
            head_mode: config.head_mode,
            max_rank: config.rank,
            ranks: run.ranks.ranks().to_vec(),
            per_rank,
            aurac_metric: curve_metric,
            aurac_log2,
            aurac_linear,
            scaling: config.scaling,
            seed: config.seed,
            train_steps: timing.train_steps,
            ms_per_step: timing.ms_per_step,
            eval_seconds: timing.eval_seconds,
            peak_rss_mb: peak_rss_mb(),
            smallest_rank_within,
            task_info: self.task.describe(&data.meta),
            data: Some(self.split_summary(data)).filter(|d| *d != SplitSummary::default()),
            config: RunConfig {
                train: config.clone(),
                task: self.task.settings(),
            },
            records,
        })
    }
}

/// What [`Runner::evaluate_base`] measured: the base model's figures, each
/// under its per-rank name prefixed `base_` (`base_loss`,
/// `base_exact_match`, ...), and no ranks.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct BaseReport {
    /// The task.
    pub task: String,
    /// Empty: no adapter rank was evaluated.
    pub ranks: Vec<usize>,
    /// `base_<metric>`: the base model's value of each metric.
    #[serde(flatten)]
    pub base: BTreeMap<String, f64>,
    /// Wall seconds of the evaluation.
    pub eval_seconds: f64,
    /// Peak resident memory (MiB).
    pub peak_rss_mb: f64,
    /// Evaluation examples.
    pub examples: usize,
    /// Every setting used.
    pub config: RunConfig,
}

/// The training figures of a report.
pub(super) struct Timing {
    pub(super) train_steps: usize,
    pub(super) ms_per_step: f64,
    pub(super) eval_seconds: f64,
}
