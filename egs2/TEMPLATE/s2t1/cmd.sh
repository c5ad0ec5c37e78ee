# How recipe jobs run, sourced by speechlm.sh (so `./run.sh --cmd_backend slurm` works too) and by recipe scripts
# that start jobs of their own (local/data.sh); the two settings are exported so those scripts see them:
#   cmd_backend=local   on this machine (default); output is shown and appended to the job's log file
#   cmd_backend=slurm   each job is one `srun` step (inside an salloc/sbatch allocation, or submitting on its own),
#                       asking for the job's GPUs and CPU cores; output goes to the log file only
# slurm_opts are added to every srun (partition, account, time limit), e.g.
#   ./run.sh --cmd_backend slurm --slurm_opts "--partition gpu --time 48:00:00"
cmd_backend=${cmd_backend:-local}
slurm_opts=${slurm_opts:-"--time 24:00:00"}
export cmd_backend slurm_opts

# run_cmd [--gpu N] [--nj N] [--nodes M --tasks_per_node T] [JOB=1:K] LOGFILE COMMAND...
# Runs COMMAND with its output appended to LOGFILE.
#   --gpu N             GPUs the job needs on each node (slurm: --gres gpu:N)
#   --nj N              CPU cores per task (slurm: --cpus-per-task N)
#   --nodes M --tasks_per_node T
#                       slurm: one step of M x T tasks (--nodes M --ntasks-per-node T), each task one copy of COMMAND
#                       with its SLURM_PROCID/SLURM_LOCALID; this is how distributed training starts on slurm.
#                       local: COMMAND runs once (it starts its own processes, e.g. torchrun)
#   JOB=1:K             K independent jobs side by side (Kaldi's run.pl convention): every "JOB" in LOGFILE and
#                       COMMAND becomes the job number 1..K; waits for all of them and fails if any failed,
#                       naming their logs. slurm: one srun per job.
run_cmd() {
    local gpu=0 nj=1 nodes=1 tasks_per_node=1 first=1 last=0 array=false
    while [ $# -gt 0 ]; do
        case "$1" in
            --gpu) gpu="$2"; shift 2 ;;
            --nj) nj="$2"; shift 2 ;;
            --nodes) nodes="$2"; shift 2 ;;
            --tasks_per_node) tasks_per_node="$2"; shift 2 ;;
            JOB=*:*)
                first="${1#JOB=}"; first="${first%%:*}"; last="${1##*:}"; array=true; shift ;;
            *) break ;;
        esac
    done
    if [ "${array}" = true ]; then
        local j pids=() failed=() args a
        for j in $(seq "${first}" "${last}"); do
            args=()
            for a in "$@"; do args+=("${a//JOB/${j}}"); done
            ( _run_one "${gpu}" "${nj}" 1 1 quiet "${args[@]}" ) &
            pids+=($!)
        done
        for j in "${!pids[@]}"; do
            wait "${pids[${j}]}" || failed+=("${1//JOB/$(( first + j ))}")
        done
        if [ "${#failed[@]}" -gt 0 ]; then
            echo "run_cmd: ${#failed[@]} of $(( last - first + 1 )) jobs failed: ${failed[*]}" >&2
            tail -n 20 "${failed[0]}" >&2
            return 1
        fi
        return 0
    fi
    _run_one "${gpu}" "${nj}" "${nodes}" "${tasks_per_node}" show "$@"
}

_run_one() {  # GPU NJ NODES TASKS_PER_NODE show|quiet LOGFILE COMMAND...: one job of run_cmd
    local gpu="$1" nj="$2" nodes="$3" tasks_per_node="$4" output="$5" log="$6"; shift 6
    mkdir -p "$(dirname "${log}")"
    echo "# $*" >> "${log}"
    case "${cmd_backend}" in
        local)
            if [ "${output}" = show ]; then "$@" 2>&1 | tee -a "${log}"; return "${PIPESTATUS[0]}"; fi
            "$@" >> "${log}" 2>&1 ;;
        slurm)
            local res=(--ntasks 1)
            if [ "${nodes}" -gt 1 ] || [ "${tasks_per_node}" -gt 1 ]; then
                res=(--nodes "${nodes}" --ntasks-per-node "${tasks_per_node}")
            fi
            res+=(--cpus-per-task "${nj}")
            [ "${gpu}" -gt 0 ] && res+=(--gres "gpu:${gpu}")
            # shellcheck disable=SC2086
            srun ${slurm_opts} "${res[@]}" "$@" >> "${log}" 2>&1 && return 0
            if [ "${output}" = show ]; then
                echo "run_cmd: slurm job failed, see ${log}:" >&2; tail -n 20 "${log}" >&2
            fi
            return 1 ;;
        *) echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2; return 1 ;;
    esac
}
