"""Random-weight text-to-audio components, saved as diffusers folders, for tests and benchmarks.

``save_audioldm2_folder(out)`` and ``save_stable_audio_folder(out)`` write what a user would
download for the ``audioldm2`` and ``stable-audio`` backends (every component of the pipeline,
``model_index.json``, safetensors weights) with a few thousand random parameters each, so the real
code paths run offline on a CPU through the loader a user calls. ``save_tiny_clap(out)`` writes a
random ``transformers.ClapModel`` and its ``ClapProcessor`` for the CLAP verifier.

The shapes follow the real models where it matters to the code around them: AudioLDM2 makes 16 kHz
audio with a hop of 160 samples per mel frame; Stable Audio makes 44.1 kHz stereo from latents of
hop 2048; the CLAP feature extractor works at 48 kHz. Everything else is tiny.

Tokenizers are written here, with no download: a byte-level BPE over single bytes (no merges) for
the RoBERTa tokenizer of CLAP, and a character-level Unigram model for T5 (T5's conventions: pad
0, ``</s>`` 1, ``<unk>`` 2, ``▁`` for word starts), built with the ``tokenizers`` library. Their ids
are not the real models'; what the code relies on (padding, lengths, special tokens) is the same.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch
from diffusers import (AudioLDM2ProjectionModel, AudioLDM2UNet2DConditionModel, AutoencoderKL,
                       AutoencoderOobleck, DDIMScheduler, EDMDPMSolverMultistepScheduler,
                       StableAudioDiTModel, StableAudioProjectionModel)
from tokenizers import Tokenizer, decoders, pre_tokenizers, processors
from tokenizers.models import Unigram
from transformers import (ClapAudioConfig, ClapConfig, ClapFeatureExtractor, ClapModel,
                          ClapProcessor, ClapTextConfig, GPT2Config, GPT2Model,
                          RobertaTokenizerFast, SpeechT5HifiGan, SpeechT5HifiGanConfig, T5Config,
                          T5EncoderModel, T5TokenizerFast)

DIFFUSERS_VERSION = "0.42.1"
CLAP_SAMPLE_RATE = 48_000


def _bytes_to_unicode() -> list[str]:
    """The 256 printable characters GPT-2's byte-level BPE maps bytes to (Radford et al. 2019)."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    chars, extra = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:
            chars.append(chr(256 + extra))
            extra += 1
    return chars


def write_roberta_tokenizer(folder: str | Path, max_length: int = 77) -> RobertaTokenizerFast:
    """A RoBERTa byte-level BPE tokenizer whose tokens are single bytes (no merges)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    vocab = {"<s>": 0, "<pad>": 1, "</s>": 2, "<unk>": 3}
    for char in _bytes_to_unicode():
        vocab[char] = len(vocab)
    vocab["<mask>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    tokenizer = RobertaTokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt"),
                                     model_max_length=max_length)
    tokenizer.save_pretrained(folder)
    return tokenizer


def write_t5_tokenizer(folder: str | Path, max_length: int = 128) -> T5TokenizerFast:
    """A T5 tokenizer over characters: a Unigram model with a word-start and a plain piece per
    letter, digit and punctuation mark, built in code and saved as ``tokenizer.json``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    for char in string.ascii_lowercase + string.digits + string.punctuation:
        pieces += [("▁" + char, -1.0), (char, -1.5)]
    backend = Tokenizer(Unigram(pieces, unk_id=2))
    backend.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    backend.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    backend.post_processor = processors.TemplateProcessing(single="$A </s>", pair="$A </s> $B </s>",
                                                           special_tokens=[("</s>", 1)])
    backend.save(str(folder / "tokenizer.json"))
    tokenizer = T5TokenizerFast(tokenizer_file=str(folder / "tokenizer.json"), extra_ids=0,
                                pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
                                model_max_length=max_length)
    tokenizer.save_pretrained(folder)
    return tokenizer


def clap_feature_extractor() -> ClapFeatureExtractor:
    """48 kHz log-mel features of 3 s (241 frames of 16 bins: at most what the tiny HTSAT takes);
    shorter clips are repeated to fill them, as LAION-CLAP's are to 10 s."""
    return ClapFeatureExtractor(feature_size=16, sampling_rate=CLAP_SAMPLE_RATE, hop_length=600,
                                max_length_s=3, fft_window_size=512, truncation="rand_trunc",
                                padding="repeatpad", frequency_max=14_000)


def clap_model(vocab_size: int) -> ClapModel:
    """A tiny LAION-CLAP: a 2-layer RoBERTa text tower and a 2-stage HTSAT audio tower, both
    projected to 16 dimensions."""
    text = ClapTextConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32,
                          num_attention_heads=2, num_hidden_layers=2, projection_dim=16,
                          bos_token_id=0, pad_token_id=1, eos_token_id=2, layer_norm_eps=1e-5)
    audio = ClapAudioConfig(spec_size=64, num_mel_bins=16, window_size=4, patch_size=2,
                            patch_stride=2, depths=[1, 1], num_attention_heads=[2, 2],
                            num_hidden_layers=2, hidden_size=32, patch_embeds_hidden_size=16,
                            intermediate_size=32, projection_dim=16, layer_norm_eps=1e-5)
    config = ClapConfig(text_config=text.to_dict(), audio_config=audio.to_dict(), projection_dim=16)
    return ClapModel(config)


def save_tiny_clap(out: str | Path, seed: int = 0) -> Path:
    """A random ``ClapModel`` and its ``ClapProcessor`` in ``out`` (safetensors); returns ``out``."""
    out = Path(out)
    torch.manual_seed(seed)
    tokenizer = write_roberta_tokenizer(out)
    clap_model(len(tokenizer)).save_pretrained(out, safe_serialization=True)
    extractor = clap_feature_extractor()
    extractor.save_pretrained(out)  # preprocessor_config.json, read by transformers 4
    ClapProcessor(feature_extractor=extractor, tokenizer=tokenizer).save_pretrained(out)
    return out


def _library(part) -> list[str]:
    """A component's ``model_index.json`` entry: [library, class name]; models defined beside a
    diffusers pipeline are listed under that pipeline's package (e.g. "audioldm2")."""
    module = type(part).__module__.split(".")
    library = module[2] if module[:2] == ["diffusers", "pipelines"] else module[0]
    return [library, type(part).__name__]


def _save(folder: Path, pipeline: str, components: dict, dtype: torch.dtype) -> Path:
    """Each component in its subfolder (models as safetensors, in ``dtype``), then
    ``model_index.json`` listing them."""
    for name, part in components.items():
        is_model = isinstance(part, torch.nn.Module)
        if is_model and dtype != torch.float32:
            part = part.to(dtype)
        part.save_pretrained(folder / name, **({"safe_serialization": True} if is_model else {}))
    index = {"_class_name": pipeline, "_diffusers_version": DIFFUSERS_VERSION,
             **{name: _library(part) for name, part in sorted(components.items())}}
    (folder / "model_index.json").write_text(json.dumps(index, indent=2))
    return folder


def t5_encoder(vocab_size: int) -> T5EncoderModel:
    """A 2-layer T5 encoder of width 16 (Flan-T5 for AudioLDM2, T5-base for Stable Audio)."""
    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=16, d_ff=32, d_kv=8, num_heads=2,
                                   num_layers=2, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0))


def save_audioldm2_folder(out: str | Path, seed: int = 0,
                          dtype: torch.dtype = torch.float32) -> Path:
    """A random ``AudioLDM2Pipeline`` folder at ``out/audioldm2``: CLAP and Flan-T5 text encoders,
    their projection, a GPT-2 making 8 conditioning vectors (a ``GPT2Model``, as in released
    checkpoints), a 2-level UNet with AudioLDM2's two cross-attentions, a 2x VAE over 16-bin mel
    spectrograms and a SpeechT5 HiFi-GAN at 16 kHz with a hop of 160 samples (as the real model)."""
    folder = Path(out) / "audioldm2"
    torch.manual_seed(seed)
    tokenizer = write_roberta_tokenizer(folder / "tokenizer")
    tokenizer_2 = write_t5_tokenizer(folder / "tokenizer_2")
    language_model = GPT2Model(GPT2Config(n_embd=16, n_head=2, n_layer=2, vocab_size=64,
                                          n_positions=128, bos_token_id=0, eos_token_id=0))
    language_model.config.max_new_tokens = 8
    components = {
        "tokenizer": tokenizer,
        "tokenizer_2": tokenizer_2,
        "text_encoder": clap_model(len(tokenizer)),
        "text_encoder_2": t5_encoder(len(tokenizer_2)),
        "projection_model": AudioLDM2ProjectionModel(text_encoder_dim=16, text_encoder_1_dim=16,
                                                     langauge_model_dim=16),
        "language_model": language_model,
        "unet": AudioLDM2UNet2DConditionModel(
            block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
            in_channels=4, out_channels=4, attention_head_dim=4,
            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
            up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
            cross_attention_dim=([None, 16, 16], [None, 16, 16])),
        "vae": AutoencoderKL(block_out_channels=(8, 16), in_channels=1, out_channels=1,
                             down_block_types=("DownEncoderBlock2D",) * 2,
                             up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4,
                             norm_num_groups=8),
        "vocoder": SpeechT5HifiGan(SpeechT5HifiGanConfig(
            model_in_dim=16, sampling_rate=16_000, upsample_initial_channel=16,
            upsample_rates=[5, 4, 8], upsample_kernel_sizes=[10, 8, 16],
            resblock_kernel_sizes=[3], resblock_dilation_sizes=[[1, 3]], normalize_before=False,
            initializer_range=0.1)),
        "scheduler": DDIMScheduler(beta_start=0.0015, beta_end=0.0195, beta_schedule="scaled_linear",
                                   clip_sample=False, set_alpha_to_one=False, steps_offset=1),
        "feature_extractor": clap_feature_extractor(),
    }
    return _save(folder, "AudioLDM2Pipeline", components, dtype)


def save_stable_audio_folder(out: str | Path, seed: int = 0,
                             dtype: torch.dtype = torch.float32) -> Path:
    """A random ``StableAudioPipeline`` folder at ``out/stable-audio``: a T5 text encoder, the
    number conditioner (seconds start / total), a 2-layer DiT over 48 latents (2.2 s) and an
    Oobleck VAE making 44.1 kHz stereo with a hop of 2048 samples (as the real model).

    The scheduler is ``EDMDPMSolverMultistepScheduler`` (deterministic DPM-Solver++); Stable Audio
    Open ships ``CosineDPMSolverMultistepScheduler``, which needs the ``torchsde`` package."""
    folder = Path(out) / "stable-audio"
    torch.manual_seed(seed)
    tokenizer = write_t5_tokenizer(folder / "tokenizer", max_length=32)
    components = {
        "tokenizer": tokenizer,
        "text_encoder": t5_encoder(len(tokenizer)),
        "projection_model": StableAudioProjectionModel(text_encoder_dim=16, conditioning_dim=8,
                                                       min_value=0, max_value=512),
        "transformer": StableAudioDiTModel(
            sample_size=48, in_channels=4, out_channels=4, num_layers=2, attention_head_dim=8,
            num_attention_heads=2, num_key_value_attention_heads=1, cross_attention_dim=16,
            time_proj_dim=8, global_states_input_dim=16, cross_attention_input_dim=8),
        "vae": AutoencoderOobleck(encoder_hidden_size=4, downsampling_ratios=[2, 4, 4, 8, 8],
                                  channel_multiples=[1, 1, 2, 2, 2], decoder_channels=4,
                                  decoder_input_channels=4, audio_channels=2, sampling_rate=44_100),
        "scheduler": EDMDPMSolverMultistepScheduler(sigma_min=0.3, sigma_max=500, sigma_data=1.0,
                                                    sigma_schedule="exponential", solver_order=2,
                                                    prediction_type="v_prediction"),
    }
    return _save(folder, "StableAudioPipeline", components, dtype)
