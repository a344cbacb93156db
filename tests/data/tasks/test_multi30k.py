"""multi30k: local files are used as they are, downloads are atomic and verified, no network in tests."""

from __future__ import annotations

import gzip
import hashlib
from types import SimpleNamespace as task

import pytest

from src.data import DataError, build_datamodule
from src.data.tasks import multi30k
from src.data.tasks.multi30k import SPLIT_FILES
from src.data.tasks.translation import read_parallel

DE = ["Ein Hund läuft.", "Zwei Kinder spielen.", "Eine Frau liest."]
EN = ["A dog runs.", "Two children play.", "A woman reads."]


def write_files(folder):
    for stem in SPLIT_FILES.values():
        for lang, lines in (("de", DE), ("en", EN)):
            (folder / f"{stem}.{lang}.gz").write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode()))


@pytest.fixture
def no_network(monkeypatch):
    def refuse(url, destination):
        raise OSError("network disabled in tests")

    monkeypatch.setattr(multi30k, "download", refuse)


def test_local_files_both_directions(tmp_path, no_network):
    write_files(tmp_path)
    de_en = build_datamodule(task(name="multi30k", data_dir=str(tmp_path), vocab_size=150), batch_size=2, seed=0)
    assert [de_en.decode_src(e["src"]) for e in de_en.task.train] == DE
    assert [de_en.decode_tgt(e["tgt"]) for e in de_en.task.test] == EN
    en_de = build_datamodule(
        task(name="multi30k", data_dir=str(tmp_path), src_lang="en", tgt_lang="de", vocab_size=150),
        batch_size=2,
        seed=0,
    )
    assert [en_de.decode_src(e["src"]) for e in en_de.task.val] == EN
    assert [en_de.decode_tgt(e["tgt"]) for e in en_de.task.val] == DE


def test_missing_file_without_network_is_a_clear_error(tmp_path, no_network):
    write_files(tmp_path)
    (tmp_path / "val.en.gz").unlink()
    with pytest.raises(
        DataError, match=r"val\.en\.gz: missing and the download from .* failed .*task\.data_dir"
    ) as error:
        build_datamodule(task(name="multi30k", data_dir=str(tmp_path)), batch_size=2, seed=0)
    assert "\n" not in str(error.value)
    assert not list(tmp_path.glob("*.part"))


def test_a_failed_download_leaves_no_folder_it_made(tmp_path, monkeypatch, no_network):
    """task.data_dir=<a folder that does not exist>: the folders made to download into are removed with the
    refusal (a folder that was there before, or that holds anything, is kept)."""
    with pytest.raises(DataError, match="missing and the download"):
        multi30k.ensure_file(tmp_path / "typo" / "multi30k", "val.en.gz")
    assert list(tmp_path.iterdir()) == []
    payload = gzip.compress(b"A dog runs.\n")
    monkeypatch.setattr(multi30k, "download", lambda url, destination: destination.write_bytes(payload))
    (tmp_path / "kept").mkdir()
    with pytest.raises(DataError, match="sha256"):
        multi30k.ensure_file(tmp_path / "kept" / "new", "val.en.gz")
    assert [p.name for p in tmp_path.iterdir()] == ["kept"] and list((tmp_path / "kept").iterdir()) == []


def test_download_is_verified_and_atomic(tmp_path, monkeypatch):
    payload = gzip.compress(b"A dog runs.\n")

    def fake_download(url, destination):
        assert url.startswith(multi30k.BASE_URL) and destination.name.endswith(".part")
        destination.write_bytes(payload)

    monkeypatch.setattr(multi30k, "download", fake_download)
    # Wrong checksum: nothing is kept.
    with pytest.raises(DataError, match="sha256"):
        multi30k.ensure_file(tmp_path, "val.en.gz")
    assert list(tmp_path.iterdir()) == []
    # Right checksum: the file appears under its final name.
    monkeypatch.setitem(multi30k.SHA256, "val.en.gz", hashlib.sha256(payload).hexdigest())
    path = multi30k.ensure_file(tmp_path, "val.en.gz")
    assert path.read_bytes() == payload and [p.name for p in tmp_path.iterdir()] == ["val.en.gz"]


def test_bad_language_pair(tmp_path):
    with pytest.raises(DataError, match="use src_lang=de tgt_lang=en or src_lang=en tgt_lang=de"):
        build_datamodule(
            task(name="multi30k", data_dir=str(tmp_path), src_lang="de", tgt_lang="de"), batch_size=2, seed=0
        )


def test_default_data_dir_honours_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert multi30k.default_data_dir() == tmp_path / "transformer-ablations" / "multi30k"


def test_shared_files_match_the_published_checksums(shared_file):
    folder = shared_file("multi30k")
    for name, digest in multi30k.SHA256.items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest


def test_real_files_parse(shared_file, no_network, tmp_path):
    folder = shared_file("multi30k")
    counts = [
        len(read_parallel(folder / f"{stem}.de.gz", folder / f"{stem}.en.gz", "data_dir", "data_dir"))
        for stem in SPLIT_FILES.values()
    ]
    assert counts == [29000, 1014, 1000]
    # The full pipeline on a slice of train (BPE on all 29,000 pairs takes seconds; not needed here).
    cfg = task(name="multi30k", data_dir=str(folder), vocab_size=2000, train_limit=2000)
    dm = build_datamodule(cfg, batch_size=64, seed=0)
    assert (len(dm.task.train), len(dm.task.val), len(dm.task.test)) == (2000, 1014, 1000)
    first = dm.task.train[0]
    assert dm.decode_src(first["src"]) == "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche."
    assert dm.decode_tgt(first["tgt"]) == "Two young, White males are outside near many bushes."
