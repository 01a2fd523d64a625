#!/usr/bin/env bash
# Install everything the test suite needs on a Debian machine with Python >= 3.11, then run it all.
# Peers: DCMTK and Orthanc from Debian's packages; pynetdicom, pytest, hypothesis from PyPI.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in dcmtk orthanc; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
# Debian's own python3 refuses pip installs (PEP 668): the suite then runs in a venv in the checkout.
managed=""
if [ -z "${VIRTUAL_ENV:-}" ] && [ -f "$(python3 -c 'import sysconfig; print(sysconfig.get_path("stdlib"))')/EXTERNALLY-MANAGED" ]; then
  managed=1
  python3 -c "import ensurepip" 2>/dev/null || need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
  for attempt in 1 2 3 4 5; do   # apt may be locked for a moment by another process
    if $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"; then
      break
    fi
    [ "$attempt" -eq 5 ] && { echo "apt-get install ${need[*]} failed" >&2; exit 1; }
    sleep 10
  done
  # The orthanc package may start a system service on port 4242/8042; the tests run their own.
  ($sudo service orthanc stop >/dev/null 2>&1 || true)
fi

python=python3
if [ -n "$managed" ]; then
  [ -x .venv/bin/python ] || python3 -m venv .venv
  python=.venv/bin/python
fi
"$python" -m pip install -q -e ".[test,convert]"
exec "$python" -m pytest "$@"
