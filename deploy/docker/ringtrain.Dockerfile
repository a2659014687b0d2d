# The ringtrain image: one static binary, MNIST baked in, nothing else.
#
# Built by `make images` (mk/deploy.mk) from a context it assembles under
# out/images/ringtrain/; no base image is pulled:
#
#	root/ringtrain         bin/ringtrain-static (cgo + OpenBLAS, statically linked)
#	root/data/mnist/*.gz   the four MNIST files from the Go module cache
#	root/tmp/              empty, mode 1777
#	owned/checkpoints/     empty, becomes /checkpoints owned by 65532 so that a
#	                       named volume mounted there starts out writable
#	owned/certs/, owned/certs-workers/, owned/ca-root/
#	                       empty, 0700: where docker-compose.yml's one-shot certs
#	                       service writes the run's secrets (the coordinators',
#	                       the workers', the root key) into named volumes
#
# COPY keeps the modes of what is inside the source folder, not of the folder
# itself, and --chown also owns the folders it creates: hence root/ and owned/.
FROM scratch

ARG VERSION=dev
ARG COMMIT=none
ARG DATE=unknown

LABEL org.opencontainers.image.title="ringtrain" \
      org.opencontainers.image.description="Distributed data-parallel neural network trainer (ring all-reduce over gRPC)" \
      org.opencontainers.image.source="https://github.com/ringtrain/ringtrain" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${COMMIT}" \
      org.opencontainers.image.created="${DATE}"

COPY root/ /
COPY --chown=65532:65532 owned/ /

USER 65532:65532
# 7000 coordinator gRPC (TLS: enrollment), 7001 its plaintext health,
# 7070 worker gRPC (mutual TLS: the ring), 7071 its plaintext health,
# 7946 gossip (TCP and UDP), 8080 coordinator HTTP (dashboard, /metrics),
# 9090 worker HTTP (/metrics).
EXPOSE 7000 7001 7070 7071 7946 7946/udp 8080 9090
ENTRYPOINT ["/ringtrain"]
CMD ["--help"]
