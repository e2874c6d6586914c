#!/usr/bin/env bash
# Installs WordNet 3.0 where NLTK finds it offline, for the METEOR metric (eval/metrics.py). Idempotent.
#
#   bash scripts/setup_wordnet.sh          # target: ${LAMPKIT_CACHE:-$HOME/.cache/lampkit}/nltk_data
#
# Debian/Ubuntu as root: installs wordnet-base + wordnet-sense-index with apt (if missing) and copies
# their dictionary files into nltk_data/corpora/wordnet/, writing the `lexnames` file that NLTK's
# WordNetCorpusReader needs and Debian does not ship. Elsewhere it tries NLTK's downloader; when
# neither works it says so and exits 0: everything but METEOR still works.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then
  sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'
  exit 0
fi

nltk_data="${LAMPKIT_CACHE:-$HOME/.cache/lampkit}/nltk_data"
target="$nltk_data/corpora/wordnet"
debian_dict=/usr/share/wordnet
python=python3
[ -x .venv/bin/python ] && python=.venv/bin/python

# What WordNetCorpusReader opens (nltk/corpus/reader/wordnet.py: _FILES).
wordnet_files=(cntlist.rev index.sense
               index.adj index.adv index.noun index.verb
               data.adj data.adv data.noun data.verb
               adj.exc adv.exc noun.exc verb.exc)

wordnet_loads() {
  # Same lookup as eval/wordnet.py: NLTK's default folders plus $nltk_data.
  NLTK_DATA_DIR="$nltk_data" "$python" - <<'EOF' 2>/dev/null
import os, sys
import nltk
nltk.data.path.append(os.environ["NLTK_DATA_DIR"])
from nltk.corpus import wordnet
dog = wordnet.synsets("dog")
sys.exit(0 if dog and wordnet.get_version() else 1)
EOF
}

write_lexnames() {
  # The 45 lexicographer files of WordNet 3.0 (lexnames(5WN)): number, name, syntactic category
  # (1 noun, 2 verb, 3 adjective, 4 adverb). NLTK asserts that line i holds number i.
  local names=(adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute
               noun.body noun.cognition noun.communication noun.event noun.feeling noun.food
               noun.group noun.location noun.motive noun.object noun.person noun.phenomenon
               noun.plant noun.possession noun.process noun.quantity noun.relation noun.shape
               noun.state noun.substance noun.time verb.body verb.change verb.cognition
               verb.communication verb.competition verb.consumption verb.contact verb.creation
               verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative
               verb.weather adj.ppl)
  local tmp i category
  tmp="$(mktemp "$target/.lexnames.XXXXXX")"
  for i in "${!names[@]}"; do
    case "${names[$i]}" in
      noun.*) category=1 ;; verb.*) category=2 ;; adv.*) category=4 ;; *) category=3 ;;
    esac
    printf '%02d\t%s\t%d\n' "$i" "${names[$i]}" "$category" >>"$tmp"
  done
  chmod 644 "$tmp"
  mv "$tmp" "$target/lexnames"
}

if wordnet_loads; then
  echo "WordNet for METEOR: ready (NLTK finds it; nltk_data folder $nltk_data)"
  exit 0
fi

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if ! dpkg -s wordnet-base wordnet-sense-index >/dev/null 2>&1; then
    echo "installing WordNet 3.0 with apt (wordnet-base, wordnet-sense-index)"
    # Package lists may be missing on a fresh machine: update once and retry.
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q wordnet-base wordnet-sense-index >/dev/null \
      || { apt-get update -q >/dev/null && \
           DEBIAN_FRONTEND=noninteractive apt-get install -y -q wordnet-base wordnet-sense-index >/dev/null; } \
      || echo "apt could not install WordNet"
  fi
fi

if [ -f "$debian_dict/data.noun" ] && [ -f "$debian_dict/index.sense" ]; then
  mkdir -p "$target"
  # Copies (35 MB), not links: NLTK >= 3.9 refuses symlinks leaving the corpus folder and hard links.
  for name in "${wordnet_files[@]}" lexnames; do
    if [ -f "$debian_dict/$name" ]; then
      install -m 0644 "$debian_dict/$name" "$target/$name"
    fi
  done
  if [ ! -f "$target/lexnames" ]; then
    write_lexnames
  fi
else
  echo "no system WordNet; trying NLTK's downloader"
  "$python" -m nltk.downloader -q -d "$nltk_data" wordnet >/dev/null 2>&1 || true
fi

if wordnet_loads; then
  echo "WordNet for METEOR: installed in $target"
elif [ -f "$target/data.noun" ]; then
  echo "WordNet files are in $target but NLTK cannot load them; METEOR will not work" \
       "(check: $python -c 'from nltk.corpus import wordnet; wordnet.synsets(\"dog\")')"
else
  echo "WordNet is unavailable (no apt as root and NLTK's downloader failed): the METEOR metric will" \
       "not work; every other metric does. Re-run scripts/setup.sh where apt or the network is available."
fi
