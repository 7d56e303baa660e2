#!/usr/bin/env bash
# Install what caveat needs on a fresh Debian/Ubuntu machine, idempotently:
#   system tools (bowtie2, bwa, samtools, bcftools, tabix; chromium and Java for the tests)
#   from the distribution when root, and the Python package into .venv.
# Usage: scripts/setup.sh [--test]     (--test adds the test-only tools)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

need=()
for tool in bowtie2 bowtie2-build samtools bcftools tabix bgzip bwa; do
  command -v "$tool" >/dev/null 2>&1 || need+=("$tool")
done
pkgs=()
for t in "${need[@]}"; do
  case "$t" in
    bowtie2|bowtie2-build) pkgs+=(bowtie2) ;;
    tabix|bgzip) pkgs+=(tabix) ;;
    *) pkgs+=("$t") ;;
  esac
done
if (( want_test )); then
  command -v chromium >/dev/null 2>&1 || pkgs+=(chromium)
  command -v java >/dev/null 2>&1 || pkgs+=(openjdk-17-jre-headless)
fi
if (( ${#pkgs[@]} )); then
  mapfile -t pkgs < <(printf '%s\n' "${pkgs[@]}" | sort -u)
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${pkgs[*]} (apt)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
  else
    echo "setup: missing ${pkgs[*]}; install them (e.g. apt-get install ${pkgs[*]}, or conda -c bioconda)" >&2
    exit 1
  fi
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv"
  python3 -m venv .venv
fi
# torch is pinned (==2.13.0) in pyproject.toml: an unpinned torch pulls gigabytes of CUDA wheels.
stamp=.venv/.caveat-installed
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
  echo "setup: installing caveat and its Python dependencies into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 | grep -v '^WARNING: Location' || true
  .venv/bin/python -c "import caveat, torch, pysam, pyBigWig" 
  touch "$stamp"
fi
if (( want_test )) && [[ -x scripts/fetch_nextflow_ls.sh ]]; then
  scripts/fetch_nextflow_ls.sh || echo "setup: Nextflow language server not fetched (its tests will say so)" >&2
fi
echo "setup: ok"
