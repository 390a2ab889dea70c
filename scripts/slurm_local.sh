#!/usr/bin/env bash
# A real single-node SLURM cluster on loopback, from Debian's packages, for tests and CI.
#
#   scripts/slurm_local.sh up       install (if missing) and start munged, slurmctld, slurmd
#   scripts/slurm_local.sh down     cancel its jobs, stop what `up` started, remove its configs
#   scripts/slurm_local.sh status   what runs (exit 0 when the cluster answers)
#
#   WITH_DBD=1      also start MariaDB + slurmdbd, so that `sacct` works (first install +~25 s)
#   SLURM_STATE=…   state, spool, logs and PID files (default /tmp/isplit-slurm)
#   FORCE=1         overwrite an /etc/slurm/slurm.conf that this script did not write
#
# Needs root, apt and Debian 12 (slurm 22.05, munge 0.5.15). Ports 6817/6818 (6819, 3306 with
# WITH_DBD=1) and /etc/slurm are fixed, so only one such cluster can run per machine: `up`
# refuses to start when someone else's daemon holds a port. No systemd is assumed: every daemon
# is started by hand, and `down` stops a daemon only through the PID file that `up` made it
# write (after checking that the PID still is that program), never by name; daemons that were
# already running before `up` (munged, MariaDB) are left alone.
# One node on loopback, no cgroups (proctrack/linuxproc, task/none): docs/cluster.md, "A real SLURM
# on one machine" says what it sets up and why.
set -euo pipefail

WITH_DBD=${WITH_DBD:-0}
SLURM_STATE=${SLURM_STATE:-/tmp/isplit-slurm}
CONF=/etc/slurm/slurm.conf
DBD_CONF=/etc/slurm/slurmdbd.conf
MARK="# written by isplit scripts/slurm_local.sh"
MUNGE_PID=/run/munge/munged.pid # munged's default PID file
MARIADB_PID=$SLURM_STATE/mysql/mariadb.pid # in a directory the mysql user may write

log() { echo "[slurm_local] $*"; }
die() {
  echo "[slurm_local] error: $*" >&2
  exit 1
}
t0=$(date +%s)
elapsed() { echo "$(($(date +%s) - t0))s"; }

# alive PIDFILE NAME: the PID in PIDFILE runs and is NAME (guards against a reused PID)
alive() {
  local p
  [ -s "$1" ] || return 1
  p=$(cat "$1" 2>/dev/null) || return 1
  [[ "$p" =~ ^[0-9]+$ ]] || return 1
  [ "$(cat "/proc/$p/comm" 2>/dev/null)" = "$2" ]
}

# stop PIDFILE NAME: TERM, wait up to 10 s, then KILL; the PID file is removed
stop() {
  local p i
  if ! alive "$1" "$2"; then
    rm -f "$1"
    return 0
  fi
  p=$(cat "$1")
  log "stopping $2 (pid $p)"
  kill "$p" 2>/dev/null || true
  for i in $(seq 50); do
    kill -0 "$p" 2>/dev/null || break
    sleep 0.2
  done
  if kill -0 "$p" 2>/dev/null; then
    log "$2 (pid $p) ignored TERM; killing it"
    kill -9 "$p" 2>/dev/null || true
  fi
  rm -f "$1"
}

port_open() { (echo >"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() { # wait_for SECONDS DESCRIPTION COMMAND...
  local secs=$1 what=$2 i
  shift 2
  for i in $(seq $((secs * 5))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  die "$what did not come up within ${secs}s (logs: $SLURM_STATE/log/)"
}

cluster_answers() {
  command -v sinfo >/dev/null 2>&1 || return 1
  sinfo -h -o %T 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'
}

status() {
  local rc=0 d
  for d in slurmctld slurmd slurmdbd; do
    if alive "$SLURM_STATE/$d.pid" "$d"; then log "$d: running (pid $(cat "$SLURM_STATE/$d.pid"))"; fi
  done
  if alive "$MUNGE_PID" munged; then log "munged: running (pid $(cat "$MUNGE_PID"))"; fi
  if alive "$MARIADB_PID" mariadbd; then log "mariadbd: running (pid $(cat "$MARIADB_PID"))"; fi
  if cluster_answers; then
    sinfo
    log "up (accounting: $(cat "$SLURM_STATE/mode" 2>/dev/null || echo unknown))"
  else
    log "down"
    rc=1
  fi
  return $rc
}

install_packages() {
  local pkgs="munge slurmctld slurmd slurm-client" missing="" p
  [ "$WITH_DBD" = 1 ] && pkgs="$pkgs slurmdbd mariadb-server"
  for p in $pkgs; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" ||
      missing="$missing $p"
  done
  [ -z "$missing" ] && return 0
  command -v apt-get >/dev/null || die "apt-get not found; install:$missing"
  log "installing:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq -o DPkg::Lock::Timeout=300
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=300 $missing >/dev/null
  log "packages installed after $(elapsed)"
}

write_slurm_conf() {
  local host cpus mem acct
  if [ -e "$CONF" ] && ! grep -qF "$MARK" "$CONF" && [ "${FORCE:-0}" != 1 ]; then
    die "$CONF exists and was not written by this script; set FORCE=1 to overwrite it"
  fi
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(slurmd -C | sed -n 's/.*RealMemory=\([0-9]*\).*/\1/p')
  mem=$((mem * 9 / 10)) # above what slurmd detects, the node would be drained
  if [ "$WITH_DBD" = 1 ]; then
    acct="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=6819"
  else
    acct="AccountingStorageType=accounting_storage/none"
  fi
  mkdir -p /etc/slurm
  # MinJobAge=300 (the SLURM default) keeps finished jobs visible to squeue for 5 min: the
  # Snakemake plugin's `squeue` status mode needs MinJobAge >= 3 x its init seconds.
  cat >"$CONF" <<CONF
$MARK (WITH_DBD=$WITH_DBD)
ClusterName=isplit
SlurmctldHost=${host}(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SlurmctldPidFile=${SLURM_STATE}/slurmctld.pid
SlurmdPidFile=${SLURM_STATE}/slurmd.pid
SlurmctldPort=6817
SlurmdPort=6818
StateSaveLocation=${SLURM_STATE}/state
SlurmdSpoolDir=${SLURM_STATE}/spool
SlurmctldLogFile=${SLURM_STATE}/log/slurmctld.log
SlurmdLogFile=${SLURM_STATE}/log/slurmd.log
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=500
JobAcctGatherType=jobacct_gather/none
${acct}
JobCompType=jobcomp/filetxt
JobCompLoc=${SLURM_STATE}/log/jobcomp.txt
MinJobAge=300
InactiveLimit=0
KillWait=5
SlurmctldTimeout=30
SlurmdTimeout=30
Waittime=0
NodeName=${host} NodeAddr=127.0.0.1 CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
CONF
}

start_munge() {
  if alive "$MUNGE_PID" munged; then
    log "munged already runs (pid $(cat "$MUNGE_PID")); using it"
    return 0
  fi
  if [ ! -s /etc/munge/munge.key ]; then # the Debian postinst normally creates it
    mungekey -c -f -k /etc/munge/munge.key
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  install -d -o munge -g munge -m 0755 /run/munge
  runuser -u munge -- /usr/sbin/munged # daemonizes
  touch "$SLURM_STATE/started-munged"
  wait_for 10 munged sh -c 'munge -n </dev/null | unmunge'
}

start_dbd() {
  if alive "$SLURM_STATE/slurmdbd.pid" slurmdbd; then return 0; fi
  port_open 6819 && die "port 6819 is taken by a slurmdbd this script did not start"
  if ! mariadb -e 'select 1' >/dev/null 2>&1; then
    port_open 3306 && die "port 3306 is taken by a database this script cannot use"
    install -d -o mysql -g mysql /run/mysqld "$SLURM_STATE/mysql"
    setsid /usr/sbin/mariadbd --user=mysql --bind-address=127.0.0.1 \
      --pid-file="$MARIADB_PID" >"$SLURM_STATE/log/mariadb.log" 2>&1 </dev/null &
    local pid=$! i
    for i in $(seq 300); do
      mariadb -e 'select 1' >/dev/null 2>&1 && break
      kill -0 "$pid" 2>/dev/null || die "MariaDB exited: $(tail -2 "$SLURM_STATE/log/mariadb.log")"
      [ "$i" = 300 ] && die "MariaDB did not come up within 60s ($SLURM_STATE/log/mariadb.log)"
      sleep 0.2
    done
  fi
  mariadb -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'isplitci';
              CREATE DATABASE IF NOT EXISTS slurm_acct_db;
              GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost'; FLUSH PRIVILEGES;"
  cat >"$DBD_CONF" <<CONF
$MARK
AuthType=auth/munge
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=${SLURM_STATE}/log/slurmdbd.log
PidFile=${SLURM_STATE}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=localhost
StoragePort=3306
StorageUser=slurm
StoragePass=isplitci
StorageLoc=slurm_acct_db
CONF
  chmod 600 "$DBD_CONF"
  slurmdbd
  wait_for 20 slurmdbd port_open 6819
  sacctmgr -i add cluster isplit >/dev/null 2>&1 || true # also creates account and user root
}

up() {
  [ "$(id -u)" = 0 ] || die "run as root (installs packages, starts system daemons)"
  mkdir -p "$SLURM_STATE"/{state,spool,log}
  if alive "$SLURM_STATE/slurmctld.pid" slurmctld && alive "$SLURM_STATE/slurmd.pid" slurmd &&
    cluster_answers; then
    local mode
    mode=$(cat "$SLURM_STATE/mode" 2>/dev/null || echo "?")
    log "already up (WITH_DBD=$mode); nothing to do"
    [ "$mode" = "$WITH_DBD" ] || log "warning: asked for WITH_DBD=$WITH_DBD; run 'down' first to switch"
    return 0
  fi
  for port in 6817 6818; do
    if port_open "$port" && ! alive "$SLURM_STATE/slurmctld.pid" slurmctld &&
      ! alive "$SLURM_STATE/slurmd.pid" slurmd; then
      die "port $port is taken by a SLURM daemon this script did not start (SLURM_STATE=$SLURM_STATE?)"
    fi
  done
  install_packages
  start_munge
  # the conf is rewritten only while neither SLURM daemon runs
  if ! alive "$SLURM_STATE/slurmctld.pid" slurmctld && ! alive "$SLURM_STATE/slurmd.pid" slurmd; then
    write_slurm_conf
    echo "$WITH_DBD" >"$SLURM_STATE/mode"
  fi
  [ "$WITH_DBD" = 1 ] && start_dbd
  alive "$SLURM_STATE/slurmctld.pid" slurmctld || slurmctld -i # -i: ignore old job state
  alive "$SLURM_STATE/slurmd.pid" slurmd || slurmd
  wait_for 30 "the node" cluster_answers
  sinfo
  timeout 60 srun -t 1 hostname >/dev/null || die "a test job (srun hostname) failed"
  log "cluster up after $(elapsed) (WITH_DBD=$WITH_DBD, state in $SLURM_STATE)"
}

down() {
  # jobs left by a killed workflow would otherwise outlive their slurmd
  if alive "$SLURM_STATE/slurmctld.pid" slurmctld; then
    local jobs
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
      log "cancelling jobs: $(echo "$jobs" | tr '\n' ' ')"
      # shellcheck disable=SC2086
      scancel $jobs 2>/dev/null || true
      sleep 1
    fi
  fi
  stop "$SLURM_STATE/slurmctld.pid" slurmctld
  stop "$SLURM_STATE/slurmd.pid" slurmd
  stop "$SLURM_STATE/slurmdbd.pid" slurmdbd
  stop "$MARIADB_PID" mariadbd
  if [ -e "$SLURM_STATE/started-munged" ]; then
    stop "$MUNGE_PID" munged
    rm -f "$SLURM_STATE/started-munged"
  fi
  # Without a controller, every `scontrol show config` waits ~9 s, and the Snakemake SLURM
  # plugin runs one each time snakemake starts (even for local runs): drop our configs
  # (`up` writes them again), so that SLURM's tools fail at once.
  local f
  for f in "$CONF" "$DBD_CONF"; do
    if [ -e "$f" ] && grep -qF "$MARK" "$f"; then rm -f "$f"; fi
  done
  log "down after $(elapsed)"
}

usage="usage: $0 up|down|status   (env: WITH_DBD=1, SLURM_STATE=dir, FORCE=1)"
case "${1:-}" in
up) up ;;
down) down ;;
status) status ;;
-h | --help) echo "$usage" ;;
*)
  echo "$usage" >&2
  exit 2
  ;;
esac
