# The etcd image: the real etcd server and etcdctl, built from the official
# go.etcd.io modules by `make etcd-binary` (deploy/etcd-build pins them), in a
# context that `make images` assembles under out/images/etcd/:
#
#	root/usr/local/bin/etcd, etcdctl   CGO_ENABLED=0 static binaries
#	root/var/lib/, root/tmp/           empty, modes 0755 and 1777
#	owned/etcd/                        empty, mode 0700, becomes /var/lib/etcd
#	                                   owned by 65532: the data volume's root
#	                                   (use --data-dir /var/lib/etcd/data)
#
# COPY keeps the modes of what is inside the source folder, not of the folder
# itself, and --chown also owns the folders it creates: hence root/ and owned/.
FROM scratch

ARG ETCD_VERSION=unknown

LABEL org.opencontainers.image.title="ringtrain-etcd" \
      org.opencontainers.image.description="etcd server and etcdctl built from go.etcd.io/etcd, for ringtrain" \
      org.opencontainers.image.source="https://github.com/etcd-io/etcd" \
      org.opencontainers.image.version="${ETCD_VERSION}"

COPY root/ /
COPY --chown=65532:65532 owned/ /var/lib/

# No ETCD_* variables here: etcd refuses a flag that an ETCD_* variable also sets.
ENV PATH=/usr/local/bin
USER 65532:65532
WORKDIR /var/lib/etcd
EXPOSE 2379 2380
ENTRYPOINT ["/usr/local/bin/etcd"]
CMD ["--data-dir=/var/lib/etcd/data"]
