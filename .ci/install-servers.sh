#!/usr/bin/env bash
# Installs the real servers the production end-to-end tests drive (tests/e2e/test_production*.py):
# Apache with mod_wsgi, gunicorn and uWSGI. Run as root on Debian 12; idempotent, and quick
# when everything is already there. The tests skip (saying why) what is missing.
#
# The servers go into their own virtualenv, made with Debian's /usr/bin/python3 in a
# world-readable place: Apache's daemon processes run as nobody and must be able to read
# the interpreter and its packages (see DESIGN.md section 6). The tests look there
# ($RELAUNCH_SERVERS, default /opt/relaunch-servers) when the test interpreter's own
# environment has no gunicorn/uwsgi.
set -euo pipefail

PREFIX=${RELAUNCH_SERVERS:-/opt/relaunch-servers}
PACKAGES=(gunicorn uwsgi mod_wsgi watchfiles pathspec)

need_apt=0
for pkg in apache2 apache2-dev python3-venv python3-dev gcc; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need_apt=1
done
if [ "$need_apt" -eq 1 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends apache2 apache2-dev python3-venv python3-dev gcc >/dev/null
fi

if [ ! -x "$PREFIX/bin/python" ]; then
    /usr/bin/python3 -m venv "$PREFIX"
fi
missing=()
for pkg in "${PACKAGES[@]}"; do
    "$PREFIX/bin/python" -m pip show -q "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
    # uWSGI and mod_wsgi compile from source here (about a minute); pip caches the wheels.
    "$PREFIX/bin/python" -m pip install --quiet --disable-pip-version-check "${missing[@]}"
fi
chmod -R a+rX "$PREFIX"
echo "servers in $PREFIX: $("$PREFIX/bin/gunicorn" --version 2>&1 | head -1); uwsgi $("$PREFIX/bin/uwsgi" --version); $("$PREFIX/bin/mod_wsgi-express" module-location)"
