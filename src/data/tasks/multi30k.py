"""multi30k: Multi30k task 1 (Elliott et al. 2016), German-English in either direction.

The six raw gzip files are downloaded once from the dataset's GitHub repository into data_dir and
checked against the SHA-256 sums below; later runs read the local copies. Files already in data_dir
are trusted as they are (so you can supply your own copies). The data is for non-commercial
research/educational use (see the dataset's README); cite Elliott et al. 2016.
"""

from __future__ import annotations

import hashlib
import logging
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..errors import DataError
from ..files import resolve_path
from ..prepared import PreparedTask
from ..registry import TaskSpec, register_task
from ..tokenizer import check_vocab_size
from .translation import build_from_pairs, check_parallel_heads, read_parallel
from .translation import check_settings as check_translation_settings

log = logging.getLogger(__name__)

BASE_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw/"
LANGUAGES = ("de", "en")


@dataclass
class Multi30kTaskConfig:
    """multi30k: Multi30k task 1 German-English (either direction), downloaded once into data_dir."""

    name: str = "multi30k"
    src_lang: str = "de"  # de | en
    tgt_lang: str = "en"  # the other one
    data_dir: Optional[str] = None  # None: $XDG_CACHE_HOME (or ~/.cache)/transformer-ablations/multi30k
    vocab_size: int = 8000
    max_len: int = 64
    lowercase: bool = False
    train_limit: int = 0
    src_prefix: str = ""  # text read in front of every source (translation.TranslationTaskConfig's)


SPLIT_FILES = {"train": "train", "val": "val", "test": "test_2016_flickr"}  # split -> file stem
# SHA-256 of the .gz files (commit c9be912dc05a3ebf9ae5bb5f7f58c1791cda43ab of multi30k/dataset).
SHA256 = {
    "train.en.gz": "d79cfa999dd4c51d2cb42499b6796d5a882c3a8a961923c25a898c90f8bbd56f",
    "train.de.gz": "726e39b2fa9eb9ffb6dc763fb35a179f80fae06ffc5d28b6ace5faa883de28a6",
    "val.en.gz": "14f7d25ddd868909a9213e361768460edcacdd6ab9d1e77b92560dc10c10dc28",
    "val.de.gz": "f0cba2f995189cf5770f29a8a9a537a3ad3f51657ad873405082ff6863a5e75a",
    "test_2016_flickr.en.gz": "611d361c6334bc7246101d48097c13cf5c4413c5befc793cc629934359d532d9",
    "test_2016_flickr.de.gz": "9204244e408ccb38d2a55cfcd344df15005fc42a07a6e55ca6c52b6ababb8cc8",
}


def default_data_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "transformer-ablations" / "multi30k"


def download(url: str, destination: Path) -> None:
    """Fetch url into destination (tests replace this function; they never touch the network)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        destination.write_bytes(response.read())


def ensure_file(data_dir: Path, filename: str) -> Path:
    """data_dir/filename, downloading it first if missing (atomically: .part file, verify, rename)."""
    path = data_dir / filename
    if path.is_file():
        return path
    made = [folder for folder in (data_dir, *data_dir.parents) if not folder.exists()]  # deepest first
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        _download_verified(path)
    except DataError:
        for folder in made:  # a refused run leaves nothing behind: not even the empty folders made for the file
            if folder.exists() and not any(folder.iterdir()):
                folder.rmdir()
        raise
    return path


def _download_verified(path: Path) -> None:
    """Download `path`'s file from the dataset's repository into `path` (through a .part file beside it), checked
    against its published SHA-256; DataError, and no file left, when either fails."""
    partial, url = path.with_name(path.name + ".part"), BASE_URL + path.name
    log.info("downloading %s to %s", url, path)
    try:
        download(url, partial)
    except Exception as error:  # no network, HTTP error, disk full: all end the same way for the user
        partial.unlink(missing_ok=True)
        raise DataError(
            f"{path}: missing and the download from {url} failed ({error}): "
            f"download it by hand into {path.parent} or set task.data_dir to a folder that has the files"
        ) from error
    digest = hashlib.sha256(partial.read_bytes()).hexdigest()
    if digest != SHA256[path.name]:
        partial.unlink(missing_ok=True)
        raise DataError(
            f"{url}: downloaded file has sha256 {digest}, expected {SHA256[path.name]}: retry, or fetch it by hand"
        )
    partial.replace(path)  # atomic on one filesystem: readers never see a half-written file


def check_settings(cfg: Multi30kTaskConfig) -> None:
    check_translation_settings(cfg)
    if cfg.src_lang not in LANGUAGES or cfg.tgt_lang not in LANGUAGES or cfg.src_lang == cfg.tgt_lang:
        raise DataError(
            f"task.src_lang={cfg.src_lang} task.tgt_lang={cfg.tgt_lang}: multi30k is de-en, "
            "use src_lang=de tgt_lang=en or src_lang=en tgt_lang=de"
        )


def split_files(cfg: Multi30kTaskConfig) -> dict[str, tuple[Path, Path]]:
    """split -> (source file, target file) in data_dir, each downloaded first where it is missing."""
    data_dir = resolve_path(cfg.data_dir) if cfg.data_dir else default_data_dir()
    return {
        split: (ensure_file(data_dir, f"{stem}.{cfg.src_lang}.gz"), ensure_file(data_dir, f"{stem}.{cfg.tgt_lang}.gz"))
        for split, stem in SPLIT_FILES.items()
    }


def check_data(cfg: Multi30kTaskConfig, pretrained: bool) -> None:
    """The six files are there (downloaded now where missing, so a failed download is refused before the run
    starts) and read as build_multi30k reads them (see translation.check_parallel_heads)."""
    check_settings(cfg)
    if not pretrained:
        check_vocab_size(cfg.vocab_size)
    for src, tgt in split_files(cfg).values():
        check_parallel_heads(src, tgt, "data_dir", "data_dir")


def build_multi30k(cfg: Multi30kTaskConfig, seed: int, run_dir: Optional[Path], tokenizer=None) -> PreparedTask:
    check_settings(cfg)
    splits = {split: read_parallel(src, tgt, "data_dir", "data_dir") for split, (src, tgt) in split_files(cfg).items()}
    return build_from_pairs(cfg, splits["train"], splits["val"], splits["test"], run_dir, tokenizer)


register_task(
    TaskSpec(
        name="multi30k",
        kind="seq2seq",
        schema=Multi30kTaskConfig,
        build=build_multi30k,
        validate=check_settings,
        check_data=check_data,
        longest_sequence=lambda cfg: cfg.max_len + 1,
        dir_fields=("data_dir",),
        bleu=True,
        generation_slack=16,
        reads_text=True,
    )
)
