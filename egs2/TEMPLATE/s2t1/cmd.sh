# How recipe jobs run. local: on this machine (default). slurm: set cmd_backend=slurm and adjust slurm_opts.
cmd_backend=${cmd_backend:-local}
slurm_opts=${slurm_opts:-"--time 24:00:00"}

# run_cmd LOGFILE COMMAND...: runs COMMAND with its output appended to LOGFILE (and shown when local).
run_cmd() {
    local log="$1"; shift
    mkdir -p "$(dirname "${log}")"
    echo "# $*" >> "${log}"
    case "${cmd_backend}" in
        local) "$@" 2>&1 | tee -a "${log}"; return "${PIPESTATUS[0]}" ;;
        slurm) srun ${slurm_opts} "$@" >> "${log}" 2>&1 ;;
        *) echo "cmd.sh: unknown cmd_backend '${cmd_backend}' (local or slurm)" >&2; return 1 ;;
    esac
}
