#!/usr/bin/env bash
# Installs the Debian packages that the test suite drives, only where they are missing:
# chromium (browser tests through Playwright; never a downloaded browser), redis-server
# (tests start their own instance on a free port), prometheus (promtool and a real scrape)
# and the CJK and emoji fonts.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
# Fonts are no commands: ask dpkg. Without them Chinese and emoji render as empty boxes in
# the browser tests' screenshots.
for pkg in fonts-noto-cjk fonts-noto-color-emoji; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "sysdeps: missing ${need[*]}; install them with: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
echo "sysdeps: installing ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
