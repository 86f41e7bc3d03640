# syntax=docker/dockerfile:1
# kvstack's Go binaries in one small image: api, consumer, migrate (and the
# healthcheck the compose file uses, as the image has no shell). Each compose
# service picks its binary with `command:`.

# The patch release go.mod's go directive names: the official images set
# GOTOOLCHAIN=local, so an older 1.26 image (a cached 1.26-alpine) refuses to
# build the module. deploy/composetest keeps the two equal.
FROM golang:1.26.8-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags="-s -w" -o /out/ \
        ./cmd/api ./cmd/consumer ./cmd/migrate ./tools/healthcheck

# Static binaries only: no shell, no package manager, not root.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/ /kvstack/
USER nonroot:nonroot
EXPOSE 8081 8082 8090
CMD ["/kvstack/api"]
