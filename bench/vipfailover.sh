#!/usr/bin/env bash
# Floating address failover: Shoal's vip (keepalived supervised by shoal lb:
# VRRP v3, 250 ms adverts, the guard's in-process balancer check as track_file)
# against keepalived with plain settings (VRRP v2, advert_int 1, no
# track_script) on the same lab hosts, in front of the same balancers, with
# the same load (4 clients x 50 requests/s to the floating address, a new
# connection each, 1 s per request). Both run in one `go test` per round,
# rounds interleaved. Needs root (network namespaces) and keepalived.
#
#   bench/vipfailover.sh              # 3 rounds
#   ROUNDS=5 bench/vipfailover.sh
#
# Prints each test's measurement lines: the failure, the time until the
# address answered from the other node, and the requests that failed.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
cd "$(dirname "$0")/.."

if ! command -v keepalived >/dev/null 2>&1 && [ ! -x /usr/sbin/keepalived ]; then
	echo "keepalived is needed: apt-get install keepalived" >&2
	exit 2
fi
echo "# $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD) load: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
	echo "## round $r"
	SHOAL_VIP_PLAIN=1 go test -count=1 -run 'TestVIPFailover$|TestVIPPlainKeepalived$' -v ./e2e/ 2>&1 |
		grep -E 'vip_(plain_)?test.go:[0-9]+: (SIGKILL|link cut|plain keepalived)|^(--- FAIL|FAIL|ok)' |
		sed -E 's/^ +//; s/ \(first: .*\)$//'
done
