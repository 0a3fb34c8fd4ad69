# Shared by run.sh and register.sh (sourced).

tck=$(getconf CLK_TCK)

cpu_ticks() { # total utime+stime of the given pids, in clock ticks
    local t=0 p
    for p in "$@"; do
        [ -r /proc/$p/stat ] || continue
        t=$(( t + $(awk '{print $14 + $15}' /proc/$p/stat) ))
    done
    echo $t
}

# stat_of FILE -> "successful failed retransmissions" from a SIPp -stf file
stat_of() {
    local last hdr
    last=$(tail -n 1 "$1")
    hdr=$(head -n 1 "$1")
    col() { echo "$hdr" | tr ';' '\n' | grep -n "^$1\$" | cut -d: -f1; }
    echo "$(echo "$last" | cut -d';' -f"$(col 'SuccessfulCall(C)')") $(echo "$last" | cut -d';' -f"$(col 'FailedCall(C)')") $(echo "$last" | cut -d';' -f"$(col 'Retransmissions(C)')")"
}

# us_per TICKS CALLS -> CPU microseconds per call
us_per() {
    awk -v d="$1" -v t="$tck" -v c="$2" 'BEGIN { if (c > 0) printf "%.1f", d / t * 1e6 / c; else print "n/a" }'
}

start_kamailio_cfg() { # CFG_TEMPLATE PORT [sed expressions...]
    local tmpl=$1 port=$2; shift 2
    sed -e "s/LISTEN_PORT/$port/g" "$@" "$tmpl" > "$out/kamailio.cfg"
    kamailio -f "$out/kamailio.cfg" -x tlsf -X tlsf -m 2048 -M 64 -P "$out/kamailio.pid" -E 2>"$out/kamailio.log"
    sleep 2
    PIDS=$(pgrep -f "kamailio -f $out/kamailio.cfg" | tr '\n' ' ')
}

stop_proxy() {
    kill $PIDS 2>/dev/null || true
    sleep 1
}

# bench NAME: starts proxy NAME (start_NAME), runs run_rate (defined by the
# sourcing script) at each of RATES and at CPU_RATE, prints one line per
# rate and a RESULT line, stops the proxy. UNIT names what a run_rate
# counts ("call", "registration").
bench() {
    local name=$1 best=0 r res ok failed retrans us
    "start_$name"
    for r in $RATES; do
        res=$(run_rate "$name" "$r")
        read -r ok failed retrans us <<<"$res"
        echo "$name rate=$r ${UNIT}s=$ok failed=$failed retrans=$retrans cpu_us_per_$UNIT=$us"
        # Clean: every one completed, none failed, nothing retransmitted.
        if [ "$failed" = 0 ] && [ "$retrans" = 0 ] && [ "$ok" = $(( r * DURATION )) ]; then best=$r; fi
    done
    res=$(run_rate "$name" "$CPU_RATE")
    read -r ok failed retrans us <<<"$res"
    echo "$name cpu-check rate=$CPU_RATE ${UNIT}s=$ok failed=$failed retrans=$retrans cpu_us_per_$UNIT=$us"
    echo "RESULT $name max_clean_rate=$best cpu_us_per_$UNIT@$CPU_RATE=$us"
    stop_proxy
}
