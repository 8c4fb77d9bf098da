#!/usr/bin/env bash
# Checks the README's quick start on a minimal Debian 12 root (issue 16): builds a bookworm
# root with mmdebstrap (variant minbase: no python3, no python3-venv, no g++), copies this
# project into it at /src and runs, as root inside it, the README's two commands
#     cd /src && bash scripts/setup.sh && bash examples/quickstart.sh
# then prints each command's exit status and duration. Needs root on a Debian host.
#
#   bash scripts/fresh_debian_check.sh [--dir DIR] [--mode bwrap|chroot] [--worktree]
#                                      [--reuse-root] [--log FILE] [--dry-run]
#
#   --dir DIR      where the cached root tarball and the working root live
#                  (default /tmp/trtis-fresh-debian); the tarball is reused by later runs
#   --mode         bwrap (default): bubblewrap, network shared; chroot: unshare + chroot with
#                  /proc, /dev, /sys mounted (for a host where nested bubblewrap fails)
#   --worktree     copy the working tree's files (git ls-files: tracked and untracked, not
#                  ignored) instead of `git archive HEAD`
#   --reuse-root   keep the working root of the last run and its /src/.venv (setup.sh then
#                  only adds what is missing; for trying a fix, not for the record); default:
#                  a fresh root unpacked from the cached tarball
#   --log FILE     the trimmed log (default benchmarks/results/fresh-debian-<date>.log)
#   --dry-run      print the sandbox command for the first command and exit
#
# The host's pip configuration is bound in read-only (this machine's pip reads /etc/pip.conf,
# /etc/xdg/pip/ and local wheel directories); nothing the README's commands install comes from
# the host otherwise. The root gets one file besides the project: /usr/sbin/policy-rc.d, so
# that packages do not start their daemons in a root without init; /tmp is a fresh tmpfs with
# mode 1777 as on a real machine (apt's _apt user writes there). nvcc is not in the root and
# not needed: the CPU kernels build without it. quickstart's smoke test runs bubblewrap inside
# the root: that works in both modes. Full output: DIR/logs/; the trimmed log keeps each
# command's output, its head and tail when long.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)

SUITE=bookworm
VARIANT=minbase                      # Essential packages and apt: no python3, no compiler
MIRRORS=("deb http://deb.debian.org/debian $SUITE main"
         "deb http://deb.debian.org/debian $SUITE-updates main"
         "deb http://deb.debian.org/debian-security $SUITE-security main")
# Packages the check root gets beyond the variant: none. Whatever the README's commands need
# must come from scripts/setup.sh (tests/test_fresh_debian.py checks this list stays empty).
ROOT_INCLUDE=()
HOST_TOOLS=(mmdebstrap bubblewrap)   # Debian packages this script needs on the host
# The host's pip configuration and the local package directories it names, bound read-only
# where they exist (extended below by the local paths `pip config list` shows).
PIP_BINDS=(/etc/pip.conf /etc/xdg/pip /opt/wheels /opt/pypi /opt/pypi-more)
# The README's quick start, verbatim (tests/test_fresh_debian.py checks it against README.md).
README_COMMANDS=("bash scripts/setup.sh" "bash examples/quickstart.sh")
SRC=/src
SANDBOX_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
CERT_IN_ROOT=/run/host-pip/ca-certificates.crt

DIR=${FRESH_DEBIAN_DIR:-/tmp/trtis-fresh-debian}
MODE=bwrap
SOURCE=head
REUSE=0
DRY=0
LOG=
while [ $# -gt 0 ]; do
  case $1 in
    --dir) DIR=$2; shift 2 ;;
    --mode) MODE=$2; shift 2 ;;
    --worktree) SOURCE=worktree; shift ;;
    --reuse-root) REUSE=1; shift ;;
    --log) LOG=$2; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "fresh_debian_check: unknown argument $1 (see --help)" >&2; exit 2 ;;
  esac
done
case $MODE in bwrap|chroot) ;; *) echo "fresh_debian_check: --mode is bwrap or chroot" >&2; exit 2 ;; esac
DIR=$(realpath -m "$DIR")
ROOT=$DIR/root
TARBALL=$DIR/$SUITE-$VARIANT.tar
LOGS=$DIR/logs
LOG=${LOG:-$REPO/benchmarks/results/fresh-debian-$(date +%F).log}

# --- the binds: pip configuration, its local directories, the certificate it names ---------
pip_config=$( (python3 -m pip config list || pip config list) 2>/dev/null || true)
while IFS= read -r line; do
  case $line in
    *.find-links=*|*.extra-index-url=*|*.index-url=*|*.constraint=*|*.requirement=*) ;;
    *) continue ;;
  esac
  value=${line#*=}; value=${value//\'/}
  for item in $value; do
    path=${item#file://}
    case $path in /*) ;; *) continue ;; esac
    path=${path%/}; path=${path%/simple}  # an index: its directory, where its links point
    PIP_BINDS+=("$path")
  done
done <<<"$pip_config"
binds=()
for path in "${PIP_BINDS[@]}"; do
  [ -e "$path" ] || continue
  for seen in "${binds[@]}"; do case $path in "$seen"|"$seen"/*) continue 2 ;; esac; done
  binds+=("$path")
done
cert=${PIP_CERT:-$(sed -n "s/^[a-z:]*\.cert='\(.*\)'$/\1/p" <<<"$pip_config" | head -n1)}

# The environment inside: a root login's basics and the host's PIP_* settings.
envs=(PATH="$SANDBOX_PATH" HOME=/root USER=root LOGNAME=root SHELL=/bin/bash)
while IFS='=' read -r key value; do
  case $key in PIP_CERT) ;; PIP_*) envs+=("$key=$value") ;; esac
done < <(env)
cert_bind=()
if [ -n "$cert" ] && [ -f "$cert" ]; then
  # Not over /etc/ssl/certs in the root: a package setup.sh installs may own that path. PIP_CERT
  # overrides the cert of pip.conf.
  cert_bind=("$cert" "$CERT_IN_ROOT")
  envs+=(PIP_CERT="$CERT_IN_ROOT")
fi

# sandbox_command COMMAND: the argv that runs COMMAND with bash in $ROOT at $SRC, as root.
sandbox_command() {
  local command="cd $SRC && $1" path
  if [ "$MODE" = bwrap ]; then
    argv=(bwrap --bind "$ROOT" / --dev /dev --proc /proc --perms 1777 --tmpfs /tmp --perms 1777 --tmpfs /dev/shm
          --ro-bind /sys /sys --ro-bind /etc/resolv.conf /etc/resolv.conf
          --unshare-pid --die-with-parent --clearenv)
    for path in "${binds[@]}"; do argv+=(--ro-bind "$path" "$path"); done
    [ ${#cert_bind[@]} -eq 0 ] || argv+=(--ro-bind "${cert_bind[0]}" "${cert_bind[1]}")
    local kv
    for kv in "${envs[@]}"; do argv+=(--setenv "${kv%%=*}" "${kv#*=}"); done
    argv+=(--chdir / -- /bin/bash -c "$command")
  else
    # A private mount namespace and PID namespace: every mount and process goes with it.
    # The root bound onto itself first: bubblewrap inside (the smoke test) needs / to be a mount.
    local mounts='set -e; r=$1; shift
      mount --bind "$r" "$r"
      mount --rbind /dev "$r/dev"; mount -t proc proc "$r/proc"; mount --rbind /sys "$r/sys"
      mount -t tmpfs -o mode=1777 tmpfs "$r/tmp"; mount -t tmpfs -o mode=1777 tmpfs "$r/dev/shm"
      mount --bind /etc/resolv.conf "$r/etc/resolv.conf"
      while [ "$1" != -- ]; do
        src=$1 dst=$r$2; shift 2
        if [ -d "$src" ]; then mkdir -p "$dst"; else mkdir -p "$(dirname "$dst")"; touch "$dst"; fi
        mount --bind "$src" "$dst"; mount -o remount,bind,ro "$dst"
      done; shift
      exec chroot "$r" "$@"'
    argv=(unshare --mount --pid --fork --propagation private -- bash -c "$mounts" mount "$ROOT")
    for path in "${binds[@]}"; do argv+=("$path" "$path"); done
    [ ${#cert_bind[@]} -eq 0 ] || argv+=("${cert_bind[@]}")
    argv+=(-- /usr/bin/env -i "${envs[@]}" /bin/bash -c "$command")
  fi
}

if [ $DRY = 1 ]; then
  sandbox_command "${README_COMMANDS[0]}"
  printf '%q ' "${argv[@]}"; echo
  exit 0
fi

[ "$(id -u)" = 0 ] || { echo "fresh_debian_check: run as root (mmdebstrap, bubblewrap and the README's setup need it)" >&2; exit 1; }
command -v git >/dev/null || { echo "fresh_debian_check: git is needed to copy the project" >&2; exit 1; }
mkdir -p "$DIR" "$LOGS" "$(dirname "$LOG")"
RUNLOG=$LOGS/run-$(date +%Y%m%dT%H%M%S).log
rm -f "$LOGS"/{probe,setup,quickstart,doctor}.out  # a last run's outputs are not this run's
: >"$LOG"
say() { printf '%s\n' "$*" | tee -a "$LOG" "$RUNLOG"; }
# keep FILE: a command's output into the trimmed log, its head and tail when it is long.
keep() {
  local lines; lines=$(wc -l <"$1")
  if [ "$lines" -le 400 ]; then cat "$1"; else
    head -n 80 "$1"; echo "[... $((lines - 330)) lines left out; all of them in $1 ...]"; tail -n 250 "$1"
  fi | tee -a "$LOG"
}
summary=()
# timed NAME COMMAND...: runs it with its output in $LOGS/NAME.out, records status and time.
timed() {
  local name=$1 start rc; shift
  start=$(date +%s)
  set +e; "$@" >"$LOGS/$name.out" 2>&1; rc=$?; set -e
  LAST_RC=$rc LAST_S=$(( $(date +%s) - start ))
  cat "$LOGS/$name.out" >>"$RUNLOG"
  summary+=("$(printf '%-28s exit %3d  %5ds' "$name" "$rc" "$LAST_S")")
}

say "== fresh Debian check ($(date -u '+%F %T UTC'))"
changes=$(git -C "$REPO" status --porcelain -- . ":(exclude)$(realpath -m --relative-to="$REPO" "$LOG")")
say "project: $(git -C "$REPO" rev-parse HEAD) ($([ -n "$changes" ] && echo 'working tree has changes' || echo 'clean'));" \
    "copied from: $([ $SOURCE = head ] && echo 'git archive HEAD' || echo 'the working tree (git ls-files)')"
say "host: $(. /etc/os-release; echo "$PRETTY_NAME"), kernel $(uname -r), $(nproc) cores; root $ROOT ($MODE)"

# --- host tools -----------------------------------------------------------------------------
missing=()
for pkg in "${HOST_TOOLS[@]}"; do dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg"); done
if [ ${#missing[@]} -gt 0 ]; then
  say "host: installing ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$RUNLOG" 2>&1
fi

# --- the root: the cached tarball, unpacked fresh -------------------------------------------
if [ -s "$TARBALL" ]; then
  say "root: reusing $TARBALL ($(date -r "$TARBALL" '+%F %T'))"
else
  say "root: mmdebstrap --variant=$VARIANT $SUITE (${MIRRORS[*]})"
  timed mmdebstrap mmdebstrap --variant="$VARIANT" --mode=root --format=tar \
    ${ROOT_INCLUDE:+--include="$(IFS=,; echo "${ROOT_INCLUDE[*]}")"} \
    "$SUITE" "$TARBALL.part" "${MIRRORS[@]}"
  say "root: mmdebstrap exit $LAST_RC in ${LAST_S}s (its output: $LOGS/mmdebstrap.out)"
  [ "$LAST_RC" = 0 ] || { tail -n 30 "$LOGS/mmdebstrap.out" | tee -a "$LOG"; exit 1; }
  mv "$TARBALL.part" "$TARBALL"
fi
if [ $REUSE = 1 ] && [ -x "$ROOT/bin/bash" ]; then
  say "root: reusing the working root of the last run and its $SRC/.venv (--reuse-root): NOT fresh"
  find "$ROOT$SRC" -mindepth 1 -maxdepth 1 ! -name .venv -exec rm -rf --one-file-system {} +
else
  rm -rf --one-file-system "$ROOT"
  mkdir -p "$ROOT$SRC"
  tar -xf "$TARBALL" -C "$ROOT"
  say "root: unpacked fresh from the tarball into $ROOT"
fi
# A chroot has no init: a package's postinst must not start its daemon (dockerd, containerd,
# docker-registry) inside it. policy-rc.d is the Debian way to say so; nothing else is added.
printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"; chmod 755 "$ROOT/usr/sbin/policy-rc.d"
# The host's resolv.conf is bound over this file (a symlink would be followed out of the root).
rm -f "$ROOT/etc/resolv.conf"; : >"$ROOT/etc/resolv.conf"

# --- the project at /src --------------------------------------------------------------------
mkdir -p "$ROOT$SRC"
if [ $SOURCE = head ]; then
  git -C "$REPO" archive --format=tar HEAD | tar -xf - -C "$ROOT$SRC"
else
  (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
     | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
     | tar --null -T - -cf -) | tar -xf - -C "$ROOT$SRC"
fi
say "project: $(find "$ROOT$SRC" -path "$ROOT$SRC/.venv" -prune -o -type f -print | wc -l) files at $SRC (not the host's .venv or build/)"
say "binds (read-only): ${binds[*]}${cert_bind:+ ${cert_bind[0]} as ${cert_bind[1]} (PIP_CERT)}; /etc/resolv.conf"
say "environment: ${envs[*]}"

# --- what the root lacks before setup -------------------------------------------------------
sandbox_command 'for t in python3 g++ cmake ninja nvcc bwrap mmdebstrap; do
    printf "%s: %s\n" "$t" "$(command -v "$t" || echo absent)"; done
  dpkg -s python3-venv >/dev/null 2>&1 && echo "python3-venv: installed" || echo "python3-venv: absent"
  echo "packages: $(dpkg-query -f "\${binary:Package}\n" -W | wc -l)"
  ls /etc/ssl/certs/ca-certificates.crt 2>/dev/null || echo "ca-certificates: absent"'
timed probe "${argv[@]}"
say ""; say "== the root before setup ($VARIANT)"; keep "$LOGS/probe.out"
say "(nvcc is not in the root, and not needed: without it the CPU kernels still build)"
[ "$LAST_RC" = 0 ] || { say "fresh_debian_check: the sandbox does not start (exit $LAST_RC)"; exit 1; }

# --- the README's commands, each after the one before it succeeded (&&) ---------------------
status=0
for i in "${!README_COMMANDS[@]}"; do
  command=${README_COMMANDS[$i]}
  name=$(basename "${command##* }" .sh)
  sandbox_command "$command"
  say ""; say "== cd $SRC && $command"
  timed "$name" "${argv[@]}"
  keep "$LOGS/$name.out"
  say "-- $command: exit $LAST_RC in ${LAST_S}s"
  if [ "$LAST_RC" != 0 ]; then status=$LAST_RC; break; fi
done
if [ $status = 0 ]; then  # for the record: the toolchain the README's commands left (nvcc absent)
  sandbox_command ".venv/bin/trtis-build doctor"
  timed doctor "${argv[@]}"
  say ""; say "== trtis-build doctor (informational)"; keep "$LOGS/doctor.out"
fi

say ""; say "== summary ($MODE, root $ROOT)"
for line in "${summary[@]}"; do say "$line"; done
# What the quick start left out on this root (the TensorRT op needs the CUDA headers: no toolkit here).
if [ -f "$LOGS/quickstart.out" ]; then
  grep -E '^ *(skipped|CUDA:) ' "$LOGS/quickstart.out" | sed 's/^ */note: quickstart: /' | while IFS= read -r line; do say "$line"; done
fi
say "result: $([ $status = 0 ] && echo "the README's commands succeed on a minimal $SUITE root" || echo "FAILED (exit $status)")"
say "log: $LOG; full output: $RUNLOG"
exit $status
