//! Time the stages of one forward pass of a model file, to see where the time goes.
//! `cargo run --release -p mert-core --example profile_forward -- MODEL [SECONDS]`

use std::time::Instant;

use burn::tensor::{Device, Tensor, TensorData};

fn sync(t: &Tensor<3>) {
    std::hint::black_box(t.clone().into_data());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("model path");
    let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let device = Device::flex();
    let ck = mert_core::load_path(std::path::Path::new(path)).expect("load");
    let model = ck.build(&device).expect("build");
    let n = (seconds * ck.config.sample_rate as f64) as usize;
    let x: Vec<f32> = (0..n)
        .map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 0.3)
        .collect();
    let audio = Tensor::<2>::from_data(TensorData::new(x, [1, n]), &device);
    {
        let l0 = &model.feature_extractor.conv_layers[0];
        let x = audio.clone().unsqueeze_dim::<3>(1);
        for _ in 0..2 {
            let s = Instant::now();
            let c = l0.conv.forward(x.clone());
            sync(&c);
            let tc = s.elapsed().as_secs_f64();
            let s = Instant::now();
            let g = l0.group_norm.as_ref().unwrap().forward(c);
            sync(&g);
            let tg = s.elapsed().as_secs_f64();
            let s = Instant::now();
            // (each time includes `sync`'s copy of the output)
            let a = burn::tensor::activation::gelu(g.clone());
            sync(&a);
            let burn_gelu = s.elapsed().as_secs_f64();
            let s = Instant::now();
            let a = mert_core::model::activation::gelu(g);
            sync(&a);
            println!(
                "conv0 {tc:.3} groupnorm {tg:.3} gelu: burn {burn_gelu:.3}, kit {:.3}",
                s.elapsed().as_secs_f64()
            );
        }
    }
    for _ in 0..2 {
        let s = Instant::now();
        let a = model.feature_extractor.forward(audio.clone());
        sync(&a);
        let burn_convs = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let b = model.feature_extractor.forward_frames(audio.clone(), 0);
        sync(&b);
        let whole = s.elapsed().as_secs_f64();
        let mut chunked = Vec::new();
        for chunk in [1500, 375, 150] {
            let s = Instant::now();
            let c = model.feature_extractor.forward_frames(audio.clone(), chunk);
            sync(&c);
            chunked.push(format!("{chunk}: {:.3} s", s.elapsed().as_secs_f64()));
        }
        println!(
            "feature encoder: burn convs {burn_convs:.3} s, GEMM convs {whole:.3} s, in chunks of {chunked:?}"
        );
    }
    {
        // one post-LN layer's parts on [1, frames, hidden] (Flex runs eagerly)
        use burn::tensor::module::attention;
        use burn::tensor::ops::AttentionModuleOptions;
        let frames = model.frames_for(n);
        let hidden = ck.config.hidden_size;
        let heads = ck.config.num_attention_heads;
        let x = Tensor::<3>::random(
            [1, frames, hidden],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let layer = &model.encoder.layers[0];
        let at = &layer.attention;
        for _ in 0..2 {
            let mut t = Vec::new();
            let mut lap =
                |name: &str, s: Instant| t.push(format!("{name} {:.3}", s.elapsed().as_secs_f64()));
            let s = Instant::now();
            let split = |t: Tensor<3>| {
                t.reshape([1, frames, heads, hidden / heads])
                    .swap_dims(1, 2)
            };
            let q = split(at.q_proj.forward(x.clone()));
            let k = split(at.k_proj.forward(x.clone()));
            let v = split(at.v_proj.forward(x.clone()));
            lap("qkv", s);
            let s = Instant::now();
            let o = attention(q, k, v, None, None, AttentionModuleOptions::default());
            lap("attention", s);
            let s = Instant::now();
            let o = at
                .out_proj
                .forward(o.swap_dims(1, 2).reshape([1, frames, hidden]));
            lap("out", s);
            let s = Instant::now();
            let h = layer.layer_norm.forward(x.clone() + o);
            lap("add+ln", s);
            let s = Instant::now();
            let f = layer.feed_forward.intermediate_dense.forward(h.clone());
            lap("ffn1", s);
            let s = Instant::now();
            let f = mert_core::model::activation::gelu(f);
            lap("gelu", s);
            let s = Instant::now();
            let f = layer.feed_forward.output_dense.forward(f);
            lap("ffn2", s);
            let s = Instant::now();
            let _ = layer.final_layer_norm.forward(h + f);
            lap("add+ln", s);
            println!("layer parts: {}", t.join(", "));
        }
    }
    for round in 0..2 {
        let t = Instant::now();
        // the conv stack as the model runs it (frames first, 30 s chunks)
        let s = Instant::now();
        let feats = model
            .feature_extractor
            .forward_frames(audio.clone(), mert_core::model::mert::FEATURE_CHUNK_FRAMES);
        sync(&feats);
        let conv_stack = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let p = model.feature_projection.forward(feats);
        sync(&p);
        let proj = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let pos = model.encoder.pos_conv_embed.forward(p.clone());
        sync(&pos);
        let pos_t = s.elapsed().as_secs_f64();
        let mut h = model.encoder.layer_norm.forward(p + pos);
        let mut layer_times = Vec::new();
        for layer in &model.encoder.layers {
            let s = Instant::now();
            h = layer.forward(h, None);
            sync(&h);
            layer_times.push(s.elapsed().as_secs_f64());
        }
        if round == 1 {
            println!("total {:.3} s", t.elapsed().as_secs_f64());
            println!("conv stack {conv_stack:.3}");
            println!("projection {proj:.3}, pos conv {pos_t:.3}");
            println!(
                "layers {:?} (sum {:.3})",
                layer_times
                    .iter()
                    .map(|v| format!("{v:.3}"))
                    .collect::<Vec<_>>(),
                layer_times.iter().sum::<f64>()
            );
        }
    }
}
