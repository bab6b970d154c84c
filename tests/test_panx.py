"""PAN-X reading, the Swiss mix and entity counts, against the published figures and datasets."""
from __future__ import annotations

import pytest

from loaders.conll import NerDataError
from loaders.panx import entity_counts, load_panx, read_panx, swiss_corpus, swiss_indices

# From the data's README: sentences and B- tags per split.
README_COUNTS = {
    ("de", "train"): (20000, 9290, 8575, 9778),
    ("de", "validation"): (10000, 4569, 4281, 4968),
    ("fr", "test"): (10000, 4499, 3885, 4985),
    ("en", "train"): (20000, 9164, 9422, 9345),
}


@pytest.mark.parametrize("lang", ["de", "fr", "en"])
def test_counts_match_the_readme(panx_dir, lang):
    counts = entity_counts(load_panx(lang, panx_dir))
    for (l, split), (n, per, org, loc) in README_COUNTS.items():
        if l == lang:
            assert counts[split] == {"sentences": n, "PER": per, "ORG": org, "LOC": loc}


def test_features_and_first_sentence(panx_dir):
    ds = load_panx("de", panx_dir)
    assert ds["train"].features["ner_tags"].feature.names == ["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"]
    first = (panx_dir / "train-de.tsv").read_text(encoding="utf-8").split("\n\n")[0].splitlines()
    row = ds["train"][0]
    assert row["tokens"] == [line.split("\t")[0] for line in first]
    names = ds["train"].features["ner_tags"].feature.names
    assert [names[t] for t in row["ner_tags"]] == [line.split("\t")[1] for line in first]
    assert set(row["langs"]) == {"de"}


def test_swiss_mix_selects_what_datasets_selects(panx_dir):
    corpus = swiss_corpus(panx_dir, langs=("de", "fr", "it", "en"))
    for lang, frac in {"de": 0.629, "fr": 0.229, "it": 0.084, "en": 0.059}.items():
        full = load_panx(lang, panx_dir)
        for split in ("train", "validation", "test"):
            ref = full[split].shuffle(seed=0).select(range(int(frac * full[split].num_rows)))
            assert corpus[lang][split]["tokens"] == ref["tokens"], (lang, split)
    assert corpus["de"]["train"].num_rows == 12580 and corpus["en"]["test"].num_rows == 590


def test_swiss_indices_hand_sized():
    idx = swiss_indices(10, 0.5, seed=0)
    assert len(idx) == 5 and len(set(idx.tolist())) == 5


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def small_folder(tmp_path, lang="de", body="Berlin\tB-LOC\nist\tO\n\nKöln\tB-LOC\n"):
    for split in ("train", "dev", "test"):
        write(tmp_path / f"{split}-{lang}.tsv", body)
    return tmp_path


def test_malformed_lines_name_file_and_line(tmp_path):
    f = write(tmp_path / "train-de.tsv", "Berlin\tB-LOC\nist\n")
    with pytest.raises(NerDataError, match=r"train-de\.tsv:2: expected 'token \.\.\. tag' columns"):
        read_panx(f, "de")
    f = write(tmp_path / "train-de.tsv", "Berlin\tB-LOC\n\nist\tO\nin\tB-MISC\n")
    with pytest.raises(NerDataError, match=r"train-de\.tsv:4: tag 'B-MISC' is not one of PAN-X's labels"):
        read_panx(f, "de")
    f = write(tmp_path / "train-de.tsv", "Berlin\tB-LOC\n\t O\n")
    with pytest.raises(NerDataError, match=r"train-de\.tsv:2: empty token"):
        read_panx(f, "de")


def test_empty_file_missing_split_unknown_language(tmp_path):
    folder = small_folder(tmp_path)
    write(folder / "dev-de.tsv", "\n\n")
    with pytest.raises(NerDataError, match=r"dev-de\.tsv: no sentences"):
        load_panx("de", folder)
    (folder / "dev-de.tsv").unlink()
    with pytest.raises(NerDataError, match="lacks the split.*dev"):
        load_panx("de", folder)
    with pytest.raises(NerDataError, match="unknown PAN-X language 'xx'"):
        load_panx("xx", folder)


def test_wikiann_layout_and_env_var(tmp_path, monkeypatch):
    for split in ("train", "dev", "test"):
        write(tmp_path / "it" / split, "it:Roma\tB-LOC\nit:è\tO\n")
    monkeypatch.setenv("PANX_DATA_DIR", str(tmp_path))
    ds = load_panx("it")
    assert ds["test"][0]["tokens"] == ["Roma", "è"]


def test_nothing_found_lists_what_was_tried(tmp_path, monkeypatch):
    monkeypatch.setenv("PANX_DATA_DIR", str(tmp_path / "also-missing"))
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(FileNotFoundError) as e:
        load_panx("de", tmp_path / "missing")
    message = str(e.value)
    assert "data_dir" in message and "PANX_DATA_DIR" in message and "google/xtreme" in message


def test_count_table_cli(panx_dir, capsys):
    from loaders.panx import main

    assert main(["--langs", "en", "--data-dir", str(panx_dir)]) == 0
    assert "en    train           20000    9164    9422    9345" in capsys.readouterr().out
