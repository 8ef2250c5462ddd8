#!/usr/bin/env bash
# Install what the e2e node needs from Debian, idempotently:
#   containerd runc containernetworking-plugins conntrack iptables iproute2 openssl
# apt-get update only when a package is missing. No service is started: the
# harness runs its own containerd (own config, root, state and socket); this
# script checks that nothing was started on the package's default socket by the
# install, and refuses to go on if a systemd-managed containerd is active.
# Progress on stderr; nothing on stdout.
set -euo pipefail
log() { echo "node-packages: $*" >&2; }

pkgs=(containerd runc containernetworking-plugins conntrack iptables iproute2 openssl)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if ((${#missing[@]})); then
  [[ $(id -u) -eq 0 ]] || { log "missing ${missing[*]} and not root: install them yourself"; exit 1; }
  log "installing ${missing[*]}"
  # Keep maintainer scripts from starting services (there is no systemd here,
  # but a sysvinit/policy-less host would start the package's containerd).
  created_policy=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod 755 /usr/sbin/policy-rc.d
    created_policy=1
  fi
  trap '[[ -n "$created_policy" ]] && rm -f /usr/sbin/policy-rc.d' EXIT
  if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then apt-get update -qq >&2; fi
  # The apt lock may be held by a concurrent install (e.g. docker.io): wait for it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "${missing[@]}" >&2
fi

for b in containerd containerd-shim-runc-v2 runc ctr conntrack iptables ip6tables ip openssl; do
  command -v "$b" >/dev/null 2>&1 || { log "$b not found after install"; exit 1; }
done
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/firewall \
  && -x /usr/lib/cni/portmap && -x /usr/lib/cni/loopback ]] \
  || { log "CNI plugins missing in /usr/lib/cni"; exit 1; }

# The Debian package ships only a systemd unit. Make sure it is not running
# (with systemd, an enabled unit would own /run/containerd/containerd.sock; we
# would not collide - our socket is elsewhere - but say so).
if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1 \
   && systemctl is-active --quiet containerd 2>/dev/null; then
  log "note: the system containerd service is active; the harness uses its own socket anyway"
fi
log "ok: containerd $(containerd --version | awk '{print $3}'), runc $(runc --version | awk 'NR==1{print $3}')"
