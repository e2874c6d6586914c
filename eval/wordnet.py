"""WordNet for METEOR, read offline from ``<cache_dir>/nltk_data`` (installed by scripts/setup_wordnet.sh)."""
from __future__ import annotations

from pathlib import Path

from data.errors import InputError
from data.io import cache_dir

SETUP_HINT = "run `bash scripts/setup.sh` (or scripts/setup_wordnet.sh) to install it"


def nltk_data_dir() -> Path:
    return cache_dir() / "nltk_data"


def load_wordnet():
    """NLTK's WordNet reader, loaded; NLTK's own folders are searched first, then ``nltk_data_dir()``.

    Raises InputError naming the fix when WordNet is not installed (NLTK would otherwise print a long
    download banner).
    """
    import nltk

    folder = str(nltk_data_dir())
    if folder not in nltk.data.path:
        nltk.data.path.append(folder)
    from nltk.corpus import wordnet

    try:
        wordnet.get_version()  # the lazy loader reads the corpus on first attribute access
    except LookupError:
        raise InputError(f"the meteor metric needs the WordNet corpus, which NLTK finds neither in its "
                         f"default folders nor in {folder}: {SETUP_HINT}") from None
    return wordnet
