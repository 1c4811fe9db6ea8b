"""Every training option, declared exactly once.

Names are the flag names of kohya-ss sd-scripts, so `--learning_rate=1e-6` means what its users
expect. The CLI, the GUI form, presets, run-folder TOML and validation are all derived from this
table; adding an option means adding one entry here plus the code that uses it.
"""

from __future__ import annotations

from dataclasses import replace

from .schema import Option

DB = ("db",)
LORA = ("lora",)

SAMPLERS = (
    "ddim", "pndm", "lms", "euler", "euler_a", "heun", "dpm_2", "dpm_2_a",
    "dpmsolver", "dpmsolver++", "dpmsingle",
    "k_lms", "k_euler", "k_euler_a", "k_dpm_2", "k_dpm_2_a",
)
OPTIMIZERS = (
    "AdamW", "AdamW8bit", "Lion", "Lion8bit", "SGDNesterov", "SGDNesterov8bit",
    "Adafactor", "Prodigy",
)
LR_SCHEDULERS = (
    "constant", "constant_with_warmup", "linear", "cosine", "cosine_with_restarts", "polynomial",
)


def _group(name: str, *entries: Option) -> list[Option]:
    return [replace(entry, group=name) for entry in entries]


def _o(name, type_, default, help_, **kw) -> Option:
    return Option(name=name, type=type_, default=default, help=help_, group="", **kw)


M, F, D, T, O, P, S, SA, L, N, LA = (
    "Model", "Folders", "Dataset", "Training", "Optimizer & schedule", "Memory & precision",
    "Saving", "Samples", "Logging", "Network", "Launch",
)

OPTIONS: list[Option] = [
    *_group(
        M,
        _o("pretrained_model_name_or_path", str, None,
           "Base model: a .safetensors/.ckpt Stable Diffusion checkpoint, a diffusers folder, "
           "or a hub id such as stabilityai/stable-diffusion-2.", path="path"),
        _o("v2", bool, False,
           "The base model is Stable Diffusion 2.x (OpenCLIP text encoder, penultimate layer). "
           "Detected from the weights; set it to insist."),
        _o("v_parameterization", bool, False,
           "Train with the velocity (v) target, for 768-v models such as stable-diffusion-2 "
           "and 768-v-ema. Use together with --v2."),
        _o("vae", str, None,
           "Replace the model's VAE with this one (checkpoint, VAE-only file or diffusers "
           "folder); it is baked into the saved model.", path="path"),
        _o("tokenizer", str, None,
           "Tokenizer folder or hub id, for single-file checkpoints (they contain none). "
           "Default: the hub cache's CLIP tokenizer for v1, the SD 2 tokenizer for v2.",
           path="path", advanced=True),
    ),
    *_group(
        F,
        _o("train_data_dir", str, None,
           "Folder that holds the training image folders named '<repeats>_<identifier> <class>', "
           "e.g. '20_sls frog'.", path="dir"),
        _o("reg_data_dir", str, None,
           "Folder that holds regularization image folders named '<repeats>_<class>', "
           "e.g. '1_frog'. Optional: without it the whole class drifts toward your subject.",
           path="dir"),
        _o("output_dir", str, None,
           "Run folder: models, samples, state, config.toml and events.jsonl are written here.",
           path="dir"),
        _o("output_name", str, None,
           "File name (without extension) of saved models. Unset: the final model is 'last', "
           "epoch saves 'epoch-000001', step saves 'at-step00000100' (as in sd-scripts)."),
        _o("dataset_config", str, None,
           "sd-scripts dataset TOML ([general], [[datasets]], [[datasets.subsets]]) used instead "
           "of train_data_dir/reg_data_dir.", path="file", advanced=True),
    ),
    *_group(
        D,
        _o("resolution", str, "512",
           "Training size: N for N×N or 'W,H' such as 768,512; each divisible by 64. "
           "With bucketing it is the largest area a bucket may have."),
        _o("caption_extension", str, ".caption",
           "Extension of caption files beside the images (e.g. .caption or .txt). A caption "
           "replaces the folder's 'identifier class' prompt for that image."),
        _o("shuffle_caption", bool, False,
           "Shuffle the comma-separated parts of each caption every time it is used."),
        _o("keep_tokens", int, 0,
           "Keep the first N comma-separated parts of the caption in place when shuffling "
           "(e.g. 1 keeps the identifier first).", minimum=0),
        _o("caption_dropout_rate", float, 0.0,
           "Probability that a sample is trained with an empty caption.",
           minimum=0.0, maximum=1.0, advanced=True),
        _o("caption_dropout_every_n_epochs", int, 0,
           "Drop all captions every N-th epoch (0: never).", minimum=0, advanced=True),
        _o("caption_tag_dropout_rate", float, 0.0,
           "Probability that each comma-separated tag is dropped from the caption.",
           minimum=0.0, maximum=1.0, advanced=True),
        _o("prior_loss_weight", float, 1.0,
           "Loss weight of regularization images. 1.0 is the usual value.", minimum=0.0),
        _o("enable_bucket", bool, False,
           "Aspect-ratio bucketing: train each image at the bucket size closest to its aspect "
           "ratio instead of cropping everything to one size."),
        # A long thin bucket may be longer than the resolution (4096 at most); 16384 bounds the
        # bucket search and the resize of one image side.
        _o("min_bucket_reso", int, 256, "Smallest bucket side in pixels.", minimum=64,
           maximum=16384),
        _o("max_bucket_reso", int, 1024, "Largest bucket side in pixels.", minimum=64,
           maximum=16384),
        _o("bucket_reso_steps", int, 64,
           "Bucket sides are multiples of this many pixels.", minimum=8, advanced=True),
        _o("bucket_no_upscale", bool, False,
           "Never enlarge small images to fill a bucket; use a smaller bucket instead."),
        _o("random_crop", bool, False,
           "Crop at a random position instead of the center (not with cache_latents)."),
        _o("flip_aug", bool, False,
           "Horizontal flip augmentation (p=0.5). Works with cache_latents (both sides cached).",
           ),
        _o("color_aug", bool, False,
           "Small random hue shift augmentation. Needs fresh VAE encodes, so not with "
           "cache_latents."),
        _o("debug_dataset", bool, False,
           "Print a dataset report (concepts, repeats, regularization balance, buckets, "
           "captions) and write a contact sheet PNG into output_dir, then exit without "
           "training."),
        _o("max_data_loader_n_workers", int, 0,
           "Worker processes that load images. 0 loads in the training process (best with "
           "cache_latents).", minimum=0, advanced=True),
    ),
    *_group(
        T,
        _o("train_batch_size", int, 1, "Images per step on each GPU.", minimum=1),
        _o("max_train_steps", int, 1600,
           "Total optimizer steps. Ignored when max_train_epochs is set.", minimum=1),
        _o("max_train_epochs", int, None,
           "Train for this many epochs instead of max_train_steps.", minimum=1),
        _o("gradient_accumulation_steps", int, 1,
           "Accumulate gradients over N batches before each optimizer step "
           "(effective batch = train_batch_size × N × GPUs).", minimum=1),
        _o("seed", int, None,
           "Random seed. Unset: a random one is chosen and recorded in config.toml.",
           minimum=0, maximum=2 ** 63 - 1),  # the largest whole number TOML can hold
        _o("stop_text_encoder_training", int, None,
           "Freeze the text encoder after this many steps; 0 or -1 trains the U-Net only.",
           modes=DB),
        _o("clip_skip", int, None,
           "Use the output of the N-th layer from the end of the text encoder (2 = "
           "penultimate, common for anime models). v2 models always use the penultimate.",
           minimum=1, maximum=12),
        _o("max_token_length", int, None,
           "Prompt length in tokens: 75 (default), 150 or 225 (long captions are encoded in "
           "chunks of 75).", choices=(75, 150, 225)),
        _o("no_token_padding", bool, False,
           "Do not pad prompts to 77 tokens (the behaviour of early diffusers DreamBooth).",
           advanced=True),
        _o("noise_offset", float, 0.0,
           "Add this much per-channel offset noise (e.g. 0.05–0.1) so the model can learn very "
           "dark and very bright images.", minimum=0.0, advanced=True),
        _o("min_snr_gamma", float, None,
           "Min-SNR loss weighting (5 is the paper's value): faster, steadier convergence.",
           minimum=0.0, advanced=True),
    ),
    *_group(
        O,
        _o("learning_rate", float, 2e-6,
           "Learning rate. DreamBooth of a full model: 1e-6 to 5e-6. LoRA: around 1e-4.",
           minimum=0.0, mode_defaults={"lora": 1e-4}),
        _o("text_encoder_lr", float, None,
           "Separate learning rate for the text encoder (default: learning_rate).",
           minimum=0.0),
        _o("unet_lr", float, None,
           "Separate learning rate for the U-Net LoRA (default: learning_rate).",
           modes=LORA, minimum=0.0),
        _o("optimizer_type", str, "AdamW", "Optimizer.", choices=OPTIMIZERS),
        _o("use_8bit_adam", bool, False,
           "Use bitsandbytes' 8-bit AdamW (same as optimizer_type=AdamW8bit): much less "
           "optimizer memory."),
        _o("optimizer_args", list, [],
           "Extra optimizer arguments as key=value, e.g. weight_decay=0.01 betas=0.9,0.999.",
           advanced=True),
        _o("lr_scheduler", str, "constant", "Learning-rate schedule.", choices=LR_SCHEDULERS),
        _o("lr_warmup_steps", int, 0,
           "Steps of linear warm-up at the start (for schedules that warm up).", minimum=0),
        _o("lr_scheduler_num_cycles", int, 1,
           "Restarts of cosine_with_restarts.", minimum=1, advanced=True),
        _o("lr_scheduler_power", float, 1.0,
           "Power of the polynomial schedule.", minimum=0.0, advanced=True),
        _o("max_grad_norm", float, 1.0,
           "Clip the gradient norm to this value (0: no clipping).", minimum=0.0,
           advanced=True),
    ),
    *_group(
        P,
        _o("mixed_precision", str, "no",
           "Compute in fp16 or bf16 while the trained weights stay float32. bf16 needs an "
           "RTX 30xx or newer; fp16 uses loss scaling.", choices=("no", "fp16", "bf16")),
        _o("full_fp16", bool, False,
           "Keep the trained weights and gradients in fp16 too (less memory, less accuracy, "
           "more failed runs). Needs mixed_precision=fp16. AdamW then keeps its moments in fp32 "
           "(bitsandbytes' 32-bit AdamW).", advanced=True),
        _o("gradient_checkpointing", bool, False,
           "Recompute activations in the backward pass: much less memory, ~20-30% slower."),
        _o("xformers", bool, False,
           "Use xformers memory-efficient attention (CUDA only; falls back to PyTorch SDPA "
           "with a warning)."),
        _o("mem_eff_attn", bool, False,
           "Memory-saving attention computed in slices (slower), for when neither xformers "
           "nor SDPA fits.", advanced=True),
        _o("sdpa", bool, False,
           "Use PyTorch scaled-dot-product attention (the default already; accepted for "
           "sd-scripts compatibility).", advanced=True),
        _o("cache_latents", bool, False,
           "Encode every image with the VAE once before training and keep the latents in "
           "memory: faster steps, less VRAM. Not with color_aug or random_crop."),
        _o("cache_latents_to_disk", bool, False,
           "Like cache_latents, and store the latents in files beside the images so later runs "
           "reuse them."),
        _o("vae_batch_size", int, 1,
           "Images per VAE batch while caching latents.", minimum=1, advanced=True),
        _o("no_half_vae", bool, False,
           "Keep the VAE in float32 under mixed precision (fixes NaN latents of some VAEs "
           "in fp16).", advanced=True),
        _o("estimate_memory", bool, False,
           "Print an estimate of the peak GPU memory of these settings (weights, gradients, "
           "optimizer state, activations, CUDA overhead) and exit without training. Needs no "
           "GPU and no training images.", advanced=True),
    ),
    *_group(
        S,
        _o("save_model_as", str, None,
           "Format of saved models. Default: the same kind as the base model (single file "
           "or diffusers folder) for DreamBooth, safetensors for LoRA.",
           choices=("ckpt", "safetensors", "diffusers", "diffusers_safetensors")),
        _o("save_precision", str, "float",
           "Precision of saved weights: float (32-bit), fp16 or bf16 (half the size).",
           choices=("float", "fp16", "bf16")),
        _o("save_every_n_epochs", int, None,
           "Save the model every N epochs as <output_name>-<epoch>.", minimum=1),
        _o("save_every_n_steps", int, None,
           "Save the model every N steps as <output_name>-step<N>.", minimum=1),
        _o("save_last_n_epochs", int, None,
           "Keep only the newest N epoch saves (older ones are deleted).", minimum=1,
           advanced=True),
        _o("save_last_n_steps", int, None,
           "Keep only the step saves of the last N steps.", minimum=1, advanced=True),
        _o("save_state", bool, False,
           "With every save, also write the full training state (optimizer, scheduler, RNG, "
           "position in the epoch) to a -state folder so --resume continues exactly."),
        _o("save_last_n_epochs_state", int, None,
           "Keep only the newest N epoch state folders.", minimum=1, advanced=True),
        _o("save_last_n_steps_state", int, None,
           "Keep only the state folders of the last N steps.", minimum=1, advanced=True),
        _o("save_state_on_train_end", bool, False,
           "Write a state folder at the end of training even without save_state.",
           advanced=True),
        _o("resume", str, None,
           "Continue from a saved state folder: same step, same epoch, same next batch.",
           path="dir"),
    ),
    *_group(
        SA,
        _o("sample_prompts", str, None,
           "Text file with one prompt per line; options --n negative, --w width, --h height, "
           "--d seed, --l CFG scale, --s steps.", path="file"),
        _o("sample_every_n_steps", int, None, "Generate samples every N steps.", minimum=1),
        _o("sample_every_n_epochs", int, None, "Generate samples every N epochs.",
           minimum=1),
        _o("sample_at_first", bool, False, "Generate samples before the first step."),
        _o("sample_sampler", str, "ddim", "Sampler used for sample images.",
           choices=SAMPLERS),
    ),
    *_group(
        L,
        _o("logging_dir", str, None,
           "Write TensorBoard logs into a dated folder inside this folder.", path="dir"),
        _o("log_prefix", str, None,
           "Text put before the date in the TensorBoard folder name, e.g. db_style1_."),
    ),
    *_group(
        N,
        _o("network_module", str, "networks.lora",
           "Network type; networks.lora (LoRA/LoCon) is built in. Accepted for sd-scripts "
           "compatibility.", modes=LORA, choices=("networks.lora",), advanced=True),
        _o("network_dim", int, 4,
           "LoRA rank: capacity and file size. 4–32 for a subject, up to 128 for styles.",
           modes=LORA, minimum=1),
        _o("network_alpha", float, 1.0,
           "Scales the LoRA by alpha / network_dim. The default 1 with dim 4 scales by 0.25, "
           "so it needs a higher learning rate (~1e-4); alpha = dim scales by 1.",
           modes=LORA, minimum=0.0),
        _o("conv_dim", int, None,
           "Also train LoRA on the 3×3 convolutions of the ResNet blocks and samplers with "
           "this rank (LoCon). Unset: attention and feed-forward layers only.", modes=LORA,
           minimum=1),
        _o("conv_alpha", float, None,
           "Alpha of the convolution LoRA (default: 1).", modes=LORA, minimum=0.0),
        _o("network_dropout", float, None,
           "Dropout on the LoRA's hidden units while training (e.g. 0.1).", modes=LORA,
           minimum=0.0, maximum=1.0, advanced=True),
        _o("network_args", list, [],
           "Extra network arguments as key=value: conv_dim=4 conv_alpha=1 (LoCon), "
           "rank_dropout=0.1, module_dropout=0.1, loraplus_lr_ratio=16 (LoRA+: the up "
           "weights learn that many times faster).",
           modes=LORA, advanced=True),
        _o("network_weights", str, None,
           "Start from the weights of this LoRA file (continue training).", modes=LORA,
           path="file"),
        _o("dim_from_weights", bool, False,
           "Take network_dim / alpha from the network_weights file.", modes=LORA,
           advanced=True),
        _o("network_train_unet_only", bool, False, "Train only the U-Net LoRA.", modes=LORA),
        _o("network_train_text_encoder_only", bool, False,
           "Train only the text-encoder LoRA.", modes=LORA),
        _o("training_comment", str, None,
           "Free text stored in the LoRA file's metadata (ss_training_comment).",
           modes=LORA, advanced=True),
        _o("no_metadata", bool, False,
           "Write only the minimum metadata into the LoRA file.", modes=LORA,
           advanced=True),
    ),
    *_group(
        LA,
        _o("num_processes", int, 1,
           "Number of GPUs (processes) to train on; more than 1 launches through accelerate.",
           minimum=1),
        _o("gpu_ids", str, None,
           "Comma-separated GPU ids to use, e.g. 0,1 (default: all).", advanced=True),
        _o("num_cpu_threads_per_process", int, None,
           "CPU threads per training process (default: cores / processes).", minimum=1,
           advanced=True),
    ),
]

BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}

if len(BY_NAME) != len(OPTIONS):  # a name declared twice is a programming error
    raise AssertionError("duplicate option names in trainer/config/options.py")
