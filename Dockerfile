# oomtrace's container image: a static oomtrace and nothing else.
#
# Build it with `cargo xtask image`, which builds oomtrace statically (the kernel matrix's
# static build), stages a build context holding only bin/oomtrace, and runs
#   docker build --tag oomtrace:latest --build-arg VERSION=... --file Dockerfile <context>
# `docker build .` in the repository does not work: the context here has no bin/oomtrace, and
# .dockerignore keeps the checkout (and its target/) from being sent at all.
#
# FROM scratch: no base image is pulled (none can be here), and the static binary needs no libc.
# The image has no /etc/localtime and no zoneinfo, so the human view shows UTC unless the host's
# are mounted (-v /etc/localtime:/etc/localtime:ro -v /usr/share/zoneinfo:/usr/share/zoneinfo:ro);
# JSON reports are RFC 3339 UTC either way. There is no shell: `docker exec` into it finds none.
#
# How to run it (capabilities, mounts, the host pid namespace): deploy/README.md.
FROM scratch

ARG VERSION=unknown
LABEL org.opencontainers.image.title="oomtrace" \
      org.opencontainers.image.description="Catch every OOM kill on a host and say which process, in which container, was killed and why" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"

COPY bin/oomtrace /oomtrace

# The journal (0600, written by oomtrace itself); mount the host's directory here so it
# outlives the container and `oomtrace history` on the host reads the same file.
VOLUME ["/var/lib/oomtrace"]

# Metrics, when --metrics-addr 0.0.0.0:9633 asks for them (off by default).
EXPOSE 9633

# SIGTERM (docker stop) ends a watch like Ctrl-C: detach, drain, summary on stderr, exit 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/oomtrace"]
# One JSON report per line on stdout, for `docker logs` and log shippers. Arguments given to
# `docker run` replace this: pass --json again with them (or omit it for the human view).
CMD ["--json"]
