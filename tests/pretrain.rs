//! The pretraining loss against the plain-torch reference of `tests/reference/gen_loss.py`
//! (spec §4.4-4.5: cosine logits / 0.1 over 8 codebooks, summed cross-entropy, CQT MSE, the
//! conv-feature penalty). Tolerance: 1e-5 relative on every term, f32 arithmetic.

use std::path::Path;

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::{Device, Int, Tensor, TensorData};
use mert_core::burn;
use mert_core::pretrain::{HeadsConfig, PretrainHeads, masked_index};
use safetensors::{Dtype, SafeTensors};

struct Fixture {
    bytes: Vec<u8>,
}

impl Fixture {
    fn load() -> Self {
        let p = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/pretrain_loss/loss_io.safetensors");
        Self {
            bytes: std::fs::read(p).unwrap(),
        }
    }

    fn raw(&self, key: &str) -> (Vec<usize>, Dtype, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).unwrap();
        let t = st.tensor(key).unwrap();
        (t.shape().to_vec(), t.dtype(), t.data().to_vec())
    }

    fn f32s(&self, key: &str) -> (Vec<usize>, Vec<f32>) {
        let (shape, dtype, data) = self.raw(key);
        assert_eq!(dtype, Dtype::F32, "{key}");
        let v = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        (shape, v)
    }

    fn scalar(&self, key: &str) -> f64 {
        let (_, dtype, data) = self.raw(key);
        assert_eq!(dtype, Dtype::F64, "{key}");
        f64::from_le_bytes(data[..8].try_into().unwrap())
    }

    fn tensor<const D: usize>(&self, key: &str, device: &Device) -> Tensor<D> {
        let (shape, v) = self.f32s(key);
        Tensor::from_data(TensorData::new(v, shape), device)
    }

    /// A torch Linear (`[out, in]`) as burn's (`[in, out]`).
    fn linear(&self, name: &str, device: &Device) -> Linear {
        Linear {
            weight: Param::from_tensor(
                self.tensor::<2>(&format!("{name}.weight"), device)
                    .transpose(),
            ),
            bias: Some(Param::from_tensor(
                self.tensor::<1>(&format!("{name}.bias"), device),
            )),
        }
    }
}

fn rel(got: f64, want: f64) -> f64 {
    (got - want).abs() / want.abs()
}

#[test]
fn loss_matches_the_reference_recipe() {
    let device = Device::flex();
    let fx = Fixture::load();
    let conv: Tensor<3> = fx.tensor("conv_features", &device);
    let last: Tensor<3> = fx.tensor("last", &device);
    let [batch, frames, hidden] = last.dims();
    let (_, _, mask_bytes) = fx.raw("mask");
    let mask: Vec<Vec<bool>> = mask_bytes
        .chunks(frames)
        .map(|row| row.iter().map(|&m| m != 0).collect())
        .collect();
    assert_eq!(mask.len(), batch);
    let index = masked_index(&mask);

    let (code_shape, _, code_bytes) = fx.raw("codes");
    let k = code_shape[2];
    let codes: Vec<i64> = code_bytes
        .chunks_exact(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    let (_, cqt_all) = fx.f32s("cqt");
    let bins = cqt_all.len() / (batch * frames);
    let mut code_rows = Vec::new();
    let mut cqt_rows = Vec::new();
    for &i in &index {
        code_rows.extend_from_slice(&codes[i * k..(i + 1) * k]);
        cqt_rows.extend_from_slice(&cqt_all[i * bins..(i + 1) * bins]);
    }
    let n = index.len();
    let codes = Tensor::<2, Int>::from_data(TensorData::new(code_rows, [n, k]), &device);
    let cqt = Tensor::<2>::from_data(TensorData::new(cqt_rows, [n, bins]), &device);

    let (emb_shape, _) = fx.f32s("label_embs");
    let config = HeadsConfig {
        codebooks: k,
        codebook_size: emb_shape[0] / k,
        final_dim: emb_shape[1],
        cqt_bins: bins,
        ..HeadsConfig::default()
    };
    let heads = PretrainHeads {
        mask_emb: Param::from_tensor(Tensor::zeros([hidden], &device)),
        final_proj: fx.linear("final_proj", &device),
        label_embs: Param::from_tensor(fx.tensor("label_embs", &device)),
        cqt_head: fx.linear("cqt_head", &device),
        codebooks: config.codebooks,
        codebook_size: config.codebook_size,
        logit_temp: config.logit_temp,
    };
    let terms = heads.loss(&config, conv, last, &index, Some(codes), Some(cqt));
    let value = |t: Tensor<1>| t.into_scalar::<f32>() as f64;

    assert_eq!(terms.masked as f64, fx.scalar("n_masked"));
    let ce_sum = value(terms.codes_sum.clone());
    let pen = value(terms.features_pen.clone());
    let mse = value(terms.cqt.clone());
    let total = value(terms.total.clone());
    let nf = n as f64;
    let loss_per_n = (ce_sum + 10.0 * pen * nf + mse * nf) / nf;
    let checks = [
        ("ce_sum", ce_sum, fx.scalar("ce_sum")),
        ("features_pen", pen, fx.scalar("features_pen")),
        ("mse", mse, fx.scalar("mse")),
        ("loss/N", loss_per_n, fx.scalar("loss_per_n")),
        // The objective minimised per step is the reference loss divided by N.
        ("total", total, fx.scalar("loss") / nf),
    ];
    for (name, got, want) in checks {
        let e = rel(got, want);
        println!("{name}: rust {got:.6} reference {want:.6} rel {e:.2e}");
        assert!(e <= 1e-5, "{name}: {got} vs {want} (rel {e:.2e})");
    }
}

/// Every backbone parameter gets a gradient from a training step on burn's CPU backend. The
/// kit's CPU kernels (GEMMs, GELU, convolutions, attention) compute on host slices outside
/// burn's graph; a step on an autodiff device must go around them, or the layers behind them
/// silently stop learning (found when bf16 and f32 steps disagreed).
#[test]
fn every_parameter_gets_a_gradient_on_the_cpu_backend() {
    use burn::module::{Module, ModuleVisitor};
    use burn::tensor::Distribution;
    use mert_core::model::config::MertConfig;
    use mert_core::model::mert::Mert;
    use mert_core::pretrain::student_forward;

    struct Missing<'a> {
        grads: &'a burn::tensor::Gradients,
        total: usize,
        missing: usize,
    }
    impl ModuleVisitor for Missing<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.total += 1;
            let nonzero = param
                .val()
                .grad(self.grads)
                .map(|g| g.abs().sum().into_scalar::<f32>() > 0.0);
            if nonzero != Some(true) {
                self.missing += 1;
            }
        }
    }

    let device = Device::flex().autodiff();
    let config = MertConfig::tiny();
    let model = Mert::init(&config, &device);
    let heads = PretrainHeads::init(&HeadsConfig::default(), config.hidden_size, &device);
    let audio = Tensor::<2>::random([2, 8000], Distribution::Normal(0.0, 0.1), &device);
    let frames = 24;
    let mask: Vec<Vec<bool>> = (0..2)
        .map(|b| (0..frames).map(|t| (t + b) % 3 == 0).collect())
        .collect();
    // No regularisation: the path inference takes too, where the CPU kernels apply.
    let out = student_forward(&model, &heads, audio, &mask, 0.1, None);
    assert_eq!(out.last.dims()[1], frames);
    let loss = out.last.powi_scalar(2).mean() + out.conv_features.powi_scalar(2).mean();
    let grads = loss.backward();
    let mut v = Missing {
        grads: &grads,
        total: 0,
        missing: 0,
    };
    model.visit(&mut v);
    assert!(v.total > 30, "{}", v.total);
    assert_eq!(
        v.missing, 0,
        "{} of {} parameters have no gradient",
        v.missing, v.total
    );
}
