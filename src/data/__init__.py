"""Data layer: every task becomes a LightningDataModule with one interface (see notes on contracts).

    from src.data import build_datamodule
    dm = build_datamodule(task_cfg, batch_size=64, seed=0, run_dir=Path("outputs/run"))

Task config fields (types and defaults; the dataclasses in src/data/configs.py are the source of truth,
"???" = required). Relative paths resolve against the directory the run was started from.

copy | reverse | sort  (seq2seq; SyntheticTaskConfig)
    name: str = "copy"                 copy | reverse | sort
    vocab_size: int = 10               content symbols, shown as 0-9, a-z, then s36, s37, ...
    min_len: int = 1, max_len: int = 10                     lengths of train/val/test
    test_long_min_len: int = 11, test_long_max_len: int = 20 held-out longer lengths (test_long split)
    train_size: int = 10000, val_size: int = 500, test_size: int = 500 (test and test_long each)
addition  (seq2seq; AdditionTaskConfig): src "123+45", tgt "168"
    name: str = "addition"
    min_len: int = 1, max_len: int = 5                      digits per operand
    test_long_min_len: int = 6, test_long_max_len: int = 8
    reverse_digits: bool = False       least-significant digit first
    train_size: int = 10000, val_size: int = 500, test_size: int = 500
char_lm  (lm; CharLMTaskConfig)
    name: str = "char_lm"
    path: str = ???                    UTF-8 text file
    block_size: int = 128
    val_fraction: float = 0.05, test_fraction: float = 0.05  split by position: train | val | test
translation  (seq2seq; TranslationTaskConfig): one sentence per line, files aligned line by line
    name: str = "translation"
    train_src: str = ???, train_tgt: str = ???, val_src: str = ???, val_tgt: str = ???,
    test_src: str = ???, test_tgt: str = ???               (.gz files are read transparently)
    vocab_size: int = 8000             joint BPE vocabulary incl. the 4 special tokens
    max_len: int = 64                  tokens per side before BOS/EOS; longer sentences truncated
    lowercase: bool = False
    train_limit: int = 0               first N training pairs only (0 = all)
multi30k  (seq2seq; Multi30kTaskConfig)
    name: str = "multi30k"
    src_lang: str = "de", tgt_lang: str = "en"             de->en or en->de
    data_dir: Optional[str] = None     None: $XDG_CACHE_HOME or ~/.cache, /transformer-ablations/multi30k
    vocab_size: int = 8000, max_len: int = 64, lowercase: bool = False, train_limit: int = 0
classification  (classification; ClassificationTaskConfig): TSV `sentence<TAB>label`
    name: str = "classification"
    train_path: str = ???
    val_path: Optional[str] = None, test_path: Optional[str] = None   None: split off train by the seed
    has_header: bool = False
    tokenizer: str = "word"            word | bpe
    vocab_size: int = 8000, max_len: int = 128, lowercase: bool = True
    val_fraction: float = 0.1, test_fraction: float = 0.1, train_limit: int = 0
"""

from .configs import (
    TASK_CONFIGS,
    AdditionTaskConfig,
    CharLMTaskConfig,
    ClassificationTaskConfig,
    Multi30kTaskConfig,
    SyntheticTaskConfig,
    TranslationTaskConfig,
)
from .datamodule import TaskDataModule, build_datamodule
from .errors import DataError

__all__ = [
    "build_datamodule",
    "TaskDataModule",
    "DataError",
    "TASK_CONFIGS",
    "SyntheticTaskConfig",
    "AdditionTaskConfig",
    "CharLMTaskConfig",
    "TranslationTaskConfig",
    "Multi30kTaskConfig",
    "ClassificationTaskConfig",
]
