#!/bin/bash
# Multi-worker training on a SLURM cluster: one worker per node, all GPUs of a node
# per worker (multi_worker_mirrored). Submit from the repository root:
#
#   MODEL_DIR=/shared/runs/shapes sbatch scripts/slurm_train.sh [extra model_main_tf2.py flags]
#
# MODEL_DIR must be on a filesystem every node mounts at the same path: the chief
# (task 0) writes it and every worker resumes from it. Five minutes before the time
# limit SLURM sends SIGTERM to every task; the workers agree on one step, the chief
# saves ckpt-<step> and all exit 143. Submitting the same command again resumes.
#
#SBATCH --job-name=detector
#SBATCH --nodes=2
#SBATCH --ntasks-per-node=1
#SBATCH --gres=gpu:4
#SBATCH --cpus-per-task=16
#SBATCH --time=24:00:00
#SBATCH --signal=TERM@300
#SBATCH --output=slurm-%j.out

set -euo pipefail

: "${MODEL_DIR:?set MODEL_DIR to a directory on a filesystem that every node mounts}"
export MODEL_DIR
export CONFIG="${CONFIG:-configs/shapes_retinanet.yaml}"
export PORT="${PORT:-12345}"        # each task listens on PORT + its index
export PYTHON="${PYTHON:-python}"

# The worker addresses, in task order: one per node, as SLURM lists the nodes.
addresses=""
index=0
for host in $(scontrol show hostnames "$SLURM_JOB_NODELIST"); do
    addresses+="${addresses:+, }\"${host}:$((PORT + index))\""
    index=$((index + 1))
done
export WORKERS="[${addresses}]"

# srun starts one task per node; each task builds its TF_CONFIG from its SLURM_PROCID.
srun --kill-on-bad-exit=0 bash -c '
    export TF_CONFIG="{\"cluster\": {\"worker\": ${WORKERS}}, \"task\": {\"type\": \"worker\", \"index\": ${SLURM_PROCID}}}"
    exec "${PYTHON}" model_main_tf2.py --pipeline_config_path="${CONFIG}" \
        --model_dir="${MODEL_DIR}" --num_workers="${SLURM_NTASKS}" "$@"
' slurm_train "$@"
