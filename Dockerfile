# syntax=docker/dockerfile:1
# Build stage: a static binary (no cgo), reproducible paths.
FROM golang:1.26-alpine AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/mls-appservice ./cmd/mls-appservice

# Run stage: the binary, the compose configuration as a template, and a
# non-root user. Alpine rather than scratch so that docker-compose.yml's
# one-shot setup can copy the template and run -g with a shell.
FROM alpine:3.22
RUN adduser -D -H -u 1337 mls && mkdir /data && chown mls /data
COPY --from=build /out/mls-appservice /usr/bin/mls-appservice
COPY deploy/mls-appservice/config.yaml /etc/mls-appservice/config.yaml
USER 1337
WORKDIR /data
VOLUME /data
EXPOSE 29340
CMD ["mls-appservice", "-c", "/data/config.yaml"]
