#!/usr/bin/env bash
# Installs the Debian packages ocpv-dr's tests and demo need. As root it uses
# apt-get; otherwise it prints the exact packages to install and fails.
set -euo pipefail
PKGS=(ansible ansible-lint yamllint openssh-server openssh-client rsync python3-kubernetes python3-boto3 python3-jmespath python3-pytest jq prometheus xfsprogs chromium)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}" >&2
  echo "install them with: sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
