"""Every training option, declared exactly once.

Names are the flag names of kohya-ss sd-scripts, so `--learning_rate=1e-6` means what its users
expect. Each option is a typed field of `Config` (so `cfg.keep_tokens` is an int to a type
checker); the list `OPTIONS` that the CLI, the GUI form, presets, run-folder TOML and validation
use is read off those fields. Adding an option means adding one field here plus the code that
uses it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from .schema import DB, LORA, MODES, Group, Option, opt, options_of

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


@dataclass(slots=True, init=False, eq=False, repr=False)
class Config:
    """Resolved option values for one mode (cfg.learning_rate); unknown names are refused."""

    mode: str

    def __init__(self, mode: str, values: Mapping[str, Any] | None = None):
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        object.__setattr__(self, "mode", mode)
        for option in OPTIONS:
            object.__setattr__(self, option.name, option.default_for(mode))
        if values:
            self.update(values)

    def __setattr__(self, name: str, value: Any) -> None:
        if name not in BY_NAME:  # the mode too: a Config is made for one mode
            raise AttributeError(f"no option named {name!r}")
        object.__setattr__(self, name, value)

    def __reduce__(self):
        return Config, (self.mode, self.to_dict())

    def update(self, values: Mapping[str, Any]) -> None:
        for name, value in values.items():
            setattr(self, name, value)

    def get(self, name: str, default: Any = None) -> Any:
        return getattr(self, name) if name in BY_NAME else default

    def to_dict(self) -> dict[str, Any]:
        values = {o.name: getattr(self, o.name) for o in OPTIONS}
        return {k: (list(v) if isinstance(v, list) else v) for k, v in values.items()}

    def changed(self) -> dict[str, Any]:
        """Only the values that differ from this mode's defaults (what a preset stores)."""
        return {
            o.name: getattr(self, o.name)
            for o in OPTIONS
            if getattr(self, o.name) != o.default_for(self.mode)
        }

    def copy(self) -> Config:
        return Config(self.mode, self.to_dict())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Config) and other.mode == self.mode \
            and all(getattr(other, o.name) == getattr(self, o.name) for o in OPTIONS)

    def __repr__(self) -> str:
        return f"Config({self.mode!r}, {self.changed()!r})"

    # Every option, in the order of --help, the GUI and written files.

    # Model
    pretrained_model_name_or_path: str | None = opt(None, Group.MODEL,
        "Base model: a .safetensors/.ckpt Stable Diffusion checkpoint, a diffusers folder, "
        "or a hub id such as stabilityai/stable-diffusion-2.", path="path", must_exist=True)
    v2: bool = opt(False, Group.MODEL,
        "The base model is Stable Diffusion 2.x (OpenCLIP text encoder, penultimate layer). "
        "Detected from the weights; set it to insist.")
    v_parameterization: bool = opt(False, Group.MODEL,
        "Train with the velocity (v) target, for 768-v models such as stable-diffusion-2 "
        "and 768-v-ema. Use together with --v2.")
    vae: str | None = opt(None, Group.MODEL,
        "Replace the model's VAE with this one (checkpoint, VAE-only file or diffusers "
        "folder); it is baked into the saved model.", path="path", must_exist=True)
    tokenizer: str | None = opt(None, Group.MODEL,
        "Tokenizer folder or hub id, for single-file checkpoints (they contain none). "
        "Default: the hub cache's CLIP tokenizer for v1, the SD 2 tokenizer for v2.",
        path="path", must_exist=True, advanced=True)

    # Folders
    train_data_dir: str | None = opt(None, Group.FOLDERS,
        "Folder that holds the training image folders named '<repeats>_<identifier> <class>', "
        "e.g. '20_sls frog'.", path="dir",
        must_exist=True, expects="a folder of '<repeats>_<identifier> <class>' folders")
    reg_data_dir: str | None = opt(None, Group.FOLDERS,
        "Folder that holds regularization image folders named '<repeats>_<class>', "
        "e.g. '1_frog'. Optional: without it the whole class drifts toward your subject.",
        path="dir", must_exist=True, expects="a folder of '<repeats>_<class>' folders")
    output_dir: str | None = opt(None, Group.FOLDERS,
        "Run folder: models, samples, state, config.toml and events.jsonl are written here.",
        path="dir")
    output_name: str | None = opt(None, Group.FOLDERS,
        "File name (without extension) of saved models. Unset: the final model is 'last', "
        "epoch saves 'epoch-000001', step saves 'at-step00000100' (as in sd-scripts).")
    dataset_config: str | None = opt(None, Group.FOLDERS,
        "sd-scripts dataset TOML ([general], [[datasets]], [[datasets.subsets]]) used instead "
        "of train_data_dir/reg_data_dir.", path="file", advanced=True,
        must_exist=True, expects="an sd-scripts dataset .toml file")

    # Dataset
    resolution: str | None = opt(None, Group.DATASET,
        "Training size: N for N×N or 'W,H' such as 768,512; each divisible by 64. "
        "With bucketing it is the largest area a bucket may have. Default: the base model's "
        "native size (512 for SD 1.x and 2.x-base, 768 for 2.x-v, 1024 for SDXL).")
    caption_extension: str = opt(".caption", Group.DATASET,
        "Extension of caption files beside the images (e.g. .caption or .txt). A caption "
        "replaces the folder's 'identifier class' prompt for that image.", subset=True)
    shuffle_caption: bool = opt(False, Group.DATASET,
        "Shuffle the comma-separated parts of each caption every time it is used.", subset=True)
    keep_tokens: int = opt(0, Group.DATASET,
        "Keep the first N comma-separated parts of the caption in place when shuffling "
        "(e.g. 1 keeps the identifier first).", minimum=0, subset=True)
    caption_dropout_rate: float = opt(0.0, Group.DATASET,
        "Probability that a sample is trained with an empty caption.",
        minimum=0.0, maximum=1.0, advanced=True, subset=True)
    caption_dropout_every_n_epochs: int = opt(0, Group.DATASET,
        "Drop all captions every N-th epoch (0: never).", minimum=0, advanced=True, subset=True)
    caption_tag_dropout_rate: float = opt(0.0, Group.DATASET,
        "Probability that each comma-separated tag is dropped from the caption.",
        minimum=0.0, maximum=1.0, advanced=True, subset=True)
    prior_loss_weight: float = opt(1.0, Group.DATASET,
        "Loss weight of regularization images. 1.0 is the usual value.", minimum=0.0)
    enable_bucket: bool = opt(False, Group.DATASET,
        "Aspect-ratio bucketing: train each image at the bucket size closest to its aspect "
        "ratio instead of cropping everything to one size.")
    # A long thin bucket may be longer than the resolution (4096 at most); 16384 bounds the
    # bucket search and the resize of one image side.
    min_bucket_reso: int = opt(256, Group.DATASET, "Smallest bucket side in pixels.", minimum=64,
        maximum=16384)
    max_bucket_reso: int = opt(1024, Group.DATASET, "Largest bucket side in pixels.", minimum=64,
        maximum=16384)
    bucket_reso_steps: int = opt(64, Group.DATASET,
        "Bucket sides are multiples of this many pixels.", minimum=8, advanced=True)
    bucket_no_upscale: bool = opt(False, Group.DATASET,
        "Never enlarge small images to fill a bucket; use a smaller bucket instead.")
    random_crop: bool = opt(False, Group.DATASET,
        "Crop at a random position instead of the center (not with cache_latents).", subset=True)
    flip_aug: bool = opt(False, Group.DATASET,
        "Horizontal flip augmentation (p=0.5). Works with cache_latents (both sides cached).",
        subset=True)
    color_aug: bool = opt(False, Group.DATASET,
        "Small random hue shift augmentation. Needs fresh VAE encodes, so not with "
        "cache_latents.", subset=True)
    debug_dataset: bool = opt(False, Group.DATASET,
        "Print a dataset report (concepts, repeats, regularization balance, buckets, "
        "captions) and write a contact sheet PNG into output_dir, then exit without "
        "training.")
    max_data_loader_n_workers: int = opt(0, Group.DATASET,
        "Worker processes that load images. 0 loads in the training process (best with "
        "cache_latents).", minimum=0, advanced=True)

    # Training
    train_batch_size: int = opt(1, Group.TRAINING, "Images per step on each GPU.", minimum=1)
    max_train_steps: int = opt(1600, Group.TRAINING,
        "Total optimizer steps. Ignored when max_train_epochs is set.", minimum=1)
    max_train_epochs: int | None = opt(None, Group.TRAINING,
        "Train for this many epochs instead of max_train_steps.", minimum=1)
    gradient_accumulation_steps: int = opt(1, Group.TRAINING,
        "Accumulate gradients over N batches before each optimizer step "
        "(effective batch = train_batch_size × N × GPUs).", minimum=1)
    seed: int | None = opt(None, Group.TRAINING,
        "Random seed. Unset: a random one is chosen and recorded in config.toml.",
        minimum=0, maximum=2 ** 63 - 1)  # the largest whole number TOML can hold
    stop_text_encoder_training: int | None = opt(None, Group.TRAINING,
        "Freeze the text encoder after this many steps; 0 or -1 trains the U-Net only.",
        modes=DB)
    clip_skip: int | None = opt(None, Group.TRAINING,
        "Use the output of the N-th layer from the end of the text encoder (2 = "
        "penultimate, common for anime models). v2 models always use the penultimate.",
        minimum=1, maximum=12)
    max_token_length: int | None = opt(None, Group.TRAINING,
        "Prompt length in tokens: 75 (default), 150 or 225 (long captions are encoded in "
        "chunks of 75).", choices=(75, 150, 225))
    no_token_padding: bool = opt(False, Group.TRAINING,
        "Do not pad prompts to 77 tokens (the behaviour of early diffusers DreamBooth).",
        advanced=True)
    noise_offset: float = opt(0.0, Group.TRAINING,
        "Add this much per-channel offset noise (e.g. 0.05–0.1) so the model can learn very "
        "dark and very bright images.", minimum=0.0, advanced=True)
    min_snr_gamma: float | None = opt(None, Group.TRAINING,
        "Min-SNR loss weighting (5 is the paper's value): faster, steadier convergence.",
        minimum=0.0, advanced=True)
    noise_offset_random_strength: bool = opt(False, Group.TRAINING,
        "Draw the offset-noise strength of each sample at random between 0 and noise_offset.",
        advanced=True)
    adaptive_noise_scale: float | None = opt(None, Group.TRAINING,
        "Add this times the mean absolute value of each latent channel to noise_offset "
        "(needs noise_offset; may be negative).", advanced=True)
    multires_noise_iterations: int | None = opt(None, Group.TRAINING,
        "Multi-resolution (pyramid) noise with this many levels (6-10 is usual).",
        minimum=1, advanced=True)
    multires_noise_discount: float = opt(0.3, Group.TRAINING,
        "Weight factor of each coarser level of multires noise (no effect without "
        "multires_noise_iterations).", minimum=0.0, maximum=1.0, advanced=True)
    ip_noise_gamma: float | None = opt(None, Group.TRAINING,
        "Input perturbation: add this much extra noise to the model's input only "
        "(around 0.1; arxiv.org/abs/2301.11706).", minimum=0.0, advanced=True)
    ip_noise_gamma_random_strength: bool = opt(False, Group.TRAINING,
        "Draw the input-perturbation strength of each sample at random between 0 and "
        "ip_noise_gamma.", advanced=True)
    min_timestep: int | None = opt(None, Group.TRAINING,
        "Smallest training timestep (0-999; default 0).", minimum=0, maximum=999,
        advanced=True)
    max_timestep: int | None = opt(None, Group.TRAINING,
        "Largest training timestep, exclusive (1-1000; default 1000). Equal to min_timestep: "
        "train at that one timestep.", minimum=1, maximum=1000, advanced=True)
    zero_terminal_snr: bool = opt(False, Group.TRAINING,
        "Rescale the noise schedule so its last timestep is pure noise (zero SNR; "
        "arxiv.org/abs/2305.08891). Meant for v-prediction.", advanced=True)
    loss_type: str = opt("l2", Group.TRAINING,
        "Loss between prediction and target: l2 (squared error), l1, huber or smooth_l1.",
        choices=("l1", "l2", "huber", "smooth_l1"), advanced=True)
    huber_c: float = opt(0.1, Group.TRAINING,
        "Threshold of the huber and smooth_l1 losses (see huber_schedule).",
        minimum=0.0, advanced=True)
    huber_schedule: str = opt("snr", Group.TRAINING,
        "How the huber threshold follows the timestep: constant, exponential or snr.",
        choices=("constant", "exponential", "snr"), advanced=True)
    huber_scale: float = opt(1.0, Group.TRAINING,
        "Multiplies the huber threshold of the constant and exponential schedules.",
        minimum=0.0, advanced=True)
    debiased_estimation_loss: bool = opt(False, Group.TRAINING,
        "Weight the loss by 1/sqrt(SNR) (1/(SNR+1) for v-prediction): debiased estimation.",
        advanced=True)
    scale_v_pred_loss_like_noise_pred: bool = opt(False, Group.TRAINING,
        "Scale the v-prediction loss by SNR/(SNR+1) so it weighs timesteps like the noise "
        "loss. Needs v_parameterization.", advanced=True)
    v_pred_like_loss: float | None = opt(None, Group.TRAINING,
        "Add this times a v-prediction-like loss (the loss divided by SNR/(SNR+1)). Not with "
        "v_parameterization.", minimum=0.0, advanced=True)

    # Optimizer & schedule
    learning_rate: float = opt(2e-6, Group.OPTIMIZER,
        "Learning rate. DreamBooth of a full model: 1e-6 to 5e-6. LoRA: around 1e-4.",
        minimum=0.0, mode_defaults={"lora": 1e-4})
    text_encoder_lr: float | None = opt(None, Group.OPTIMIZER,
        "Separate learning rate for the text encoder (default: learning_rate).",
        minimum=0.0)
    learning_rate_te1: float | None = opt(None, Group.OPTIMIZER,
        "SDXL: learning rate of the first text encoder (CLIP ViT-L); default text_encoder_lr, "
        "then learning_rate.", modes=DB, minimum=0.0, advanced=True)
    learning_rate_te2: float | None = opt(None, Group.OPTIMIZER,
        "SDXL: learning rate of the second text encoder (OpenCLIP bigG); default "
        "text_encoder_lr, then learning_rate.", modes=DB, minimum=0.0, advanced=True)
    unet_lr: float | None = opt(None, Group.OPTIMIZER,
        "Separate learning rate for the U-Net LoRA (default: learning_rate).",
        modes=LORA, minimum=0.0)
    optimizer_type: str = opt("AdamW", Group.OPTIMIZER, "Optimizer.", choices=OPTIMIZERS)
    use_8bit_adam: bool = opt(False, Group.OPTIMIZER,
        "Use bitsandbytes' 8-bit AdamW (same as optimizer_type=AdamW8bit): much less "
        "optimizer memory.")
    optimizer_args: list[str] = opt([], Group.OPTIMIZER,
        "Extra optimizer arguments as key=value, e.g. weight_decay=0.01 betas=0.9,0.999.",
        advanced=True)
    lr_scheduler: str = opt("constant", Group.OPTIMIZER, "Learning-rate schedule.",
        choices=LR_SCHEDULERS)
    lr_warmup_steps: int = opt(0, Group.OPTIMIZER,
        "Steps of linear warm-up at the start (for schedules that warm up).", minimum=0)
    lr_scheduler_num_cycles: int = opt(1, Group.OPTIMIZER,
        "Restarts of cosine_with_restarts.", minimum=1, advanced=True)
    lr_scheduler_power: float = opt(1.0, Group.OPTIMIZER,
        "Power of the polynomial schedule.", minimum=0.0, advanced=True)
    max_grad_norm: float = opt(1.0, Group.OPTIMIZER,
        "Clip the gradient norm to this value (0: no clipping).", minimum=0.0,
        advanced=True)

    # Memory & precision
    mixed_precision: str = opt("no", Group.MEMORY,
        "Compute in fp16 or bf16 while the trained weights stay float32. bf16 needs an "
        "RTX 30xx or newer; fp16 uses loss scaling.", choices=("no", "fp16", "bf16"))
    full_fp16: bool = opt(False, Group.MEMORY,
        "Keep the trained weights and gradients in fp16 too (less memory, less accuracy, "
        "more failed runs). Needs mixed_precision=fp16. AdamW then keeps its moments in fp32 "
        "(bitsandbytes' 32-bit AdamW).", advanced=True)
    full_bf16: bool = opt(False, Group.MEMORY,
        "Keep the trained weights and gradients in bf16 too: about half the memory of an SDXL "
        "fine-tune. Needs mixed_precision=bf16.", advanced=True)
    fused_backward_pass: bool = opt(False, Group.MEMORY,
        "Step the optimizer for each weight as soon as its gradient is ready, so the gradients "
        "of the whole U-Net are never held at once (SDXL fine-tune on 24 GB). Not with "
        "gradient accumulation or max_grad_norm clipping of the whole model.", modes=DB,
        advanced=True)
    gradient_checkpointing: bool = opt(False, Group.MEMORY,
        "Recompute activations in the backward pass: much less memory, ~20-30% slower.")
    xformers: bool = opt(False, Group.MEMORY,
        "Use xformers memory-efficient attention (CUDA only; falls back to PyTorch SDPA "
        "with a warning).")
    mem_eff_attn: bool = opt(False, Group.MEMORY,
        "Memory-saving attention computed in slices (slower), for when neither xformers "
        "nor SDPA fits.", advanced=True)
    sdpa: bool = opt(False, Group.MEMORY,
        "Use PyTorch scaled-dot-product attention (the default already; accepted for "
        "sd-scripts compatibility).", advanced=True)
    cache_latents: bool = opt(False, Group.MEMORY,
        "Encode every image with the VAE once before training and keep the latents in "
        "memory: faster steps, less VRAM. Not with color_aug or random_crop.")
    cache_latents_to_disk: bool = opt(False, Group.MEMORY,
        "Like cache_latents, and store the latents in files beside the images so later runs "
        "reuse them.")
    cache_text_encoder_outputs: bool = opt(False, Group.MEMORY,
        "Encode every caption once before training and keep the text encoders' outputs in "
        "memory, so the encoders can leave the GPU. Needs frozen text encoders and fixed "
        "captions (no shuffling, dropout or token warm-up).", advanced=True)
    cache_text_encoder_outputs_to_disk: bool = opt(False, Group.MEMORY,
        "Like cache_text_encoder_outputs, and store the outputs in files beside the images so "
        "later runs reuse them.", advanced=True)
    vae_batch_size: int = opt(1, Group.MEMORY,
        "Images per VAE batch while caching latents.", minimum=1, advanced=True)
    no_half_vae: bool = opt(False, Group.MEMORY,
        "Keep the VAE in float32 under mixed precision (fixes NaN latents of some VAEs "
        "in fp16).", advanced=True)
    estimate_memory: bool = opt(False, Group.MEMORY,
        "Print an estimate of the peak GPU memory of these settings (weights, gradients, "
        "optimizer state, activations, CUDA overhead) and exit without training. Needs no "
        "GPU and no training images.", advanced=True)

    # Saving
    save_model_as: str | None = opt(None, Group.SAVING,
        "Format of saved models. Default: the same kind as the base model (single file "
        "or diffusers folder) for DreamBooth, safetensors for LoRA.",
        choices=("ckpt", "safetensors", "diffusers", "diffusers_safetensors"))
    save_precision: str = opt("float", Group.SAVING,
        "Precision of saved weights: float (32-bit), fp16 or bf16 (half the size).",
        choices=("float", "fp16", "bf16"))
    save_every_n_epochs: int | None = opt(None, Group.SAVING,
        "Save the model every N epochs as <output_name>-<epoch>.", minimum=1)
    save_every_n_steps: int | None = opt(None, Group.SAVING,
        "Save the model every N steps as <output_name>-step<N>.", minimum=1)
    save_last_n_epochs: int | None = opt(None, Group.SAVING,
        "Keep only the newest N epoch saves (older ones are deleted).", minimum=1,
        advanced=True)
    save_last_n_steps: int | None = opt(None, Group.SAVING,
        "Keep only the step saves of the last N steps.", minimum=1, advanced=True)
    save_state: bool = opt(False, Group.SAVING,
        "With every save, also write the full training state (optimizer, scheduler, RNG, "
        "position in the epoch) to a -state folder so --resume continues exactly.")
    save_last_n_epochs_state: int | None = opt(None, Group.SAVING,
        "Keep only the newest N epoch state folders.", minimum=1, advanced=True)
    save_last_n_steps_state: int | None = opt(None, Group.SAVING,
        "Keep only the state folders of the last N steps.", minimum=1, advanced=True)
    save_state_on_train_end: bool = opt(False, Group.SAVING,
        "Write a state folder at the end of training even without save_state.",
        advanced=True)
    resume: str | None = opt(None, Group.SAVING,
        "Continue from a saved state folder: same step, same epoch, same next batch.",
        path="dir", must_exist=True, expects="a '-state' folder written by save_state")

    # Samples
    sample_prompts: str | None = opt(None, Group.SAMPLES,
        "Text file with one prompt per line; options --n negative, --w width, --h height, "
        "--d seed, --l CFG scale, --s steps.", path="file",
        must_exist=True, expects="a text file with one prompt per line")
    sample_every_n_steps: int | None = opt(None, Group.SAMPLES,
        "Generate samples every N steps.", minimum=1)
    sample_every_n_epochs: int | None = opt(None, Group.SAMPLES, "Generate samples every N epochs.",
        minimum=1)
    sample_at_first: bool = opt(False, Group.SAMPLES, "Generate samples before the first step.")
    sample_sampler: str = opt("ddim", Group.SAMPLES, "Sampler used for sample images.",
        choices=SAMPLERS)

    # Logging
    logging_dir: str | None = opt(None, Group.LOGGING,
        "Write TensorBoard logs into a dated folder inside this folder.", path="dir")
    log_prefix: str | None = opt(None, Group.LOGGING,
        "Text put before the date in the TensorBoard folder name, e.g. db_style1_.")

    # Network
    network_module: str = opt("networks.lora", Group.NETWORK,
        "Network type; networks.lora (LoRA/LoCon) is built in. Accepted for sd-scripts "
        "compatibility.", modes=LORA, choices=("networks.lora",), advanced=True)
    network_dim: int = opt(4, Group.NETWORK,
        "LoRA rank: capacity and file size. 4–32 for a subject, up to 128 for styles.",
        modes=LORA, minimum=1)
    network_alpha: float = opt(1.0, Group.NETWORK,
        "Scales the LoRA by alpha / network_dim. The default 1 with dim 4 scales by 0.25, "
        "so it needs a higher learning rate (~1e-4); alpha = dim scales by 1.",
        modes=LORA, minimum=0.0)
    conv_dim: int | None = opt(None, Group.NETWORK,
        "Also train LoRA on the 3×3 convolutions of the ResNet blocks and samplers with "
        "this rank (LoCon). Unset: attention and feed-forward layers only.", modes=LORA,
        minimum=1)
    conv_alpha: float | None = opt(None, Group.NETWORK,
        "Alpha of the convolution LoRA (default: 1).", modes=LORA, minimum=0.0)
    network_dropout: float | None = opt(None, Group.NETWORK,
        "Dropout on the LoRA's hidden units while training (e.g. 0.1).", modes=LORA,
        minimum=0.0, maximum=1.0, advanced=True)
    network_args: list[str] = opt([], Group.NETWORK,
        "Extra network arguments as key=value: conv_dim=4 conv_alpha=1 (LoCon), "
        "rank_dropout=0.1, module_dropout=0.1, loraplus_lr_ratio=16 (LoRA+: the up "
        "weights learn that many times faster).",
        modes=LORA, advanced=True)
    network_weights: str | None = opt(None, Group.NETWORK,
        "Start from the weights of this LoRA file (continue training).", modes=LORA,
        path="file", must_exist=True, expects="a LoRA .safetensors file")
    dim_from_weights: bool = opt(False, Group.NETWORK,
        "Take network_dim / alpha from the network_weights file.", modes=LORA,
        advanced=True)
    network_train_unet_only: bool = opt(False, Group.NETWORK,
        "Train only the U-Net LoRA.", modes=LORA)
    network_train_text_encoder_only: bool = opt(False, Group.NETWORK,
        "Train only the text-encoder LoRA.", modes=LORA)
    training_comment: str | None = opt(None, Group.NETWORK,
        "Free text stored in the LoRA file's metadata (ss_training_comment).",
        modes=LORA, advanced=True)
    no_metadata: bool = opt(False, Group.NETWORK,
        "Write only the minimum metadata into the LoRA file.", modes=LORA,
        advanced=True)

    # Launch
    num_processes: int = opt(1, Group.LAUNCH,
        "Number of GPUs (processes) to train on; more than 1 launches through accelerate.",
        minimum=1)
    gpu_ids: str | None = opt(None, Group.LAUNCH,
        "Comma-separated GPU ids to use, e.g. 0,1 (default: all).", advanced=True)
    num_cpu_threads_per_process: int | None = opt(None, Group.LAUNCH,
        "CPU threads per training process (default: cores / processes).", minimum=1,
        advanced=True)


OPTIONS: list[Option] = options_of(Config)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}
# What a dataset subset (dataset_config table or concept folder) may set for itself.
SUBSET_OPTIONS: list[Option] = [o for o in OPTIONS if o.subset]


def options_for(mode: str, options: list[Option] | None = None) -> list[Option]:
    return [o for o in (options or OPTIONS) if o.used_in(mode)]
