"""Special token ids, shared by every task's vocabulary and by the model (padding, decoding)."""

PAD_ID = 0
BOS_ID = 1
EOS_ID = 2
UNK_ID = 3
