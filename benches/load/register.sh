#!/usr/bin/env bash
# REGISTER load: SIPp registers USERS distinct users with MD5 digest (each
# "call" = REGISTER, 401, REGISTER with credentials, 200) against Tandem and
# against Kamailio (auth + usrloc in memory) in the same run.
#
# Reports, for each registrar, the highest rate (registrations/s) among
# RATES with zero failed and zero retransmitted registrations over DURATION
# seconds, and the registrar's CPU time per authenticated registration at
# CPU_RATE/s (utime+stime of every thread / process, /proc/<pid>/stat).
# Tandem's bindings are durable (fdatasync, group commit) before each 200;
# Kamailio keeps them in memory only.
#
# Usage: benches/load/register.sh [tandem|kamailio|floor|both|all]   (default
# both; all = tandem, kamailio and floor: benches/load/floor.rs answering
# 401 and 200 with the switch's I/O loop, no digest and no store, the floor
# under any registrar's figure on this machine)
# Environment: RATES="1000 2000 4000", DURATION=10, CPU_RATE=2000,
# USERS=10000, FLOOR_WINDOW_US=1000 (the floor's batch window).
set -euo pipefail
cd "$(dirname "$0")/../.."
here=benches/load
which=${1:-both}
RATES=${RATES:-"1000 2000 4000"}
DURATION=${DURATION:-10}
CPU_RATE=${CPU_RATE:-2000}
USERS=${USERS:-10000}
PASSWORD=Load-Secret-1
DOMAIN=acme.example.com
out=$(mktemp -d "${TMPDIR:-/tmp}/tandem-reg.XXXXXX")
trap 'kill $(jobs -p) 2>/dev/null || true; sleep 0.5' EXIT

command -v sipp >/dev/null || { apt-get update -qq && apt-get install -y -qq sip-tester; }
if [ "$which" != tandem ]; then
    command -v kamailio >/dev/null || { apt-get update -qq && apt-get install -y -qq kamailio; }
fi
cargo build --release --locked -q
case $which in floor|all) cargo build --release --locked -q --example floor ;; esac
. $here/common.sh
UNIT=registration

SW_PORT=5360; KAM_PORT=5460

# The injection file: user;[authentication ...];domain, used in order (SIPp
# expands the keyword of field 1 with that line's credentials).
{
    echo SEQUENTIAL
    for i in $(seq 1 "$USERS"); do echo "load$i;[authentication username=load$i password=$PASSWORD];$DOMAIN;"; done
} > "$out/users.csv"

start_tandem() {
    sed -e "s/udp:127.0.0.1:5060/udp:127.0.0.1:$SW_PORT/; s/tcp:127.0.0.1:5060/tcp:127.0.0.1:$SW_PORT/" \
        -e 's/algorithms = \["SHA-256", "MD5"\]/algorithms = ["MD5"]/' \
        -e "s#data_dir = \"var\"#data_dir = \"$out/var\"#" config/tandem.toml > "$out/tandem.toml"
    # The users, as terminals of the demo company (the file's last table).
    for i in $(seq 1 "$USERS"); do
        printf '\n  [[company.terminal]]\n  name = "load%s"\n  password = "%s"\n' "$i" "$PASSWORD"
    done >> "$out/tandem.toml"
    RUST_LOG=warn "${TANDEM_BIN:-target/release/tandem}" run --config "$out/tandem.toml" 2>"$out/tandem.log" &
    PIDS=$!
    PORT=$SW_PORT
    sleep 1.5
}

start_floor() {
    target/release/examples/floor registrar 127.0.0.1:$SW_PORT ${FLOOR_WINDOW_US:-1000} 2>"$out/floor.log" &
    PIDS=$!
    PORT=$SW_PORT
    sleep 0.5
}

start_kamailio() {
    start_kamailio_cfg $here/kamailio-register.cfg "$KAM_PORT" -e "s/PASSWORD/$PASSWORD/g"
    PORT=$KAM_PORT
}

# run_rate NAME RATE -> prints "registrations failed retrans cpu_us_per_registration"
run_rate() {
    local name=$1 rate=$2 calls=$(( $2 * DURATION ))
    local before; before=$(cpu_ticks $PIDS)
    timeout -s INT $(( DURATION * 3 + 30 )) sipp 127.0.0.1:"$PORT" -sf $here/register.xml -i 127.0.0.1 \
        -inf "$out/users.csv" -r "$rate" -m "$calls" -buff_size 4194304 -nostdin \
        -timeout $(( DURATION * 3 + 20 ))s -trace_stat -stf "$out/$name-reg-$rate.csv" -fd 1 >/dev/null 2>&1 || true
    local after; after=$(cpu_ticks $PIDS)
    local ok failed retrans
    read -r ok failed retrans <<<"$(stat_of "$out/$name-reg-$rate.csv")"
    echo "$ok $failed $retrans $(us_per $(( after - before )) "$ok")"
}

case $which in
    tandem) bench tandem ;;
    kamailio) bench kamailio ;;
    floor) bench floor ;;
    both) bench tandem; bench kamailio ;;
    all) bench tandem; bench kamailio; bench floor ;;
esac
echo "logs and SIPp statistics: $out"
