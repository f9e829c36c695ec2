# Stand-in for a compiler pre-started in this sandbox (see tvm_agent/warm.py):
# warm/bin/NAME runs `sh shim.sh NAME ARGS...` first on the compile stage's
# PATH. It hands the command, the directory and the arguments to the waiting
# compiler (fd 7) and ends as it ends (fd 8: "exit N" or "signal N"); when
# that compiler cannot serve it ("cold", or gone), it runs the real NAME.
tool=$1
shift
PATH=${PATH#/.tvm/tvm_agent/warm/bin:}
export PATH
if (trap '' PIPE; printf '%s\0' "$#" "$tool" "$PWD" "$@" >&7) 2>/dev/null; then
    exec 7>&-
    while IFS= read -r line <&8; do
        case $line in
            "exit "*) exit "${line#exit }" ;;
            "signal "*) exec 8<&-; kill -"${line#signal }" $$; exit 1 ;;
            cold) break ;;
        esac
    done
fi
exec 7>&- 8<&-
exec "$tool" "$@"
