//! `mert probe --model MODEL --train CSV --valid CSV [--test CSV] --out FILE`: a tagging head
//! on frozen features (MARBLE's protocol), written with the model as one kit file that
//! `mert tag --model` uses. Prints macro ROC-AUC and PR-AUC as JSON on stdout.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};
use mert_core::embed::EmbedOptions;
use mert_core::load::HeadWeights;
use mert_core::probe::{HeadConfig, LayerChoice};
use mert_core::teachers::{Cqt, CqtConfig};

use crate::backend::Backend;
use crate::output::{output_folder, tensor_map_bytes, write_atomic};
use crate::probe::data::{Row, read_csv, targets, unseen_tags, vocabulary};
use crate::probe::features::{Extractor, MertFeatures, file_id};
use crate::probe::train::{ProbeOptions, Split, evaluate, head_from, train_head};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Features {
    /// Time-mean of the model's hidden states.
    Mert,
    /// Log of the time-mean CQT (a baseline without a model).
    Cqt,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// The backbone (kit file, Hugging Face folder or its weights file); not needed with
    /// --features cqt.
    #[arg(long)]
    pub model: Option<PathBuf>,
    #[arg(long)]
    pub train: PathBuf,
    #[arg(long)]
    pub valid: PathBuf,
    #[arg(long)]
    pub test: Option<PathBuf>,
    /// The model with its head (kit .safetensors); with --features cqt, the head alone.
    #[arg(long)]
    pub out: PathBuf,
    /// `all` (learned weights over the layers, MARBLE's protocol), `concat` (every hidden
    /// state side by side) or one hidden-state index.
    #[arg(long, default_value = "all")]
    pub layer: String,
    #[arg(long, value_enum, default_value = "mert")]
    pub features: Features,
    #[arg(long, default_value_t = 100)]
    pub epochs: usize,
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    #[arg(long, default_value_t = 64)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 1234)]
    pub seed: u64,
    /// Feature cache folder (default: `.mert-probe-cache` beside --out).
    #[arg(long)]
    pub cache: Option<PathBuf>,
    /// Window length in seconds for the backbone (0 = whole clip).
    #[arg(long, default_value_t = 5.0)]
    pub window: f64,
    #[arg(long)]
    pub no_normalize: bool,
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: Backend,
    /// With --features cqt: hop between CQT frames in samples (MERT's 320; a larger hop
    /// estimates the same time-mean for a fraction of the cost).
    #[arg(long, default_value_t = 320)]
    pub cqt_hop: usize,
}

fn features_of(
    rows: &[Row],
    ex: &Extractor,
    cache: &Path,
    what: &str,
    quiet: bool,
) -> Result<Split> {
    let mut x = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        if !quiet && (i % 100 == 0 || i + 1 == rows.len()) {
            eprintln!("{what}: features {}/{}", i + 1, rows.len());
        }
        let v = ex
            .clip_cached(&r.path, Some(cache))
            .with_context(|| r.path.display().to_string())?;
        x.extend(v);
    }
    Ok(Split {
        x,
        y: Vec::new(),
        n: rows.len(),
    })
}

pub fn run(args: ProbeArgs, quiet: bool) -> Result<()> {
    if args.out.extension().and_then(|e| e.to_str()) != Some("safetensors") {
        bail!(
            "{}: the output must be a .safetensors file",
            args.out.display()
        );
    }
    output_folder(&args.out)?;
    if args.epochs == 0 {
        bail!("--epochs 0: expected at least 1");
    }
    if args.batch_size == 0 {
        bail!("--batch-size 0: expected at least 1");
    }
    if !(args.lr.is_finite() && args.lr > 0.0) {
        bail!("--lr {}: expected a positive learning rate", args.lr);
    }
    if args.cqt_hop == 0 {
        bail!("--cqt-hop 0: expected at least 1 sample");
    }
    if !(args.window.is_finite() && args.window >= 0.0) {
        bail!(
            "--window {}: expected a non-negative number of seconds",
            args.window
        );
    }
    let train_rows = read_csv(&args.train)?;
    let valid_rows = read_csv(&args.valid)?;
    let test_rows = args.test.as_deref().map(read_csv).transpose()?;
    let tags = vocabulary(&train_rows);
    let others = [(&args.valid, &valid_rows)]
        .into_iter()
        .chain(args.test.as_ref().zip(test_rows.as_ref()));
    for (csv, rows) in others {
        let unseen = unseen_tags(rows, &tags);
        if !unseen.is_empty() {
            log::warn!(
                "{}: tags absent from the training rows are ignored: {}",
                csv.display(),
                unseen.join(", ")
            );
        }
    }
    let options = EmbedOptions {
        normalize: !args.no_normalize,
        window_seconds: args.window,
        hop_seconds: None,
    };
    let (extractor, checkpoint) = match args.features {
        Features::Mert => {
            let Some(path) = &args.model else {
                bail!("--model is needed with --features mert");
            };
            let checkpoint = mert_core::load_path(path)?;
            let device = args.backend.device()?;
            let model = checkpoint.build(&device)?;
            let ex = Extractor::Mert(Box::new(MertFeatures {
                model,
                config: checkpoint.config.clone(),
                options: options.clone(),
                device,
                id: file_id(&mert_core::load::hub::local_path(path))?,
            }));
            (ex, Some(checkpoint))
        }
        Features::Cqt => (
            Extractor::Cqt(Box::new(Cqt::new(CqtConfig::default())?)),
            None,
        ),
    };
    let (states, dim) = extractor.shape();
    let layer =
        match (args.features, args.layer.as_str()) {
            (Features::Cqt, _) => LayerChoice::Index(0),
            (_, "all") => LayerChoice::All,
            (_, "concat") => LayerChoice::Concat,
            (_, n) => LayerChoice::Index(n.parse().map_err(|_| {
                anyhow::anyhow!("--layer {n}: expected `all`, `concat` or an index")
            })?),
        };
    if let LayerChoice::Index(i) = layer
        && args.features == Features::Mert
        && i >= states
    {
        bail!(
            "--layer {i}: expected `all`, `concat` or an index below {states} (the model's hidden states)"
        );
    }
    let config = HeadConfig {
        tags: tags.clone(),
        pooling: "mean".into(),
        layer,
        states,
        dim,
        hidden: 512,
        features: match args.features {
            Features::Mert => "mert".into(),
            Features::Cqt => "cqt".into(),
        },
        window_seconds: options.window_seconds,
        normalize: options.normalize,
        layer_weights: None,
    };
    config.validate()?;
    let cache = args.cache.clone().unwrap_or_else(|| {
        args.out
            .parent()
            .unwrap_or(Path::new("."))
            .join(".mert-probe-cache")
    });
    let mut train = features_of(&train_rows, &extractor, &cache, "train", quiet)?;
    train.y = targets(&train_rows, &tags);
    let mut valid = features_of(&valid_rows, &extractor, &cache, "valid", quiet)?;
    valid.y = targets(&valid_rows, &tags);
    let test = match &test_rows {
        Some(rows) => {
            let mut t = features_of(rows, &extractor, &cache, "test", quiet)?;
            t.y = targets(rows, &tags);
            Some(t)
        }
        None => None,
    };
    let opts = ProbeOptions {
        epochs: args.epochs,
        lr: args.lr,
        batch_size: args.batch_size,
        seed: args.seed,
        dropout: 0.2,
        patience: 10,
        plateau_patience: 3,
    };
    let (best, history) = train_head(&config, &train, &valid, &opts, |e| {
        if !quiet {
            eprintln!(
                "epoch {} loss {:.4} valid roc-auc {:.4} pr-auc {:.4} lr {:.1e}",
                e.epoch, e.train_loss, e.valid_roc_auc, e.valid_pr_auc, e.lr
            );
        }
    })?;
    let device = burn::tensor::Device::flex();
    let head = head_from(&config, best.clone(), &device)?;
    let valid_m = evaluate(&head, &config, &valid, &device);
    let test_m = test.as_ref().map(|t| evaluate(&head, &config, t, &device));

    let bytes = match checkpoint {
        Some(mut ck) => {
            ck.head = Some(HeadWeights {
                config: config.clone(),
                tensors: best,
            });
            mert_core::load::kit::to_bytes(&ck)?
        }
        // The CQT baseline has no backbone: the head alone, `head.*` tensors and `mert.head`.
        None => tensor_map_bytes(
            &best,
            "head.",
            std::collections::HashMap::from([(
                "mert.head".to_string(),
                serde_json::to_string(&config)?,
            )]),
        )?,
    };
    write_atomic(&args.out, &bytes)?;
    let best_epoch = history
        .iter()
        .max_by(|a, b| a.valid_roc_auc.total_cmp(&b.valid_roc_auc))
        .map_or(0, |e| e.epoch);
    // Macro figures, null when no tag has both positive and negative clips (undefined).
    let defined = |m: &mert_core::probe::metrics::TagMetrics, v: f64| (m.defined > 0).then_some(v);
    // The headline figures: the test split's when given, else the validation split's.
    let (roc_auc, pr_auc, split) = match &test_m {
        Some(m) => (defined(m, m.roc_auc), defined(m, m.pr_auc), "test"),
        None => (Some(valid_m.roc_auc), Some(valid_m.pr_auc), "valid"),
    };
    let report = serde_json::json!({
        "roc_auc": roc_auc,
        "pr_auc": pr_auc,
        "split": split,
        "out": args.out.display().to_string(),
        "features": config.features,
        "layer": config.layer,
        "tags": config.tags,
        "train_items": train.n,
        "epochs": history.len(),
        "best_epoch": best_epoch,
        "valid": {"roc_auc": valid_m.roc_auc, "pr_auc": valid_m.pr_auc},
        "test": test_m.as_ref().map(|m| serde_json::json!({
            "roc_auc": defined(m, m.roc_auc),
            "pr_auc": defined(m, m.pr_auc),
            "per_tag": m.per_tag.iter().map(|(t, r, p)| serde_json::json!({"tag": t, "roc_auc": r, "pr_auc": p})).collect::<Vec<_>>(),
        })),
    });
    println!("{report}");
    Ok(())
}
