#!/bin/bash
# Container health check (deploy/Dockerfile HEALTHCHECK and the ECS task definition): GET
# /healthz on the engine's ops listener and succeed only on HTTP 200. Uses bash's /dev/tcp, so
# the image needs no curl. The port comes from MEDIAFLOW_OPS__LISTEN (host:port), default 9090.
set -u
listen="${MEDIAFLOW_OPS__LISTEN:-0.0.0.0:9090}"
port="${listen##*:}"
exec 3<>"/dev/tcp/127.0.0.1/${port}" || exit 1
# One write: a server that answers after the first line never sees a half-sent request.
request=$'GET /healthz HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n'
printf '%s' "$request" >&3 || exit 1
IFS= read -r -t 4 status <&3 || exit 1
case "$status" in
    "HTTP/1."?" 200 "* | "HTTP/1."?" 200"$'\r') exit 0 ;;
    *) exit 1 ;;
esac
