#!/usr/bin/env bash
# The rows of `make bench` that need a loopback sshd, measured side by side
# in one run:
#   fakessh: rsync --whole-file of 1 GiB through fakessh vs a local-exec shell
#   (the limit: no network) vs OpenSSH, fresh and through a ControlMaster;
#   the latency of `ssh host true` through fakessh vs a ControlMaster.
#   ssh contexts: start (agent not cached / cached) and round trip beside
#   Python mitogen over the same sshd; rsync via fakessh over an ssh context
#   vs plain rsync over ssh.
# Needs root (to run sshd); prints Markdown rows.
set -euo pipefail
cd "$(dirname "$0")/.."
MITOGEN=$PWD/bin/mitogen
SIZE_MIB=${SIZE_MIB:-1024}
REPS=${REPS:-3}
LOOPS=${LOOPS:-50}

if [ "$(id -u)" != 0 ] || [ ! -x /usr/sbin/sshd ]; then
  echo "| fakessh and ssh rows skipped: they need root and openssh-server to run a loopback sshd | | | | | |"
  exit 0
fi

w=$(mktemp -d /tmp/mitogen-bench.XXXXXX)
cleanup() { [ -f "$w/sshd.pid" ] && kill "$(cat "$w/sshd.pid")" 2>/dev/null; ssh -S "$w/cm" -O exit x 2>/dev/null || true; rm -rf "$w"; }
trap cleanup EXIT
mkdir -p /run/sshd "$w/src" "$w/dst"
ssh-keygen -q -t ed25519 -N '' -f "$w/hostkey"
ssh-keygen -q -t ed25519 -N '' -f "$w/userkey"
cp "$w/userkey.pub" "$w/authorized_keys"
port=$((20000 + RANDOM % 20000))
cat > "$w/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $w/hostkey
AuthorizedKeysFile $w/authorized_keys
PidFile $w/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin prohibit-password
MaxSessions 100
Subsystem sftp internal-sftp
CFG
/usr/sbin/sshd -f "$w/sshd_config"
export MITOGEN_PERSIST=no  # rows below measure chains of their own; the persistent master has its row
SSH=(ssh -p "$port" -i "$w/userkey" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes)
for _ in $(seq 50); do "${SSH[@]}" root@127.0.0.1 true 2>/dev/null && break; sleep 0.1; done
"${SSH[@]}" -M -S "$w/cm" -fN root@127.0.0.1

head -c $((SIZE_MIB << 20)) /dev/urandom > "$w/src/data.bin"
printf '#!/bin/sh\n# a "remote shell" that runs the command here\nshift\nexec "$@"\n' > "$w/lexec"
chmod +x "$w/lexec"
printf '#!/bin/sh\nexec ssh -S %s "$@"\n' "$w/cm" > "$w/cmssh"
chmod +x "$w/cmssh"
printf '#!/bin/sh\nexec ssh -p %s -i %s -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes "$@"\n' "$port" "$w/userkey" > "$w/freshssh"
chmod +x "$w/freshssh"

now() { date +%s%N; }
# median of REPS timings (seconds) of "$@", with dst emptied before each
median_rsync() {
  local ts=()
  for _ in $(seq "$REPS"); do
    rm -rf "$w/dst"; mkdir "$w/dst"; sync
    local t0; t0=$(now)
    "$@" >/dev/null
    ts+=($(( $(now) - t0 )))
    cmp -s "$w/src/data.bin" "$w/dst/data.bin" || { echo "bench: copy differs for: $*" >&2; exit 1; }
  done
  printf '%s\n' "${ts[@]}" | sort -n | sed -n "$(( (REPS + 1) / 2 ))p" | awk '{printf "%.3f", $1/1e9}'
}
R=(rsync -a --whole-file)
t_local=$(median_rsync "${R[@]}" -e "$w/lexec" "$w/src/" "x:$w/dst/")
t_fake=$(median_rsync "$MITOGEN" run --via local -- "${R[@]}" "$w/src/" "x:$w/dst/")
t_fresh=$(median_rsync "${R[@]}" -e "$w/freshssh" "$w/src/" "root@127.0.0.1:$w/dst/")
t_cm=$(median_rsync "${R[@]}" -e "$w/cmssh" "$w/src/" "root@127.0.0.1:$w/dst/")

# latency of `ssh host true`, LOOPS times in one shell, per invocation (ms)
lat_fake=$("$MITOGEN" run --via local -- sh -c "t0=\$(date +%s%N); for i in \$(seq $LOOPS); do ssh h true; done; echo \$(( (\$(date +%s%N) - t0) / $LOOPS ))" | awk '{printf "%.2f", $1/1e6}')
lat_cm=$(sh -c "t0=\$(date +%s%N); for i in \$(seq $LOOPS); do $w/cmssh root@127.0.0.1 true; done; echo \$(( (\$(date +%s%N) - t0) / $LOOPS ))" | awk '{printf "%.2f", $1/1e6}')
lat_fresh=$(sh -c "t0=\$(date +%s%N); for i in \$(seq 10); do $w/freshssh root@127.0.0.1 true; done; echo \$(( (\$(date +%s%N) - t0) / 10 ))" | awk '{printf "%.2f", $1/1e6}')

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.3g×", a/b}'; }
echo "| rsync --whole-file ${SIZE_MIB} MiB via fakessh | ${t_fake} s | local-exec shell (limit) | ${t_local} s | $(ratio "$t_fake" "$t_local") | ≤ 1.15× |"
echo "| rsync --whole-file ${SIZE_MIB} MiB via fakessh | ${t_fake} s | OpenSSH, fresh connection | ${t_fresh} s | $(ratio "$t_fake" "$t_fresh") | < 1× |"
echo "| rsync --whole-file ${SIZE_MIB} MiB via fakessh | ${t_fake} s | OpenSSH via ControlMaster | ${t_cm} s | $(ratio "$t_fake" "$t_cm") | < 1× |"
echo "| \`ssh host true\` via fakessh | ${lat_fake} ms | OpenSSH via ControlMaster | ${lat_cm} ms | $(ratio "$lat_fake" "$lat_cm") | ≤ 0.2× |"
echo "| \`ssh host true\` via fakessh | ${lat_fake} ms | OpenSSH, fresh connection | ${lat_fresh} ms | $(ratio "$lat_fake" "$lat_fresh") | |"

# ssh contexts beside Python mitogen over the same sshd.
"$PWD/bin/mitogen-bench" -anchor bench/mitogen_anchor.py -calls 2000 -ssh "ssh:root@127.0.0.1:$port" -identity "$w/userkey"
SSHFLAGS=(--via "ssh:root@127.0.0.1:$port" --identity "$w/userkey" --host-key-checking ignore --agent-cache-dir "$w/cache")
"$MITOGEN" exec "${SSHFLAGS[@]}" -- true  # install the agent once
t_sshctx=$(median_rsync "$MITOGEN" run "${SSHFLAGS[@]}" -- "${R[@]}" "$w/src/" "x:$w/dst/")
echo "| rsync --whole-file ${SIZE_MIB} MiB via fakessh over an ssh context | ${t_sshctx} s | plain rsync over OpenSSH (fresh) | ${t_fresh} s | $(ratio "$t_sshctx" "$t_fresh") | |"
