# reuse.sh: turn libreuse on and off for this shell and every program it starts, the way
# `torsocks on` does. POSIX sh; works in dash, bash, zsh and ksh. Source it, don't run it:
#
#     . /path/to/shims/reuse.sh
#     reuse on          # from now on, servers started here restart on their port at once
#     reuse status      # says whether it is on, and which library
#     reuse off         # back to normal
#
# Any other arguments go to the reuse command itself (`reuse doctor 8000`, `reuse run ...`).
# The library is found with `reuse lib` when the command is on PATH, else from REUSE_LIB.
# REUSE_* variables you export configure it as usual (see `reuse --help`).

if [ "$(uname -s 2>/dev/null)" = Darwin ]; then
    _reuse_var=DYLD_INSERT_LIBRARIES
else
    _reuse_var=LD_PRELOAD
fi

# Prints the preload list $1 without any libreuse entry. The loader splits LD_PRELOAD on
# colons and blanks, so this does too; the rest is kept, in order, joined by colons.
_reuse_without() {
    _reuse_out=
    _reuse_ifs=$IFS
    IFS=': 	'
    case $- in *f*) _reuse_glob=off ;; *) _reuse_glob=on ;; esac
    set -f
    for _reuse_e in $1; do
        case $_reuse_e in
            libreuse.so | */libreuse.so | libreuse.dylib | */libreuse.dylib) ;;
            *) _reuse_out=${_reuse_out:+$_reuse_out:}$_reuse_e ;;
        esac
    done
    [ "$_reuse_glob" = on ] && set +f
    IFS=$_reuse_ifs
    printf '%s\n' "$_reuse_out"
    unset _reuse_out _reuse_ifs _reuse_glob _reuse_e
}

reuse() {
    case ${1-} in
        on)
            # `command -v` would find this very function, so ask the command and see.
            if _reuse_lib=$(command reuse lib 2>/dev/null); then
                :
            elif [ -f "${REUSE_LIB-}" ]; then
                case $REUSE_LIB in
                    /*) _reuse_lib=$REUSE_LIB ;;
                    *) _reuse_lib=$PWD/$REUSE_LIB ;;
                esac
            else
                echo "reuse on: cannot find libreuse: put the reuse command on PATH, or set REUSE_LIB to the library" >&2
                command reuse lib >/dev/null # says why, if the command is there
                unset _reuse_lib
                return 1
            fi
            eval "_reuse_cur=\${$_reuse_var-}"
            _reuse_cur=$(_reuse_without "$_reuse_cur")
            # First in the list, so its bind() is the one programs call; the rest stays.
            eval "$_reuse_var=\$_reuse_lib\${_reuse_cur:+:\$_reuse_cur}"
            export "$_reuse_var"
            # Said on stderr, as torsocks says it: what is now on, and for what.
            echo "reuse: on for this shell: every program started here preloads $_reuse_lib (ports: ${REUSE_PORTS:-all}; options: ${REUSE_OPTIONS:-addr}); 'reuse off' to stop" >&2
            unset _reuse_lib _reuse_cur
            ;;
        off)
            eval "_reuse_cur=\${$_reuse_var-}"
            _reuse_cur=$(_reuse_without "$_reuse_cur")
            if [ -n "$_reuse_cur" ]; then
                eval "$_reuse_var=\$_reuse_cur"
                export "$_reuse_var"
            else
                unset "$_reuse_var"
            fi
            echo "reuse: off for this shell" >&2
            unset _reuse_cur
            ;;
        status)
            eval "_reuse_cur=\${$_reuse_var-}"
            if [ "$(_reuse_without "$_reuse_cur")" != "$_reuse_cur" ]; then
                echo "reuse: on ($_reuse_var=$_reuse_cur)"
            else
                echo "reuse: off"
            fi
            unset _reuse_cur
            ;;
        *)
            command reuse "$@"
            ;;
    esac
}
