#!/usr/bin/env bash
# Install Ansible on the controller (the machine that runs the playbook) if it
# is missing. Idempotent: does nothing when ansible-playbook is already on PATH.
# Uses Debian's own package (ansible-core 2.14 on bookworm); run as root.
set -euo pipefail

if command -v ansible-playbook >/dev/null 2>&1; then
  echo "bootstrap: $(ansible-playbook --version | sed -n 1p) already installed"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "bootstrap: ansible-playbook is missing and this script must run as root to install it" >&2
  exit 1
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "bootstrap: apt-get not found; install ansible-core >= 2.14 by hand" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "bootstrap: installing ansible via apt"
apt-get update -qq
# ansible-core alone is enough (the playbook uses ansible.builtin only), but
# Debian's "ansible" package pulls it in together with the community.general
# collection, which is handy; prefer the smaller ansible-core.
apt-get install -y -qq --no-install-recommends ansible-core >/dev/null
echo "bootstrap: $(ansible-playbook --version | sed -n 1p) installed"
