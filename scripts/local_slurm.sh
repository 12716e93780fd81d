#!/usr/bin/env bash
# A one-node SLURM cluster on this machine (Debian's slurm-wlm + munge), then the smoke DAG
# through profiles/slurm (snakemake-executor-plugin-slurm). Proves the cluster profile
# for real: every job is an sbatch submission, queried with squeue.
#
#   sudo bash scripts/local_slurm.sh [LOG [TARGET...]]   (root: it installs packages and starts daemons)
#
# TARGET defaults to the whole smoke DAG (results/tables results/report.html); CI passes one
# table (results/tables/reconstruction.md) to keep its run short. `--stop` as the only argument
# stops the daemons again.
#
# Container-friendly settings: no cgroups (proctrack/linuxproc, task/none), no accounting
# database (the profile queries job state with squeue; MinJobAge keeps finished jobs visible).
set -euo pipefail
if [ "${1:-}" = "--stop" ]; then
  pkill -x slurmd || true; pkill -x slurmctld || true
  exit 0
fi
repo="$(cd "$(dirname "$0")/.." && pwd)"
log="${1:-$repo/benchmarks/results/slurm_smoke.log}"
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(results/tables results/report.html)
venv="$repo/.venv/bin"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >/dev/null
  apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi
"$venv/pip" install -q snakemake-executor-plugin-slurm

# munge: a key, then the daemon
if [ ! -s /etc/munge/munge.key ]; then
  mkdir -p /etc/munge && dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
fi
chown -R munge:munge /etc/munge /var/lib/munge /var/log/munge 2>/dev/null || true
chmod 400 /etc/munge/munge.key
mkdir -p /run/munge && chown munge:munge /run/munge
pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged

host="$(hostname -s)"
cpus="$(nproc)"
mem_mb="$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))"
mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd /var/log/slurm
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=lgvq-local
SlurmctldHost=$host
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
ReturnToService=2
MinJobAge=3600
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
pgrep -x slurmctld >/dev/null || slurmctld
pgrep -x slurmd >/dev/null || slurmd
for _ in $(seq 30); do sinfo -h -o %T 2>/dev/null | grep -qE "idle|mixed" && break; sleep 1; done
sinfo
srun -N1 -n1 hostname

# The smoke DAG through the SLURM profile, in a scratch copy of the results
work="$(mktemp -d)"
cd "$repo"
start=$(date +%s)
set +e
PATH="$venv:$PATH" HF_HUB_OFFLINE=1 "$venv/snakemake" "${targets[@]}" \
  --profile profiles/slurm-local --directory "$work" -s "$repo/Snakefile" \
  --configfile "$repo/config/smoke.yaml" --config results_dir=results > "$log" 2>&1
rc=$?
set -e
submitted="$(grep -c 'Job .* has been submitted with SLURM jobid' "$log" || true)"
echo "SLURM smoke DAG (${targets[*]}): exit $rc in $(( $(date +%s) - start )) s; jobs submitted: $submitted" | tee -a "$log"
if [ $rc -ne 0 ]; then tail -n 60 "$log"; exit $rc; fi
if [ "$submitted" -eq 0 ]; then echo "no job went through SLURM (sbatch)" | tee -a "$log"; exit 1; fi
