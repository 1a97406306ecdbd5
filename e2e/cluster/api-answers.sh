#!/usr/bin/env bash
# Withholds the API server's answers to one pod, or delivers them again: its requests still
# reach the API server and are applied, but nothing comes back (TCP retransmits the answers; they
# arrive once delivered again). A renew in flight is then applied while its heart waits — the
# partition that heals after the failover it caused.
# Usage: api-answers.sh withhold|deliver POD_IP
source "$(dirname "$0")/lib.sh"
[ $# -eq 2 ] && [[ $1 = withhold || $1 = deliver ]] || die "usage: api-answers.sh withhold|deliver POD_IP"
ip=$2
tag="tfs-e2e api answers to $ip withheld"
iptables -N TFS-E2E-CUT 2>/dev/null || true
for c in INPUT OUTPUT FORWARD; do
  iptables -C "$c" -j TFS-E2E-CUT 2>/dev/null || iptables -I "$c" 1 -j TFS-E2E-CUT
done
case $1 in
  withhold)
    # From the API server's port (the `kubernetes` Service's answers too, before conntrack gives
    # them the Service's address back).
    iptables -A TFS-E2E-CUT -d "$ip" -p tcp --sport "$API_PORT" -m comment --comment "$tag" -j DROP
    iptables -A TFS-E2E-CUT -d "$ip" -s "$SERVICE_IP" -p tcp --sport 443 -m comment --comment "$tag" -j DROP
    say "answers of the API server to $ip withheld"
    ;;
  deliver)
    iptables -S TFS-E2E-CUT 2>/dev/null | grep -F -- "\"$tag\"" | while read -r rule; do
      eval "iptables -D ${rule#-A }"
    done
    say "answers of the API server to $ip delivered again"
    ;;
esac
