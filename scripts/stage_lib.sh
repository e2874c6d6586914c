# Shell helpers the stage scripts share (step1.sh, step2.sh, scripts/ropg.sh, scripts/rspg.sh); sourced, not run.

# `optional FLAG VALUE`: prints the flag and its value on two lines when VALUE is set (for mapfile), else nothing.
optional() { [ -n "$2" ] && printf -- '%s\n%s\n' "$1" "$2" || true; }

# `launch MODULE ARGS...`: python -m MODULE, or torchrun on $NPROC processes of this machine when NPROC > 1.
launch() {
    if [ "${NPROC:-1}" -gt 1 ]; then torchrun --standalone --nproc_per_node "$NPROC" -m "$@"; else python -m "$@"; fi
}
