"""Word-level corpora: tokenisation, vocabulary and locating the files on disk.

Each line is split on whitespace and one ``<eos>`` is appended, as in the AWD-LSTM and
pytorch word_language_model loaders. The vocabulary is the union over train, valid and test.
"""
from __future__ import annotations

import lzma
import os
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from lsh_tune.errors import LSHUsageError, check_int

__all__ = ["Corpus", "Vocabulary", "KNOWN_CORPORA", "check_corpus_size", "load_corpus", "find_corpus_dir",
           "search_dirs"]

KNOWN_CORPORA = ("ptb", "wikitext-2")
SPLITS = ("train", "valid", "test")
EOS = "<eos>"
_VENDORED = Path(__file__).resolve().parent  # lsh_tune/data: holds ptb/ and wikitext-2/ (vendored)


class Vocabulary:
    """Word ↔ id map; ids are assigned in order of first appearance."""

    def __init__(self) -> None:
        self.word2idx: dict[str, int] = {}
        self.idx2word: list[str] = []

    def add(self, word: str) -> int:
        idx = self.word2idx.get(word)
        if idx is None:
            idx = len(self.idx2word)
            self.word2idx[word] = idx
            self.idx2word.append(word)
        return idx

    def __len__(self) -> int:
        return len(self.idx2word)


@dataclass
class Corpus:
    """A tokenised corpus: three 1-D LongTensors of token ids and their vocabulary."""

    name: str
    directory: Path
    vocab: Vocabulary
    train: torch.Tensor
    valid: torch.Tensor
    test: torch.Tensor

    def split(self, name: str) -> torch.Tensor:
        if name not in SPLITS:
            raise LSHUsageError(f"split={name!r} is not allowed; choose one of: {', '.join(SPLITS)}")
        return getattr(self, name)

    def sliced(self, train_tokens: int | None = None, eval_tokens: int | None = None) -> "Corpus":
        """The first ``train_tokens`` ids of the training split and the first ``eval_tokens`` of the
        validation and test splits (``None`` keeps a split whole); the vocabulary is unchanged."""
        check_int("train_tokens", train_tokens, 1, allow_none=True)
        check_int("eval_tokens", eval_tokens, 1, allow_none=True)
        cut = {"train": train_tokens, "valid": eval_tokens, "test": eval_tokens}
        return replace(self, **{s: getattr(self, s)[:n] for s, n in cut.items() if n is not None})

    def info(self) -> dict:
        return {
            "corpus": self.name,
            "directory": str(self.directory),
            "vocab_size": len(self.vocab),
            "tokens": {s: int(self.split(s).numel()) for s in SPLITS},
        }


def search_dirs(data_dir: str | os.PathLike | None = None) -> list[Path]:
    """Directories searched for a named corpus, in order.

    ``data_dir`` (``--data-dir``), then ``$LSH_TUNE_DATA`` (``os.pathsep``-separated), then
    ``./data``, ``../shared/data`` and ``../../shared/data`` relative to the working directory
    and to the repository, then the copies of PTB and WikiText-2 vendored inside the package.
    """
    dirs: list[Path] = []
    if data_dir:
        dirs.append(Path(data_dir))
    env = os.environ.get("LSH_TUNE_DATA")
    if env:
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    dirs.extend(_default_dirs())
    dirs.append(_VENDORED)
    seen: set[Path] = set()
    out = []
    for d in dirs:
        key = d.resolve() if d.exists() else d
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def _default_dirs() -> list[Path]:
    repo = _VENDORED.parents[1]
    out = []
    for base in (Path.cwd(), repo):
        out.extend([base / "data", base.parent / "shared" / "data", base.parent.parent / "shared" / "data"])
    return out


def _split_file(directory: Path, split: str) -> Path | None:
    for name in (f"{split}.txt", f"{split}.txt.xz"):
        p = directory / name
        if p.is_file():
            return p
    return None


def _has_splits(directory: Path) -> bool:
    return all(_split_file(directory, s) is not None for s in SPLITS)


def _some(names: list[str], n: int = 8) -> str:
    return ", ".join(names[:n]) + (f" ... ({len(names)} entries)" if len(names) > n else "") if names else "nothing"


def find_corpus_dir(corpus: str, data_dir: str | os.PathLike | None = None) -> Path:
    """Return the directory holding ``train/valid/test`` of ``corpus``.

    ``corpus`` is a known name (``ptb``, ``wikitext-2``) looked up under :func:`search_dirs`,
    or a path to a directory with ``train``, ``valid`` and ``test`` as ``.txt`` or ``.txt.xz``.

    Raises:
        LSHUsageError: nothing found; the message lists every place looked and how to fix it.
    """
    if corpus not in KNOWN_CORPORA:
        path = Path(corpus)
        if path.is_dir():
            if _has_splits(path):
                return path
            raise LSHUsageError(
                f"corpus directory {str(path)!r} lacks train/valid/test (.txt or .txt.xz); "
                f"found: {_some(sorted(p.name for p in path.iterdir()))}"
            )
        raise LSHUsageError(
            f"corpus={corpus!r} is neither a known corpus ({', '.join(KNOWN_CORPORA)}) "
            "nor a directory holding train/valid/test .txt or .txt.xz files"
        )
    looked = []
    for d in search_dirs(data_dir):
        cand = d / corpus
        looked.append(str(cand))
        if cand.is_dir() and _has_splits(cand):
            return cand
    raise LSHUsageError(
        f"corpus {corpus!r} not found; looked in: {'; '.join(looked)}. "
        f"Put train/valid/test.txt(.xz) under <DIR>/{corpus}/ and pass --data-dir <DIR> "
        "or set LSH_TUNE_DATA=<DIR>"
    )


def _read_lines(path: Path) -> list[str]:
    """The lines of a split file (UTF-8 text, optionally xz).

    Raises:
        LSHUsageError: unreadable, not UTF-8, or binary (NUL bytes) — naming the file.
    """
    try:
        if path.suffix == ".xz":
            with lzma.open(path, "rt", encoding="utf-8") as f:
                text = f.read()
        else:
            text = path.read_text(encoding="utf-8")
    except (OSError, EOFError, lzma.LZMAError, UnicodeDecodeError) as e:
        raise LSHUsageError(f"cannot read corpus file {str(path)!r}: {e}; a split must be UTF-8 text, "
                            "one sentence per line (.txt or .txt.xz)") from None
    if "\0" in text:
        raise LSHUsageError(f"corpus file {str(path)!r} is binary (holds NUL bytes); a split must be UTF-8 text, "
                            "one sentence per line")
    return text.splitlines()


def _check_split(path: Path, n_words: int) -> None:
    """A split must hold words (an empty or blank file trains and evaluates nothing)."""
    if n_words == 0:
        raise LSHUsageError(f"corpus file {str(path)!r} holds no words; every split (train, valid, test) needs "
                            "text, one sentence per line")


def check_corpus_size(corpus: "Corpus", *, batch_size: int, eval_batch_size: int, ls_rows: int | None = None,
                      ls_k: int | None = None) -> None:
    """Raise unless each split is long enough for the batches (and the LS sequences) asked of it.

    Training needs ≥ 2 rows of ``batch_size`` tokens, validation and test ≥ 2 rows of
    ``eval_batch_size``; a Lyapunov spectrum needs ``ls_k`` validation sequences of ``ls_rows``
    tokens each.

    Raises:
        LSHUsageError: naming the split, its token count and what the setting needs.
    """
    needs = {"train": (2 * batch_size, f"batch_size={batch_size} needs 2 rows")}
    for split in ("valid", "test"):
        needs[split] = (2 * eval_batch_size, f"eval_batch_size={eval_batch_size} needs 2 rows")
    if ls_rows is not None and ls_k is not None and ls_rows * ls_k > needs["valid"][0]:
        needs["valid"] = (ls_rows * ls_k, f"the LS needs k={ls_k} sequences of warmup + steps = {ls_rows} tokens")
    for split, (need, why) in needs.items():
        have = int(corpus.split(split).numel())
        if have < need:
            raise LSHUsageError(f"corpus {corpus.name!r}: the {split} split has {have} tokens but {why}, i.e. "
                                f"{need} tokens; use a larger --max-tokens, a larger corpus or smaller batches")


def load_corpus(corpus: str, data_dir: str | os.PathLike | None = None,
                *, max_tokens: int | None = None) -> Corpus:
    """Tokenise a corpus.

    Args:
        corpus: ``ptb``, ``wikitext-2`` or a directory (see :func:`find_corpus_dir`).
        data_dir: extra directory searched first for a named corpus.
        max_tokens: keep only the first ``max_tokens`` ids of each split (after building the
            full vocabulary), for quick runs and tests. ``None`` keeps everything.
    """
    check_int("max_tokens", max_tokens, 1, allow_none=True)
    directory = find_corpus_dir(corpus, data_dir)
    vocab = Vocabulary()
    vocab.add(EOS)
    ids = {}
    for split in SPLITS:
        path = _split_file(directory, split)
        out: list[int] = []
        for line in _read_lines(path):
            for w in line.split():
                out.append(vocab.add(w))
            out.append(vocab.word2idx[EOS])
        _check_split(path, len(out) - out.count(vocab.word2idx[EOS]))
        t = torch.tensor(out, dtype=torch.long)
        if max_tokens is not None:
            t = t[:max_tokens]
        ids[split] = t
    if ids["train"].numel() < 2:
        raise LSHUsageError(f"corpus {str(directory)!r} has an empty training split")
    name = corpus if corpus in KNOWN_CORPORA else Path(corpus).name
    return Corpus(name, directory, vocab, ids["train"], ids["valid"], ids["test"])
