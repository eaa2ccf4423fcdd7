#!/usr/bin/env bash
# A single-node SLURM cluster on localhost with fake GPUs, for tests/test_slurm.py and for trying profiles/slurm.
#
#   tests/cluster/slurm_up.sh start    install slurm-wlm + munge if missing (apt), write configs, start the daemons
#   tests/cluster/slurm_up.sh stop     stop exactly the daemons this script started (PIDs from its pid files)
#   tests/cluster/slurm_up.sh status   print what is running; exit 0 when the node is usable
#   tests/cluster/slurm_up.sh smoke    one --gpus=1 job that must see CUDA_VISIBLE_DEVICES
#
# Exit 77 (with the reason on stderr) where this machine cannot host it: not root, no apt-get, or a SLURM that this
# script did not set up is already configured or running (it is never touched).
#
# Partitions: SLURM_PARTITION (default, CPU jobs) and gpu (GPU jobs), both over the one node, as profiles/slurm asks.
# Environment: SLURM_FAKE_GPUS (2), SLURM_PARTITION (main), MMGENREC_SLURM_PREFIX (/tmp/mmgenrec-slurm: state,
# spool, logs, pid files, munge socket and key). slurm.conf and gres.conf must live in /etc/slurm: the plugin's job
# step strips SLURM_CONF from the environment before its nested srun.
#
# No accounting daemon: `sacct` does not work, so profiles/slurm sets `slurm-status-command: squeue` and
# MinJobAge keeps finished jobs visible to squeue for 10 minutes.
set -euo pipefail

PREFIX=${MMGENREC_SLURM_PREFIX:-/tmp/mmgenrec-slurm}
GPUS=${SLURM_FAKE_GPUS:-2}
PARTITION=${SLURM_PARTITION:-main}
MARK="# written by mmgenrec tests/cluster/slurm_up.sh"
CONF=/etc/slurm/slurm.conf
GRES=/etc/slurm/gres.conf
MUNGE_DIR=$PREFIX/munge
SOCKET=$MUNGE_DIR/munge.socket.2

cannot() { echo "slurm_up.sh: cannot run here: $*" >&2; exit 77; }
log() { echo "slurm_up.sh: $*" >&2; }

alive() {  # alive <pidfile> <comm>: the recorded process is running and is what we started
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ -r /proc/$pid/comm && $(</proc/$pid/comm) == "$2" ]]
}

install_packages() {
    if command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
        && command -v sbatch >/dev/null; then
        return
    fi
    [[ $(id -u) == 0 ]] || cannot "slurm-wlm/munge are missing and installing them needs root"
    command -v apt-get >/dev/null || cannot "slurm-wlm/munge are missing and there is no apt-get"
    log "installing slurm-wlm and munge (apt)"
    export DEBIAN_FRONTEND=noninteractive
    if ! apt-cache show slurm-wlm >/dev/null 2>&1; then
        apt-get update -q >&2 || cannot "apt-get update failed"
    fi
    apt-get install -y -q --no-install-recommends slurm-wlm munge >&2 || cannot "apt-get install slurm-wlm munge failed"
}

check_foreign() {
    if [[ -e $CONF ]] && ! grep -qF "$MARK" "$CONF"; then
        cannot "$CONF exists and was not written by this script; not touching a real SLURM set-up"
    fi
    local p
    for p in $(pgrep -x slurmctld || true) $(pgrep -x slurmd || true); do
        if [[ $p != $(cat "$PREFIX/run/slurmctld.pid" 2>/dev/null) && $p != $(cat "$PREFIX/run/slurmd.pid" 2>/dev/null) ]]; then
            cannot "a SLURM daemon this script did not start is running (pid $p)"
        fi
    done
}

write_if_changed() {  # write_if_changed <file> <content>: returns 0 when the file changed
    if [[ -f $1 ]] && [[ "$(cat "$1")" == "$2" ]]; then return 1; fi
    mkdir -p "$(dirname "$1")"
    printf '%s\n' "$2" >"$1.tmp" && mv "$1.tmp" "$1"
    return 0
}

start_munge() {
    install -d -m 0755 "$PREFIX"
    install -d -m 0755 -o munge -g munge "$MUNGE_DIR"  # o+x: munged refuses an inaccessible socket directory
    if [[ ! -s $MUNGE_DIR/munge.key ]]; then
        dd if=/dev/urandom of="$MUNGE_DIR/munge.key" bs=1024 count=1 status=none
        chown munge:munge "$MUNGE_DIR/munge.key" && chmod 0400 "$MUNGE_DIR/munge.key"
    fi
    alive "$MUNGE_DIR/munged.pid" munged && return
    runuser -u munge -- munged --socket="$SOCKET" --key-file="$MUNGE_DIR/munge.key" \
        --pid-file="$MUNGE_DIR/munged.pid" --log-file="$MUNGE_DIR/munged.log" --seed-file="$MUNGE_DIR/munged.seed"
    log "munged started (pid $(cat "$MUNGE_DIR/munged.pid"))"
}

write_configs() {
    local hw cpus_line mem gres_files changed=1
    install -d -m 0755 "$PREFIX"/{state,spool,log,run,fakegpu}
    # Fake GPUs: gres needs character devices; symlinks to /dev/null named like NVIDIA's device files.
    for ((i = 0; i < GPUS; i++)); do ln -sfn /dev/null "$PREFIX/fakegpu/nvidia$i"; done
    gres_files="$PREFIX/fakegpu/nvidia[0-$((GPUS - 1))]"
    hw=$(slurmd -C | head -1)
    cpus_line=$(sed -E 's/^NodeName=[^ ]+ //; s/ RealMemory=[0-9]+//' <<<"$hw")
    mem=$(sed -E 's/.*RealMemory=([0-9]+).*/\1/' <<<"$hw")
    mem=$((mem * 95 / 100))
    write_if_changed "$CONF" "$MARK
ClusterName=mmgenrec-local
SlurmctldHost=localhost(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$SOCKET
StateSaveLocation=$PREFIX/state
SlurmdSpoolDir=$PREFIX/spool
SlurmctldPidFile=$PREFIX/run/slurmctld.pid
SlurmdPidFile=$PREFIX/run/slurmd.pid
SlurmctldLogFile=$PREFIX/log/slurmctld.log
SlurmdLogFile=$PREFIX/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
GresTypes=gpu
MailProg=/bin/true
MinJobAge=600
ReturnToService=2
NodeName=localhost NodeAddr=127.0.0.1 $cpus_line RealMemory=$mem Gres=gpu:$GPUS State=UNKNOWN
PartitionName=$PARTITION Nodes=localhost Default=YES MaxTime=INFINITE State=UP
PartitionName=gpu Nodes=localhost MaxTime=INFINITE State=UP" && changed=0
    write_if_changed "$GRES" "$MARK
AutoDetect=off
NodeName=localhost Name=gpu File=$gres_files" && changed=0
    return $changed
}

wait_idle() {
    local state
    for _ in $(seq 1 120); do
        state=$(sinfo -h -n localhost -o %t 2>/dev/null | head -1 || true)
        case $state in
            idle | mix | alloc) return 0 ;;
            down* | drain* | drng*) scontrol update nodename=localhost state=resume >/dev/null 2>&1 || true ;;
        esac
        sleep 0.5
    done
    cannot "node localhost did not become idle (state: ${state:-unknown}); see $PREFIX/log/"
}

start() {
    install_packages
    [[ $(id -u) == 0 ]] || cannot "starting slurmctld/slurmd needs root"
    check_foreign
    start_munge
    if write_configs; then
        log "configuration changed: restarting the daemons"
        stop_slurm
    fi
    if ! alive "$PREFIX/run/slurmctld.pid" slurmctld; then
        slurmctld -i
        log "slurmctld started"
    fi
    if ! alive "$PREFIX/run/slurmd.pid" slurmd; then
        slurmd -N localhost
        log "slurmd started"
    fi
    wait_idle
    log "node localhost is up: $(sinfo -h -o '%P %c CPUs %m MB %G')"
}

stop_pid() {  # stop_pid <pidfile> <comm>
    local pid
    alive "$1" "$2" || return 0
    pid=$(<"$1")
    kill "$pid"
    for _ in $(seq 1 40); do [[ -d /proc/$pid ]] || break; sleep 0.25; done
    [[ -d /proc/$pid ]] && kill -9 "$pid"
    rm -f "$1"
    log "stopped $2 (pid $pid)"
}

stop_slurm() {
    stop_pid "$PREFIX/run/slurmd.pid" slurmd
    stop_pid "$PREFIX/run/slurmctld.pid" slurmctld
}

stop() {
    stop_slurm
    stop_pid "$MUNGE_DIR/munged.pid" munged
}

status() {
    local ok=0
    for d in "$MUNGE_DIR/munged.pid munged" "$PREFIX/run/slurmctld.pid slurmctld" "$PREFIX/run/slurmd.pid slurmd"; do
        set -- $d
        if alive "$1" "$2"; then echo "$2 running (pid $(<"$1"))"; else echo "$2 not running"; ok=1; fi
    done
    [[ $ok == 0 ]] && sinfo
    return $ok
}

smoke() {
    local id out
    out=$(mktemp)
    id=$(sbatch --parsable -p "$PARTITION" --gpus=1 -t 1 --mem 10 -o "$out" --wrap 'echo "CUDA_VISIBLE_DEVICES=${CUDA_VISIBLE_DEVICES:-unset}"')
    for _ in $(seq 1 120); do
        [[ -z $(squeue -h -j "$id" -o %T 2>/dev/null | grep -E 'PENDING|RUNNING|COMPLETING' || true) ]] && break
        sleep 0.25
    done
    cat "$out"
    grep -q '^CUDA_VISIBLE_DEVICES=[0-9]' "$out"
}

case ${1:-start} in
    start) start ;;
    stop) stop ;;
    status) status ;;
    smoke) smoke ;;
    *) echo "usage: $0 start|stop|status|smoke" >&2; exit 2 ;;
esac
