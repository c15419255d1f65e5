//! Training runs: one method's run (checkpointed, resumable, stopped at a
//! step limit) and [`Runner::compare`]'s runs of several methods.

use super::*;

impl<T: Task> Runner<T> {
    /// Trains with the configured method and evaluates every rank of `S`.
    ///
    /// With [`Runner::checkpoint_into`], checkpoints go to that directory as
    /// training goes, and a run stopped there (Ctrl-C, [`Runner::stop_after`],
    /// a crash) continues from its last checkpoint with [`Runner::resume`]:
    /// the same data order, optimizer state, schedule and DyLoRA draws, so the
    /// resumed run ends where an uninterrupted one would.
    pub fn train(
        &self,
        data: &TaskData<T::Item, T::Meta>,
    ) -> Result<RunOutcome<T::Model>, RunError> {
        let checkpoints = self.checkpoints.as_ref().map(|c| RunCheckpoints {
            dir: &c.dir,
            every: c.every,
            resume: c.resume,
        });
        self.train_run(
            self.method_run(self.config.method)?,
            data,
            checkpoints,
            self.limit(),
        )
    }

    fn limit(&self) -> StepLimit {
        self.step_limit.map_or(StepLimit::None, StepLimit::At)
    }

    /// Trains the run `config` (this runner's settings with another method,
    /// seed, learning rate or head mode) and evaluates every rank of `S`.
    pub fn train_with(
        &self,
        config: TrainConfig,
        data: &TaskData<T::Item, T::Meta>,
    ) -> Result<RunOutcome<T::Model>, RunError> {
        self.train_run(
            Self::run_of(self.resolved(config))?,
            data,
            None,
            self.limit(),
        )
    }

    /// [`Runner::train_with`] checkpointing as `checkpoints` says and
    /// stopping at `limit`.
    pub(crate) fn train_config(
        &self,
        config: TrainConfig,
        data: &TaskData<T::Item, T::Meta>,
        checkpoints: Option<RunCheckpoints<'_>>,
        limit: StepLimit,
    ) -> Result<RunOutcome<T::Model>, RunError> {
        self.train_run(
            Self::run_of(self.resolved(config))?,
            data,
            checkpoints,
            limit,
        )
    }

    fn train_run(
        &self,
        run: MethodRun,
        data: &TaskData<T::Item, T::Meta>,
        checkpoints: Option<RunCheckpoints<'_>>,
        limit: StepLimit,
    ) -> Result<RunOutcome<T::Model>, RunError> {
        let config = &run.config;
        if data.train.is_empty() {
            return Err(RunError::Failed(
                "the task prepared no training examples".into(),
            ));
        }
        let steps_per_epoch = config.steps_per_epoch(data.train.len());
        let every = checkpoints.and_then(|c| c.every);
        let segments = Segments {
            steps_per_epoch,
            epochs: config.epochs,
            every,
        };
        reset_peak_rss();
        let device = self.device()?.autodiff();
        // The model first: bad settings it finds leave nothing written.
        let mut model = self.build_model_for(&run, &data.meta, &device)?;
        // Where this run checkpoints, and where it resumes (segment from 1).
        let (checkpoint_dir, resume_after) = match checkpoints {
            Some(c) => {
                let (dir, resume_after) = self.prepare_checkpoints(c, config, &segments)?;
                (Some(dir), resume_after)
            }
            None => (None, None),
        };
        let start = resume_after.unwrap_or(0);
        if let (Some(path), None) = (&self.init, resume_after) {
            let init = Setting::Task("init_adapter");
            let bytes = std::fs::read(path).map_err(|e| RunError::invalid(init, e))?;
            model = load_trainable(model, bytes, path, &self.task.trainable_modules())
                .map_err(|e| RunError::invalid(init, e))?;
        }
        let scratch = Scratch::new();
        let logs = match &checkpoint_dir {
            Some(dir) => dir
                .parent()
                .map(Path::to_path_buf)
                .unwrap_or_else(|| dir.clone()),
            None => scratch.0.clone(),
        };
        let valid = self.loader(&data.test, config.eval_batch, None, &device);
        let modules = self.task.trainable_modules();

        if config.head_mode == HeadMode::Probe && resume_after.is_some() {
            // The probe epoch is behind the checkpoint being resumed (which
            // holds the probed head): set up the main phase's gradients.
            model = model.freeze_group(modules_group(&modules));
        } else if config.head_mode == HeadMode::Probe {
            // One linear-probe epoch: only the task's own modules train, the
            // adapters (B = 0) stay frozen; then those modules are frozen.
            let group = modules_group(&modules);
            let probe = model.freeze().unfreeze_group(group.clone());
            let single =
                RankSet::single(config.rank).map_err(|e| RunError::invalid(Setting::Rank, e))?;
            let options = FitOptions {
                lr: config.lr,
                grad_clip: None,
                steps_per_epoch,
                epochs: 1,
                constant_lr: true,
                artifact_dir: scratch.0.join("probe"),
                parallel: self.parallel(config),
                ..FitOptions::default()
            };
            let mut plan = StepPlan::new(TrainMethod::Lora, &single, config.seed);
            plan.guard.interrupter = self.interrupter.clone();
            let trained = fit(
                probe,
                plan,
                // the probe epoch shuffles with its own stream
                self.train_loader(
                    &data.train,
                    config,
                    config.seed.wrapping_add(0x9e37_79b9),
                    Segments {
                        steps_per_epoch,
                        epochs: 1,
                        every: None,
                    },
                    0,
                    &device,
                ),
                valid.clone(),
                &options,
                self.renderer("probe", config.batch),
            )?;
            // burn-train hands back the validation (non-autodiff) module:
            // `train()` re-enables autodiff with the new gradient settings.
            model = trained
                .task
                .freeze_group(group)
                .unfreeze_group(adapter_group())
                .train();
        }

        let options = FitOptions {
            lr: config.lr,
            weight_decay: config.weight_decay,
            warmup_steps: config.warmup_steps,
            grad_clip: config.grad_clip,
            epochs: config.epochs,
            steps_per_epoch,
            artifact_dir: logs,
            segments: Some(segments),
            checkpoints: checkpoint_dir.map(|dir| FitCheckpoints {
                dir,
                modules: modules.clone(),
                resume_after,
            }),
            parallel: self.parallel(config),
            ..FitOptions::default()
        };
        let done_before = segments.steps_before(start);
        let mut plan = StepPlan::new(config.method, &run.ranks, config.seed);
        if let (TrainMethod::MatryoshkaSampled, Some(m)) = (config.method, config.rank_samples) {
            plan = plan.with_rank_samples(&run.ranks, m, config.sample_max, config.seed);
        }
        let mut plan = plan.after_steps(done_before);
        plan.guard.interrupter = self.interrupter.clone();
        // a limit at (or past) the run's last step lets it finish
        plan.guard.limit = match limit {
            StepLimit::None => None,
            StepLimit::At(n) => Some(n),
            StepLimit::After(n) => Some(done_before + n),
        }
        .filter(|&n| n < steps_per_epoch * config.epochs);
        let train = self.train_loader(&data.train, config, config.seed, segments, start, &device);
        let valid = Arc::new(EpochEndLoader::new(valid, segments, start));
        let started = Instant::now();
        let result = fit(
            model,
            plan,
            train,
            valid,
            &options,
            self.renderer(config.method.name(), config.batch),
        )?;
        let wall = started.elapsed().as_secs_f64();
        let hook_started = Instant::now();
        let hooks = self.evaluate_hooks(&result.task, &run.ranks, data)?;
        let hook_seconds = hook_started.elapsed().as_secs_f64();
        let train_steps = steps_per_epoch * config.epochs;
        let steps_here = (train_steps - done_before).max(1);
        let train_seconds = result.times.seconds("train");
        let ms_per_step = 1000.0
            * if train_seconds > 0.0 {
                train_seconds
            } else {
                wall
            }
            / steps_here as f64;
        let report = self.report(
            &run,
            data,
            result.evaluation,
            hooks,
            Timing {
                train_steps,
                ms_per_step,
                eval_seconds: result.times.last_seconds("valid") + hook_seconds,
            },
        )?;
        Ok(RunOutcome {
            report,
            model: result.task,
            times: result.times,
            steps_taken: train_steps - done_before,
        })
    }

    /// Sets up `dir`'s training checkpoints for a run with `config`: a new run
    /// records its settings; a resumed one must have the same settings, and
    /// resumes after its last complete checkpoint. Returns burn-train's
    /// checkpoint directory and the segment to resume after.
    fn prepare_checkpoints(
        &self,
        checkpoints: RunCheckpoints<'_>,
        config: &TrainConfig,
        segments: &Segments,
    ) -> Result<(PathBuf, Option<usize>), RunError> {
        let steps_per_epoch = segments.steps_per_epoch;
        let RunCheckpoints { dir, every, resume } = checkpoints;
        let state = TrainingState {
            config: RunConfig {
                train: config.clone(),
                task: self.task.settings(),
            },
            checkpoint_every: every,
            steps_per_epoch,
        };
        let checkpoints = dir.join(TRAINING_DIR).join(CHECKPOINT_SUBDIR);
        let saved = TrainingState::read(dir).map_err(|e| RunError::invalid(Setting::Output, e))?;
        match saved {
            Some(saved) if resume => {
                if saved.clone().same_steps() != state.clone().same_steps() {
                    return Err(RunError::invalid(
                        Setting::Output,
                        format!(
                            "the checkpoints in {} are of a run with other settings (or other data): resume with the settings it was started with",
                            dir.display()
                        ),
                    ));
                }
                // A run checkpointed at its very end (finished, not saved)
                // redoes its last segment, which ends in the evaluation.
                let last = last_checkpoint(dir)
                    .map(|c| c.min(segments.count().saturating_sub(1)))
                    .filter(|&c| c > 0);
                Ok((checkpoints, last))
            }
            Some(_) => Err(RunError::invalid(
                Setting::Output,
                format!(
                    "{} holds the checkpoints of an interrupted run: resume it, or write into another directory",
                    dir.display()
                ),
            )),
            None if resume => Err(RunError::invalid(
                Setting::Output,
                format!("{} holds no interrupted run to resume", dir.display()),
            )),
            None => {
                state.write(dir).map_err(|e| RunError::write(dir, e))?;
                Ok((checkpoints, None))
            }
        }
    }

    /// Trains each of `methods` on the same `data` (each from the same seed),
    /// calling `on_report` as each finishes. With `out`, each run is saved
    /// into `out/<method>/` as soon as it finishes (a later failure keeps
    /// it), then `out/compare.json` and the plot of all runs are written.
    pub fn compare(
        &self,
        methods: &[TrainMethod],
        data: &TaskData<T::Item, T::Meta>,
        out: Option<&Path>,
        mut on_report: impl FnMut(&Report),
    ) -> Result<Vec<Report>, RunError> {
        for &method in methods {
            self.method_run(method)?;
        }
        if let Some(dir) = out {
            create_dir(dir)?;
        }
        let mut reports: Vec<Report> = Vec::with_capacity(methods.len());
        for &method in methods {
            let run = || -> Result<Report, RunError> {
                let dir = self.checkpoints.as_ref().map(|c| c.dir.join(method.name()));
                let checkpoints = self.checkpoints.as_ref().zip(dir.as_deref());
                let outcome = self.train_run(
                    self.method_run(method)?,
                    data,
                    checkpoints.map(|(c, dir)| RunCheckpoints {
                        dir,
                        every: c.every,
                        resume: c.resume,
                    }),
                    self.limit(),
                )?;
                if let Some(dir) = out {
                    self.save(
                        &dir.join(method.name()),
                        &outcome.report,
                        Some(&outcome.model),
                    )?;
                }
                Ok(outcome.report)
            };
            let report = run().map_err(|e| RunError::Comparison {
                failed: method.name().to_string(),
                kept: reports
                    .iter()
                    .map(|r| r.method.name().to_string())
                    .collect(),
                source: Box::new(e),
            })?;
            on_report(&report);
            reports.push(report);
        }
        if let Some(dir) = out {
            let json = serde_json::to_vec_pretty(&reports).map_err(|e| RunError::write(dir, e))?;
            let path = dir.join("compare.json");
            write_atomic(&path, &json).map_err(|e| RunError::write(&path, e))?;
            save_plots(dir, &reports)?;
        }
        Ok(reports)
    }
}
