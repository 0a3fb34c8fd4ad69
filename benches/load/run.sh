#!/usr/bin/env bash
# Load benchmark: SIPp uac (as the carrier, 127.0.0.2) -> switch -> SIPp uas
# (the friend), on loopback, for Tandem and for Kamailio in the same run.
#
# For each proxy it reports:
#   - the highest rate (calls/s) among RATES with zero failed calls and zero
#     retransmissions over DURATION seconds;
#   - the proxy's CPU time per call at CPU_RATE calls/s (utime+stime from
#     /proc/<pid>/stat, all threads / all processes, divided by calls).
#
# Usage: benches/load/run.sh [tandem|kamailio|floor|both|all]   (default both;
# all = tandem, kamailio and floor: benches/load/floor.rs relaying the same
# datagrams with the switch's I/O loop and no SIP work, the floor under any
# proxy's figure on this machine)
# Environment: RATES="2000 4000 6000 8000 9000", DURATION=10, CPU_RATE=2000,
# HOLD_MS=500 (call length between ACK and BYE: with 0, a multi-process
# proxy such as Kamailio may pass BYE before ACK, which the callee counts as
# a failure), FLOOR_WINDOW_US=1000 (the floor's batch window).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benches/load
which=${1:-both}
RATES=${RATES:-"2000 4000 6000 8000 9000"}
DURATION=${DURATION:-10}
CPU_RATE=${CPU_RATE:-2000}
HOLD_MS=${HOLD_MS:-500}
out=$(mktemp -d /tmp/tandem-load.XXXXXX)
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5' EXIT

command -v sipp >/dev/null || { apt-get update -qq && apt-get install -y -qq sip-tester; }
if [ "$which" != tandem ]; then
    command -v kamailio >/dev/null || { apt-get update -qq && apt-get install -y -qq kamailio; }
fi
cargo build --release --locked -q
case $which in floor|all) cargo build --release --locked -q --example floor ;; esac

SW_PORT=5160; FRIEND_PORT=5170; KAM_PORT=5260; KAM_FRIEND=5270
. $here/common.sh
UNIT=call

start_tandem() {
    sed -e "s/udp:127.0.0.1:5060/udp:127.0.0.1:$SW_PORT/; s/tcp:127.0.0.1:5060/tcp:127.0.0.1:$SW_PORT/" \
        -e "s/port = 5070/port = $FRIEND_PORT/" -e "s#data_dir = \"var\"#data_dir = \"$out/var\"#" config/tandem.toml > "$out/tandem.toml"
    RUST_LOG=warn "${TANDEM_BIN:-target/release/tandem}" run --config "$out/tandem.toml" 2>"$out/tandem.log" &
    PIDS=$!
    PORT=$SW_PORT; FPORT=$FRIEND_PORT
    sleep 1
}

start_floor() {
    target/release/examples/floor relay 127.0.0.1:$SW_PORT 127.0.0.1:$FRIEND_PORT ${FLOOR_WINDOW_US:-1000} 2>"$out/floor.log" &
    PIDS=$!
    PORT=$SW_PORT; FPORT=$FRIEND_PORT
    sleep 0.5
}

start_kamailio() {
    start_kamailio_cfg $here/kamailio.cfg "$KAM_PORT" -e "s/FRIEND_PORT/$KAM_FRIEND/g"
    PORT=$KAM_PORT; FPORT=$KAM_FRIEND
}

# run_rate NAME RATE -> prints "calls failed retrans cpu_us_per_call"
run_rate() {
    local name=$1 rate=$2 calls=$(( $2 * DURATION ))
    sipp -sf $here/uas.xml -i 127.0.0.1 -p "$FPORT" -buff_size 4194304 -nostdin -bg \
        -trace_stat -stf "$out/$name-uas-$rate.csv" >/dev/null 2>&1
    sleep 0.3
    local before; before=$(cpu_ticks $PIDS)
    # SIPp's own -timeout does not end a run whose calls hang: bound it.
    timeout -s INT $(( DURATION * 3 + 30 )) sipp 127.0.0.1:"$PORT" -sf $here/uac.xml -i 127.0.0.2 -s +34944000200 \
        -key from_user +34600111222 -key from_domain pstn.example.net \
        -r "$rate" -m "$calls" -d "$HOLD_MS" -buff_size 4194304 -nostdin -timeout $(( DURATION * 3 + 20 ))s \
        -trace_stat -stf "$out/$name-uac-$rate.csv" -fd 1 >/dev/null 2>&1 || true
    local after; after=$(cpu_ticks $PIDS)
    pkill -f "sipp -sf $here/uas.xml" 2>/dev/null || true
    sleep 0.5
    local ok failed retrans
    read -r ok failed retrans <<<"$(stat_of "$out/$name-uac-$rate.csv")"
    local us; us=$(us_per $(( after - before )) "$ok")
    echo "$ok $failed $retrans $us"
}

case $which in
    tandem) bench tandem ;;
    kamailio) bench kamailio ;;
    floor) bench floor ;;
    both) bench tandem; bench kamailio ;;
    all) bench tandem; bench kamailio; bench floor ;;
esac
echo "logs and SIPp statistics: $out"
