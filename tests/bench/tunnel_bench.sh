#!/usr/bin/env bash
# The data path's throughput and added latency (issue "core flow", benchmark), run by hand:
#   make bench-tunnel     (installs iperf3 and stunnel4 if missing, builds, runs this)
# Compares, in one run, on loopback:
#   raw       iperf3 client -> iperf3 server
#   ssh -L    client -> ssh -L (aes128-gcm) -> sshd -> server
#   stunnel   client -> stunnel (TLS client) -> stunnel (TLS server) -> server
#   socat3    client -> socat (TLS client) -> socat (TLS server, TLS client) -> socat (TLS server)
#             -> server: rsgate's own topology (three relays, two TLS legs) built from a lean
#             C relay, so the cost of that topology on this machine is measured, not guessed
#   rsgate    client -> rsgate connect -> gateway -> tunnel -> rsgate-agent -> server
# Throughput: iperf3, 1 and 4 streams, SECONDS each. Latency: 64-byte ping-pongs, p50/p99 of
# LATENCY_ROUNDS rounds of PINGS each, the paths interleaved within every round.
# Also the CPU seconds per GB relayed of the gateway, the agent and rsgate connect, and the
# CPU microseconds each spends per ping-pong round trip. Every process started here is stopped
# by PID.
set -euo pipefail

BIN=${BIN:-build/release}
SECONDS_PER_RUN=${SECONDS_PER_RUN:-5}
PINGS=${PINGS:-1000}            # per path and latency round
LATENCY_ROUNDS=${LATENCY_ROUNDS:-3}
here=$(cd "$(dirname "$0")" && pwd)
rsgate=$BIN/gateway/rsgate
agent=$BIN/agent/rsgate-agent
work=$(mktemp -d /tmp/rsgate-tunnel-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 1 200); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
gbits() { python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print("%.2f" % (d["end"]["sum_received"]["bits_per_second"]/1e9))' "$1"; }
# iperf3 -J into FILE; retried once (the server refuses a test while it resets from the last).
run_iperf() {
  local file=$1; shift
  for _ in 1 2 3; do
    iperf3 -J "$@" >"$file" 2>/dev/null || true
    python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(0 if "sum_received" in d.get("end", {}) else 1)' "$file" && return 0
    sleep 1
  done
  echo "iperf3 failed: $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get("error"))' "$file")" >&2
  exit 1
}

# Targets: iperf3 and the ping-pong echo server.
iperf_port=$(free_port); echo_port=$(free_port)
iperf3 -s -p "$iperf_port" -D --pidfile "$work/iperf.pid" >/dev/null; sleep 0.5; pids+=("$(cat "$work/iperf.pid")")
python3 "$here/pingpong.py" serve "$echo_port" & pids+=($!)
wait_port "$echo_port"

# ssh -L: sshd on loopback with key authentication.
mkdir -p /run/sshd
ssh-keygen -q -t ed25519 -N "" -f "$work/host_key"; ssh-keygen -q -t ed25519 -N "" -f "$work/id"
cp "$work/id.pub" "$work/authorized_keys"
sshd_port=$(free_port)
cat > "$work/sshd_config" <<CFG
Port $sshd_port
ListenAddress 127.0.0.1
HostKey $work/host_key
PidFile $work/sshd.pid
AuthorizedKeysFile $work/authorized_keys
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
CFG
/usr/sbin/sshd -D -e -f "$work/sshd_config" 2>"$work/sshd.err" & pids+=($!)
wait_port "$sshd_port"
ssh_iperf=$(free_port); ssh_echo=$(free_port)
ssh -N -c aes128-gcm@openssh.com -i "$work/id" -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null \
  -o BatchMode=yes -p "$sshd_port" -L "$ssh_iperf:127.0.0.1:$iperf_port" -L "$ssh_echo:127.0.0.1:$echo_port" \
  root@127.0.0.1 & pids+=($!)
wait_port "$ssh_echo"

# stunnel: a TLS client and a TLS server, one hop.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
  -keyout "$work/st.key" -out "$work/st.pem" 2>/dev/null
st_srv_iperf=$(free_port); st_srv_echo=$(free_port); st_iperf=$(free_port); st_echo=$(free_port)
cat > "$work/stunnel-server.conf" <<CFG
foreground = yes
pid =
[iperf]
accept = 127.0.0.1:$st_srv_iperf
connect = 127.0.0.1:$iperf_port
cert = $work/st.pem
key = $work/st.key
[echo]
accept = 127.0.0.1:$st_srv_echo
connect = 127.0.0.1:$echo_port
cert = $work/st.pem
key = $work/st.key
CFG
cat > "$work/stunnel-client.conf" <<CFG
foreground = yes
pid =
client = yes
[iperf]
accept = 127.0.0.1:$st_iperf
connect = 127.0.0.1:$st_srv_iperf
[echo]
accept = 127.0.0.1:$st_echo
connect = 127.0.0.1:$st_srv_echo
CFG
stunnel4 "$work/stunnel-server.conf" 2>"$work/stunnel-s.err" & pids+=($!)
stunnel4 "$work/stunnel-client.conf" 2>"$work/stunnel-c.err" & pids+=($!)
wait_port "$st_echo"

# socat3: three socat relays, one per target, forking per connection; 64 KiB buffers.
cat "$work/st.key" "$work/st.pem" > "$work/socat.pem"
declare -A socat_in
for target in iperf echo; do
  [ $target = iperf ] && dst=$iperf_port || dst=$echo_port
  far=$(free_port); mid=$(free_port); near=$(free_port)
  socat -b 65536 "OPENSSL-LISTEN:$far,bind=127.0.0.1,reuseaddr,fork,cert=$work/socat.pem,verify=0" \
    "TCP:127.0.0.1:$dst" 2>/dev/null & pids+=($!)
  socat -b 65536 "OPENSSL-LISTEN:$mid,bind=127.0.0.1,reuseaddr,fork,cert=$work/socat.pem,verify=0" \
    "OPENSSL:127.0.0.1:$far,verify=0" 2>/dev/null & pids+=($!)
  socat -b 65536 "TCP-LISTEN:$near,bind=127.0.0.1,reuseaddr,fork" "OPENSSL:127.0.0.1:$mid,verify=0" 2>/dev/null & pids+=($!)
  socat_in[$target]=$near
  wait_port "$near"
done

# rsgate: gateway, enrolled machine offering both targets, agent, owner, two rsgate connect.
"$rsgate" init --data "$work/gw" --name bench >/dev/null
sed -i 's/listen = "127.0.0.1:8443"/listen = "127.0.0.1:0"/; s/listen = "127.0.0.1:4433"/listen = "127.0.0.1:0"/' "$work/gw/rsgate.toml"
"$rsgate" serve --config "$work/gw/rsgate.toml" >"$work/gw.out" 2>"$work/gw.err" & gw_pid=$!; pids+=($gw_pid)
for _ in $(seq 1 100); do grep -q "console:" "$work/gw.out" && break; sleep 0.1; done
tunnel=$(sed -n 's/.*tunnel: //p' "$work/gw.out"); https=$(sed -n 's|.*console: https://\(.*\)/|\1|p' "$work/gw.out")
"$rsgate" machine enroll --type 9009 --model 42A --serial BENCH01 --scope "iperf=127.0.0.1:$iperf_port" \
  --scope "echo=127.0.0.1:$echo_port" --gateway "$tunnel" --profile-out "$work/m.toml" --data "$work/gw" >/dev/null
echo "a long enough password" | "$rsgate" user add rep --role representative --password-stdin --data "$work/gw"
token=$("$rsgate" token create --user rep --data "$work/gw")
"$agent" start --profile "$work/m.toml" --control "$work/agent.sock" >"$work/agent.out" 2>"$work/agent.err" & ag_pid=$!; pids+=($ag_pid)
for _ in $(seq 1 100); do grep -q "Session key:" "$work/agent.out" && break; sleep 0.1; done
key=$(sed -n 's/Session key: //p' "$work/agent.out")
sid=$(curl -sS --cacert "$work/gw/ca.pem" -H "Authorization: Bearer $token" \
  -d "{\"session_key\":\"$key\",\"pmr\":\"TS000000001\"}" "https://$https/api/v1/sessions/attach" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
rs_iperf=$(free_port); rs_echo=$(free_port)
"$rsgate" connect --gateway "https://$https" --token "$token" --session "$sid" --scope iperf --access-type other \
  --listen "127.0.0.1:$rs_iperf" --ca "$work/gw/ca.pem" >/dev/null 2>"$work/c1.err" & c1_pid=$!; pids+=($c1_pid)
"$rsgate" connect --gateway "https://$https" --token "$token" --session "$sid" --scope echo --access-type other \
  --listen "127.0.0.1:$rs_echo" --ca "$work/gw/ca.pem" >/dev/null 2>"$work/c2.err" & c2_pid=$!; pids+=($c2_pid)
wait_port "$rs_echo"; sleep 0.5

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

port_of() {  # iperf or echo port of a path
  case $1 in
    raw) [ "$2" = iperf ] && echo "$iperf_port" || echo "$echo_port" ;;
    ssh) [ "$2" = iperf ] && echo "$ssh_iperf" || echo "$ssh_echo" ;;
    stunnel) [ "$2" = iperf ] && echo "$st_iperf" || echo "$st_echo" ;;
    socat3) echo "${socat_in[$2]}" ;;
    rsgate) [ "$2" = iperf ] && echo "$rs_iperf" || echo "$rs_echo" ;;
  esac
}
paths="raw ssh stunnel socat3 rsgate"

# Throughput, path after path; the CPU the rsgate processes spend per GB around its runs.
declare -A result
for path in $paths; do
  ip=$(port_of "$path" iperf)
  [ "$path" = rsgate ] && read -r g0 a0 k0 < <(echo "$(cpu_ticks "$gw_pid") $(cpu_ticks "$ag_pid") $(cpu_ticks "$c1_pid")")
  run_iperf "$work/$path-1.json" -c 127.0.0.1 -p "$ip" -t "$SECONDS_PER_RUN"
  run_iperf "$work/$path-4.json" -c 127.0.0.1 -p "$ip" -t "$SECONDS_PER_RUN" -P 4
  if [ "$path" = rsgate ]; then
    read -r g1 a1 k1 < <(echo "$(cpu_ticks "$gw_pid") $(cpu_ticks "$ag_pid") $(cpu_ticks "$c1_pid")")
    bytes=$(python3 -c "import json; print(sum(json.load(open(f))['end']['sum_received']['bytes'] for f in ['$work/rsgate-1.json','$work/rsgate-4.json']))")
    cpu_per_gb=$(python3 -c "print(' '.join('%.2f' % ((b - a) / $hz / ($bytes / 1e9)) for a, b in [($g0, $g1), ($a0, $a1), ($k0, $k1)]))")
  fi
  result[$path]="$(gbits "$work/$path-1.json") $(gbits "$work/$path-4.json")"
done

# Latency: LATENCY_ROUNDS rounds, each path in turn within a round, so that every path meets the
# machine's slower and faster moments alike; each path's p50 and p99 are of all its samples.
declare -A rounds
cpu_rt="0 0 0"
for round in $(seq 1 "$LATENCY_ROUNDS"); do
  for path in $paths; do
    [ "$path" = rsgate ] && read -r pg0 pa0 pk0 < <(echo "$(cpu_ticks "$gw_pid") $(cpu_ticks "$ag_pid") $(cpu_ticks "$c2_pid")")
    read -r p50 _ < <(python3 "$here/pingpong.py" client "$(port_of "$path" echo)" "$PINGS" 64 "$work/$path.samples")
    rounds[$path]="${rounds[$path]:+${rounds[$path]}/}$p50"
    if [ "$path" = rsgate ]; then
      read -r pg1 pa1 pk1 < <(echo "$(cpu_ticks "$gw_pid") $(cpu_ticks "$ag_pid") $(cpu_ticks "$c2_pid")")
      cpu_rt=$(python3 -c "t='$cpu_rt'.split(); d=[$pg1-$pg0, $pa1-$pa0, $pk1-$pk0]; print(' '.join(str(int(t[i]) + d[i]) for i in range(3)))")
    fi
  done
done
cpu_per_rt=$(python3 -c "print(' '.join('%.0f' % (int(x) * 1e6 / $hz / ($PINGS * $LATENCY_ROUNDS)) for x in '$cpu_rt'.split()))")

printf '%-9s %12s %12s %10s %10s   %s\n' path "1 stream" "4 streams" "p50 us" "p99 us" "p50 per round"
for path in $paths; do
  read -r one four <<<"${result[$path]}"
  read -r p50 p99 < <(python3 "$here/pingpong.py" stats "$work/$path.samples")
  result[$path]="$one $four $p50 $p99"
  printf '%-9s %9s Gb/s %9s Gb/s %10s %10s   %s\n' "$path" "$one" "$four" "$p50" "$p99" "${rounds[$path]}"
done
read -r cg ca ck <<<"$cpu_per_gb"
read -r rg ra rk <<<"$cpu_per_rt"
echo "CPU s per GB relayed (iperf runs): gateway $cg, agent $ca, rsgate connect $ck"
echo "CPU us per round trip (ping-pong, clock ticks of $((1000000 / hz)) us): gateway $rg, agent $ra, rsgate connect $rk"
read -r ssh1 ssh4 sshp50 _ <<<"${result[ssh]}"
read -r so1 so4 sop50 _ <<<"${result[socat3]}"
read -r rs1 rs4 rsp50 _ <<<"${result[rsgate]}"
python3 - "$rs1" "$ssh1" "$rs4" "$ssh4" "$rsp50" "$sshp50" "$so1" "$so4" "$sop50" "$ca" "$cg" <<'PY'
import sys
rs1, ssh1, rs4, ssh4, rsp, sshp, so1, so4, sop, agent, gateway = map(float, sys.argv[1:])
def verdict(ok): return "met" if ok else "NOT met"
# The targets (issue 8): against socat3, the lean C relay of the same topology, in this run.
print(f"rsgate / socat3 (same topology): throughput 1 stream {rs1/so1:.2f}x, 4 streams {rs4/so4:.2f}x "
      f"(target >= 1.0x): {verdict(min(rs1/so1, rs4/so4) >= 1.0)}")
print(f"rsgate / socat3 p50 round trip: {rsp/sop:.2f}x (target <= 1.0x): {verdict(rsp <= sop)}")
print(f"agent / gateway CPU per GB: {agent/gateway:.2f} (target <= 0.5): {verdict(agent <= 0.5 * gateway)}")
# ssh -L as a reference only: one TLS-like leg and two relays, half rsgate's work per byte.
print(f"reference: rsgate / ssh -L throughput 1 stream {rs1/ssh1:.2f}x, 4 streams {rs4/ssh4:.2f}x, "
      f"p50 round trip {rsp/sshp:.2f}x; socat3 / ssh -L throughput 1 stream {so1/ssh1:.2f}x, "
      f"4 streams {so4/ssh4:.2f}x, p50 round trip {sop/sshp:.2f}x")
PY
