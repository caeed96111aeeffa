#!/usr/bin/env bash
# The rows of `make bench` that need a loopback sshd, measured side by side
# in one run (each repetition measures a row and its anchors one after the
# other; rows give medians and the median of per-repetition ratios):
#   fakessh: rsync --whole-file of SIZE_MIB through fakessh vs a local-exec
#   shell (the limit: no network) vs OpenSSH, fresh and through a
#   ControlMaster; the latency of `ssh host true` through fakessh vs a
#   ControlMaster and a fresh connection; TRIPS request/response round trips
#   of a program driving `ssh host cat` (bench/roundtrips.py) through
#   fakessh (descriptors handed off, and relayed) vs a ControlMaster.
#   ssh contexts: start (agent not cached / cached) and round trip beside
#   Python mitogen over the same sshd; rsync via fakessh over an ssh context
#   vs plain rsync over ssh; the persistent master's row.
#
# Fair anchors: every command on both sides of a row runs as one bench user
# (BENCH_USER, default mitogenbench) with light login files (a one-line
# ~/.bashrc and ~/.profile, bash as its shell) and its own authorized key:
# fakessh's `--via local` runs the remote command as that user through its
# shell just as sshd does for OpenSSH. The user is created when missing
# (needs root) and reused after; BENCH_USER_REMOVE=1 removes it at the end.
# Needs root (to run sshd and create the user); prints Markdown rows.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MIB=${SIZE_MIB:-1024}
REPS=${REPS:-3}
LOOPS=${LOOPS:-50}
TRIPS=${TRIPS:-20000}
BU=${BENCH_USER:-mitogenbench}

if [ "$(id -u)" != 0 ] || [ ! -x /usr/sbin/sshd ]; then
  echo "| fakessh and ssh rows skipped: they need root and openssh-server to run a loopback sshd | | | | | |"
  exit 0
fi

# The bench user: created once, reused (idempotent), light login files.
if ! id "$BU" >/dev/null 2>&1; then
  useradd -m -s /bin/bash -c "mitogen-go make bench" "$BU"
fi
usermod -p '*' "$BU" # a locked password ("!") makes sshd refuse even keys with UsePAM no
bhome=$(getent passwd "$BU" | cut -d: -f6)
install -d -o "$BU" -g "$BU" -m 700 "$bhome/.ssh"
for f in .bashrc .profile; do
  printf '# light login file for make bench (scripts/bench-ssh.sh)\n' > "$bhome/$f"
  chown "$BU:" "$bhome/$f"
done

w=$(mktemp -d /tmp/mitogen-bench.XXXXXX)
chmod 755 "$w"
u="$w/u" # the bench user's: data, keys, ControlMaster socket
install -d -o "$BU" -g "$BU" -m 700 "$u"
AS=(runuser -u "$BU" -- env -i HOME="$bhome" USER="$BU" LOGNAME="$BU" SHELL=/bin/bash PATH="$PATH" MITOGEN_PERSIST=no)
cleanup() {
  [ -f "$w/sshd.pid" ] && kill "$(cat "$w/sshd.pid")" 2>/dev/null
  "${AS[@]}" ssh -S "$u/cm" -O exit x 2>/dev/null || true
  rm -rf "$w"
  if [ "${BENCH_USER_REMOVE:-0}" = 1 ]; then userdel -r "$BU" 2>/dev/null || true; fi
}
trap cleanup EXIT
mkdir -p /run/sshd "$w/bin"
install -m 755 bin/mitogen "$w/bin/mitogen" # reachable by the bench user
MITOGEN=$w/bin/mitogen
ssh-keygen -q -t ed25519 -N '' -f "$w/hostkey"
"${AS[@]}" ssh-keygen -q -t ed25519 -N '' -f "$u/userkey"
install -o "$BU" -g "$BU" -m 600 "$u/userkey.pub" "$bhome/.ssh/authorized_keys"
port=$((20000 + RANDOM % 20000))
cat > "$w/sshd_config" <<CFG
Port $port
ListenAddress 127.0.0.1
HostKey $w/hostkey
AuthorizedKeysFile .ssh/authorized_keys
PidFile $w/sshd.pid
StrictModes no
UsePAM no
PermitRootLogin no
AllowUsers $BU
MaxSessions 100
Subsystem sftp internal-sftp
CFG
/usr/sbin/sshd -f "$w/sshd_config"
export MITOGEN_PERSIST=no # rows below measure chains of their own; the persistent master has its row
SSHOPTS="-p $port -i $u/userkey -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR -o BatchMode=yes"
H="$BU@127.0.0.1"
for _ in $(seq 50); do "${AS[@]}" ssh $SSHOPTS "$H" true 2>/dev/null && break; sleep 0.1; done
"${AS[@]}" ssh $SSHOPTS -M -S "$u/cm" -fN "$H"

"${AS[@]}" mkdir "$u/src" "$u/dst"
"${AS[@]}" sh -c "head -c $((SIZE_MIB << 20)) /dev/urandom > $u/src/data.bin"
printf '#!/bin/sh\n# a "remote shell" that runs the command here\nshift\nexec "$@"\n' > "$w/bin/lexec"
# roundtrips.py takes the ssh as one word (its start-up is not timed)
printf '#!/bin/sh\nexec ssh -S %s "$@"\n' "$u/cm" > "$w/bin/cmssh"
install -m 755 bench/roundtrips.py "$w/bin/roundtrips.py"
# The floor under any fake ssh written in Go: an empty Go program (static,
# as bin/mitogen is built), then the user's shell running the command as
# sshd starts it (SSH_CLIENT set: Debian's bash then reads ~/.bashrc).
mkdir "$w/emptygo"
printf 'package main\n\nfunc main() {}\n' > "$w/emptygo/main.go"
printf 'module emptygo\n\ngo 1.22\n' > "$w/emptygo/go.mod"
(cd "$w/emptygo" && CGO_ENABLED=0 go build -o "$w/bin/emptygo" .)
chmod 755 "$w/bin/lexec" "$w/bin/cmssh"

now() { date +%s%N; }
# seconds one rsync run of "$@" (as the bench user) takes, dst emptied first
rsync_time() {
  "${AS[@]}" rm -rf "$u/dst"
  "${AS[@]}" mkdir "$u/dst"
  sync
  local t0; t0=$(now)
  "${AS[@]}" "$@" >/dev/null
  local t=$(( $(now) - t0 ))
  cmp -s "$u/src/data.bin" "$u/dst/data.bin" || { echo "bench: copy differs for: $*" >&2; exit 1; }
  awk -v t="$t" 'BEGIN{printf "%.4f", t/1e9}'
}
# ms per `ssh host true` over LOOPS runs of the ssh given (as the bench user;
# with "fake", through fakessh's own ssh in a `mitogen run --via local`)
lat() {
  local loop="t0=\$(date +%s%N); for i in \$(seq $2); do $1 $H true; done; echo \$(( (\$(date +%s%N) - t0) / $2 ))"
  if [ "$1" = fake ]; then
    "${AS[@]}" "$MITOGEN" run --via local -- sh -c "${loop//fake/ssh}"
  else
    "${AS[@]}" sh -c "$loop"
  fi | awk '{printf "%.3f", $1/1e6}'
}
# ms per run of the shell command $1 over $2 runs (as the bench user)
latcmd() {
  "${AS[@]}" sh -c "t0=\$(date +%s%N); for i in \$(seq $2); do $1; done; echo \$(( (\$(date +%s%N) - t0) / $2 ))" |
    awk '{printf "%.3f", $1/1e6}'
}
med() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{if(NR%2) printf "%.4g", v[(NR+1)/2]; else printf "%.4g", (v[NR/2]+v[NR/2+1])/2}'; }
div() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.4g", a/b}'; }

R=(rsync -a --whole-file)
declare -a t_local t_fake t_fresh t_cm r_local r_fresh r_cm l_fake l_cm l_fresh q_cm q_fresh
declare -a p_fake p_relay p_cm k_fake k_relay l_floorgo l_floorc q_floorgo q_floorc
for i in $(seq "$REPS"); do
  a=$(rsync_time "${R[@]}" -e "$w/bin/lexec" "$u/src/" "x:$u/dst/")
  f=$(rsync_time "$MITOGEN" run --via local -- "${R[@]}" "$u/src/" "x:$u/dst/")
  b=$(rsync_time "${R[@]}" -e "ssh $SSHOPTS" "$u/src/" "$H:$u/dst/")
  c=$(rsync_time "${R[@]}" -e "ssh -S $u/cm" "$u/src/" "$H:$u/dst/")
  t_local+=("$a") t_fake+=("$f") t_fresh+=("$b") t_cm+=("$c")
  r_local+=("$(div "$f" "$a")") r_fresh+=("$(div "$f" "$b")") r_cm+=("$(div "$f" "$c")")
  # OpenSSH's ssh run as it is, not through the wrapper scripts (a shell
  # started per ssh would be charged to the anchor)
  lf=$(lat fake "$LOOPS") lc=$(lat "ssh -S $u/cm" "$LOOPS") lr=$(lat "ssh $SSHOPTS" 10)
  l_fake+=("$lf") l_cm+=("$lc") l_fresh+=("$lr")
  fg=$(latcmd "$w/bin/emptygo; SSH_CLIENT='127.0.0.1 1 22' bash -c true" "$LOOPS")
  fc=$(latcmd "/bin/true; SSH_CLIENT='127.0.0.1 1 22' bash -c true" "$LOOPS")
  l_floorgo+=("$fg") l_floorc+=("$fc")
  q_floorgo+=("$(div "$fg" "$lc")") q_floorc+=("$(div "$fc" "$lc")")
  q_cm+=("$(div "$lf" "$lc")") q_fresh+=("$(div "$lf" "$lr")")
  # seconds for TRIPS round trips, the ssh's start-up excluded (roundtrips.py)
  pf=$("${AS[@]}" "$MITOGEN" run --via local -- python3 "$w/bin/roundtrips.py" "$TRIPS" ssh "$H")
  pr=$("${AS[@]}" MITOGEN_FAKESSH_HANDOFF=0 "$MITOGEN" run --via local -- python3 "$w/bin/roundtrips.py" "$TRIPS" ssh "$H")
  pc=$("${AS[@]}" python3 "$w/bin/roundtrips.py" "$TRIPS" "$w/bin/cmssh" "$H")
  p_fake+=("$pf") p_relay+=("$pr") p_cm+=("$pc")
  k_fake+=("$(div "$pf" "$pc")") k_relay+=("$(div "$pr" "$pc")")
done
who="same user ($BU) and login files"
row() { echo "| $1 | $2 | $3 | $4 | $5× | $6 |"; }
row "rsync --whole-file ${SIZE_MIB} MiB via fakessh (--via local)" "$(med "${t_fake[@]}") s" "rsync with a local-exec shell (limit), $who" "$(med "${t_local[@]}") s" "$(med "${r_local[@]}")" "≤ 1.15×"
row "rsync --whole-file ${SIZE_MIB} MiB via fakessh (--via local)" "$(med "${t_fake[@]}") s" "OpenSSH, fresh connection, $who" "$(med "${t_fresh[@]}") s" "$(med "${r_fresh[@]}")" "< 1×"
row "rsync --whole-file ${SIZE_MIB} MiB via fakessh (--via local)" "$(med "${t_fake[@]}") s" "OpenSSH via ControlMaster, $who" "$(med "${t_cm[@]}") s" "$(med "${r_cm[@]}")" "< 1×"
row "\`ssh host true\` via fakessh" "$(med "${l_fake[@]}") ms" "OpenSSH via ControlMaster, $who" "$(med "${l_cm[@]}") ms" "$(med "${q_cm[@]}")" "≤ 0.25×"
row "\`ssh host true\` via fakessh" "$(med "${l_fake[@]}") ms" "OpenSSH, fresh connection, $who" "$(med "${l_fresh[@]}") ms" "$(med "${q_fresh[@]}")" ""
row "floor for a fake ssh in Go: an empty Go program, then the user's shell running \`true\`" "$(med "${l_floorgo[@]}") ms" "OpenSSH via ControlMaster, $who" "$(med "${l_cm[@]}") ms" "$(med "${q_floorgo[@]}")" ""
row "floor for any fake ssh: \`/bin/true\`, then the user's shell running \`true\`" "$(med "${l_floorc[@]}") ms" "OpenSSH via ControlMaster, $who" "$(med "${l_cm[@]}") ms" "$(med "${q_floorc[@]}")" ""
row "$TRIPS request/response round trips through \`ssh host cat\` via fakessh (--via local)" "$(med "${p_fake[@]}") s" "OpenSSH via ControlMaster, $who" "$(med "${p_cm[@]}") s" "$(med "${k_fake[@]}")" "≤ 1×"
row "$TRIPS round trips via fakessh, relayed (MITOGEN_FAKESSH_HANDOFF=0)" "$(med "${p_relay[@]}") s" "OpenSSH via ControlMaster, $who" "$(med "${p_cm[@]}") s" "$(med "${k_relay[@]}")" ""

# ssh contexts beside Python mitogen over the same sshd and user (the
# masters run as root; the remote side is the bench user's).
"$PWD/bin/mitogen-bench" -anchor bench/mitogen_anchor.py -calls 2000 -ssh "ssh:$H:$port" -identity "$u/userkey" -remote-tmp "$u" -mitogen "$MITOGEN" ${BENCH_JSON:+-json}
SSHFLAGS=(--via "ssh:$H:$port" --identity "$u/userkey" --host-key-checking ignore --agent-cache-dir "$u/cache")
"${AS[@]}" "$MITOGEN" exec "${SSHFLAGS[@]}" -- true # install the agent once
declare -a t_sshctx q_sshctx t_fresh2
for i in $(seq "$REPS"); do
  s=$(rsync_time "$MITOGEN" run "${SSHFLAGS[@]}" -- "${R[@]}" "$u/src/" "x:$u/dst/")
  b=$(rsync_time "${R[@]}" -e "ssh $SSHOPTS" "$u/src/" "$H:$u/dst/")
  t_sshctx+=("$s") q_sshctx+=("$(div "$s" "$b")") t_fresh2+=("$b")
done
row "rsync --whole-file ${SIZE_MIB} MiB via fakessh over an ssh context" "$(med "${t_sshctx[@]}") s" "plain rsync over OpenSSH (fresh), $who" "$(med "${t_fresh2[@]}") s" "$(med "${q_sshctx[@]}")" ""
