"""Everything between the user's image folders and a batch of latents and captions.

    ds = build_dataset(cfg, warn=print)        # index folders (headers only) or dataset_config
    ds.summary(); ds.tag_frequency()           # JSON-ready descriptions
    batches = ds.epoch_batches(epoch, global_batch_size)    # deterministic from (seed, epoch)
    ds.load_batch(batches[k], epoch)           # images or cached latents, captions, weights
    cache_latents(ds, encode, vae_id, batch_size=…, to_disk=…)   # trainer.data.latents

Importing this package does not import torch; previews for the GUI stay light.
"""

from .buckets import Placement, Sizing, bucket_sizes
from .dataset import Dataset, DatasetError, build_dataset
from .imageinfo import IMAGE_EXTENSIONS
from .latents import vae_identity
from .plan import SampleRef, rank_slice
from .report import bucket_preview, caption_preview, dataset_report, run_debug_dataset
from .report_text import print_report

__all__ = [
    "IMAGE_EXTENSIONS", "Dataset", "DatasetError", "Placement", "SampleRef", "Sizing",
    "bucket_preview", "bucket_sizes", "build_dataset", "caption_preview", "dataset_report",
    "print_report", "rank_slice", "run_debug_dataset", "vae_identity",
]
