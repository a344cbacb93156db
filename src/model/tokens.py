"""The special token ids of the framework's own vocabularies (src/data/vocab.py puts them first, in this order).

The model never uses these constants: it reads its `TransformerConfig.pad_id / bos_id / eos_id`, which a
pretrained model takes from its own tokenizer (GPT-2 has no pad token, and its id 0 is a real word)."""

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
