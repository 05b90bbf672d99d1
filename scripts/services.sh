#!/usr/bin/env bash
# Makes sure the PostgreSQL and Redis the tests use answer; starts them if they do not. Fails otherwise.
set -uo pipefail
pg_ok() { pg_isready -h 127.0.0.1 -p 5432 -q; }
redis_ok() { [ "$(redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null)" = "PONG" ]; }
if ! pg_ok; then
  echo "PostgreSQL is not answering; starting it" >&2
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  for _ in $(seq 30); do pg_ok && break; sleep 1; done
fi
if ! redis_ok; then
  echo "Redis is not answering; starting it" >&2
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
  for _ in $(seq 30); do redis_ok && break; sleep 1; done
fi
pg_ok || { echo "FAIL: PostgreSQL at 127.0.0.1:5432 does not answer" >&2; exit 1; }
redis_ok || { echo "FAIL: Redis at 127.0.0.1:6379 does not answer" >&2; exit 1; }
echo "PostgreSQL and Redis answer"
