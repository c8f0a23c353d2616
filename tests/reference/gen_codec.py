#!/usr/bin/env python3
"""Reference-fixture generator for MERT's acoustic teacher: the EnCodec 24 kHz encoder + RVQ
(spec sections 4.2 and 6 item 3), with encodec 0.1.1.

The pretrained weights are not reachable here, so the model is randomly initialised
(`torch.manual_seed(0)`) with the real architecture. Then, with a seeded generator:
  - every RVQ codebook `quantizer.vq.layers.N._codebook.embed` is filled with N(0, 1)
    (`embed_avg` gets the same values) and `inited` set to 1; random init leaves them at zero,
    which would make every code 0;
  - every conv's weight-norm gain `weight_g` is multiplied by U(0.5, 1.5) per output channel,
    so that a loader which ignores the gain (or folds over the wrong axis) is caught;
  - the last encoder conv is rescaled so that, on the `det` input, the encoder output varies
    with standard deviation 1 over frames (gain divided by that std) around a per-channel mean
    of 0 (bias shifted). A random-init encoder outputs a nearly constant vector (|mean| ~0.8,
    variation over frames ~0.04 at reduced width), so every frame would pick the same codes;
    rescaled, the codes vary from frame to frame, which is what a parity test needs.

Writes DIR/encodec.th and DIR/reference.safetensors:

  encodec.th   `torch.save(model.state_dict())`, structured like the official
               `encodec_24khz-d7cc33bc.th`: keys `encoder.*`, `quantizer.vq.layers.N._codebook.*`,
               `decoder.*`, legacy weight-norm names (`weight_g`, `weight_v`).
  reference.safetensors, per case `{det,odd,short,tiny}`:
    {case}.input        (rows, L) float32
    {case}.encoder_out  (rows, dimension, ceil(L/320)) float32, `model.encoder(x)`
    {case}.codes        (rows, n_q, ceil(L/320)) int64, `model.encode(x)` at 6 kbps (n_q = 8)
    {case}.quantized    (rows, dimension, frames) float32, `model.quantizer.decode(codes)`
    {case}.decoded      (rows, 1, frames * 320) float32, `model.decode(...)`: the decoder on the
                        quantized embedding (encodec's `_decode_frame`, no trim to L)
    {case}.decoded_raw  (rows, 1, frames * 320) float32, `model.decoder(encoder_out)`: the decoder
                        on the unquantised embedding (its input varies more, a sharper check)
  __metadata__: `codec_config` (JSON, the Rust `CodecConfig` field names), `n_q`,
  `quantizer_layers`, versions, seeds, the perturbation, code statistics.

and DIR/mel.safetensors, the mel spectrograms of the codec's training loss
(torchaudio.transforms.MelSpectrogram, HTK scale, power 2, centred, reflect padding):
    fbank_{n}    (n_fft / 2 + 1, 64) float32, melscale_fbanks(..., 0, 12000, 64, 24000, None, "htk"),
                 n = 64 and 512
    signal       (2, 3000) float32, the first 3000 samples of the det rows
    mel_{n}      (2, 64, 1 + 3000 // (n / 4)) float32, MelSpectrogram(24000, n_fft=n, hop n/4, 64 mels)
  for n in 64 (most filters empty), 512, 2048.

Cases: det = spec section 6.5 input (2 rows, 2 s: 0.4 sin(2pi 220(b+1) t) + 0.2 sin(3 ...) +
0.05 N(0,1), numpy default_rng(1234)); odd = 24321 samples (not a multiple of 320: the last
frame is completed by reflect padding), chirp 40 Hz -> 6 kHz + noise (default_rng(4321));
short = the first 700 samples of det row 0 (3 frames: the last conv sees fewer steps than its
padding, encodec's zero-then-reflect path); tiny = the first 5 samples (fewer than the first
conv's padding).

Presets:
  reduced (default, committed): n_filters 4, dimension 32, codebook size 512, 10 quantizer
          layers (layers 8 and 9 unused at 6 kbps; 512 bins keep n_q = floor(6000 / (9 * 75)) = 8),
          everything else as the official model. About 2.2 MB.
  --full: the official 24 kHz layout (`EncodecModel.encodec_model_24khz(pretrained=False)`,
          32 x 128, 32 quantizer layers of 1024), written to ~/.cache/mert-fixtures/codec_full
          (about 95 MB), for the ignored full-width Rust test (MERT_CODEC_FULL=DIR).

Usage:
  gen_codec.py [--out tests/fixtures/codec]
  gen_codec.py --full [--out ~/.cache/mert-fixtures/codec_full]
"""

import argparse
import json
import math
import os
import warnings

import numpy as np
import torch
from safetensors.torch import save_file

warnings.filterwarnings("ignore", message=".*weight_norm.*")

import encodec  # noqa: E402
from encodec import EncodecModel  # noqa: E402
from encodec.modules import SEANetDecoder, SEANetEncoder  # noqa: E402
from encodec.quantization import ResidualVectorQuantizer  # noqa: E402

SAMPLE_RATE = 24000
HOP = 320
BANDWIDTH = 6.0
REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))

# The Rust `CodecConfig` defaults (the official 24 kHz model); presets override widths only.
BASE_CONFIG = {
    "sample_rate": SAMPLE_RATE,
    "channels": 1,
    "n_filters": 32,
    "ratios": [8, 5, 4, 2],
    "dimension": 128,
    "n_residual_layers": 1,
    "kernel_size": 7,
    "residual_kernel_size": 3,
    "last_kernel_size": 7,
    "dilation_base": 2,
    "compress": 2,
    "true_skip": False,
    "lstm": 2,
    "causal": True,
    "pad_mode": "reflect",
    "codebook_size": 1024,
    "n_q": 8,
}


def det_input(n_samples=48000, rows=2):
    """Spec section 6.5 input (identical to gen_mert / gen_cqt)."""
    rng = np.random.default_rng(1234)
    noise = rng.standard_normal((rows, n_samples))
    t = np.arange(n_samples, dtype=np.float64) / SAMPLE_RATE
    out = np.empty((rows, n_samples), dtype=np.float64)
    for b in range(rows):
        w = 2.0 * np.pi * 220.0 * (b + 1) * t
        out[b] = 0.4 * np.sin(w) + 0.2 * np.sin(3.0 * w) + 0.05 * noise[b]
    return out.astype(np.float32)


def odd_input(n_samples=24321):
    """Exponential chirp 40 Hz -> 6 kHz (amplitude 0.3) + 0.02 N(0,1) (same as gen_cqt)."""
    rng = np.random.default_rng(4321)
    noise = rng.standard_normal(n_samples)
    t = np.arange(n_samples, dtype=np.float64) / SAMPLE_RATE
    dur = n_samples / SAMPLE_RATE
    f0, f1 = 40.0, 6000.0
    k = f1 / f0
    phase = 2.0 * np.pi * f0 * dur / np.log(k) * (np.power(k, t / dur) - 1.0)
    out = 0.3 * np.sin(phase) + 0.02 * noise
    return out.astype(np.float32)[None, :]


def build(full):
    torch.manual_seed(0)
    if full:
        model = EncodecModel.encodec_model_24khz(pretrained=False)
        config = dict(BASE_CONFIG)
        layers = model.quantizer.n_q
    else:
        config = dict(BASE_CONFIG, n_filters=4, dimension=32, codebook_size=512)
        layers = 10
        kw = dict(
            channels=1,
            dimension=config["dimension"],
            n_filters=config["n_filters"],
            causal=True,
            norm="weight_norm",
        )
        encoder = SEANetEncoder(**kw)
        decoder = SEANetDecoder(**kw)
        quantizer = ResidualVectorQuantizer(
            dimension=config["dimension"], n_q=layers, bins=config["codebook_size"]
        )
        # The last bandwidth uses all 10 layers: 10 * log2(512) * 75 bit/s.
        model = EncodecModel(
            encoder, decoder, quantizer, [1.5, 3.0, 6.0, 6.75], SAMPLE_RATE, 1, normalize=False
        )
    model.set_target_bandwidth(BANDWIDTH)
    n_q = model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, BANDWIDTH)
    assert n_q == config["n_q"], n_q
    assert model.frame_rate == SAMPLE_RATE // HOP
    model.eval()
    return model, config, layers


def perturb(model, det):
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for layer in model.quantizer.vq.layers:
            cb = layer._codebook
            cb.embed.copy_(torch.randn(cb.embed.shape, generator=g))
            cb.embed_avg.copy_(cb.embed)
            cb.inited.fill_(1)
        gains = [(n, p) for n, p in model.named_parameters() if n.endswith("weight_g")]
        for _, p in gains:
            p.mul_(0.5 + torch.rand(p.shape, generator=g))
        x = torch.from_numpy(det)[:, None]
        emb = model.encoder(x)
        before = emb.std().item()
        # Scale the frame-to-frame variation to 1, then move each channel's mean to 0.
        variation = (emb - emb.mean(dim=(0, 2), keepdim=True)).std().item()
        last = model.encoder.model[-1].conv.conv
        last.weight_g.mul_(1.0 / variation)
        last.bias.sub_(model.encoder(x).mean(dim=(0, 2)))
        after = model.encoder(x).std().item()
    return len(gains), before, variation, after


def mel_reference(det, out):
    """The codec loss's mel spectrograms (torchaudio's, the Rust `MelScale` mirrors them)."""
    import torchaudio

    signal = torch.from_numpy(det[:, :3000].copy())
    tensors = {"signal": signal.contiguous()}
    for n in (64, 512, 2048):
        fb = torchaudio.functional.melscale_fbanks(n // 2 + 1, 0.0, 12000.0, 64, SAMPLE_RATE, None, "htk")
        mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=SAMPLE_RATE, n_fft=n, hop_length=n // 4, n_mels=64, f_min=0.0, f_max=12000.0,
            power=2.0, normalized=False, center=True, pad_mode="reflect", norm=None, mel_scale="htk",
        )(signal)
        if n < 2048:  # the widest filterbank is checked through its spectrogram alone (size)
            tensors[f"fbank_{n}"] = fb.contiguous()
        tensors[f"mel_{n}"] = mel.contiguous()
        print(f"mel n_fft {n}: fbank {tuple(fb.shape)}, mel {tuple(mel.shape)}")
    path = os.path.join(out, "mel.safetensors")
    save_file(tensors, path, metadata={"torchaudio": torchaudio.__version__, "torch": torch.__version__})
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--full", action="store_true", help="official width, written to ~/.cache")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    out = args.out or (
        os.path.expanduser("~/.cache/mert-fixtures/codec_full")
        if args.full
        else os.path.join(REPO_ROOT, "tests", "fixtures", "codec")
    )
    os.makedirs(out, exist_ok=True)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    det = det_input()
    cases = {
        "det": det,
        "odd": odd_input(),
        "short": det[:1, :700].copy(),
        "tiny": det[:1, :5].copy(),
    }
    model, config, layers = build(args.full)
    n_gains, std_before, variation, std_after = perturb(model, det)
    print(
        f"perturbed {n_gains} weight-norm gains; det encoder_out std {std_before:.6f} "
        f"(over frames {variation:.6f}) -> {std_after:.6f}"
    )

    sd = model.state_dict()
    th = os.path.join(out, "encodec.th")
    torch.save(sd, th)
    # The file loads back into a fresh model of the same layout.
    fresh, _, _ = build(args.full)
    fresh.load_state_dict(torch.load(th, weights_only=True))

    tensors = {}
    stats = {}
    with torch.inference_mode():
        for name, x in cases.items():
            xt = torch.from_numpy(x)[:, None]  # (rows, 1, L)
            frames = math.ceil(x.shape[1] / HOP)
            emb = model.encoder(xt).contiguous()
            frames_out = model.encode(xt)
            assert len(frames_out) == 1 and frames_out[0][1] is None
            codes = frames_out[0][0].contiguous()
            assert tuple(emb.shape) == (x.shape[0], config["dimension"], frames), (name, emb.shape)
            assert tuple(codes.shape) == (x.shape[0], config["n_q"], frames), (name, codes.shape)
            assert codes.dtype == torch.int64
            again = fresh.encode(xt)[0][0]
            assert torch.equal(again, codes), name
            quantized = model.quantizer.decode(codes.transpose(0, 1)).contiguous()
            decoded = model.decode(frames_out).contiguous()
            assert torch.equal(model.decoder(quantized), decoded), name
            decoded_raw = model.decoder(emb).contiguous()
            assert tuple(decoded.shape) == (x.shape[0], 1, frames * HOP), (name, decoded.shape)
            tensors[f"{name}.input"] = torch.from_numpy(x).contiguous()
            tensors[f"{name}.encoder_out"] = emb
            tensors[f"{name}.codes"] = codes
            tensors[f"{name}.quantized"] = quantized
            tensors[f"{name}.decoded"] = decoded
            tensors[f"{name}.decoded_raw"] = decoded_raw
            distinct = [len(torch.unique(codes[:, q])) for q in range(codes.shape[1])]
            stats[name] = {"frames": frames, "distinct_codes_per_codebook": distinct}
            print(
                f"{name}: input {tuple(x.shape)} -> encoder_out {tuple(emb.shape)} "
                f"(std {emb.std().item():.4f}), codes {tuple(codes.shape)}, distinct per codebook {distinct}, "
                f"decoded {tuple(decoded.shape)} (std {decoded.std().item():.4f})"
            )

    meta = {
        "codec_config": json.dumps(config),
        "n_q": str(config["n_q"]),
        "quantizer_layers": str(layers),
        "bandwidth_kbps": str(BANDWIDTH),
        "weights": "encodec.th",
        "preset": "full" if args.full else "reduced",
        "state_dict_tensors": str(len(sd)),
        "seeds": "torch.manual_seed(0) for init; torch.Generator().manual_seed(1) for codebooks and gains",
        "perturbation": (
            "codebooks N(0,1) (embed_avg = embed, inited = 1); every weight_g *= U(0.5,1.5); "
            f"last encoder conv weight_g /= {variation:.9g} (the det encoder_out's std over frames "
            "-> 1), then its bias -= the det encoder_out's per-channel mean (-> 0)"
        ),
        "stats": json.dumps(stats),
        "torch": torch.__version__,
        "encodec": getattr(encodec, "__version__", "0.1.1"),
        "numpy": np.__version__,
    }
    ref = os.path.join(out, "reference.safetensors")
    save_file(tensors, ref, metadata=meta)
    if not args.full:
        mel_reference(det, out)
    size = os.path.getsize(th) + os.path.getsize(ref)
    print(f"wrote {th} ({os.path.getsize(th) / 1e6:.2f} MB) and {ref}; total {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
