#!/bin/sh
# follow.sh follows the docker-compose run started by `make up` until the
# coordinator records it finished in etcd (/ringtrain/<run>/done), printing
# `ringtrain status` whenever it changes. It exits 0 when the run is done,
# 1 when a ringtrain container failed, the stack stopped, or UP_TIMEOUT passed.
#
# Environment: COMPOSE (default: docker compose if present, else
# docker-compose), RINGTRAIN_RUN (default mnist), UP_TIMEOUT seconds
# (default 3600), POLL seconds (default 5).
set -eu

if [ -z "${COMPOSE:-}" ]; then
	if docker compose version >/dev/null 2>&1; then COMPOSE="docker compose"; else COMPOSE=docker-compose; fi
fi
run=${RINGTRAIN_RUN:-mnist}
timeout=${UP_TIMEOUT:-3600}
poll=${POLL:-5}
prefix=/ringtrain/$run

# etcd serves mutual TLS only: etcdctl reads as the `ops` client, whose
# certificate the certs service copies beside etcd's own.
ops=/certs/client/ops
etcdget() {
	$COMPOSE exec -T etcd etcdctl --endpoints=https://127.0.0.1:2379 --cacert=$ops/ca.pem --cert=$ops/cert.pem --key=$ops/key.pem \
		get --print-value-only "$prefix/$1" 2>/dev/null
}

# status prints `ringtrain status` from a running coordinator, or the raw
# progress record from etcd while no coordinator answers.
status() {
	for c in coordinator-1 coordinator-2; do
		if out=$($COMPOSE exec -T "$c" /ringtrain status --etcd https://etcd:2379 --tls-dir /certs/client/ops --run "$run" 2>&1); then
			printf '%s\n' "$out"
			return
		fi
	done
	p=$(etcdget progress || true)
	[ -n "$p" ] && printf 'progress %s\n' "$p"
}

# failed prints the ringtrain containers of this project that exited non-zero.
failed() {
	for id in $($COMPOSE ps -q); do
		docker inspect -f '{{.Name}} {{.State.Status}} {{.State.ExitCode}} {{.RestartCount}}' "$id"
	done | awk '$2 == "exited" && $3 != 0 { print }'
}

echo "following run \"$run\" (up to ${timeout}s); dashboard: http://127.0.0.1:8080/"
start=$(date +%s)
last=
while :; do
	d=$(etcdget done || true)
	if [ -n "$d" ]; then
		status
		echo "run \"$run\" finished: $d"
		echo "checkpoints are in the compose volume \"checkpoints\" (docker volume ls); 'make down' deletes it with the rest"
		exit 0
	fi
	s=$(status || true)
	if [ -n "$s" ] && [ "$s" != "$last" ]; then
		printf '%s  %s\n' "$(date +%H:%M:%S)" "$s"
		last=$s
	fi
	f=$(failed)
	if [ -n "$f" ]; then
		echo "containers failed (name state exit-code restarts):"
		printf '%s\n' "$f"
		$COMPOSE logs --tail=30
		exit 1
	fi
	if [ -z "$($COMPOSE ps -q etcd)" ]; then
		echo "the etcd container is gone; is the stack up? ($COMPOSE ps)"
		exit 1
	fi
	if [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
		echo "run \"$run\" not finished after ${timeout}s:"
		$COMPOSE ps
		$COMPOSE logs --tail=30
		exit 1
	fi
	sleep "$poll"
done
