#!/usr/bin/env bash
# make demo: a one-node shoal cluster (data in .shoal/) running the example stack.
set -euo pipefail
cd "$(dirname "$0")/.."
export SHOAL_DATA_DIR="$PWD/.shoal"
export SHOAL_ADDR="${SHOAL_ADDR:-127.0.0.1:7480}"
shoal=".venv/bin/shoal"
mkdir -p .shoal
cp -f "$(command -v busybox)" examples/busybox/busybox   # the example image's only file

if ! curl -fsS "http://$SHOAL_ADDR/v1/health" >/dev/null 2>&1; then
  echo "starting shoal up (log: .shoal/up.log)"
  nohup "$shoal" up --listen "$SHOAL_ADDR" >>.shoal/up.log 2>&1 </dev/null &
  for _ in $(seq 1 100); do
    curl -fsS "http://$SHOAL_ADDR/v1/health" >/dev/null 2>&1 && break
    sleep 0.1
  done
fi
curl -fsS "http://$SHOAL_ADDR/v1/health" >/dev/null || { cat .shoal/up.log; exit 1; }

"$shoal" deploy -f examples/compose.yaml --wait --timeout 60
echo
"$shoal" nodes
echo
"$shoal" services demo
echo
"$shoal" ps demo --all
echo
echo "web answers on the published port: $(curl -fsS http://127.0.0.1:18080/ || true)"
for _ in $(seq 1 20); do   # the workers ask http://web/ every 5 s, by name (DNS + VIP)
  line=$("$shoal" logs demo/worker --tail 1 | grep hello | head -1 || true)
  [ -n "$line" ] && break
  sleep 0.5
done
echo "a worker says: ${line:-nothing yet}"
echo
"$shoal" network ls
cat <<MSG

shoal is running in the background (API http://$SHOAL_ADDR, data .shoal/).
  use it:   export SHOAL_ADDR=$SHOAL_ADDR SHOAL_DATA_DIR=$PWD/.shoal; $shoal ps
  stop it:  SHOAL_DATA_DIR=$PWD/.shoal $shoal down     (removes the stack, then stops shoal)
MSG
