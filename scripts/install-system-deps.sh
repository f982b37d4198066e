#!/usr/bin/env bash
# Installs the Debian packages onemap needs, only when missing:
#   postgresql-15-postgis-3  the embedded PostGIS (PostgreSQL 15 + PostGIS 3)
#   postgresql-15-pgrouting  pgRouting (road-network dispatch: shortest paths on the roads layer)
#   proj-data                EGM96 geoid grid (egm96_15.gtx) for orthometric -> ellipsoidal heights
#   chromium                 headless browser for the viewer's end-to-end tests (tests only)
#   fonts-noto-cjk           Chinese glyphs in the browser tests' screenshots (tests only)
set -euo pipefail
want=(postgresql-15-postgis-3 postgresql-15-pgrouting proj-data)
if [[ "${1:-}" == "--with-browser" ]]; then want+=(chromium fonts-noto-cjk); fi
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]} == 0)); then exit 0; fi
echo "installing Debian packages: ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "error: need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
