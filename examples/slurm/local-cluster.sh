#!/usr/bin/env bash
# A one-node Slurm cluster on this machine, for trying examples/slurm/sweep.slurm
# (and for CI, test/slurm.test.ts) without a real cluster:
#
#   examples/slurm/local-cluster.sh start [DIR]   # munged, slurmctld, slurmd; waits for the node
#   export SLURM_CONF=DIR/slurm.conf              # (start prints this line)
#   sbatch --array=0-1 --cpus-per-task=1 examples/slurm/sweep.slurm
#   examples/slurm/local-cluster.sh stop [DIR]    # cancels jobs, stops the daemons, removes DIR
#
# DIR holds everything (config, munge key and socket, state, spool, logs, pid
# files); default ${TMPDIR:-/tmp}/stoxnet-slurm. Nothing is written to
# /etc/slurm or /etc/munge, so the cluster does not touch a Slurm or MUNGE
# already configured on the machine. Ports: $SLURMCTLD_PORT (6817) and
# $SLURMD_PORT (6818), both on 127.0.0.1.
#
# Needs root (slurmd starts every job as the submitting user, which only root
# can do) and Debian's packages: apt-get install --no-install-recommends
# slurm-wlm munge (.ci/run does). Written for a container: no systemd, no cgroups.
set -euo pipefail

usage() {
  echo "usage: $0 start|stop|status [DIR]   (DIR default: \${TMPDIR:-/tmp}/stoxnet-slurm)" >&2
  exit 2
}
die() {
  echo "local-cluster: $*" >&2
  exit 1
}

[ $# -ge 1 ] && [ $# -le 2 ] || usage
# The daemons are in /usr/sbin, which a non-login root shell may not have on PATH.
PATH=$PATH:/usr/sbin:/sbin
cmd=$1
DIR=${2:-${TMPDIR:-/tmp}/stoxnet-slurm}
# stop removes DIR only if start made it (this file is in it), never a folder given by mistake.
MARK=.stoxnet-local-cluster
CTLD_PORT=${SLURMCTLD_PORT:-6817}
SLURMD_PORT=${SLURMD_PORT:-6818}

alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# Prints the last lines of each log, for a start that failed.
show_logs() {
  for f in "$DIR"/log/*.log; do
    [ -f "$f" ] || continue
    echo "--- $f (last 15 lines)" >&2
    tail -n 15 "$f" >&2
  done
}

# A start that failed half way: the logs, and how to stop what did start.
fail_start() {
  show_logs
  die "$*; logs in $DIR/log; stop what started with: $0 stop $DIR"
}

# Sends SIGTERM to the daemon of a pid file, waits up to 10 s, then SIGKILL.
stop_daemon() {
  local pidfile=$1 name=$2 pid
  alive "$pidfile" || return 0
  pid=$(cat "$pidfile")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 100); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "local-cluster: $name (pid $pid) ignored SIGTERM for 10 s; killing it" >&2
  kill -9 "$pid" 2>/dev/null || true
}

start() {
  [ "$(id -u)" = 0 ] || die "must run as root: slurmd starts jobs as the submitting user, and munged and slurmd here run as root"
  local missing=()
  for b in munged munge slurmctld slurmd sinfo sbatch; do command -v "$b" >/dev/null || missing+=("$b"); done
  [ ${#missing[@]} = 0 ] || die "not installed: ${missing[*]}; on Debian or Ubuntu: apt-get install --no-install-recommends slurm-wlm munge"
  if [ -e "$DIR/$MARK" ]; then
    if alive "$DIR/slurmctld.pid" || alive "$DIR/slurmd.pid" || alive "$DIR/munged.pid"; then
      die "a cluster is already running in $DIR; stop it first: $0 stop $DIR"
    fi
    rm -rf "$DIR" # left over from a start that was killed
  elif [ -e "$DIR" ] && [ -n "$(ls -A "$DIR")" ]; then
    die "$DIR exists and is not empty; give an empty or new folder"
  fi
  # Two clusters (or a system Slurm) on one port would talk to each other's daemons.
  for port in "$CTLD_PORT" "$SLURMD_PORT"; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      die "port $port on 127.0.0.1 is in use (another Slurm?); choose others with SLURMCTLD_PORT and SLURMD_PORT"
    fi
  done

  mkdir -p "$DIR"
  DIR=$(cd "$DIR" && pwd) # slurm.conf needs absolute paths
  touch "$DIR/$MARK"
  mkdir -p "$DIR/state" "$DIR/spool" "$DIR/log" "$DIR/munge"
  # munged refuses a key that others can read, or in a folder they can write to.
  chmod 700 "$DIR/munge"

  # MUNGE authenticates every message between the Slurm commands and daemons;
  # a fresh random key per cluster (1 KiB, as MUNGE's installation guide makes
  # one with dd).
  dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 status=none
  chmod 400 "$DIR/munge/munge.key"
  local sock=$DIR/munge/munge.socket
  # --force: munged refuses a socket below any folder that not every user can
  # enter (so that every user's jobs can reach it), and DIR may be inside a
  # private temporary folder (mode 700). Only root talks to this munged.
  munged --force --socket="$sock" --key-file="$DIR/munge/munge.key" --pid-file="$DIR/munged.pid" \
    --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/munged.seed" ||
    fail_start "munged did not start"
  munge -n -S "$sock" | unmunge -S "$sock" >/dev/null || fail_start "munged runs but a credential does not round-trip through $sock"

  # This machine as slurmd sees it: the first line of `slurmd -C` is a ready
  # NodeName line (CPUs, sockets, cores, threads, RealMemory in MB).
  local node host
  node=$(slurmd -C | head -n 1)
  [[ $node == NodeName=* ]] || die "unexpected output of slurmd -C: $node"
  host=${node#NodeName=}
  host=${host%% *}

  cat >"$DIR/slurm.conf" <<EOF
# Written by examples/slurm/local-cluster.sh: a one-node cluster on $host.
ClusterName=stoxnet-local
# The address is given, so the cluster works whether or not $host resolves.
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
# root: in a container root is the only user; a real cluster runs slurmctld
# as an unprivileged "slurm" account that owns StateSaveLocation.
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
# Containers have no writable cgroup tree: processes are tracked through
# /proc and tasks are not bound to cores.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
# No mail is sent from here; a missing default MailProg is logged as an error.
MailProg=/bin/true
# Not /etc/slurm/plugstack.conf: no SPANK plugins of the machine's Slurm.
PlugStackConfig=$DIR/plugstack.conf
# Cores are the consumable resource, so array tasks share the node as their
# --cpus-per-task allow (memory is not scheduled: --mem is only checked).
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
# A job that asks for more than the node has (say the script's 4 CPUs on a
# 2-CPU machine) is refused by sbatch, rather than left pending for ever.
EnforcePartLimits=ALL
# The node comes up idle as soon as slurmd registers, also after a restart.
ReturnToService=2
SlurmdTimeout=60
$node State=UNKNOWN NodeAddr=127.0.0.1
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
  : >"$DIR/plugstack.conf"

  # -i: no saved state to recover (a new StateSaveLocation); -c: start clean.
  slurmctld -f "$DIR/slurm.conf" -c -i || fail_start "slurmctld did not start"
  slurmd -f "$DIR/slurm.conf" || fail_start "slurmd did not start"

  # The node is usable when slurmctld reports it idle (slurmd registered).
  local state=""
  for _ in $(seq 60); do
    state=$(SLURM_CONF=$DIR/slurm.conf sinfo -h -N -n "$host" -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 1
  done
  if [ "$state" != idle ]; then
    SLURM_CONF=$DIR/slurm.conf sinfo -N -l >&2 || true
    fail_start "node $host is not idle after 60 s (state: ${state:-no answer from slurmctld})"
  fi
  echo "local-cluster: node $host idle in partition local ($(sed -n 's/.*\(CPUs=[0-9]*\).*/\1/p' <<<"$node"))" >&2
  echo "export SLURM_CONF=$DIR/slurm.conf"
}

stop() {
  [ -e "$DIR/$MARK" ] || die "no cluster of this script in $DIR"
  if alive "$DIR/slurmctld.pid"; then
    # Jobs first: a job's slurmstepd outlives slurmd, so cancel and wait for them.
    SLURM_CONF=$DIR/slurm.conf scancel --full --user="$(id -un)" 2>/dev/null || true
    for _ in $(seq 30); do
      [ -z "$(SLURM_CONF=$DIR/slurm.conf squeue -h -o %i 2>/dev/null)" ] && break
      sleep 1
    done
  fi
  stop_daemon "$DIR/slurmd.pid" slurmd
  stop_daemon "$DIR/slurmctld.pid" slurmctld
  stop_daemon "$DIR/munged.pid" munged
  rm -rf "$DIR"
  echo "local-cluster: stopped; removed $DIR" >&2
}

status() {
  [ -e "$DIR/$MARK" ] || die "no cluster of this script in $DIR"
  SLURM_CONF=$DIR/slurm.conf sinfo -N -l
  SLURM_CONF=$DIR/slurm.conf squeue
}

case $cmd in
start) start ;;
stop) stop ;;
status) status ;;
*) usage ;;
esac
