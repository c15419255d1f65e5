//! A run's files: saving a run (adapter, report, plots, manifest), and
//! evaluating or importing saved adapters.

use super::*;

impl<T: Task> Runner<T> {
    /// Evaluates the run saved in `dir` by [`Runner::save`]: checks the
    /// directory against its manifest, builds the task's model with this
    /// runner's settings, loads the adapter into it (its metadata must match:
    /// task, base model, `R`, `S`, scaling, adapted modules, label names; an
    /// `adapter.bpk` of earlier versions loads without those checks), and
    /// evaluates it as [`Runner::evaluate`] does. The training figures of the
    /// saved `report.json`, when there is one, are kept.
    pub fn evaluate_saved(
        &self,
        dir: &Path,
        data: &TaskData<T::Item, T::Meta>,
    ) -> Result<(Report, T::Model), RunError> {
        let adapter = Setting::Task("adapter");
        verify_manifest(dir).map_err(|e| RunError::invalid(adapter, e))?;
        let device = self.device()?;
        let model = self.build_model(&data.meta, &device)?;
        let modules = self.task.trainable_modules();
        let model = if dir.join(ADAPTER_FILE).is_file() || !dir.join(LEGACY_ADAPTER_FILE).is_file()
        {
            let expected = self.adapter_meta(&self.config, &model, self.task.describe(&data.meta));
            load_adapter(model, &dir.join(ADAPTER_FILE), &expected)
        } else {
            load_legacy_adapter(model, &dir.join(LEGACY_ADAPTER_FILE), &modules)
        }
        .map_err(|e| RunError::invalid(adapter, e))?;
        let mut report = self.evaluate(model.clone(), data)?;
        if let Ok(saved) = Report::read(&dir.join(REPORT_FILE)) {
            report.train_steps = saved.train_steps;
            report.ms_per_step = saved.ms_per_step;
        }
        Ok((report, model))
    }

    /// The model of a run trained with `config` and saved into `dir` by
    /// [`Runner::save`] (checked against its manifest and metadata), on this
    /// runner's device: to evaluate it again without retraining.
    pub(crate) fn load_run_model(
        &self,
        dir: &Path,
        config: &TrainConfig,
        data: &TaskData<T::Item, T::Meta>,
    ) -> Result<T::Model, RunError> {
        let adapter = Setting::Task("adapter");
        verify_manifest(dir).map_err(|e| RunError::invalid(adapter, e))?;
        let config = self.resolved(config.clone());
        let run = Self::run_of(config.clone())?;
        let model = self.build_model_for(&run, &data.meta, &self.device()?)?;
        let expected = self.adapter_meta(&config, &model, self.task.describe(&data.meta));
        load_adapter(model, &dir.join(ADAPTER_FILE), &expected)
            .map_err(|e| RunError::invalid(adapter, e))
    }

    /// The task's model carrying the PEFT LoRA adapter `peft` (factors in
    /// this crate's layout, PEFT's scale folded into `B`; saved modules such
    /// as a head loaded too), ready for per-rank evaluation or as a starting
    /// point ([`Runner::save`] it, then [`Runner::init_from`]). The runner's
    /// `R` must be the adapter's `r` and its targets the adapted modules
    /// ([`PeftAdapter::targets`]).
    pub fn import_peft(&self, peft: &PeftAdapter, meta: &T::Meta) -> Result<T::Model, RunError> {
        let setting = Setting::Task("peft");
        if self.config.rank != peft.config.r {
            return Err(RunError::invalid(
                Setting::Rank,
                format!(
                    "the PEFT adapter has rank r = {}; import it with R = {}",
                    peft.config.r, peft.config.r
                ),
            ));
        }
        let device = self.device()?;
        let model = self.build_model(meta, &device)?;
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
        let bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        for (path, _) in model.adapter_ids() {
            let module = names.get(&path).cloned().unwrap_or_else(|| path.clone());
            let (a, b) = peft.factors(&module, self.config.scaling).ok_or_else(|| {
                RunError::invalid(
                    setting,
                    format!("the PEFT adapter has no lora_A/lora_B for module `{module}`"),
                )
            })?;
            let m = &peft.modules[&module];
            let r = peft.config.r;
            tensors.push((format!("{path}.lora_a"), vec![m.d_input, r], bytes(&a)));
            tensors.push((format!("{path}.lora_b"), vec![r, m.d_output], bytes(&b)));
        }
        for (name, (shape, values)) in &peft.saved {
            tensors.push((name.clone(), shape.clone(), bytes(values)));
        }
        let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
            .iter()
            .map(|(name, shape, data)| {
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| RunError::invalid(setting, e))
            })
            .collect::<Result<_, _>>()?;
        let data =
            safetensors::serialize(views, None).map_err(|e| RunError::invalid(setting, e))?;
        load_trainable(
            model,
            data,
            Path::new("PEFT adapter"),
            &self.task.trainable_modules(),
        )
        .map_err(|e| RunError::invalid(setting, e))
    }

    /// What an adapter of `model` trained with `config` is saved with: the
    /// settings, the task's fingerprint and data, and each adapter's name in
    /// the base model (its module path when this runner did not build it).
    pub fn adapter_meta(
        &self,
        config: &TrainConfig,
        model: &T::Model,
        task_info: serde_json::Map<String, serde_json::Value>,
    ) -> AdapterMeta {
        let names = self.names.lock().map(|n| n.clone()).unwrap_or_default();
        let modules = model
            .adapter_ids()
            .into_iter()
            .map(|(path, _)| {
                let name = names.get(&path).cloned().unwrap_or_else(|| path.clone());
                (path, name)
            })
            .collect();
        AdapterMeta {
            format: FORMAT_VERSION,
            crate_version: env!("CARGO_PKG_VERSION").to_string(),
            task: self.task.name().to_string(),
            method: config.method,
            max_rank: config.rank,
            ranks: config.ranks.clone(),
            scaling: config.scaling,
            targets: config.targets.clone().unwrap_or_default(),
            modules,
            trainable_modules: self.task.trainable_modules(),
            base_model: self.task.base_model(),
            task_info: task_info.into(),
            config: serde_json::to_value(RunConfig {
                train: config.clone(),
                task: self.task.settings(),
            })
            .unwrap_or_default(),
        }
    }

    /// Writes a run into `dir`: with a model, its adapter checkpoint
    /// (`adapter.safetensors`: the adapters and the task's trainable modules,
    /// not the frozen base, with metadata saying what they were trained
    /// with), `report.json`, the plot (`curve.png`, `curve.svg`), and last
    /// `manifest.json` with the sha256 of each. Every file is written
    /// atomically; a save interrupted midway leaves no manifest, or one the
    /// files no longer match, and [`Runner::evaluate_saved`] refuses it.
    pub fn save(
        &self,
        dir: &Path,
        report: &Report,
        model: Option<&T::Model>,
    ) -> Result<(), RunError> {
        create_dir(dir)?;
        clear_manifest(dir).map_err(|e| RunError::write(dir, e))?;
        let mut files = Vec::new();
        if let Some(model) = model {
            let path = dir.join(ADAPTER_FILE);
            let meta = self.adapter_meta(&report.config.train, model, report.task_info.clone());
            save_adapter(model.clone(), &path, &meta).map_err(|e| RunError::write(&path, e))?;
            files.push(ADAPTER_FILE);
        }
        let json = serde_json::to_vec_pretty(report).map_err(|e| RunError::write(dir, e))?;
        let path = dir.join(REPORT_FILE);
        write_atomic(&path, &json).map_err(|e| RunError::write(&path, e))?;
        files.push(REPORT_FILE);
        save_plots(dir, std::slice::from_ref(report))?;
        files.extend(["curve.png", "curve.svg"]);
        let records_file = self.task.records_file();
        if !report.records.is_empty() {
            let mut lines = Vec::new();
            for record in &report.records {
                serde_json::to_writer(&mut lines, record).map_err(|e| RunError::write(dir, e))?;
                lines.push(b'\n');
            }
            let path = dir.join(records_file);
            write_atomic(&path, &lines).map_err(|e| RunError::write(&path, e))?;
            files.push(records_file);
        } else if dir.join(records_file).is_file() {
            // an earlier save's records do not belong to this report
            let path = dir.join(records_file);
            std::fs::remove_file(&path).map_err(|e| RunError::write(&path, e))?;
        }
        write_manifest(dir, &files).map_err(|e| RunError::write(dir, e))?;
        // The run is saved: its training checkpoints are no longer needed.
        let training = dir.join(TRAINING_DIR);
        if training.is_dir() {
            std::fs::remove_dir_all(&training).map_err(|e| RunError::write(&training, e))?;
        }
        Ok(())
    }
}

pub(super) fn create_dir(dir: &Path) -> Result<(), RunError> {
    std::fs::create_dir_all(dir).map_err(|e| RunError::write(dir, e))
}

/// `curve.png` and `curve.svg` of `reports` in `dir`, each written atomically.
pub fn save_plots(dir: &Path, reports: &[Report]) -> Result<(), RunError> {
    write_plots(dir, |path| crate::plot::plot_reports(reports, path))
}

/// `curve.png` and `curve.svg` drawn by `draw` in `dir`, each written atomically.
pub fn write_plots(
    dir: &Path,
    draw: impl Fn(&Path) -> Result<(), crate::plot::PlotError>,
) -> Result<(), RunError> {
    for ext in ["png", "svg"] {
        let path = dir.join(format!("curve.{ext}"));
        let tmp = dir.join(format!(".curve.tmp-{}.{ext}", std::process::id()));
        draw(&tmp).map_err(|e| RunError::write(&path, e))?;
        let durable = std::fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .and_then(|_| std::fs::rename(&tmp, &path))
            .and_then(|_| sync_parent(&path));
        if let Err(e) = durable {
            let _ = std::fs::remove_file(&tmp);
            return Err(RunError::write(&path, e));
        }
    }
    Ok(())
}
